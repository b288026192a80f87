# sa-admin user token issue | list | revoke: a person's personal tokens
# for the admin API (sap_; issue 22, item 3).  Shown once, only a hash in a
# signed record, never in Redis, its log or the audit; verified by the
# admin API's bearer check (t/lib/bearer-probe.c); revoked at once; an
# operator or the user herself, never someone else or a service account.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep);
use SaTest;
SaTest::api_local("it counts each user's personal tokens, and the API pass issues every user one");

my $probe = SaTest::probe('bearer-probe');

my $redis = SaTest::Redis->start;
$redis->cmd('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
$redis->cmd('CONFIG', 'SET', 'slowlog-max-len', 100000);
my $f = SaTest::fixture($redis, apps => ['api']);

sub op { SaTest::operator($redis, @_) }
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
sub probe {
    my ($token, $env) = @_;
    my $r = SaTest::run([$probe], env => {
        SA_REDIS => $redis->url,
        SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
        SA_AUTHORIZATION => "Bearer $token", %{ $env // {} } });
    $r->{json} = eval { JSON::PP->new->decode($r->{out}) };
    return $r;
}
sub payload { my ($v) = @_; JSON::PP->new->decode(substr($v, 91)) }
my @secrets;
sub secret_of { my $s = substr($_[0], 21); push @secrets, $s; $s }

# issue by the operator: the token alone on stdout, once
my $r = op(qw(user token issue alice));
is($r->{code}, 0, 'the operator issues alice a personal token') or diag $r->{err};
my ($token) = $r->{out} =~ /\A(sap_[0-9A-Za-z]{16}_[0-9A-Za-z]{49})\n\z/;
ok($token, 'stdout holds the sap_ token alone');
like($r->{err}, qr/shown only this once/, 'stderr says it is shown once');
my $id = substr($token, 4, 16);
my $secret = secret_of($token);
unlike($r->{err}, qr/\Q$secret\E/, 'stderr does not repeat it');

my $rec = $redis->cmd('GET', "sa:ptok:$id");
like($rec, qr/^sa1\.[A-Za-z0-9_-]{86}\.\{/, 'a signed record at sa:ptok:<id>');
my $p = payload($rec);
is($p->{kind}, 'ptoken', 'of kind ptoken');
is($p->{user}, 'alice', 'naming alice');
is($p->{created_by}, '(operator)', 'made by the operator');
like($p->{hash}, qr/^[0-9a-f]{64}$/, 'the hash of the token');
is($p->{revoked}, JSON::PP::false, 'not revoked');
ok($p->{expires_at} > time + 89 * 86400 && $p->{expires_at} <= time + 90 * 86400,
   'expires in 90 days by default');
my $ttl = $redis->cmd('TTL', "sa:ptok:$id");
ok($ttl > 96 * 86400 && $ttl <= 97 * 86400, "the key lives until expiry + 7 days ($ttl s)");
ok($redis->cmd('SISMEMBER', 'sa:user:alice:ptoks', $id), "in alice's index");
ok(!$redis->cmd('EXISTS', "sa:tok:$id"), 'nothing under the service accounts\' keys');

# the admin API's bearer check: alice, proven by the token id, unbounded
$r = probe($token);
is($r->{code}, 0, 'the bearer check accepts it') or diag explain $r;
is($r->{json}{kind}, 'person', 'a person');
is($r->{json}{actor}, 'alice', 'the caller is alice');
is($r->{json}{proof}, "token:$id", 'proven by the token id');
is($r->{json}{scopes}, undef, 'no scopes: bounded by her team permissions only');
is($r->{json}{team}, undef, 'no team');
my $wrong = SaTest::with_check(substr($token, 0, 21) . ('y' x 43));
$r = probe($wrong);
is($r->{code}, 2, 'its id with another secret: refused');
like($r->{json}{why}, qr/wrong secret/, 'wrong secret');
(my $badcheck = $token) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
like(probe($badcheck)->{json}{why}, qr/malformed/, 'a wrong check digit: malformed');
like(probe(SaTest::with_check('sap_' . ('Q' x 16) . '_' . ('z' x 43)))->{json}{why},
     qr/unknown token/, 'a well-formed personal token of no record: unknown');

# --json, --expires; the user herself
$r = as('alice', qw(user token issue alice --expires 12h --json));
is($r->{code}, 0, 'alice issues herself one') or diag $r->{err};
my $mine = $r->{json};
like($mine->{token}, qr/^sap_\Q$mine->{id}\E_/, '--json: the token once');
secret_of($mine->{token});
is($mine->{user}, 'alice', '--json: user');
is($mine->{created_by}, 'alice', '--json: created_by');
is($mine->{status}, 'active', '--json: active');
ok(exists $mine->{$_}, "--json: $_") for qw(id created_at expires_at);
ok(!exists $mine->{hash}, '--json: never the hash');
my $exp = payload($redis->cmd('GET', "sa:ptok:$mine->{id}"))->{expires_at};
ok($exp > time + 11 * 3600 && $exp <= time + 12 * 3600, '--expires 12h');

# refusals: someone else, a service account, bad input; nothing written
my $before = $redis->digest_but_audit;
$r = as('bob', qw(user token issue alice));
is($r->{code}, 2, 'bob cannot issue alice a token (exit 2)');
like($r->{err}, qr/only an operator or 'alice' herself/, 'and is told why');
my $email = $f->account->{email};
$r = op('user', 'token', 'issue', $email);
is($r->{code}, 1, "no personal token for a service account's email");
like($r->{err}, qr/is a service account/, 'it has tokens of its own');
for my $bad ([qw(user token issue alice --expires 0)],
             [qw(user token issue alice --expires 90x)],
             [qw(user token issue alice --expires -1d)],
             [qw(user token issue), 'al ice'],
             [qw(user token issue alice bob)],
             [qw(user token issue)],
             [qw(user token issue alice --bogus)],
             [qw(user token revoke short)],
             [qw(user token list)]) {
    $r = op(@$bad);
    is($r->{code}, 1, "usage error: @$bad[2 .. $#$bad]");
    like($r->{err}, qr/^sa-admin: /, 'one line');
}
$r = op(qw(user token revoke), $token);
is($r->{code}, 1, 'revoke given the token itself: usage error');
unlike($r->{err}, qr/\Q$secret\E/, 'and the token is not echoed');
is($redis->digest_but_audit, $before, 'refusals wrote nothing but their audit entry');

# list: ids, times, status; never a secret or a hash
$r = op(qw(user token list alice --json));
is($r->{code}, 0, 'list') or diag $r->{err};
is(scalar @{ $r->{json} }, 2, 'two tokens');
my ($t) = grep { $_->{id} eq $id } @{ $r->{json} };
is($t->{status}, 'active', 'active');
is($t->{user}, 'alice', 'alice\'s');
ok(exists $t->{$_}, "field $_") for qw(id user created_at created_by expires_at status);
unlike($r->{out}, qr/sap_|\Q$secret\E|\Q$p->{hash}\E/, 'no token text, no hash in the listing');
$r = as('alice', qw(user token list alice));
is($r->{code}, 0, 'alice lists her own');
like($r->{out}, qr/^ID\s+STATUS\s+CREATED\s+EXPIRES\s+LAST USED\s+CREATED BY\n/, 'a table (its last use at the API too)');
like($r->{out}, qr/^\Q$id\E\s+active\s/m, 'with her token');
is(as('bob', qw(user token list alice))->{code}, 2, 'bob cannot list alice\'s tokens');
$r = op(qw(user token list carol --json));
is_deeply($r->{json}, [], 'a user without tokens: an empty list');

# over the API (the probe runs the operation as serve would, for the
# caller it proved): alice for herself only; a service account never
sub api {
    my ($token, $op, $in) = @_;
    my $r = probe($token, { SA_PROBE_OP => $op, SA_PROBE_IN => JSON::PP->new->encode($in) });
    my @l = split /\n/, $r->{out};
    $r->{caller} = eval { JSON::PP->new->decode($l[0] // '') };
    $r->{json} = eval { JSON::PP->new->decode($l[1] // '') };
    return $r;
}
$r = api($mine->{token}, 'user.token.issue', { user => 'alice', expires => '365d' });
is($r->{code}, 0, 'api: alice, proven by her personal token, issues herself one') or diag $r->{err};
my $api_tok = $r->{json};
secret_of($api_tok->{token});
is($api_tok->{created_by}, 'alice', 'api: created by alice');
my $mine_exp = payload($redis->cmd('GET', "sa:ptok:$mine->{id}"))->{expires_at};
is(payload($redis->cmd('GET', "sa:ptok:$api_tok->{id}"))->{expires_at}, $mine_exp,
   'api: it never outlives the token that issued it (365d asked, 12h given)');
$r = api($mine->{token}, 'user.token.issue', { user => 'bob' });
is($r->{code}, 2, 'api: alice cannot issue bob one');
like($r->{err}, qr/only an operator or 'bob' herself/, 'api: forbidden');
is(api($mine->{token}, 'user.token.list', { user => 'alice' })->{code}, 0, 'api: alice lists hers');
is(api($mine->{token}, 'user.token.list', { user => 'bob' })->{code}, 2, 'api: not bob\'s');
my ($sat) = $f->issue('--scope', 'service_accounts:tokens');
$r = api($sat, 'user.token.issue', { user => 'alice' });
is($r->{code}, 2, "api: a service account's token cannot issue a personal token");
like($r->{err}, qr/not for a service account's token/, 'api: and is told why');
$r = api($sat, 'user.token.issue', { user => $f->account->{email} });
is($r->{code}, 1, 'api: nor one for its own email');
$r = api($api_tok->{token}, 'user.token.revoke', { id => $api_tok->{id} });
is($r->{code}, 0, 'api: a personal token revokes itself');
like(probe($api_tok->{token})->{json}{why}, qr/revoked/, 'api: and is refused at once');

# revoke: at once
$r = as('alice', 'user', 'token', 'revoke', $id);
is($r->{code}, 0, 'alice revokes her token') or diag $r->{err};
is($r->{out}, "personal token $id revoked\n", 'and is told so');
$r = probe($token);
is($r->{code}, 2, 'the bearer check refuses it at once');
like($r->{json}{why}, qr/revoked/, 'revoked');
$p = payload($redis->cmd('GET', "sa:ptok:$id"));
is($p->{revoked}, JSON::PP::true, 'a tombstone');
is($p->{version}, 2, 'with a higher version');
$ttl = $redis->cmd('TTL', "sa:ptok:$id");
ok($ttl > 96 * 86400, 'kept until its expiry + 7 days');
$r = op(qw(user token list alice --json));
($t) = grep { $_->{id} eq $id } @{ $r->{json} };
is($t->{status}, 'revoked', 'listed as revoked');
$r = op('user', 'token', 'revoke', $id);
is($r->{code}, 2, 'revoking it again: exit 2');
like($r->{err}, qr/is revoked/, 'it is revoked already');
is(op(qw(user token revoke AAAAAAAAAAAAAAAA))->{code}, 2, 'an unknown id: exit 2');
$r = as('bob', 'user', 'token', 'revoke', $mine->{id});
is($r->{code}, 2, 'bob cannot revoke alice\'s token');
is(probe($mine->{token})->{code}, 0, 'which still works');
$r = op('user', 'token', 'revoke', $mine->{id}, '--json');
is($r->{code}, 0, 'the operator can');
is($r->{json}{status}, 'revoked', '--json: revoked');

# expiry
$r = op(qw(user token issue dave --expires 3s));
chomp(my $short = $r->{out});
secret_of($short);
is(probe($short)->{code}, 0, 'a token with 3 seconds to live works');
sleep 4.2;    # time passing: the token's 3 seconds run out
$r = probe($short);
is($r->{code}, 2, 'and not once it has expired');
like($r->{json}{why}, qr/expired/, 'expired');
$r = op(qw(user token list dave --json));
is($r->{json}[0]{status}, 'expired', 'listed as expired');

# a record gone (a week after its expiry) leaves the index at the next issue
my $dave_id = substr($short, 4, 16);
$redis->cmd('DEL', "sa:ptok:$dave_id");
is_deeply(op(qw(user token list dave --json))->{json}, [], 'a token whose record is gone is not listed');
$r = op(qw(user token issue dave --json));
secret_of($r->{json}{token});
is_deeply($redis->cmd('SMEMBERS', 'sa:user:dave:ptoks'), [$r->{json}{id}],
          'and the next issue drops it from the index');

# the audit: who did what to whose token; never a secret
$r = SaTest::admin($redis, qw(audit --json));
my @ent = grep { $_->{action} =~ /^user\.token\./ } @{ $r->{json} };
ok((grep { $_->{action} eq 'user.token.issue' && $_->{target} eq "alice/$id"
           && $_->{actor} eq '(operator)' } @ent), 'audit: the operator issued alice/<id>');
ok((grep { $_->{action} eq 'user.token.revoke' && $_->{target} eq "alice/$id"
           && $_->{actor} eq 'alice' } @ent), 'audit: alice revoked it');
is(scalar(grep { $_->{action} eq 'user.token.issue' } @ent), 5, 'five issues audited');
ok((grep { $_->{action} eq 'denied' && $_->{actor} eq 'bob' && $_->{target} eq 'user.token' }
    @{ $r->{json} }), "bob's refused attempts left a 'denied' entry");

# forged records written straight into Redis
$r = op(qw(user token issue erin));
chomp(my $erin = $r->{out});
secret_of($erin);
my $eid = substr($erin, 4, 16);
my $erec = $redis->cmd('GET', "sa:ptok:$eid");
(my $forged = $erec) =~ s/"user":"erin"/"user":"root"/;
$redis->cmd('SET', "sa:ptok:$eid", $forged);
$r = probe($erin);
is($r->{code}, 2, 'a record whose user was changed: refused');
like($r->{json}{why}, qr/bad signature/, 'bad signature');
my $ep = payload($erec);
$ep->{expires_at} = 0;
$redis->cmd('SET', "sa:ptok:$eid", JSON::PP->new->canonical->encode($ep));
like(probe($erin)->{json}{why}, qr/record refused/, 'an unsigned record: refused');
$r = op(qw(user token list erin --json));
is($r->{json}[0]{status}, 'tampered', 'listed as tampered, nothing it claims');
$r = op('user', 'token', 'revoke', $eid);
is($r->{code}, 2, 'a forged record is not revoked (re-signed) by sa-admin');
like($r->{err}, qr/refused/, 'it is refused');
$redis->cmd('SET', "sa:ptok:$eid", $erec);
is(probe($erin)->{code}, 0, 'the genuine record back: accepted');
# another personal token's genuine record under this id
$redis->cmd('SET', "sa:ptok:$eid", $redis->cmd('GET', "sa:ptok:$mine->{id}"));
like(probe($erin)->{json}{why}, qr/record refused/, "another token's genuine record: refused");
$redis->cmd('SET', "sa:ptok:$eid", $erec);

# a personal token is never a service account's: its record copied to
# sa:tok:<id>, with either prefix
$redis->cmd('SET', "sa:tok:$eid", $erec);
(my $as_sat = $erin) =~ s/^sap_/sat_/;
$as_sat = SaTest::with_check(substr($as_sat, 0, 64));
$r = probe($as_sat);
is($r->{code}, 2, 'its record under sa:tok: with a sat_ token: refused');
like($r->{json}{why}, qr/record refused/, 'not a token record');
$redis->cmd('DEL', "sa:tok:$eid");

# key resign re-signs personal tokens too
my $new = SaTest::new_dir('newkey') . '/k';
SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $new]);
$r = SaTest::admin($redis, { SA_SIGNING_KEY => "$new/signing.key", SA_ACTOR => undef },
                   'key', 'resign', '--old-verify-key', SaTest::keys_dir() . '/verify.key',
                   '--team', 'platform', '--dry-run', '--json');
is($r->{json}{personal_tokens}, 0, 'key resign --team: personal tokens belong to no team');
$r = SaTest::admin($redis, { SA_SIGNING_KEY => "$new/signing.key", SA_ACTOR => undef },
                   'key', 'resign', '--old-verify-key', SaTest::keys_dir() . '/verify.key',
                   '--json');
is($r->{code}, 0, 'key resign') or diag $r->{err};
ok($r->{json}{personal_tokens} >= 4, "personal token records re-signed ($r->{json}{personal_tokens})");
$r = probe($erin, { SA_SIGNING_KEY => "$new/signing.key" });
is($r->{code}, 0, 'a personal token verifies with the new key') or diag explain $r;
is(payload($redis->cmd('GET', "sa:ptok:$eid"))->{version}, 2, 'its version bumped');
isnt(probe($erin)->{code}, 0, 'and no longer with the old one');

# the secrets: nowhere in Redis, its command log or its log
my @all = map { $redis->cmd('DUMP', $_) // '' } @{ $redis->cmd('KEYS', '*') };
my $slow = join "\n", map { join ' ', map { ref $_ ? @$_ : $_ } @{ $_->[3] } }
                      @{ $redis->cmd('SLOWLOG', 'GET', 100000) };
ok(length $slow > 1000, 'every command Redis ran was logged');
my $log = $redis->log;
for my $s (@secrets) {
    ok(!grep({ index($_, $s) >= 0 } @all), 'no key holds a secret');
    ok(index($slow, $s) < 0, 'no command Redis ran carried one');
    ok(index($log, $s) < 0, "Redis' log holds none");
}

done_testing;
