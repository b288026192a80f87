# token issue's count over the API (issue 22, left open by the attack
# review: up to 1,000,000 tokens in one request held a worker for long):
# at most 1000 a request, a larger count a 400 problem naming the limit,
# nothing issued; sa-admin --api token issue --count N over 1000 sends
# several requests of at most 1000 and prints every token as the local
# command does, those of the requests before an error too; the local
# command line keeps its bound of 1,000,000.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};
sub tokens_in_redis { scalar @{ $redis->cmd('SMEMBERS', "sa:acct:$aid:tokens") // [] } }
chomp(my $alice = SaTest::operator($redis, qw(user token issue alice))->{out});
my $api = SaTest::Serve->start(redis => $redis, args => [ '--listen', '127.0.0.1:0', '--workers', 1 ]);
sub issue { $api->req(POST => "/v1/accounts/$aid/tokens", headers => { Authorization => "Bearer $alice" },
                      json => { scopes => ['api:read'], @_ }) }
sub requests {
    my $m = $api->req(GET => '/metrics')->{content};
    return $m =~ /^sa_admin_requests_total\{route="token.issue",status="201"\} (\d+)$/m ? $1 : 0;
}

# one request
my $r = issue(count => 1001);
is($r->{status}, 400, 'count 1001 over the API: 400') or diag $r->{raw};
like($r->{headers}{'content-type'}, qr{^application/problem\+json}, 'problem+json');
is($r->{json}{type}, 'urn:sa-admin:input', 'an input error');
like($r->{json}{detail}, qr/field 'count' must be an integer from 1 to 1000 over the API/, 'naming the limit');
is(tokens_in_redis(), 0, 'nothing issued');
is(issue(count => 1_000_000)->{status}, 400, 'count 1000000: 400 too');
is(issue(count => 1_000_001)->{status}, 400, 'and 1000001');
$r = issue(count => 1000);
is($r->{status}, 201, 'count 1000: 201') or diag $r->{raw};
is(scalar @{ $r->{json} }, 1000, '1000 tokens');
is(tokens_in_redis(), 1000, 'in Redis');

# the command line over the API: several requests
my %client = (SA_SIGNING_KEY => undef, SA_REDIS => 'redis://127.0.0.1:1/0', SA_ACTOR => undef,
              SA_API => $api->url, SA_TOKEN => $alice);
sub cli { SaTest::run_admin(env => \%client, args => [@_]) }
my $was = requests();
my $used = $redis->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m ? $1 : die;
$r = cli(qw(token issue platform/ci --scope api:read --count 2500));
is($r->{code}, 0, 'sa-admin --api token issue --count 2500: 0') or diag $r->{err};
my @shown = $r->{out} =~ /^(sat_\w{16}_\S+)$/mg;
is(scalar @shown, 2500, '2500 tokens printed');
is(scalar(keys %{ { map { $_ => 1 } @shown } }), 2500, 'each once');
like($r->{err}, qr/^issued 2500 tokens; shown only this once/m, 'said once, as locally');
is(requests() - $was, 3, 'in three requests (1000, 1000, 500)');
is(tokens_in_redis(), 3500, 'all in Redis');
my $per = (($redis->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m)[0] - $used) / 2500;
$r = cli(qw(token issue platform/ci --count 1000000 --json --scope api:read --expires 1h --strict));
# (refused by the catalogue check before any is issued: no catalogue)
is($r->{code}, 1, '--strict refused in the first request: exit 1');
is(tokens_in_redis(), 3500, 'nothing issued');

# refused in the second request: the first's tokens are shown too
my $before = tokens_in_redis();
$used = $redis->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m ? $1 : die;
$redis->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cmd('CONFIG', 'SET', 'maxmemory', int($used + 1500 * $per));
$r = cli(qw(token issue platform/ci --scope api:read --count 3000));
$redis->cmd('CONFIG', 'SET', 'maxmemory', 0);
isnt($r->{code}, 0, 'refused in a later request: a non-zero exit') or diag $r->{err};
@shown = $r->{out} =~ /^(sat_\w{16}_\S+)$/mg;
cmp_ok(scalar @shown, '>', 1000, 'more than the first request\'s 1000 shown (' . scalar(@shown) . ')');
cmp_ok(scalar @shown, '<', 3000, 'fewer than asked');
is(tokens_in_redis() - $before, scalar @shown, 'exactly those exist');
is(scalar(grep { defined $redis->cmd('GET', 'sa:tok:' . SaTest::tid($_)) } @shown), scalar @shown,
   'each a real token');
like($r->{err}, qr/${\ scalar @shown} tokens had been issued when the error below stopped the command/,
     'saying how many') or diag $r->{err};
unlike($r->{err}, qr/may exist unseen/, 'none unseen (a refusal)');

# the local command line: its bound stays 1,000,000
$r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(token issue platform/ci --count 1001));
is($r->{code}, 0, 'locally, --count 1001: 0') or diag $r->{err};
is(scalar(() = $r->{out} =~ /^sat_/mg), 1001, '1001 tokens') unless SaTest::api_pass();
$r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(token issue platform/ci --count 1000001));
is($r->{code}, 1, 'locally, --count 1000001: a usage error');
like($r->{err}, qr/invalid count '1000001' \(1 to 1000000\)/, 'naming the bound');

ok($api->stop, 'serve stops');
done_testing;
