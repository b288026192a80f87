# A worker killed while it holds the cache zone's lock, half-way through a
# change (issue 21, item 8): gdb stops it at a step inside the lock and
# kills it there, as an OOM kill could.  nginx's master force-unlocks the
# zone; the next holder finds it marked dirty and makes the entries afresh,
# so floods that evict all the time, and legitimate tokens, are served.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use POSIX ();
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
my ($gdb) = grep { -x } map { "$_/gdb" } split /:/, $ENV{PATH};
plan skip_all => 'needs gdb' unless $gdb;
{
    # a container may forbid ptrace
    my $sleeper = fork // die;
    if (!$sleeper) { exec 'sleep', '30' or POSIX::_exit(127) }
    my $probe = `$gdb -p $sleeper -batch -nx -ex 'info proc' 2>&1`;
    kill 'KILL', $sleeper;
    waitpid $sleeper, 0;
    plan skip_all => "gdb cannot attach here: $probe" if $probe =~ /ptrace|not permitted/i;
}

# the master reports each kill and the lock it took back
SaTest::expect_log(qr/worker process \d+ exited on signal 9/,
                   qr/shared memory zone "c" was locked by \d+/);

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis);   # platform/ci, owner alice
sub as { $f->as(@_) }
my @tokens = split /\n/, as(qw(token issue platform/ci --scope a:b --count 40))->{out};

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 1, http => <<'CONF');
    sa_cache zone=c:32k ttl=5m negative_ttl=5m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
sub subscribed {
    SaTest::wait_for('the subscriber', sub {
        $redis->cmd('CLIENT', 'LIST', 'TYPE', 'pubsub') =~ /^id=/m;
    });
}
sub status { $nginx->get('/index.html', Authorization => "Bearer $_[0]")->{status} }
subscribed();

# the steps, found in the source: an entry out of its chain but still
# queued, and an entry in its chain but not yet queued
my $src = SaTest::slurp(SaTest::root() . '/ngx_sa_module/ngx_http_sa_cache.c');
my @lines = split /\n/, $src;
sub line_after {
    my ($start, $want) = @_;
    my $i = 0;
    $i++ until $lines[$i] =~ $start;
    $i++ until $lines[$i] =~ $want;
    return $i + 1;
}
my %step = (
    'an unlink' => line_after(qr/^ngx_http_sa_cache_unlink\(/, qr/ngx_queue_remove\(&cn->queue\)/),
    'an insert' => line_after(qr/^ngx_http_sa_cache_store\(/,
                              qr/ngx_queue_insert_head\(&cache->sh->queue, &cn->queue\)/),
);

for my $what (sort keys %step) {
    my ($wpid) = $nginx->worker_pids;
    my $out = $nginx->dir . "/gdb-$wpid.log";
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        exec $gdb, '-p', $wpid, '-batch', '-nx', '-ex', 'set confirm off',
             '-ex', "break ngx_http_sa_cache.c:$step{$what}", '-ex', 'continue', '-ex', 'kill'
            or POSIX::_exit(127);
    }
    SaTest::wait_for('gdb to set its breakpoint', sub { SaTest::slurp($out) =~ /Breakpoint 1 at/ }, 20);
    # and to let the worker run again: no longer stopped by its tracer
    SaTest::wait_for('the worker to run under gdb', sub {
        (split ' ', SaTest::slurp("/proc/$wpid/stat"))[2] ne 't';
    }, 20);

    # an entry freed (its token changed) and one made: both steps run
    my $t = $tokens[0];
    status($t);
    $redis->cmd('PUBLISH', 'sa:invalidate', substr($t, 4, 16));
    $redis->barrier;    # the message is on the worker's socket
    status($t) for 1 .. 2;
    status($_) for @tokens[1 .. 3];
    SaTest::wait_until(10, sub { waitpid($pid, POSIX::WNOHANG()) == $pid });
    like(SaTest::slurp($out), qr/Breakpoint 1, /, "$what: the worker stopped inside the lock");
    SaTest::wait_for('a new worker', sub {
        my @w = $nginx->worker_pids;
        @w == 1 && $w[0] != $wpid;
    }, 10);
    subscribed();

    # evictions all the time: 1,500 forged tokens in a zone of 32k
    is(SaTest::flood($nginx->port, 1500), 1500, "$what: after the kill, 1,500 forged tokens all answered");
    my @ok = grep { status($_) == 200 } @tokens;
    is(scalar @ok, 40, "$what: and the 40 legitimate tokens 200");
    my $gets = $redis->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
    status($tokens[-1]) for 1 .. 5;
    my $after = $redis->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
    is($after - $gets, 0, "$what: the zone caches again");
    unlike($nginx->error_log, qr/exited on signal (?!9\b)/, "$what: no worker crashed");
}
like($nginx->error_log, qr/was left half-changed by a worker that died holding its lock/,
     'the zone made afresh, and logged');

done_testing;
