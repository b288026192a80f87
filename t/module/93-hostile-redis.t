# A Redis (or anyone on the path to it) that sends bytes no real Redis sends:
# no byte sequence may end a worker, and none may make it buffer more than a
# record (SECURITY.md, "What a hostile Redis can do").
#
#   A. t/lib/hostile-redis answers, per case: an extra +OK after a GET reply;
#      +PONG +PONG to the set-up PING; a pub/sub message of one element after
#      the SUBSCRIBE confirmations; a 100 MB bulk string; "*100000000".
#      Each time: the connection ends with a protocol error (error level),
#      clients get 503 (never a reset), the worker lives on (same pid, no
#      "exited on signal"), a location without sa_auth is answered, the
#      worker's RSS stays within a few MB, and once the server is sane
#      again (hostile-redis proxies to a real Redis) the token is 200.
#   B. A real Redis whose token record was grown to 300 MB by a writer
#      (SETRANGE): that token is 503 at once, the worker's RSS stays small,
#      and other tokens on the same worker are 200 right after.
#   C. A sentinel that sends the same malformed message on its
#      +switch-master subscription: the sentinel connection ends with a
#      protocol error, the gateway keeps serving and subscribes again.
#   D. A flapping sentinel (+switch-master between two addresses, hundreds
#      of times in 3 s): the gateway follows ever later (a few connections,
#      not one per move) and logs a few "master is at" lines, not 1,500;
#      once it stops, the gateway serves from where the master is.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $KEY = SaTest::keys_dir() . '/verify.key';
my $redis = SaTest::Redis->start;
SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(team create platform --owner alice));
SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(account create platform ci));
my $token = SaTest::issue_token($redis, 'platform/ci', 'a:b');
my $other = SaTest::issue_token($redis, 'platform/ci', 'a:b');
sub tid { substr($_[0], 4, 16) }

my $hdir = SaTest::new_dir('hostile');
my $hport = SaTest::free_port();
my $hostile = SaTest::Process->start(
    cmd => [$^X, SaTest::root() . '/t/lib/hostile-redis', $hport, $hdir, $redis->port]);
SaTest::wait_for('hostile-redis', sub { SaTest::port_open($hport) }, 5);
sub mode { SaTest::write_file("$hdir/mode.tmp", $_[0]); rename "$hdir/mode.tmp", "$hdir/mode" }

