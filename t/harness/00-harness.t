# The harness itself, with real processes: Redis over our RESP client,
# nginx without our module, command runs, and cleanup (also when a test
# script dies, is terminated or is SIGKILLed).
use strict;
use warnings;
use lib 't/lib';
use File::Path ();
use IO::Socket::UNIX;
use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use SaTest;

# the bad confs and the taken port below, on purpose
SaTest::expect_log(qr/unknown directive "bogus(?:_directive)?"/,
                   qr/bind\(\) to \S+ failed \(98: Address already in use\)|still could not bind/);

# A pid that is not running (a zombie counts; reaped if it is our child).
sub gone {
    my ($pid) = @_;
    my $stat = SaTest::slurp("/proc/$pid/stat");
    return 0 if $stat && $stat !~ /\)\s+Z/;
    waitpid $pid, POSIX::WNOHANG();
    return 1;
}

# ---------------------------------------------------------------- basics

ok(-f SaTest::root() . '/t/lib/SaTest.pm', 'root() is the repo root');
is(SaTest::build_dir(), SaTest::root() . '/build', 'build_dir()');
my $port = SaTest::free_port();
ok($port > 0 && !SaTest::port_open($port), 'free_port() gives a closed port');
my @ports = ($port, map { SaTest::free_port() } 1 .. 99);
is(scalar(keys %{{ map { $_ => 1 } @ports }}), 100, 'free_port(): never the same port twice');
my ($elo, $ehi) = split ' ', SaTest::slurp('/proc/sys/net/ipv4/ip_local_port_range');
is(scalar(grep { $_ < 20000 || $_ > 32767 || ($_ >= $elo && $_ <= $ehi) } @ports), 0,
   'free_port(): in 20000-32767, outside the ephemeral range (outgoing connections\' ports)');
my $taken = system($^X, '-MFcntl=:flock', '-e',
                   'open my $f, "<", $ARGV[0] or exit 2; exit(flock($f, LOCK_EX | LOCK_NB) ? 0 : 1)',
                   SaTest::port_dir() . "/$ports[-1]") >> 8;
is($taken, 1, 'free_port(): another process cannot take a port this one holds');
is((stat SaTest::tmp_dir())[2] & 07777, 0755, 'the temp dir is world-readable');

# ---------------------------------------------------------------- Redis

