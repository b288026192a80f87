# Over the API, what reads across teams shows only what the caller may
# read (issue 22, item 3): the whole audit is the operators' (a team's
# audit needs its membership), and the subscriptions and failed deliveries
# of an application list only the rows of the caller's teams.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my %ENVN = SaTest::notify_env();
my $f = SaTest::fixture($redis, apps => ['api'], env => \%ENVN);   # platform/ci, alice
sub op { my $r = SaTest::operator($redis, { %ENVN }, @_); die "@_: $r->{err}" if $r->{code}; $r }
sub ptoken { chomp(my $t = op('user', 'token', 'issue', $_[0])->{out}); $t }

op(qw(team create other --owner dave));
op(qw(account create other bot));
op(qw(app share api --team other));
op(qw(account grant other/bot --app api));
op(qw(notify set api platform/ci --webhook https://hooks.example/p --events *));
op(qw(notify set api other/bot --webhook https://hooks.example/o --events *));
my %tok = map { $_ => ptoken($_) } qw(alice dave);

my $api = SaTest::Serve->start(redis => $redis, env => { %ENVN },
                               args => [ '--listen', '127.0.0.1:0', '--operator', 'root',
                                         '--workers', 1 ]);
my $root = ptoken('root');
sub as {
    my ($who, $method, $path) = @_;
    return $api->req($method, $path, headers => {
        Authorization => 'Bearer ' . ($who eq 'root' ? $root : $tok{$who}) });
}

# the whole audit
my $r = as(dave => GET => '/v1/audit');
is($r->{status}, 403, 'the audit of every team: 403 for dave') or diag $r->{raw};
like($r->{json}{detail} // '', qr/for operators: name a team/, 'says why');
$r = as(root => GET => '/v1/audit');
is($r->{status}, 200, 'an operator reads it') or diag $r->{raw};
ok((grep { ($_->{team} // '') eq 'platform' } @{ $r->{json} }), "with platform's entries");
$r = as(dave => GET => '/v1/audit?team=other');
is($r->{status}, 200, 'dave reads his own team');
ok(!(grep { ($_->{team} // '') ne 'other' } @{ $r->{json} }), 'and nothing of another');
is(as(dave => GET => '/v1/audit?team=platform')->{status}, 403, "but not platform's");

# subscriptions of a shared application
$r = as(dave => GET => '/v1/apps/api/notifications');
is($r->{status}, 200, 'notify list: 200') or diag $r->{raw};
is_deeply([ map { $_->{account}{team} } @{ $r->{json} } ], ['other'], "dave sees only other's subscription");
$r = as(alice => GET => '/v1/apps/api/notifications');
is_deeply([ map { $_->{account}{team} } @{ $r->{json} } ], ['platform'], "alice only platform's");
$r = as(root => GET => '/v1/apps/api/notifications');
is(scalar @{ $r->{json} }, 2, 'an operator both');
is(scalar @{ op(qw(notify list api --json))->{json} }, 2, 'and the local CLI, as before');

# failed deliveries: one of each team, one of no team
for (['f1', 'platform'], ['f2', 'other'], ['f3', undef]) {
    my ($id, $team) = @$_;
    $redis->cmd('HSET', 'sa:delivery:failed', $id, JSON::PP->new->canonical->encode({
        type => 'app.test', app => 'api', account => $f->account->{id},
        (defined $team ? (team => $team) : ()), where => 'webhook hooks.example',
        attempts => 3, error => 'HTTP 500', failed_at => time, dest => 'webhook' }));
}
$r = as(dave => GET => '/v1/notifications/failed');
is($r->{status}, 200, 'notify failed: 200') or diag $r->{raw};
is_deeply([ map { $_->{id} } @{ $r->{json} } ], ['f2'], "dave sees only other's failed delivery");
$r = as(root => GET => '/v1/notifications/failed');
is(scalar @{ $r->{json} }, 3, 'an operator every one, that of no team too');
is(scalar @{ op(qw(notify failed --json))->{json} }, 3, 'and the local CLI');

$api->stop;
done_testing;
