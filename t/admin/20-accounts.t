# sa-admin account: create, list, show, grant, ungrant, delete.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }

as('alice', qw(team create platform --owner alice));
as('alice', qw(team create other --owner olga));
SaTest::apps($redis, 'platform', qw(billing stacks deploy x));
as('alice', qw(team member add platform bob --perm service_accounts:create));
as('alice', qw(team member add platform tim --perm service_accounts:tokens));

my $r = as('bob', qw(account create platform ci-deployer --app billing --app stacks
                     --app billing --json));
is($r->{code}, 0, 'a member with service_accounts:create creates') or diag $r->{err};
my $a = $r->{json};
like($a->{id}, qr/^[0-9A-Za-z]{16}$/, 'a 16-character id');
is($a->{email}, "$a->{id}\@platform.sa.invalid", 'a dummy address under .invalid');
is_deeply($a->{apps}, [qw(billing stacks)], 'apps, each once');
is($a->{created_by}, 'bob', 'created_by');
like($a->{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'created_at in RFC 3339');
is_deeply([sort keys %$a], [sort qw(id team name email apps created_at created_by)],
          'exactly the contract fields');

my $stored = $redis->cmd('GET', "sa:acct:$a->{id}");
like($stored, qr/^sa1\.[A-Za-z0-9_-]{86}\./, 'the record is signed');
ok($redis->cmd('SISMEMBER', 'sa:team:platform:accounts', $a->{id}), 'indexed in the team');
is($redis->cmd('HGET', 'sa:team:platform:names', 'ci-deployer'), $a->{id}, 'name index');

my $before = $redis->digest_but_audit;
$r = as('tim', qw(account create platform nope));
is($r->{code}, 2, 'without service_accounts:create: refused with 2');
like($r->{err}, qr/'tim' lacks service_accounts:create/, 'and told why');
$r = as('olga', qw(account create platform nope));
is($r->{code}, 2, 'the owner of another team is refused');
$r = as('alice', qw(account create platform ci-deployer));
is($r->{code}, 2, 'duplicate name refused');
like($r->{err}, qr/already has an account 'ci-deployer'/, 'clearly');
$r = as('alice', qw(account create nowhere x));
is($r->{code}, 2, 'unknown team');
for my $bad ([qw(account create platform Bad)], [qw(account create platform x --app), 'a b'],
             [qw(account create platform x --email x@y.z)],
             [qw(account create platform x --password hunter2)],
             [qw(account create platform)]) {
    $r = as('alice', @$bad);
    is($r->{code}, 1, "usage error: @$bad");
}
is($redis->digest_but_audit, $before, 'refusals wrote nothing but their audit entry');

$r = as('alice', qw(account create platform b-runner --json));
my $b = $r->{json};
$r = SaTest::admin($redis, qw(account list platform --json));
is($r->{code}, 0, 'list needs no acting user');
is_deeply([map { $_->{name} } @{ $r->{json} }], [qw(b-runner ci-deployer)],
          'sorted by name');
$r = SaTest::admin($redis, qw(account list platform));
like($r->{out}, qr/^ID\s+NAME\s+CREATED\s+APPS\n/, 'human list has a header');
$r = SaTest::admin($redis, qw(account list nowhere));
is($r->{code}, 2, 'list of an unknown team is 2');

for my $ref ($a->{id}, 'platform/ci-deployer') {
    $r = SaTest::admin($redis, 'account', 'show', $ref, '--json');
    is($r->{json}{id}, $a->{id}, "show by $ref");
}
$r = SaTest::admin($redis, qw(account show platform/ghost));
is($r->{code}, 2, 'show of an unknown account is 2');

# grants rewrite every token record of the account
$r = as('alice', 'token', 'issue', $a->{id}, '--scope', 'stacks:read', '--json');
my $tid = $r->{json}{id};
my $v1 = $redis->cmd('GET', "sa:tok:$tid");
$r = as('bob', 'account', 'grant', $a->{id}, '--app', 'deploy', '--json');
is($r->{code}, 0, 'grant') or diag $r->{err};
is_deeply($r->{json}{apps}, [qw(billing stacks deploy)], 'app added');
my $v2 = $redis->cmd('GET', "sa:tok:$tid");
like($v2, qr/"apps":\["billing","stacks","deploy"\]/, 'token record carries the new app');
like($v2, qr/"version":2/, 'with a higher version');
isnt($v1, $v2, 'and a new signature');

$r = as('bob', 'account', 'ungrant', 'platform/ci-deployer', '--app', 'billing',
        '--app', 'stacks', '--json');
is_deeply($r->{json}{apps}, ['deploy'], 'ungrant removes');
like($redis->cmd('GET', "sa:tok:$tid"), qr/"apps":\["deploy"\]/, 'in the token too');
$r = as('tim', 'account', 'grant', $a->{id}, '--app', 'x');
is($r->{code}, 2, 'grant needs service_accounts:create');
$r = as('bob', 'account', 'grant', $a->{id});
is($r->{code}, 1, 'grant without --app is a usage error');

# a Redis writer widening the account is caught before sa-admin re-signs
my $acct = $redis->cmd('GET', "sa:acct:$b->{id}");
(my $forged = $acct) =~ s/"apps":\[\]/"apps":["*"]/;
$redis->cmd('SET', "sa:acct:$b->{id}", $forged);
$r = as('alice', 'token', 'issue', $b->{id}, '--scope', 'x:y');
is($r->{code}, 2, 'a tampered account record is refused');
like($r->{err}, qr/signature does not verify/, 'as tampered');
$redis->cmd('SET', "sa:acct:$b->{id}", $acct);

# delete: needs the permission, revokes every token at once
$r = as('bob', 'account', 'delete', $a->{id});
is($r->{code}, 2, 'delete needs service_accounts:delete');
$r = as('alice', 'account', 'delete', 'platform/ci-deployer', '--json');
is($r->{code}, 0, 'owner deletes') or diag $r->{err};
ok($r->{json}{deleted}, 'deleted');
is($redis->cmd('GET', "sa:acct:$a->{id}"), undef, 'record gone');
ok(!$redis->cmd('SISMEMBER', 'sa:team:platform:accounts', $a->{id}), 'index gone');
is($redis->cmd('HGET', 'sa:team:platform:names', 'ci-deployer'), undef, 'name free');
like($redis->cmd('GET', "sa:tok:$tid"), qr/"revoked":true/, 'token tombstoned');
like($redis->cmd('GET', "sa:tok:$tid"), qr/"scopes":\[\]/, 'with no scopes');
$r = as('alice', qw(account create platform ci-deployer));
is($r->{code}, 0, 'the name can be used again');

# a tampered token record: listed as such, and revoked with its account
my $c = as('alice', qw(account create platform victim --json))->{json};
my $good = as('alice', 'token', 'issue', $c->{id}, '--json')->{json}{id};
my $bad = as('alice', 'token', 'issue', $c->{id}, '--json')->{json}{id};
$redis->cmd('SET', "sa:tok:$bad", $redis->cmd('GET', "sa:tok:$good"));
$r = SaTest::admin($redis, 'token', 'list', $c->{id}, '--json');
is($r->{code}, 0, 'a listing with a tampered record still works');
my %st = map { $_->{id} => $_->{status} } @{ $r->{json} };
is($st{$bad}, 'tampered', 'and names it');
is($st{$good}, 'active', 'the others as they are');
$r = as('alice', 'account', 'delete', $c->{id});
is($r->{code}, 0, 'an account with a tampered token can be deleted');
like($r->{err}, qr/token $bad: its record fails verification; replaced by a revocation/,
     'saying what it did');
like($redis->cmd('GET', "sa:tok:$bad"), qr/"revoked":true.*"version":9007199254740991/,
     'a final tombstone');

$r = SaTest::admin($redis, qw(account --help));
like($r->{out}, qr/account ungrant ACCOUNT --app APP/, 'account --help');

done_testing;
