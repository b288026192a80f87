# sa-admin audit: every change leaves {time, actor, action, target}, and a
# refused attempt an entry 'denied' naming the permission lacked.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
SaTest::api_local("it asserts the local proof and channel (local, cli) of the entries");

my $redis = SaTest::Redis->start;
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }

as('alice', qw(team create platform --owner alice));
as('olga', qw(team create other --owner olga));
SaTest::apps($redis, 'platform', qw(x y));
as('alice', qw(team member add platform tim --perm service_accounts:tokens));
my $a = as('alice', qw(account create platform ci --app x --json))->{json};
as('olga', qw(account create other ox));
my $t = as('tim', 'token', 'issue', $a->{id}, '--json')->{json};
as('tim', 'token', 'scope', $t->{id}, '--scope', 'a:b');
my $new = as('tim', 'token', 'rotate', $t->{id}, '--json')->{json};
as('tim', 'token', 'revoke', $new->{id});
as('alice', 'account', 'grant', $a->{id}, '--app', 'y');
as('alice', 'account', 'ungrant', $a->{id}, '--app', 'y');
as('tim', 'account', 'delete', $a->{id});          # refused: 'denied'
as('alice', 'account', 'delete', $a->{id});

my $r = SaTest::admin($redis, qw(audit --team platform --json));
is($r->{code}, 0, 'audit') or diag $r->{err};
my @got = map { "$_->{actor} $_->{action} $_->{target}" } @{ $r->{json} };
is_deeply(\@got, [
    'alice team.create platform',
    '(operator) app.create x',
    '(operator) app.create y',
    'alice team.member_add tim',
    "alice account.create $a->{id}",
    "tim token.issue $t->{id}",
    "tim token.scope $t->{id}",
    "tim token.rotate $t->{id}",
    "tim token.revoke $new->{id}",
    "alice account.grant $a->{id}",
    "alice account.ungrant $a->{id}",
    "tim denied service_accounts:delete",
    "alice account.delete $a->{id}",
], 'every change, in order, and only this team');
like($r->{json}[0]{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'RFC 3339 time');
is_deeply([sort keys %{ $r->{json}[0] }], [qw(action actor channel id proof target team time)], 'fields');
like($r->{json}[0]{id}, qr/^\d+-\d+\z/, 'id: the stream entry id');
is($r->{json}[0]{proof}, 'local', 'proof: local (the signing key, on the command line)');
is($r->{json}[0]{channel}, 'cli', 'channel: cli');

$r = SaTest::admin($redis, qw(audit --json));
is(scalar @{ $r->{json} }, 15, 'all teams without --team');

$r = SaTest::admin($redis, qw(audit --since 1h --json));
is(scalar @{ $r->{json} }, 15, '--since 1h: all');
$r = SaTest::admin($redis, 'audit', '--since', time + 60, '--json');
is(scalar @{ $r->{json} }, 0, '--since the future: none');
$r = SaTest::admin($redis, qw(audit --since 2020-01-01 --json));
is(scalar @{ $r->{json} }, 15, '--since a date');
$r = SaTest::admin($redis, qw(audit --since 2020-01-01T00:00:00Z));
like($r->{out}, qr/^ID\s+TIME\s+TEAM\s+ACTOR\s+ACTION\s+TARGET\n/, 'human output');
$r = SaTest::admin($redis, qw(audit --since yesterday));
is($r->{code}, 1, 'a bad time is a usage error');
like($r->{err}, qr/invalid time 'yesterday'/, 'saying so');

done_testing;