sub gateway {
    my ($redis_line, $cached, $timeout) = @_;
    my $nginx = SaTest::Nginx->start(http => "    $redis_line\n    sa_verify_key $KEY;\n"
        . ($cached ? "    sa_cache zone=sa:1m ttl=1m;\n" : '')
        . '    sa_redis_timeout ' . ($timeout // '300ms') . ";\n" . <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
        location /open/ { root %%DIR%%/html; }
    }
CONF
    mkdir $nginx->dir . '/html/open';
    SaTest::write_file($nginx->dir . '/html/open/index.html', "open\n");
    return $nginx;
}

# the worker's peak RSS (VmHWM): a reply buffered and freed still shows
sub rss_kb { SaTest::slurp("/proc/$_[0]/status") =~ /^VmHWM:\s+(\d+) kB/m ? $1 : 0 }
sub status { $_[0]->get($_[1] // '/index.html', $_[2] ? (Authorization => "Bearer $_[2]") : ())->{status} }
sub crashes { my @n = $_[0]->error_log =~ /exited on signal/g; scalar @n }

# ------------------------------------------------------- A. hostile-redis
my @cases = (
    # mode, cached, what the log names, what the first request gets
    ['extra-ok',      0, qr/a reply nobody asked for/],
    ['pong-pong',     0, qr/a reply nobody asked for/],
    ['short-message', 1, qr/not a pub\/sub message/],
    ['huge-bulk',     0, qr/bulk string longer than a record/],
    ['huge-array',    0, qr/array of too many elements/],
);

for my $c (grep { !$ENV{ONLY} || $_->[0] eq $ENV{ONLY} } @cases) {
    my ($mode, $cached, $why) = @$c;
    mode($mode);
    unlink "$hdir/accepted";
    my $nginx = gateway("sa_redis 127.0.0.1:$hport;", $cached);
    my ($pid) = $nginx->worker_pids;
    my $rss0 = rss_kb($pid);

    # a second of requests: each answered, never 200 from a lying server
    my (%seen, $open_ok, $n);
    my $until = time + 1.5;
    while (time < $until) {
        $seen{ status($nginx, '/index.html', $token) }++;
        $open_ok += status($nginx, '/open/index.html') == 200 ? 1 : 0;
        $n++;
    }
    my $got = join ', ', map { "$_ x$seen{$_}" } sort keys %seen;
    ok(!grep({ $_ != 401 && $_ != 503 } keys %seen), "A $mode: only 401 or 503 ($got)");
    ok($seen{503}, "A $mode: 503 while the server lies") unless $cached;
    is($open_ok, $n, "A $mode: a location without sa_auth always answered");
    like($nginx->error_log, qr/\[error\].*sa: Redis \w+ connection to 127\.0\.0\.1:$hport lost: protocol error: $why/,
         "A $mode: the connection ended with a protocol error, at error level");
    is(crashes($nginx), 0, "A $mode: no worker exited on a signal");
    is(($nginx->worker_pids)[0], $pid, "A $mode: the same worker throughout");
    my $grown = rss_kb($pid) - $rss0;
    cmp_ok($grown, '<', 20_000, "A $mode: the worker's peak RSS grew by ${grown} kB only");

    # reconnects back off: protocol errors do not reset the backoff
    my $accepted = 0 + (SaTest::slurp("$hdir/accepted") || 0);
    mode('pass');
    ok(SaTest::wait_until(10, sub { status($nginx, '/index.html', $token) == 200 }),
       "A $mode: 200 once the server is sane again");
    if ($cached) {
        ok(SaTest::wait_until(10, sub { $nginx->error_log =~ /subscribed to/ }),
           "A $mode: subscribed once the server is sane again");
    }
    unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, "A $mode: no alert");
    $nginx->quit;
    cmp_ok($accepted, '<', 20, "A $mode: $accepted connections in 1.5 s: reconnects back off");
}

# ---------------------------------------------- B. a 300 MB record in Redis
{
    # a timeout long enough that the 503 is the refusal's, even under load
    my $nginx = gateway('sa_redis 127.0.0.1:' . $redis->port . ';', 0, '5s');
    my ($pid) = $nginx->worker_pids;
    is(status($nginx, '/index.html', $token), 200, 'B: the token, before');
    my $rss0 = rss_kb($pid);

    my $key = 'sa:tok:' . tid($token);
    my $saved = $redis->cmd('GET', $key);
    $redis->cmd('SETRANGE', $key, 300_000_000, 'x');
    my $t0 = time;
    is(status($nginx, '/index.html', $token), 503, 'B: a 300 MB record: 503');
    cmp_ok(time - $t0, '<', 5, 'B: before the timeout');
    ok(SaTest::wait_until(5, sub { $nginx->error_log =~ /\[error\].*protocol error: bulk string longer than a record/ }),
       'B: refused as soon as its length was announced');
    my $grown = rss_kb($pid) - $rss0;
    cmp_ok($grown, '<', 20_000, "B: the worker's peak RSS grew by ${grown} kB only");
    ok(SaTest::wait_until(2, sub { status($nginx, '/index.html', $other) == 200 }),
       'B: another token on that worker: 200 right after');
    is(status($nginx, '/index.html', $other), 200, 'B: and again');
    is(($nginx->worker_pids)[0], $pid, 'B: the same worker');
    $redis->cmd('SET', $key, $saved);
    is(status($nginx, '/index.html', $token), 200, 'B: the record restored: 200');
    is(crashes($nginx), 0, 'B: no worker exited on a signal');
    $nginx->quit;
}

# ------------------------------------ C. garbage on +switch-master
{
    my $dir = SaTest::new_dir('fake-sentinel');
    my $port = SaTest::free_port();
    my $fake = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $port, $dir]);
    SaTest::wait_for('fake sentinel', sub { SaTest::port_open($port) }, 5);
    SaTest::write_file("$dir/master", '127.0.0.1 ' . $redis->port);
    my $nginx = gateway("sa_redis_sentinel sa 127.0.0.1:$port;", 1);
    ok(SaTest::wait_until(5, sub { status($nginx, '/index.html', $token) == 200 }), 'C: 200 through the sentinel');
    my $subs = sub { my @s = SaTest::slurp("$dir/commands.log") =~ /^SUBSCRIBE \+switch-master$/mg; scalar @s };
    SaTest::wait_for('the sentinel subscription', sub { $subs->() >= 1 }, 5);
    my $before = $subs->();

    SaTest::write_file("$dir/raw.tmp", "*1\r\n\$7\r\nmessage\r\n");
    rename "$dir/raw.tmp", "$dir/raw";
    ok(SaTest::wait_until(5, sub { $nginx->error_log =~ /sentinel connection to 127\.0\.0\.1:$port lost: protocol error: not a pub\/sub message/ }),
       'C: the sentinel connection ended with a protocol error');
    ok(SaTest::wait_until(5, sub { $subs->() > $before }), 'C: and subscribed again');
    is(status($nginx, '/index.html', $token), 200, 'C: the gateway kept serving');
    is(crashes($nginx), 0, 'C: no worker exited on a signal');
    unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, 'C: no alert');
    $nginx->quit;
}

