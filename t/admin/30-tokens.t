# sa-admin token: issue, list, scope, rotate, revoke; secrets never stored.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Digest::SHA ();
use SaTest;

my $redis = SaTest::Redis->start;
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
sub record { $redis->cmd('GET', "sa:tok:$_[0]") }

as('alice', qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(billing));
as('alice', qw(team member add platform tim --perm service_accounts:tokens));
as('alice', qw(team member add platform bob --perm service_accounts:create));
my $acct = as('alice', qw(account create platform ci --app billing --json))->{json};

# issue: the token once on stdout, only its hash in Redis
my $r = as('tim', qw(token issue platform/ci --scope stacks:read --scope deploy:*
                     --expires 90d));
is($r->{code}, 0, 'issue') or diag $r->{err};
my ($token) = $r->{out} =~ /\A(sat_[0-9A-Za-z]{16}_[0-9A-Za-z]{49})\n\z/;
ok($token, 'stdout holds the token alone');
like($r->{err}, qr/shown only this once/, 'stderr says it is shown once');
my $id = substr($token, 4, 16);
my $rec = record($id);
like($rec, qr/^sa1\.[A-Za-z0-9_-]{86}\.\{/, 'a signed record');
my $secret = substr($token, 21);
unlike($rec, qr/\Q$secret\E/, 'the record does not hold the secret');
my @all = map { $redis->cmd('DUMP', $_) // '' } @{ $redis->cmd('KEYS', '*') };
ok(!grep({ index($_, $secret) >= 0 } @all), 'no key holds the secret');
like($rec, qr/"scopes":\["stacks:read","deploy:\*"\]/, 'scopes in the record');
my $ttl = $redis->cmd('TTL', "sa:tok:$id");
ok($ttl > 96 * 86400 && $ttl <= 97 * 86400, "key lives until expiry + 7 days ($ttl s)");

$r = as('tim', qw(token issue platform/ci --json));
is($r->{code}, 0, 'issue without scopes');
my $noscope = $r->{json};
is_deeply($noscope->{scopes}, [], 'a token with no scopes');
like($noscope->{token}, qr/^sat_$noscope->{id}_/, 'json has the token');
is($noscope->{expires_at}, undef, 'no --expires: never expires');
is($noscope->{account}, $acct->{id}, 'account id');
is($redis->cmd('TTL', "sa:tok:$noscope->{id}"), -1, 'and its key has no TTL');

my $before = $redis->digest_but_audit;
for my $bad ([qw(token issue platform/ci --scope Stacks:read)],
             [qw(token issue platform/ci --scope stacks)],
             [qw(token issue platform/ci --expires 90x)],
             [qw(token issue platform/ci --expires -1d)],
             [qw(token issue platform/ci --expires 0)],
             [qw(token issue platform/ci --count 0)],
             [qw(token issue platform/ci --bogus)],
             [qw(token issue x y)],
             [qw(token scope nope --scope a:b)],
             [qw(token revoke), $token],
             [qw(token rotate), $id, '--overlap', 'soon']) {
    $r = as('alice', @$bad);
    is($r->{code}, 1, "usage error: " . join(' ', @$bad[0 .. 2]));
    like($r->{err}, qr/^sa-admin: [^\n]+\nusage: /, 'one line and the usage');
}
unlike(join('', map { as('alice', qw(token revoke), $token)->{err} } 1),
       qr/\Q$secret\E/, 'a token given as an id is not echoed');
$r = as('bob', qw(token issue platform/ci));
is($r->{code}, 2, 'issue needs service_accounts:tokens');
$r = as('alice', qw(token issue platform/ghost));
is($r->{code}, 2, 'unknown account');
$r = as('alice', qw(token scope AAAAAAAAAAAAAAAA --scope a:b));
is($r->{code}, 2, 'unknown token');
is($redis->digest_but_audit, $before, 'refusals wrote nothing but their audit entry');

# list: ids, scopes, times; never a secret
$r = SaTest::admin($redis, qw(token list platform/ci --json));
is($r->{code}, 0, 'list');
is(scalar @{ $r->{json} }, 2, 'two tokens');
my ($t) = grep { $_->{id} eq $id } @{ $r->{json} };
is($t->{status}, 'active', 'active');
is($t->{last_used_at}, undef, 'not used yet');
ok(exists $t->{$_}, "field $_") for qw(id account scopes created_at expires_at last_used_at);
unlike($r->{out}, qr/sat_|\Q$secret\E/, 'no token text in the listing');
$redis->cmd('SET', "sa:tok:$id:used", time - 60);
$r = SaTest::admin($redis, qw(token list platform/ci --json));
($t) = grep { $_->{id} eq $id } @{ $r->{json} };
like($t->{last_used_at}, qr/^\d{4}-/, 'last_used_at shown once recorded');
# a value nobody signs may hold anything (found by fuzz_duration)
$redis->cmd('SET', "sa:tok:$id:used", '99999999999999');
$r = SaTest::admin($redis, qw(token list platform/ci --json));
($t) = grep { $_->{id} eq $id } @{ $r->{json} };
is($r->{code}, 0, 'a last use in the year 3170843 does not break the listing');
is($t->{last_used_at}, undef, 'and shows as null');
$redis->cmd('SET', "sa:tok:$id:used", time - 60);
$r = SaTest::admin($redis, qw(token list platform/ci));
like($r->{out}, qr/^ID\s+STATUS\s+CREATED\s+EXPIRES\s+LAST USED\s+SCOPES$/m,
     'human table');

# scope: replaces, bumps the version
$r = as('tim', 'token', 'scope', $id, '--scope', 'billing:read', '--json');
is($r->{code}, 0, 'scope') or diag $r->{err};
is_deeply($r->{json}{scopes}, ['billing:read'], 'replaced');
like(record($id), qr/"version":2/, 'version 2');
$r = as('tim', 'token', 'scope', $id);
is($r->{code}, 0, 'scope with none');
like(record($id), qr/"scopes":\[\]/, 'leaves no scopes');
ok($redis->cmd('TTL', "sa:tok:$id") > 0, 'the TTL survives a rewrite');

# rotate: a new token; the old one lives for the overlap only
as('tim', 'token', 'scope', $id, '--scope', 'stacks:read');
$r = as('tim', 'token', 'rotate', $id, '--overlap', '1h', '--json');
is($r->{code}, 0, 'rotate') or diag $r->{err};
my $new = $r->{json};
like($new->{token}, qr/^sat_/, 'prints the new token');
isnt($new->{id}, $id, 'a new id');
is_deeply($new->{scopes}, ['stacks:read'], 'same scopes');
is($new->{rotated_from}, $id, 'rotated_from');
my ($old_exp) = record($id) =~ /"expires_at":(\d+)/;
ok(abs($old_exp - (time + 3600)) < 10, 'old token expires in an hour');
my ($new_exp) = record($new->{id}) =~ /"expires_at":(\d+)/;
ok(abs($new_exp - (time + 90 * 86400)) < 10, 'new token gets the full lifetime');
$r = as('tim', 'token', 'rotate', $new->{id});
my ($o2) = record($new->{id}) =~ /"expires_at":(\d+)/;
ok($o2 <= time + 1, 'no --overlap: the old token stops at once');
$r = as('tim', 'token', 'rotate', $new->{id});
is($r->{code}, 2, 'an expired token cannot be rotated');

# revoke: a tombstone with a higher version
my ($v) = record($id) =~ /"version":(\d+)/;
$r = as('tim', 'token', 'revoke', $id);
is($r->{code}, 0, 'revoke');
like(record($id), qr/"revoked":true/, 'tombstone');
my ($v2) = record($id) =~ /"version":(\d+)/;
is($v2, $v + 1, 'version bumped');
$r = as('tim', 'token', 'revoke', $id);
is($r->{code}, 2, 'revoking twice says so');
$r = as('tim', 'token', 'scope', $id, '--scope', 'a:b');
is($r->{code}, 2, 'a revoked token cannot be rescoped');

# invalidation channel: every change publishes the token id
my $sub = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis->port)
    or die;
print $sub "SUBSCRIBE sa:invalidate\r\n";
my $line; $line = <$sub> for 1 .. 6;
as('tim', 'token', 'scope', $noscope->{id}, '--scope', 'x:y');
$line = <$sub> for 1 .. 7;
chomp $line; $line =~ s/\r//;
my ($nv) = record($noscope->{id}) =~ /"version":(\d+)/;
is($line, "$noscope->{id}:$nv", 'the change is published on sa:invalidate, with the new version');

# bulk
$r = as('tim', qw(token issue platform/ci --scope a:b --count 2500));
is($r->{code}, 0, '--count 2500');
my @tokens = split /\n/, $r->{out};
is(scalar @tokens, 2500, '2500 tokens printed');
my %distinct = map { $_ => 1 } @tokens;
is(scalar keys %distinct, 2500, 'all distinct');
is($redis->cmd('SCARD', "sa:acct:$acct->{id}:tokens"), 2504, 'all indexed (with the 4 before)');

# a tampered token record is not re-signed
my $rec2 = record($noscope->{id});
(my $forged = $rec2) =~ s/"x:y"/"*"  /;
$redis->cmd('SET', "sa:tok:$noscope->{id}", $forged);
$r = as('tim', 'token', 'scope', $noscope->{id}, '--scope', 'a:b');
is($r->{code}, 2, 'tampered record refused');
is(record($noscope->{id}), $forged, 'and left alone');

done_testing;
