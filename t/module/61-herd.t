# Concurrent requests for one token wait on one Redis GET (per worker), and
# a flight whose requests are gone, or that times out, is handled cleanly.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use SaTest;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis);   # platform/ci, owner alice
sub gets { $redis->calls('get') }

my $token = $f->issue(qw(--scope a:b));

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    sa_redis_timeout 3s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF

sub concurrent {
    my ($n) = @_;
    my @pids;
    for (1 .. $n) {
        my $pid = fork // die;
        if (!$pid) {
            my $r = $nginx->get('/index.html', Authorization => "Bearer $token");
            POSIX::_exit($r->{status} == 200 ? 0 : 1);
        }
        push @pids, $pid;
    }
    return @pids;
}

is($nginx->get('/index.html', Authorization => "Bearer $token")->{status}, 200,
   'the token works');

my $before = gets();
$redis->pause;
my @pids = concurrent(20);
SaTest::wait_for('all twenty waiting in nginx', sub { SaTest::connections_read($nginx->port) >= 20 });
$redis->resume;
my $ok = 0;
for (@pids) { waitpid $_, 0; $ok++ if $? == 0 }
is($ok, 20, 'twenty concurrent requests for one token all pass');
is(gets() - $before, 1, 'with one Redis GET');

# clients that give up while the GET is on its way
$redis->pause;
for (1 .. 5) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port) or die;
    print $s "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\n\r\n";
    close $s;
}
# the clients are gone at once, so no socket state says "read and waiting"
# (nginx may or may not have seen the close yet): time, on both sides
sleep 0.3;
$redis->resume;
sleep 0.3;
is($nginx->get('/index.html', Authorization => "Bearer $token")->{status}, 200,
   'still serving after abandoned waits');

# a timed-out flight answers 503, and its late reply is dropped
$redis->pause;
my $t0 = time;
my $r = $nginx->get('/index.html', Authorization => "Bearer $token");
my $took = time - $t0;
is($r->{status}, 503, 'Redis paused: 503');
ok($took > 2.5 && $took < 4, sprintf('after the 3 s timeout (%.2f s)', $took));
$redis->resume;
ok(SaTest::wait_until(2, sub { $nginx->get('/index.html', Authorization => "Bearer $token")->{status} == 200 }),
   'recovered');
unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'no alert, no crash');

done_testing;
