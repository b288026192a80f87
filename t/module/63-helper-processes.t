# Only workers talk to Redis: the cache manager and loader processes (any
# proxy_cache_path starts them) call init_process too, and must neither
# connect nor subscribe (a subscription invalidates the whole shared zone).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
my $redis = SaTest::Redis->start;
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 1, http => <<'EOF2');
    sa_cache zone=sa:1m;
    proxy_cache_path %%DIR%%/tmp/cache keys_zone=pc:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        location / { sa_auth api; }
    }
EOF2
sub children {
    map { SaTest::slurp("/proc/$_/cmdline") =~ s/\0/ /gr }
    grep { SaTest::Nginx::_ppid($_) == $nginx->pid } map { m{/proc/(\d+)/} ? $1 : () } glob '/proc/[0-9]*/stat';
}
# a helper names itself once its init_process has run (ngx_cache_manager_process_cycle)
SaTest::wait_for('the worker subscribed, the cache manager and loader started', sub {
    my $procs = join "\n", children();
    $redis->subscribers >= 1 && $procs =~ /cache manager process/ && $procs =~ /cache loader process/;
});
# a negative check: a helper that wrongly connected would be seen by now
# (its connect is sent from init_process); time, not a state to wait for
sleep 0.3;
my @procs = children();
note("nginx children: @procs");
my $list = $redis->cmd('CLIENT', 'LIST');
my $pubsub = () = $list =~ /cmd=subscribe/g;
my $all = () = $list =~ /^id=/mg;
note($list);
is($pubsub, 1, "one worker: one subscriber connection at Redis (got $pubsub, clients $all)");
done_testing;
