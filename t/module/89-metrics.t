# sa_metrics: Prometheus text (0.0.4) summed over all workers, from the
# module's own shared zone: exact counts of known requests across two
# workers, every metric name of the contract, a consistent histogram,
# counters that survive a reload, and a scrape under load that never waits.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
my $good = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
my $weak = SaTest::issue_token($redis, 'platform/ci', 'other:read');

my $http = <<'CONF';
    sa_cache zone=sa:1m ttl=5m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { sa_metrics; }
        location / { sa_auth api; sa_scope stacks:read; root %%DIR%%/html; }
    }
CONF
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => $http);

sub scrape {
    my $res = SaTest::http(url => $nginx->url('/metrics'), timeout => 2);
    return ($res, { map { /^(\S+) (\S+)$/ ? ($1 => $2) : () } split /\n/, $res->{content} // '' });
}
sub req { $nginx->get('/index.html', $_[0] ? (Authorization => "Bearer $_[0]") : ())->{status} }

SaTest::wait_for('both subscribers', sub { ((scrape())[1]{sa_subscribers_up} // 0) == 2 });
my ($res, $m0) = scrape();
is($res->{status}, 200, 'a scrape: 200');
like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'Prometheus text 0.0.4');

my @lines = split /\n/, $res->{content};
is(scalar(grep { !/^# (HELP|TYPE) \S+ .+$/ && !/^[a-z_]+(\{[a-z]+="[^"]*"\})? [0-9]+(\.[0-9]+)?$/ } @lines), 0,
   'every line is a comment or a sample');
for my $name (qw(sa_requests_total sa_cache_hits_total sa_cache_misses_total sa_cache_entries
                 sa_cache_evictions_total sa_redis_commands_total sa_redis_errors_total
                 sa_redis_reconnects_total sa_redis_latency_seconds sa_subscribers_up)) {
    like($res->{content}, qr/^# TYPE \Q$name\E (counter|gauge|histogram)$/m, "$name is there");
}
for my $status (qw(ok missing malformed unknown expired revoked tampered lapsed insufficient_scope
                   forbidden_application forbidden_source rate_limited unavailable)) {
    ok(exists $m0->{qq{sa_requests_total{status="$status"}}}, "a sample for status $status");
}
for my $kind (qw(timeout refused protocol)) {
    ok(exists $m0->{qq{sa_redis_errors_total{kind="$kind"}}}, "a sample for errors of kind $kind");
}
is($m0->{sa_subscribers_up}, 2, 'two workers subscribed');

# known requests, spread over both workers by the kernel
my %want = (ok => 12, missing => 5, malformed => 4, insufficient_scope => 3, unknown => 2);
req($good) for 1 .. $want{ok};
req(undef) for 1 .. $want{missing};
req('sat_garbage') for 1 .. $want{malformed};
req($weak) for 1 .. $want{insufficient_scope};
my $unknown = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
$redis->cmd('DEL', 'sa:tok:' . substr($unknown, 4, 16));
req($unknown) for 1 .. $want{unknown};

my $m1;
SaTest::wait_until(3, sub { (undef, $m1) = scrape();
                            $m1->{'sa_requests_total{status="ok"}'} - $m0->{'sa_requests_total{status="ok"}'} >= $want{ok} });
for my $s (sort keys %want) {
    my $k = qq{sa_requests_total{status="$s"}};
    is($m1->{$k} - $m0->{$k}, $want{$s}, "exactly $want{$s} $s across two workers");
}
my $served = $m1->{sa_cache_hits_total} - $m0->{sa_cache_hits_total}
           + $m1->{sa_cache_misses_total} - $m0->{sa_cache_misses_total};
is($served, $want{ok} + $want{insufficient_scope} + $want{unknown},
   'every well-formed token was a cache hit or a miss');
ok($m1->{sa_cache_hits_total} > $m0->{sa_cache_hits_total}, 'some were hits');
ok($m1->{sa_cache_entries} >= 2, "entries: $m1->{sa_cache_entries}");
ok($m1->{sa_redis_commands_total} > $m0->{sa_redis_commands_total}, 'Redis commands counted');

# the histogram: cumulative, +Inf is the count
my @b = map { $m1->{$_} } sort { ($a =~ /le="([^"]+)"/)[0] eq '+Inf' ? 1 : ($b =~ /le="([^"]+)"/)[0] eq '+Inf' ? -1
                                  : ($a =~ /le="([^"]+)"/)[0] <=> ($b =~ /le="([^"]+)"/)[0] }
                               grep { /^sa_redis_latency_seconds_bucket/ } keys %$m1;
ok(@b == 13, 'thirteen buckets');
ok(!grep({ $b[$_] < $b[$_ - 1] } 1 .. $#b), 'buckets are cumulative');
is($b[-1], $m1->{sa_redis_latency_seconds_count}, '+Inf equals the count');
ok($m1->{sa_redis_latency_seconds_count} >= 2, 'GETs were timed');
ok($m1->{sa_redis_latency_seconds_sum} > 0 && $m1->{sa_redis_latency_seconds_sum} < 5, 'a plausible sum');

# a reload keeps the counters (the zone is kept)
$nginx->reload;
my (undef, $m2) = scrape();
ok($m2->{'sa_requests_total{status="ok"}'} >= $m1->{'sa_requests_total{status="ok"}'},
   'counters survive a reload');

# a scrape under load answers at once
my @kids;
for (1 .. 3) {
    my $pid = fork // die;
    if (!$pid) {
        my $end = time + 2;
        req($good) while time < $end;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
my $slowest = 0;
for (1 .. 20) {
    my $t0 = time;
    my ($r) = scrape();
    $slowest = time - $t0 if time - $t0 > $slowest;
    $r->{status} == 200 or last;
    sleep 0.05;    # scrapes spread over the load: pacing
}
waitpid $_, 0 for @kids;
cmp_ok($slowest, '<', 0.5, sprintf('scrapes under load answered within %.3f s', $slowest));

# a killed worker's subscriber is no longer counted; its successor is
# (the master logs each kill)
SaTest::expect_log(qr/worker process \d+ exited on signal 9/);
my $most = 0;
for my $n (1 .. 6) {
    my @w = $nginx->worker_pids;
    kill 'KILL', $w[$n % @w];
    SaTest::wait_for("a new worker after kill $n", sub {
        my @now = $nginx->worker_pids;
        @now == 2 && !grep { $_ == $w[$n % @w] } @now;
    });
    SaTest::wait_until(5, sub { my $up = (scrape())[1]{sa_subscribers_up} // 0;
                                $most = $up if $up > $most; $up == 2 });
}
is((scrape())[1]{sa_subscribers_up}, 2, 'six workers SIGKILLed: two subscribers up, not eight');
cmp_ok($most, '<=', 2, "never more than the two workers: at most $most");

# Redis down: no proven subscriber, no hit, 503, counted as unavailable
$redis->kill9;
is(req($good), 503, 'Redis down: 503') for 1 .. 3;
my (undef, $m3) = scrape();
is($m3->{'sa_requests_total{status="unavailable"}'} - $m2->{'sa_requests_total{status="unavailable"}'},
   3, 'three unavailable');
ok($m3->{sa_subscribers_up} < 2, "the subscribers are down: $m3->{sa_subscribers_up}");
ok($m3->{'sa_redis_errors_total{kind="refused"}'} > $m2->{'sa_redis_errors_total{kind="refused"}'},
   'the lost connections count as refused');
$redis->launch;

# without sa_auth or sa_cache anywhere: no cache metrics, 404 without the zone
my $plain = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { sa_metrics; }
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
my $r = SaTest::http(url => $plain->url('/metrics'));
is($r->{status}, 200, 'without sa_cache: 200');
unlike($r->{content}, qr/sa_cache_/, 'and no cache metrics');

unlike($nginx->error_log =~ s/^.*exited on signal 9\n//mgr, qr/\[(alert|crit|emerg)\]/, 'no alert but the killed workers');
done_testing;