# ------------------------------------------------ D. a flapping sentinel
{
    my $dir = SaTest::new_dir('fake-sentinel');
    my $port = SaTest::free_port();
    my $fake = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $port, $dir]);
    SaTest::wait_for('fake sentinel', sub { SaTest::port_open($port) }, 5);
    mode('pass');
    # two addresses of the same master: hostile-redis (counting) and Redis
    my ($a, $b) = ($hport, $redis->port);
    SaTest::write_file("$dir/master", "127.0.0.1 $a");
    my $nginx = gateway("sa_redis_sentinel sa 127.0.0.1:$port;", 0);
    ok(SaTest::wait_until(5, sub { status($nginx, '/index.html', $token) == 200 }), 'D: 200 through the sentinel');
    SaTest::wait_for('the sentinel subscription',
                     sub { SaTest::slurp("$dir/commands.log") =~ /^SUBSCRIBE/m }, 5);
    my $mark = length $nginx->error_log;
    unlink "$hdir/accepted";

    my $msg = sub { my $m = "sa 127.0.0.1 $_[0] 127.0.0.1 $_[1]"; "*3\r\n\$7\r\nmessage\r\n\$14\r\n+switch-master\r\n\$" . length($m) . "\r\n$m\r\n" };
    my $until = time + 3;
    while (time < $until) {
        SaTest::write_file("$dir/raw.tmp", join '', map { $msg->($a, $b) . $msg->($b, $a) } 1 .. 2);
        rename "$dir/raw.tmp", "$dir/raw";
        sleep 0.01;    # pacing the flapping messages
    }
    SaTest::write_file("$dir/master", "127.0.0.1 $a");
    SaTest::write_file("$dir/raw.tmp", $msg->($b, $a));
    rename "$dir/raw.tmp", "$dir/raw";

    my $log = substr($nginx->error_log, $mark);
    my $lines = () = $log =~ /master "sa" is at/g;
    my $accepted = 0 + (SaTest::slurp("$hdir/accepted") || 0);
    cmp_ok($lines, '<=', 10, "D: $lines \"master is at\" lines in 3 s of flapping");
    like($log, qr/moves not logged/, 'D: and the lines say how many moves they left out');
    cmp_ok($accepted, '<=', 8, "D: $accepted connections to one of the two addresses in 3 s");
    ok(SaTest::wait_until(10, sub { status($nginx, '/index.html', $token) == 200 }), 'D: 200 once it stops');
    is(crashes($nginx), 0, 'D: no worker exited on a signal');
    $nginx->quit;
}

done_testing;