my $redis = SaTest::Redis->start;
ok(!gone($redis->pid), 'redis-server runs');
like($redis->url, qr{^redis://127\.0\.0\.1:(\d+)/0$}, 'url');
is(($redis->url =~ /:(\d+)\//)[0], $redis->port, 'url names our port');
is($redis->cmd('PING'), 'PONG', 'PING');

my $big = "a\r\nb\0c" . ('x' x 100_000);    # binary, and longer than one read
is($redis->cmd('SET', 'k', $big), 'OK', 'SET: status reply');
ok($redis->cmd('GET', 'k') eq $big, 'GET: a binary bulk reply round-trips');
is($redis->cmd('GET', 'missing'), undef, 'nil bulk reply is undef');
is($redis->cmd('INCRBY', 'n', 41), 41, 'integer reply');
$redis->cmd('SET', 'k2', 'v2');
is_deeply($redis->cmd('MGET', 'k2', 'missing', 'k2'), ['v2', undef, 'v2'],
          'array reply keeps nil elements');
$redis->cmd('SADD', 'set', 'b', 'a');
is_deeply([sort @{ $redis->cmd('SMEMBERS', 'set') }], ['a', 'b'], 'SMEMBERS');
is_deeply($redis->cmd('LRANGE', 'none', 0, -1), [], 'empty array reply');
$redis->cmd('XADD', 'stream', '1-1', 'f', 'v');
is_deeply($redis->cmd('XRANGE', 'stream', '-', '+'), [['1-1', ['f', 'v']]],
          'nested array reply');

my $err = $redis->cmd_err('NOSUCHCMD');
isa_ok($err, 'SaTest::RedisError', 'cmd_err on an error reply');
like($err->message, qr/^ERR unknown command/, 'with the message');
is($$err, $err->message, 'which $$err also gives');
ok(!eval { $redis->cmd('NOSUCHCMD'); 1 }, 'cmd dies on an error reply');
like($@, qr/ERR unknown command/, 'with the message');
ok(!eval { $redis->cmd('INCR', 'k2'); 1 }, 'a WRONGTYPE-style error dies too');
is($redis->cmd('ECHO', 'still'), 'still', 'the connection is fine after errors');

is($redis->cmd('MULTI'), 'OK', 'MULTI');
$redis->cmd('SET', 'm', '1');
$redis->cmd('INCR', 'k2');
my $exec = $redis->cmd('EXEC');
is($exec->[0], 'OK', 'EXEC: first result');
isa_ok($exec->[1], 'SaTest::RedisError', 'EXEC: an error inside an array');

my $digest = $redis->digest;
is($redis->digest, $digest, 'digest is stable');
$redis->cmd('SET', 'another', 1);
isnt($redis->digest, $digest, 'and changes with the data');

# password (with a quote, for the conf file), unix socket, extra conf
my $locked = SaTest::Redis->start(password => 'pa"ss', unix => 1,
                                  conf => ['maxmemory 12345678']);
is($locked->cmd('PING'), 'PONG', 'cmd authenticates');
like($locked->url, qr{^redis://:pa"ss\@127\.0\.0\.1:\d+/0$}, 'url with password');
ok(-S $locked->socket, 'unix socket exists');
my $unix = IO::Socket::UNIX->new(Peer => $locked->socket) or die "unix: $!";
print {$unix} "PING\r\n";
like(scalar <$unix>, qr/^-NOAUTH/, 'the socket is this server, and it wants AUTH');
close $unix;
is_deeply($locked->cmd('CONFIG', 'GET', 'maxmemory'), ['maxmemory', '12345678'],
          'extra conf lines apply');
my $locked_pid = $locked->pid;
$locked->pause;
ok($locked->stop, 'stop: a paused server too exits on SIGTERM');
ok(gone($locked_pid), 'and is gone');

# pause / resume
$redis->timeout(0.3);
$redis->pause;
my $t0 = time;
ok(!eval { $redis->cmd('PING'); 1 }, 'a paused server times out');
like($@, qr/timeout/, 'saying so');
ok(time - $t0 < 2, 'within the timeout');
$redis->resume;
is($redis->cmd('ECHO', 'after'), 'after', 'after resume: no stale reply');
$redis->timeout(5);

# kill9 / restart
my ($rport, $rpid) = ($redis->port, $redis->pid);
$redis->kill9;
ok(gone($rpid), 'kill9: the process is gone');
ok(!eval { $redis->cmd('PING'); 1 }, 'cmd on a killed server dies');
like($@, qr/connect: Connection refused/, 'with a clean message');
$redis->restart;
is($redis->port, $rport, 'restart: same port');
isnt($redis->pid, $rpid, 'new process');
is($redis->cmd('PING'), 'PONG', 'answers');
is($redis->cmd('GET', 'k2'), undef, 'and starts empty (nothing persisted)');

# ---------------------------------------------------------------- nginx

my $nginx = SaTest::Nginx->start(module => 0, workers => 2, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        location = /teapot { return 418 "short and stout\n"; }
        location = /echo   { return 200 "$http_x_test\n"; }
    }
CONF
my $conf = $nginx->conf;
unlike($conf, qr/load_module/, 'module => 0: no load_module');
is($conf =~ /^user root;$/m ? 1 : 0, $> == 0 ? 1 : 0, 'user root; exactly when root');
my $dir = $nginx->dir;
my @paths = $conf =~ m{^\s*\w+\s+(/\S+);}mg;    # "directive /path;"
ok(@paths >= 8, 'the conf names its paths');
is_deeply([grep { index($_, "$dir/") != 0 } @paths], [],
          'all inside the nginx dir');
is(scalar(my @workers = $nginx->worker_pids), 2, 'two workers');

my $res = $nginx->get('/');
is($res->{status}, 200, 'GET / is 200');
is($res->{content}, "hello\n", 'serving index.html');
like($res->{headers}{server}, qr/^nginx/, 'headers have lowercase keys');
is($nginx->get('/missing')->{status}, 404, 'a missing file is 404');
is($nginx->get('/teapot')->{status}, 418, 'another status');
is($nginx->get('/echo', 'X-Test' => 'abc')->{content}, "abc\n", 'request headers are sent');
is($nginx->post('/', 'x=1')->{status}, 405, 'post sends a POST');
like($nginx->access_log, qr{"GET / HTTP/1\.1" 200 6 }, 'access log');

my $raw = SaTest::raw_http($nginx->port, "GET / HTTP/1.0\r\n\r\n");
like($raw, qr{^HTTP/1\.1 200 OK\r\n}, 'raw_http: status line');
like($raw, qr/\r\n\r\nhello\n\z/, 'raw_http: body');
like(SaTest::raw_http($nginx->port, "BOGUS\r\n\r\n"), qr{^HTTP/1\.1 400 },
     'raw_http: garbage is 400');
$t0 = time;
like(SaTest::raw_http($nginx->port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", half_close => 1),
     qr{^HTTP/1\.1 200 }, 'raw_http with half_close: keep-alive request answered');
ok(time - $t0 < 2, 'and returns once nginx closes');
is(SaTest::raw_http($nginx->port, "GET / HTTP/1.1\r\n", timeout => 0.3), '',
   'raw_http: an incomplete request gets nothing before the timeout');

like($nginx->error_log, qr/start worker process/, 'error log is read');
unlike($nginx->error_log, qr/\[(alert|emerg|crit)\]/, 'no alert or emerg');

# a forked helper exiting (running END blocks) leaves our servers alone
my $kid = fork // die;
exit 0 unless $kid;
waitpid $kid, 0;
is($nginx->get('/')->{status}, 200, 'nginx survives a forked child exiting');
is($redis->cmd('PING'), 'PONG', 'so does Redis');

my %old = map { $_ => 1 } $nginx->worker_pids;
is($nginx->reload(http => <<'CONF'), 1, 'reload with a new conf');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /new { return 200 "reloaded\n"; }
    }
CONF
is($nginx->get('/new')->{content}, "reloaded\n", 'the new conf serves');
ok(!grep({ $old{$_} } $nginx->worker_pids), 'only new workers accept');
is($nginx->reload(http => 'server { bogus_directive; }'), 0, 'a bad conf is rejected');
is($nginx->get('/new')->{content}, "reloaded\n", 'the old conf still serves');
like($nginx->error_log, qr/\[emerg\].*bogus_directive/, 'the error log says why');

my $npid = $nginx->pid;
@workers = $nginx->worker_pids;
ok($nginx->quit, 'quit: graceful exit');
ok(gone($npid), 'the master is gone');
ok(!grep({ !gone($_) } @workers), 'the workers are gone');
is($nginx->get('/')->{status}, 599, 'a closed port gives status 599');

my ($ok, $out) = SaTest::Nginx->test_config(
    module => 0, http => 'server { listen %%PORT%%; bogus_directive; }');
ok(!$ok, 'test_config: a bad conf fails');
like($out, qr/unknown directive "bogus_directive"/, 'naming the directive');
($ok, $out) = SaTest::Nginx->test_config(module => 0);
ok($ok, 'test_config: the default conf passes') or diag $out;

my $doomed = SaTest::Nginx->start(module => 0, workers => 2);
@workers = $doomed->worker_pids;
$doomed->kill9;
ok(@workers == 2 && SaTest::wait_until(2, sub { !grep { !gone($_) } @workers }),
   'kill9 on nginx takes the workers too (they outlive a lone master)');

ok(!eval { SaTest::Nginx->start(module => 0, http => 'bogus;'); 1 }, 'start checks the conf');
like($@, qr/nginx -t failed.*unknown directive "bogus"/s, 'and shows nginx -t');
ok(!eval { SaTest::Nginx->start(module => 0, port => $redis->port); 1 },
   'start fails when the port is taken');
like($@, qr/Address already in use/, 'with the error log');

# ---------------------------------------------------------------- commands

my $r = SaTest::run_admin(
    redis => $redis, bin => '/bin/sh',
    env => { SA_SIGNING_KEY => undef, SA_TEST_X => 'x' },
    args => ['-c', 'printf "%s|%s|%s" "$SA_REDIS" "$SA_TEST_X" "${SA_SIGNING_KEY-unset}";'
                 . ' echo oops >&2; exit 3']);
is($r->{code}, 3, 'run_admin: exit code');
is($r->{out}, $redis->url . '|x|unset', 'stdout, with SA_REDIS and env changes');
is($r->{err}, "oops\n", 'stderr apart');
$r = SaTest::run_admin(bin => '/bin/cat', env => { SA_SIGNING_KEY => undef },
                       stdin => "line\n");
is($r->{out}, "line\n", 'stdin');
$r = SaTest::run_admin(bin => '/bin/sh', env => { SA_SIGNING_KEY => undef },
                       args => ['-c', 'echo \'{"a":[1]}\'', '--json']);
is_deeply($r->{json}, { a => [1] }, 'json with --json');
is(SaTest::run(['/bin/sh', '-c', 'kill -SEGV $$'])->{code}, 139, 'a crash is 128+signal');
is(SaTest::run_cmd(['/bin/sh', '-c', 'echo "$FOO"'], FOO => 'bar')->{out}, "bar\n",
   'run_cmd with environment');
ok(!eval { SaTest::run(['/bin/sleep', '5'], timeout => 0.3); 1 }, 'a hung command');
like($@, qr/still running after 0.3s/, 'is killed');
ok(!eval { SaTest::run_admin(bin => '/nonexistent/sa-admin'); 1 }, 'missing sa-admin');
like($@, qr/not built/, 'says so');

my @skip = ($^X, '-I' . SaTest::root() . '/t/lib', '-MSaTest', '-MTest::More', '-e',
            'ok(SaTest::require_build("ngx_http_sa_module.so", "no-such-file")); done_testing');
$r = SaTest::run(\@skip, env => { CI => undef });
like($r->{out}, qr{^1\.\.0 # SKIP not built: build/no-such-file }, 'require_build skips');
$r = SaTest::run(\@skip, env => { CI => 'true' });
ok($r->{code} != 0 && $r->{err} =~ /not built/, 'but fails under CI');

my $bg = SaTest::Process->start(cmd => ['/bin/sh', '-c', 'echo up; exec sleep 30']);
ok(SaTest::wait_until(5, sub { $bg->out eq "up\n" }), 'background process runs');
ok($bg->stop, 'and stops on SIGTERM');
is($bg->exit_code, 143, 'exit code 128+15');

# ---------------------------------------------------------------- cleanup

# A script that starts Redis and nginx, prints their pids and temp dir,
# then dies / waits to be terminated.
sub child_script {
    my ($end) = @_;
    return [$^X, '-I' . SaTest::root() . '/t/lib', '-MSaTest', '-e', <<"PERL"];
\$| = 1;
my \$r = SaTest::Redis->start;
my \$n = SaTest::Nginx->start(module => 0, workers => 2);
print join(' ', SaTest::tmp_dir(), \$r->pid, \$n->pid, \$n->worker_pids), "\\n";
$end
PERL
}

# The pids in a child's first output line are all gone within 5 s.
sub all_gone {
    my ($line) = @_;
    my (undef, @pids) = split ' ', $line;
    return @pids == 4 && SaTest::wait_until(5, sub { !grep { !gone($_) } @pids });
}

# Its temp dir was removed: its END blocks ran (removes it if not).
sub end_ran {
    my ($line) = @_;
    my ($tmp) = split ' ', $line;
    return 0 unless $tmp && $tmp =~ m{/sa-test-};
    return 1 unless -d $tmp;
    File::Path::rmtree($tmp);
    return 0;
}

$r = SaTest::run(child_script('die "midway\n";'));
like($r->{err}, qr/midway/, 'a script that dies');
ok(all_gone($r->{out}), 'leaves no Redis, nginx master or worker');
ok(end_ran($r->{out}), 'and cleans its temp dir');

# The parent-death signal alone would stop the servers too: end_ran tells
# that the signal handler turned the signal into a clean exit.
for my $sig (qw(TERM INT)) {
    my $p = SaTest::Process->start(cmd => child_script('sleep 30;'));
    SaTest::wait_until(15, sub { $p->out =~ /\n/ });
    ok($p->stop($sig), "a script gets SIG$sig");
    ok(all_gone($p->out), 'and stops its servers');
    ok(end_ran($p->out), 'through its END blocks');
}

# As a subreaper we inherit the killed script's orphans and reap them;
# this machine's init reaps late, and zombies would linger in pgrep.
{ package main; require 'syscall.ph'; }
syscall(main::SYS_prctl(), 36, 1, 0, 0, 0);    # PR_SET_CHILD_SUBREAPER
my $p = SaTest::Process->start(cmd => child_script('sleep 30;'));
SaTest::wait_until(15, sub { $p->out =~ /\n/ });
$p->kill9;
ok(all_gone($p->out), 'a SIGKILLed script: its servers follow (parent-death signal)');
ok(!end_ran($p->out), 'though no END block ran');

done_testing;
