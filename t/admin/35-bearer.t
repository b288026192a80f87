# The admin API's callers by bearer token (admin-tool/bearer.h; issue 22,
# item 3): a service account's sat_ token verified as a gateway verifies
# it, through t/lib/bearer-probe.c (the check alone, as `sa-admin serve`
# calls it).  Every refusal is a 401, never a caller; a Redis that cannot
# answer is 503 (exit 3), never a 401.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;
use Time::HiRes qw(sleep);

my $probe = SaTest::probe('bearer-probe');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};

# probe($authorization, {env}) -> {code, out, err, json}
sub probe {
    my ($auth, $env) = @_;
    my $r = SaTest::run([$probe], env => {
        SA_REDIS => $redis->url,
        SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
        SA_AUTHORIZATION => $auth, %{ $env // {} } });
    $r->{json} = eval { JSON::PP->new->decode($r->{out}) };
    return $r;
}
sub refused {
    my ($auth, $why, $what, $env) = @_;
    my $r = probe($auth, $env);
    is($r->{code}, 2, "$what: refused (exit 2, a 401)") or diag explain $r;
    is($r->{json}{status}, 'unauthenticated', "$what: unauthenticated");
    like($r->{json}{why} // '', $why, "$what: $why");
    ok(!exists $r->{json}{actor}, "$what: no caller");
    return $r;
}
sub payload { my ($v) = @_; JSON::PP->new->decode(substr($v, 91)) }

# a valid token: the account's email, the token id as proof, its scopes
my ($token, $tid) = $f->issue('--scope', 'service_accounts:tokens',
                              '--scope', 'stacks:read', '--expires', '90d');
my $r = probe("Bearer $token");
is($r->{code}, 0, 'a valid token is accepted') or diag explain $r;
is($r->{json}{status}, 'ok', 'status ok');
is($r->{json}{kind}, 'account', 'a service account');
is($r->{json}{actor}, "$aid\@platform.sa.invalid", "the caller is the account's email");
is($r->{json}{proof}, "token:$tid", 'proven by the token id');
is($r->{json}{token_id}, $tid, 'token id');
is($r->{json}{team}, 'platform', 'its team');
is($r->{json}{account}, $aid, 'its account');
is_deeply($r->{json}{scopes}, ['service_accounts:tokens', 'stacks:read'],
          "the token's scopes bound it");
ok($r->{json}{expires_at} > time + 89 * 86400, 'its expiry');
my $secret = substr($token, 21);
unlike($r->{out} . $r->{err}, qr/\Q$secret\E/, 'the secret is never printed');

is(probe("bearer \t$token ")->{code}, 0, 'scheme in any case, blanks around the token');
is(probe("Bearer $token", { SA_SIGNING_KEY => undef,
                            SA_VERIFY_KEY => SaTest::keys_dir() . '/verify.key' })->{code},
   0, 'the verify key alone suffices, as at a gateway');

# a token without scopes is a caller bounded to nothing
my ($bare, $bare_id) = $f->issue;
$r = probe("Bearer $bare");
is($r->{code}, 0, 'a token without scopes authenticates');
is_deeply($r->{json}{scopes}, [], 'with an empty scope list (bounded to nothing), not NULL');

# no credential, another scheme, malformed tokens: nothing asked of Redis
$redis->cmd('CONFIG', 'RESETSTAT');
refused(undef, qr/no bearer token/, 'no Authorization header');
refused("Basic YWxpY2U6cHc=", qr/no bearer token/, 'Basic');
refused("Bearer", qr/malformed/, 'Bearer without a token');
refused("Bearer $token $token", qr/malformed/, 'two tokens');
(my $badcheck = $token) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
refused("Bearer $badcheck", qr/malformed/, 'a wrong check digit');
refused("Bearer " . substr($token, 0, 69), qr/malformed/, 'one character short');
(my $other_prefix = $token) =~ s/^sat_/sak_/;
refused("Bearer " . SaTest::with_check(substr($other_prefix, 0, 64)), qr/malformed/,
        'another prefix');
my $stats = $redis->cmd('INFO', 'commandstats');
unlike($stats, qr/cmdstat_get:/, 'not one GET for a malformed token');

# well-formed, but not the issued token
refused("Bearer " . SaTest::forged_token(), qr/unknown token/, 'a token of no record');
my $wrong = SaTest::with_check(substr($token, 0, 21) . ('x' x 43));
refused("Bearer $wrong", qr/wrong secret/, "the id of a real token, another secret");

# revoked: at once
is($f->as('token', 'revoke', $bare_id)->{code}, 0, 'revoke');
refused("Bearer $bare", qr/revoked/, 'a revoked token');

# a replay: the record from before the revocation put back by a Redis
# writer is refused by a process that saw the tombstone (as a gateway's
# worker refuses it), not by one that never did (docs/api-callers.md)
my ($old, $old_id) = $f->issue('--scope', 'stacks:read');
my $v1 = $redis->cmd('GET', "sa:tok:$old_id");
is($f->as('token', 'revoke', $old_id)->{code}, 0, 'revoke another');
$r = SaTest::run([$probe], env => {
    SA_REDIS => $redis->url, SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
    SA_AUTHORIZATION => "Bearer $old", SA_PROBE_THEN_SET => "sa:tok:$old_id",
    SA_PROBE_THEN_VALUE => $v1 });
my @lines = map { JSON::PP->new->decode($_) } split /\n/, $r->{out};
is(scalar @lines, 2, 'one process, two checks');
like($lines[0]{why}, qr/revoked/, 'first the tombstone: revoked');
like($lines[1]{why} // '', qr/older than one already seen/,
     'then the older record put back: refused as a replay');
is($r->{code}, 2, 'a 401');
is(probe("Bearer $old")->{code}, 0,
   'a process that never saw the tombstone takes it (the bound: fresh_until, item 7)');
$redis->cmd('DEL', "sa:tok:$old_id");

# the same process verified the record before: only those very bytes skip
# the signature check; changed bytes, even one, are checked and refused
sub twice {
    my ($auth, $key, $value) = @_;
    my $r = SaTest::run([$probe], env => {
        SA_REDIS => $redis->url, SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
        SA_AUTHORIZATION => $auth, SA_PROBE_THEN_SET => $key, SA_PROBE_THEN_VALUE => $value });
    return ($r, map { JSON::PP->new->decode($_) } split /\n/, $r->{out});
}
my ($t2, $t2_id) = $f->issue('--scope', 'stacks:read');
my $t2rec = $redis->cmd('GET', "sa:tok:$t2_id");
(my $t2wide = $t2rec) =~ s/"scopes":\["stacks:read"\]/"scopes":["*"]/;
my ($r2, @l2) = twice("Bearer $t2", "sa:tok:$t2_id", $t2wide);
is($l2[0]{status}, 'ok', 'verified once');
like($l2[1]{why} // '', qr/bad signature/, 'the widened record in the same process: bad signature');
$redis->cmd('SET', "sa:tok:$t2_id", $t2rec);
($r2, @l2) = twice("Bearer $t2", "sa:tok:$t2_id", $t2rec);
is_deeply([map { $_->{status} } @l2], ['ok', 'ok'], 'the same bytes twice: accepted twice');
my $arec = $redis->cmd('GET', "sa:acct:$aid");
(my $amoved = $arec) =~ s/"name":"ci"/"name":"cj"/;
($r2, @l2) = twice("Bearer $t2", "sa:acct:$aid", $amoved);
like($l2[1]{why} // '', qr/account record refused/, 'an account record changed after it was verified: refused');
$redis->cmd('SET', "sa:acct:$aid", $arec);

# expired
my ($short, $short_id) = $f->issue('--scope', 'stacks:read', '--expires', '3s');
is(probe("Bearer $short")->{code}, 0, 'a token with 3 seconds to live works');
sleep 4.2;    # time passing: the token's 3 seconds run out
refused("Bearer $short", qr/expired/, 'and not once it has expired');

# forged or unsigned records written straight into Redis
my $rec = $redis->cmd('GET', "sa:tok:$tid");
(my $widened = $rec) =~ s/"scopes":\[[^\]]*\]/"scopes":["*"]/;
$redis->cmd('SET', "sa:tok:$tid", $widened);
refused("Bearer $token", qr/record refused: bad signature/, 'a record with widened scopes');
my $p = payload($rec);
$p->{scopes} = ['*'];
$redis->cmd('SET', "sa:tok:$tid", JSON::PP->new->canonical->encode($p));
refused("Bearer $token", qr/record refused/, 'an unsigned record (bare JSON)');
$redis->cmd('SET', "sa:tok:$tid", 'sa1.' . ('A' x 86) . '.' . JSON::PP->new->canonical->encode($p));
refused("Bearer $token", qr/record refused: bad signature/, 'an envelope with a made-up signature');
$redis->cmd('DEL', "sa:tok:$tid");
$redis->cmd('HSET', "sa:tok:$tid", 'scopes', '*');
refused("Bearer $token", qr/record refused/, 'a hash where the record belongs (WRONGTYPE)');
$redis->cmd('DEL', "sa:tok:$tid");
# a genuine record of another token, copied under this one's key
my ($other, $other_id) = $f->issue('--scope', '*');
$redis->cmd('SET', "sa:tok:$tid", $redis->cmd('GET', "sa:tok:$other_id"));
refused("Bearer $token", qr/names another token/, "another token's genuine record");
$redis->cmd('SET', "sa:tok:$tid", $rec);
is(probe("Bearer $token")->{code}, 0, 'the genuine record back: accepted again');

# signed with another key: refused
my $keys2 = SaTest::new_dir('keys2');
SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $keys2]);
refused("Bearer $token", qr/bad signature/, 'checked with a verify key that did not sign it',
        { SA_SIGNING_KEY => "$keys2/signing.key" });

# the account record: gone, or not what sa-admin signed
my $acct = $redis->cmd('GET', "sa:acct:$aid");
$redis->cmd('DEL', "sa:acct:$aid");
refused("Bearer $token", qr/account gone/, 'its account record deleted behind sa-admin');
(my $moved = $acct) =~ s/"team":"platform"/"team":"platforn"/;
$redis->cmd('SET', "sa:acct:$aid", $moved);
refused("Bearer $token", qr/account record refused/, 'its account record tampered with');
$redis->cmd('SET', "sa:acct:$aid", $acct);
is(probe("Bearer $token")->{code}, 0, 'the account back: accepted');

# the account deleted by sa-admin: its tombstones refuse every token
is($f->as('account', 'delete', $aid)->{code}, 0, 'account delete');
refused("Bearer $token", qr/revoked/, "a deleted account's token");

# Redis down: unavailable, never unauthenticated
$r = probe("Bearer $other", { SA_REDIS => 'redis://127.0.0.1:' . SaTest::free_port() . '/0' });
is($r->{code}, 3, 'Redis down: exit 3 (503), not a 401');
like($r->{err}, qr/^sa-admin: .*Redis/m, 'and says so');
$redis->cmd('CONFIG', 'SET', 'requirepass', 'sekrit');
$r = probe("Bearer $other");
is($r->{code}, 3, 'Redis refusing (NOAUTH): 503 as well');
$redis->cmd('AUTH', 'sekrit');
$redis->cmd('CONFIG', 'SET', 'requirepass', '');

# nothing of any secret in Redis
my @all = map { $redis->cmd('DUMP', $_) // '' } @{ $redis->cmd('KEYS', '*') };
ok(!grep({ index($_, $secret) >= 0 } @all), 'no key holds a secret');

# the longest team name (63) still gives an email that is a user name:
# user names are at most 100 bytes, an account's email at most 91
my $long = 'l' x 63;
my $lf = SaTest::fixture($redis, team => $long, apps => ['lapi']);
my ($ltoken) = $lf->issue('--scope', 'stacks:read');
$r = probe("Bearer $ltoken");
is($r->{code}, 0, 'a token of a team with a 63-byte name is accepted') or diag explain $r;
is($r->{json}{actor}, "$lf->{account}{id}\@$long.sa.invalid", 'its 91-byte email is the caller');
$r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, 'team', 'member', 'add', $long,
                   $r->{json}{actor}, '--perm', 'service_accounts:tokens');
is($r->{code}, 0, 'and can be made a member of its team') or diag explain $r;
$r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, 'team', 'member', 'add', $long,
                   'u' x 100, '--perm', 'service_accounts:create');
is($r->{code}, 0, 'a 100-byte user name is a user name') or diag explain $r;
$r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, 'team', 'member', 'add', $long,
                   'u' x 101, '--perm', 'service_accounts:create');
is($r->{code}, 1, 'a 101-byte one is a usage error');

done_testing;
