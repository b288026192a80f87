# Under a flood of random well-formed tokens (a small zone full of negative
# entries), legitimate tokens still get cached (issue 21, item 8): negative
# entries are a pool of their own, at most a quarter of the zone.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use POSIX ();
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);   # platform/ci, owner alice
sub as { $f->as(@_) }
my @tokens = split /\n/, as(qw(token issue platform/ci --scope a:b --count 20))->{out};
is(scalar @tokens, 20, '20 legitimate tokens');

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_cache zone=c:1m ttl=5m negative_ttl=10s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
$redis->wait_subscribed(2);

sub status { $nginx->get('/index.html', Authorization => "Bearer $_[0]")->{status} }

# the zone filled with negative entries first, then the flood goes on
is(SaTest::flood($nginx->port, 12000), 12000, 'a zone of 1m flooded with 12,000 forged tokens');
my $gets = $redis->calls('get');
my $pid = fork // die;
if (!$pid) {
    SaTest::flood($nginx->port, 20000);
    POSIX::_exit(0);
}
SaTest::wait_for('the second flood under way', sub { $redis->calls('get') >= $gets + 200 });

# a hit is observed by breaking the record in Redis (no invalidation): a
# second request that still gets 200 was answered from the cache
my ($first, $hits) = (0, 0);
for my $t (@tokens) {
    my $id = substr($t, 4, 16);
    $first++ if status($t) == 200;
    $redis->cmd('SET', "sa:tok:$id", 'garbage');
    $hits++ if status($t) == 200;
}
my $flooding = waitpid($pid, POSIX::WNOHANG()) == 0;
waitpid $pid, 0;
ok($flooding, 'the flood went on throughout');
is($first, 20, 'every legitimate token answered during the flood');
cmp_ok($hits, '>=', 18, "and cached: $hits of 20 were hits on their second request");
my $full = () = $nginx->error_log =~ /is full, record not cached/g;
cmp_ok($full, '<=', 2, "\"zone is full\" warnings: $full");

done_testing;
