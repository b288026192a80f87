# sa-admin team: create, members, permissions, bad input.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
sub sa { SaTest::admin($redis, @_) }
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }

my $r = sa(qw(team create platform --owner alice --json));
is($r->{code}, 0, 'team create') or diag $r->{err};
is_deeply($r->{json}, { team => 'platform', owner => 'alice' }, 'its JSON');
sub rec { my $v = $redis->cmd('GET', $_[0]); defined $v && $v =~ /^sa1\.[A-Za-z0-9_-]{86}\./ ? JSON::PP->new->decode(substr($v, 91)) : undef }
is(rec('sa:team:platform')->{owner}, 'alice', 'owner stored, in a signed team record');
is(rec('sa:team:platform')->{kind}, 'team', 'of kind team');

$r = sa(qw(team create platform --owner bob));
is($r->{code}, 2, 'a duplicate team is refused with 2');
like($r->{err}, qr/^sa-admin: team 'platform' already exists\n\z/, 'one clear line');
is(rec('sa:team:platform')->{owner}, 'alice', 'owner unchanged');

my $before = $redis->digest;
for my $bad ([qw(team create Platform --owner alice)],
             [qw(team create -x --owner alice)],
             [qw(team create x)],
             [qw(team create x --owner), 'a b'],
             [qw(team create x y --owner alice)],
             [qw(team create x --owner alice --colour blue)]) {
    $r = sa(@$bad);
    is($r->{code}, 1, "usage error: @$bad");
    like($r->{err}, qr/^sa-admin: .+\nusage: sa-admin team create/, 'with usage');
}
is($redis->digest, $before, 'bad input wrote nothing');

$r = as('alice', qw(team member add platform bob --perm service_accounts:tokens
                    --perm service_accounts:create --json));
is($r->{code}, 0, 'owner adds a member') or diag $r->{err};
is_deeply($r->{json}{perms}, [qw(service_accounts:tokens service_accounts:create)],
          'with permissions');

$r = as('bob', qw(team member add platform carol));
is($r->{code}, 2, 'a member cannot add members');
like($r->{err}, qr/only the owner/, 'and is told why');

$r = as('alice', qw(team member add platform carol --perm service_accounts:fly));
is($r->{code}, 1, 'unknown permission is a usage error');

$r = sa({ SA_SIGNING_KEY => undef }, qw(team member add platform carol));
is($r->{code}, 1, 'no acting user and no signing key is a usage error');
like($r->{err}, qr/no signing key/, 'naming the key');

$r = as('alice', qw(team member add nowhere carol));
is($r->{code}, 2, 'unknown team is 2');

$r = as('alice', qw(team member add platform dave));
is($r->{code}, 0, 'a member without permissions');

$r = sa(qw(team member list platform --json));
is($r->{code}, 0, 'member list');
my %m = map { $_->{user} => $_ } @{ $r->{json} };
ok($m{alice}{owner}, 'owner listed as owner');
is(scalar @{ $m{alice}{perms} }, 3, 'owner holds every permission');
is_deeply($m{dave}{perms}, [], 'dave holds none');
ok(!$m{bob}{owner}, 'bob is no owner');

$r = sa(qw(team member list platform));
like($r->{out}, qr/^USER\s+PERMISSIONS\n/, 'human output has a header');
like($r->{out}, qr/^bob\s+service_accounts:tokens, service_accounts:create$/m,
     'and one line per member');

$r = sa(qw(team --help));
is($r->{code}, 0, 'team --help');
like($r->{out}, qr/team create TEAM --owner USER/, 'lists commands');
$r = sa(qw(team member add --help));
like($r->{out}, qr/service_accounts:delete/, 'member add --help explains permissions');
$r = sa(qw(team explode));
is($r->{code}, 1, 'unknown command is a usage error');

done_testing;
