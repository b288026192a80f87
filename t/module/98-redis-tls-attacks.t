# The attack review of the gateway's TLS path to Redis (issue 24): the
# server, or anyone on the path, misbehaves at the TLS layer.  Most cases
# put t/lib/tls-proxy (a TLS server in front of a plain Redis, per
# connection: its certificate, its mode) between the gateway and Redis.
# Each failure must give: 503 to clients (never 200, never a hang), one
# error-level line naming the cause per connection attempt (what each
# request met at most once a second), no blocked worker (a location
# without sa_auth is answered at once), and recovery without reload once
# the server is fixed.
#
#   A. Certificates: self-signed; not yet valid; for another name; from the
#      other CA.  The lines are counted against the connections the server
#      saw, with 40 requests waiting meanwhile.
#   B. Handshakes that never end, each named: a server that accepts and
#      never answers, one that reads the ClientHello and says nothing, a
#      TLS 1.2 server that stops before its Finished, a stopped Redis
#      (SIGSTOP) on its TLS port.
#   C. After the handshake: a TLS 1.3 KeyUpdate before every reply (the
#      client must answer with one of its own, a write in the middle of a
#      read); every reply byte in its own TLS record; a TLS 1.2 server that
#      renegotiates before every reply (refused: what it would present
#      then is never verified).
#   D. close_notify in the middle of a reply; a 100 MB reply over TLS
#      (hostile-redis behind the proxy).
#   E. Reload and kill -9 of a worker while its handshake hangs.
#   F. Sessions: a certificate changed (expired) between two connections is
#      seen (the old session is not resumed into it); a master the
#      sentinels move to another address, behind servers that share their
#      session tickets' keys, is not offered the old address's session.
#   G. A TLS sentinel names a hostile master: a plain Redis, then a TLS
#      server whose certificate names another host; then the real one.
#   H. redis.test moves (resolver, t/lib/fake-dns) to an address whose
#      certificate is for another name; then that certificate is fixed.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
# about 30 s: make test-slow (SA_TEST_SLOW=1), which .ci/run runs
plan skip_all => 'a slow suite: make test-slow' unless $ENV{SA_TEST_SLOW} || $ENV{ONLY};

my $T   = SaTest::tls_files();
my $KEY = SaTest::keys_dir() . '/verify.key';
my $CA  = "sa_redis_ssl_trusted_certificate $T->{ca};";

sub conf {
    my ($redis_lines, %o) = @_;
    return "    $redis_lines\n    sa_verify_key $KEY;\n    sa_redis_timeout 300ms;\n"
         . ($o{cache} ? "    sa_cache zone=sa:1m ttl=5m;\n" : '') . <<'CONF';
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; sa_application api;
                     root %%DIR%%/html; }
        location /open/ { root %%DIR%%/html; }
    }
CONF
}

sub gateway {
    my $n = SaTest::Nginx->start(http => conf(@_));
    mkdir $n->dir . '/html/open';
    SaTest::write_file($n->dir . '/html/open/index.html', "open\n");
    return $n;
}

sub status { $_[0]->get('/index.html', Authorization => "Bearer $_[1]")->{status} }
sub settles { my ($n, $tok, $want, $secs) = @_; SaTest::wait_until($secs // 5, sub { status($n, $tok) == $want }) }
sub no_alert { unlike($_[0]->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, "$_[1]: no alert, no crash") }
sub lines { my ($n, $re) = @_; my @l = grep { /\[error\].*$re/ } split /\n/, $n->error_log; scalar @l }

# the open location answers at once while the Redis connection is stuck
sub not_blocked {
    my ($n, $what) = @_;
    my $t0 = time;
    my $r = $n->get('/open/index.html');
    my $dt = time - $t0;
    ok($r->{status} == 200 && $dt < 0.5, sprintf('%s: no blocked worker (/open/ 200 in %.3f s)', $what, $dt));
}

my $redis = SaTest::Redis->start(tls => 'no');
my $f = SaTest::fixture($redis, apps => [qw(api)]);
my $token = $f->token('stacks:read');

my $proxy = SaTest::TlsProxy->start(target => $redis->port);
my $pp = $proxy->port;

# ---------------------------------------------------------------- A. certificates
{
    my @cases = (
        ['a self-signed certificate', SaTest::tls_cert('self', ca => 'self'),
         qr/TLS certificate verify error: \(18:self-signed certificate\)/],
        ['a certificate not yet valid', SaTest::tls_cert('future', not_before => '20990101000000Z'),
         qr/TLS certificate verify error: \(9:certificate is not yet valid\)/],
        ['a certificate for another name', SaTest::tls_cert('other-name', san => 'DNS:redis.example.com'),
         qr/TLS certificate does not match "localhost"/],
        ['a certificate from the other CA', SaTest::tls_cert('other-ca', ca => 'other_ca'),
         qr/TLS certificate verify error: \((19|20|21):/],
    );
    my $n = gateway("sa_redis localhost:$pp ssl;\n    $CA");
    is(status($n, $token), 200, 'A: the proxy with the right certificate: 200');
    for my $c (@cases) {
        my ($what, $pair, $log) = @$c;
        $proxy->cert($pair);
        my $before = $proxy->accepted;
        $proxy->cut;
        ok(SaTest::wait_until(5, sub { status($n, $token) == 503 && lines($n, qr/failed: $log/) }),
           "A: $what: 503, and a connection attempt failed") or diag SaTest::tail($n->error_log);
        # 40 requests over 2 s while it keeps failing: lines follow
        # attempts, not requests
        my $refused = () = $n->error_log =~ /is unavailable/g;
        my $t0 = time;
        my @st = map { sleep 0.05; status($n, $token) } 1 .. 40;
        my $secs = time - $t0;
        is(scalar(grep { $_ != 503 } @st), 0, "A: $what: 40 requests, each 503");
        my $said = (() = $n->error_log =~ /is unavailable/g) - $refused;
        ok($said <= $secs + 2, sprintf("A: $what: %d per-request lines in %.1f s (at most one a second)", $said, $secs));
        not_blocked($n, "A: $what");
        my $attempts = $proxy->accepted - $before;
        my $got = lines($n, qr/Redis command connection to localhost:$pp failed: $log/);
        ok($got >= 1, "A: $what: the error line names the cause") or diag SaTest::tail($n->error_log);
        ok($got <= $attempts && $got < 20,
           "A: $what: $got lines for $attempts connection attempts and 40 requests");
        $proxy->cert(undef);
        ok(settles($n, $token, 200), "A: $what: 200 once fixed, without a reload");
    }
    no_alert($n, 'A');
    $n->stop;
}

# ---------------------------------------------------------------- B. stalls
my $p12 = SaTest::TlsProxy->start(target => $redis->port, tls12 => 1);
for my $c (['stall', 'a server that accepts and never answers', qr/no answer to the ClientHello/],
           ['stall-hello', 'a server that reads the ClientHello and says nothing', qr/no answer to the ClientHello/],
           ['stall-finished', 'a TLS 1.2 server that stops before its Finished', qr/the server stopped in the middle of it/, $p12]) {
    my ($mode, $what, $log, $px) = @$c;
    $px //= $proxy;
    my $pp = $px->port;
    $px->mode($mode);
    my $n = gateway("sa_redis localhost:$pp ssl;\n    $CA");
    my $t0 = time;
    my $st = status($n, $token);
    my $dt = time - $t0;
    ok($st == 503 && $dt < 1.5, sprintf('B: %s: 503 in %.2f s', $what, $dt));
    not_blocked($n, "B: $what");
    ok(SaTest::wait_until(4, sub { $n->error_log =~ /\[error\].*connection to localhost:$pp failed: TLS handshake not done within 1200 ms/ }),
       "B: $what: the error line names it") or diag SaTest::tail($n->error_log);
    $px->mode('pass');
    ok(settles($n, $token, 200, 8), "B: $what: 200 once it answers, without a reload");
    no_alert($n, "B: $what");
    $n->stop;
}

{
    my $tp = $redis->tls_port;
    my $n = gateway("sa_redis localhost:$tp ssl;\n    $CA");
    is(status($n, $token), 200, 'B: Redis\'s own TLS port: 200');
    $redis->pause;
    # the ready connection sees no reply, ends; the next handshake hangs
    my @st = map { status($n, $token) } 1 .. 5;
    is(scalar(grep { $_ != 503 } @st), 0, 'B: a stopped Redis (SIGSTOP): 503');
    not_blocked($n, 'B: a stopped Redis');
    ok(SaTest::wait_until(6, sub { $n->error_log =~ /\[error\].*connection to localhost:$tp failed: TLS handshake not done within 1200 ms/ }),
       'B: a stopped Redis: the handshake that hangs is named') or diag SaTest::tail($n->error_log);
    $redis->resume;
    ok(settles($n, $token, 200, 8), 'B: Redis resumed: 200 without a reload');
    no_alert($n, 'B: a stopped Redis');
    $n->stop;
}

# ---------------------------------------------------------------- C. post-handshake
sub many_ok {
    my ($n, $what, $count) = @_;
    my @tok = map { $f->token('stacks:read') } 1 .. 3;
    my @st = map { status($n, $tok[$_ % 3]) } 1 .. $count;
    is(scalar(grep { $_ != 200 } @st), 0, "C: $what: $count requests, each 200");
    # and concurrently: pipelined commands on one connection
    my $got = SaTest::flood($n->port, 200);
    is($got, 200, "C: $what: 200 concurrent forged tokens answered");
    is(status($n, $tok[0]), 200, "C: $what: and a valid token after them");
}

{
    $proxy->mode('keyupdate');
    my $n = gateway("sa_redis localhost:$pp ssl;\n    $CA", cache => 1);
    ok(settles($n, $token, 200), 'C: a KeyUpdate before every reply: 200');
    many_ok($n, 'KeyUpdate before every reply', 30);
    like($proxy->log, qr/keyupdate/, 'C: the proxy did send KeyUpdates');
    unlike($n->error_log, qr/\[error\].*Redis/, 'C: KeyUpdate: no Redis error logged');
    no_alert($n, 'C: KeyUpdate');
    $n->stop;
}

{
    $proxy->mode('split');
    my $n = gateway("sa_redis localhost:$pp ssl;\n    $CA", cache => 1);
    ok(settles($n, $token, 200), 'C: every reply byte in its own TLS record: 200');
    many_ok($n, 'a TLS record per byte', 30);
    unlike($n->error_log, qr/\[error\].*Redis/, 'C: a record per byte: no Redis error logged');
    no_alert($n, 'C: a record per byte');
    $n->stop;
}

{
    my $p12 = SaTest::TlsProxy->start(target => $redis->port, tls12 => 1, mode => 'reneg');
    my $port = $p12->port;
    my $n = gateway("sa_redis localhost:$port ssl;\n    $CA");
    my @st = map { status($n, $token) } 1 .. 5;
    is(scalar(grep { $_ != 200 && $_ != 503 } @st), 0, 'C: a TLS 1.2 server that renegotiates: 200 or 503, never a hang');
    ok(SaTest::wait_until(4, sub { status($n, $token); $n->error_log =~ /\[error\].*connection to localhost:$port (lost|failed): the server asked for a TLS renegotiation, refused \(SSL_read\(\): sslv3 alert handshake failure\)/ }),
       'C: renegotiation: refused (what it would present is never verified), and the line says so') or diag SaTest::tail($n->error_log);
    like($p12->log, qr/no renegotiation/, 'C: the server heard the refusal');
    not_blocked($n, 'C: renegotiation');
    $p12->mode('pass');
    ok(settles($n, $token, 200), 'C: the same TLS 1.2 server without renegotiation: 200');
    no_alert($n, 'C: renegotiation');
    $n->stop;
    $p12->stop;
}

# ---------------------------------------------------------------- D. cut and huge replies
{
    $proxy->mode('close-mid');
    my $n = gateway("sa_redis localhost:$pp ssl;\n    $CA");
    is(status($n, $token), 503, 'D: close_notify in the middle of a reply: 503');
    ok(SaTest::wait_until(3, sub { $n->error_log =~ /\[error\].*connection to localhost:$pp lost: the server closed the connection/ }),
       'D: close_notify mid-reply: the line says the server closed it') or diag SaTest::tail($n->error_log);
    not_blocked($n, 'D: close_notify');
    $proxy->mode('pass');
    ok(settles($n, $token, 200), 'D: 200 once the server behaves');
    no_alert($n, 'D: close_notify');
    $n->stop;
}

{
    my $hdir = SaTest::new_dir('hostile');
    my $hport = SaTest::free_port();
    SaTest::write_file("$hdir/mode", 'huge-bulk');
    my $hostile = SaTest::Process->start(
        cmd => [$^X, SaTest::root() . '/t/lib/hostile-redis', $hport, $hdir, $redis->port]);
    SaTest::wait_for('hostile-redis', sub { SaTest::port_open($hport) }, 5);
    my $hp = SaTest::TlsProxy->start(target => $hport);
    my $port = $hp->port;
    my $n = gateway("sa_redis localhost:$port ssl;\n    $CA");
    my ($pid) = $n->worker_pids;
    is(status($n, $token), 503, 'D: a 100 MB reply over TLS: 503');
    ok(SaTest::wait_until(3, sub { $n->error_log =~ /\[error\].*connection to localhost:$port lost: protocol error: /i }),
       'D: a 100 MB reply over TLS: a protocol error, at once') or diag SaTest::tail($n->error_log);
    my $rss = SaTest::slurp("/proc/$pid/status") =~ /^VmHWM:\s+(\d+) kB/m ? $1 : 0;
    ok($rss && $rss < 64 * 1024, "D: the worker's peak RSS stays small ($rss kB)");
    is(($n->worker_pids)[0], $pid, 'D: the same worker');
    SaTest::write_file("$hdir/mode.tmp", 'pass');
    rename "$hdir/mode.tmp", "$hdir/mode";
    ok(settles($n, $token, 200), 'D: 200 once the server is sane');
    no_alert($n, 'D: a huge reply');
    $n->stop;
    $hp->stop;
    $hostile->stop;
}

# ---------------------------------------------------------------- E. reload, kill -9
{
    $proxy->mode('stall');
    my $n = gateway("sa_redis localhost:$pp ssl;\n    $CA");
    is(status($n, $token), 503, 'E: a hanging handshake: 503');
    my @old = $n->worker_pids;
    $n->reload;
    ok(SaTest::wait_until(5, sub { !grep { kill 0, $_ } @old }),
       'E: reload during a hanging handshake: the old worker is gone within 5 s');
    is(status($n, $token), 503, 'E: the new worker: 503 (the handshake hangs again)');
    my ($w) = $n->worker_pids;
    SaTest::expect_log(qr/worker process $w exited on signal 9/);
    kill 'KILL', $w;
    ok(SaTest::wait_until(5, sub { my ($x) = $n->worker_pids; $x && $x != $w }), 'E: kill -9 of the worker: a new one');
    $proxy->mode('pass');
    ok(settles($n, $token, 200, 8), 'E: 200 once the server answers');
    unlike(join("\n", grep { !/worker process $w exited on signal 9/ } split /\n/, $n->error_log),
           qr/\[alert\]|open socket|\[crit\]/, 'E: no other alert, no socket left open');
    $n->stop;
}

# ---------------------------------------------------------------- F. sessions
{
    my $tp = $redis->tls_port;
    my $n = gateway("sa_redis localhost:$tp ssl;\n    $CA");
    is(status($n, $token), 200, 'F: a first connection (its session kept)');
    is($redis->cmd('CONFIG', 'SET', 'tls-cert-file', $T->{expired}), 'OK', 'F: the server now shows an expired certificate');
    $redis->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
    ok(settles($n, $token, 503), 'F: after a reconnect: 503');
    ok(SaTest::wait_until(3, sub { $n->error_log =~ /\[error\].*connection to localhost:$tp failed: TLS certificate verify error: \(10:certificate has expired\)/ }),
       'F: the expired certificate is seen (no resumption into it)') or diag SaTest::tail($n->error_log);
    $redis->cmd('CONFIG', 'SET', 'tls-cert-file', $T->{cert});
    ok(settles($n, $token, 200), 'F: 200 once it is fixed');
    no_alert($n, 'F: a certificate changed');
    $n->stop;
}

{
    # a master found through a TLS sentinel at 127.0.0.2, then at 127.0.0.3,
    # each its own certificate, behind one proxy that resumes any session
    my $sdir = SaTest::new_dir('sentinel');
    my $sport = SaTest::free_port();
    my $sentinel = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $sport, $sdir]);
    SaTest::wait_for('fake-sentinel', sub { SaTest::port_open($sport) }, 5);
    my $stls = SaTest::TlsProxy->start(target => $sport);
    my $mp = SaTest::TlsProxy->start(target => $redis->port, ip => '0.0.0.0',
                                     cert => SaTest::tls_cert('ip2', san => 'IP:127.0.0.2'));
    my $ip3 = SaTest::tls_cert('ip3', san => 'IP:127.0.0.3');
    my $m = $mp->port;
    SaTest::write_file("$sdir/master", "127.0.0.2 $m");
    my $n = gateway("sa_redis_sentinel sa localhost:${\ $stls->port } ssl;\n    $CA");
    ok(settles($n, $token, 200), 'F: the master at 127.0.0.2, over TLS: 200');
    like($mp->log, qr/handshake done/, 'F: a full handshake with 127.0.0.2');
    $mp->cert($ip3, shared => 1);
    SaTest::write_file("$sdir/master", "127.0.0.3 $m");
    SaTest::write_file("$sdir/switch", "sa 127.0.0.2 $m 127.0.0.3 $m");
    ok(SaTest::wait_until(5, sub { $n->error_log =~ /master "sa" is at 127\.0\.0\.3:$m/ }), 'F: the gateway follows the switch')
        or diag SaTest::tail($n->error_log);
    ok(SaTest::wait_until(5, sub { status($n, $token) == 200 && (() = $mp->log =~ /handshake done/g) >= 2 }),
       'F: moved to 127.0.0.3, whose certificate names it: 200')
        or diag SaTest::tail($n->error_log) . "\n" . SaTest::tail($mp->log);
    is(lines($n, qr/connection to 127\.0\.0\.3:$m failed: TLS certificate does not match/), 0,
       'F: the session of 127.0.0.2 was not offered to 127.0.0.3 (no resumed session with the old certificate)');
    unlike($mp->log, qr/resumed/, 'F: no session resumed across the move');
    no_alert($n, 'F: sessions across a move');
    $n->stop;
}

# ---------------------------------------------------------------- G. a hostile master
{
    # a TLS sentinel names a master at an address of the attacker's: a plain
    # Redis there, then a TLS server whose certificate (of the right CA)
    # names another host; then the real master again
    my $sdir = SaTest::new_dir('sentinel');
    my $sport = SaTest::free_port();
    my $sentinel = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $sport, $sdir]);
    SaTest::wait_for('fake-sentinel', sub { SaTest::port_open($sport) }, 5);
    my $stls = SaTest::TlsProxy->start(target => $sport);
    my $evil = SaTest::Redis->start;
    my $evil_tls = SaTest::TlsProxy->start(target => $evil->port,
                                           cert => SaTest::tls_cert('evil', san => 'DNS:redis.example.com'));
    my $good = $proxy->port;
    $proxy->mode('pass');
    SaTest::write_file("$sdir/master", "127.0.0.1 $good");
    my $n = gateway("sa_redis_sentinel sa localhost:${\ $stls->port } ssl;\n    $CA");
    ok(settles($n, $token, 200), 'G: the master the TLS sentinel names: 200');
    my $switch = sub {
        my ($from, $to) = @_;
        SaTest::write_file("$sdir/master", "127.0.0.1 $to");
        SaTest::write_file("$sdir/switch", "sa 127.0.0.1 $from 127.0.0.1 $to");
    };
    my $ep = $evil->port;
    $switch->($good, $ep);
    ok(SaTest::wait_until(6, sub { status($n, $token) == 503
                                   && $n->error_log =~ /\[error\].*command connection to 127\.0\.0\.1:$ep failed: TLS handshake not done within 1200 ms: no answer to the ClientHello/ }),
       'G: a master at a plain Redis: 503, the handshake named') or diag SaTest::tail($n->error_log);
    not_blocked($n, 'G: a plain master');
    my $et = $evil_tls->port;
    $switch->($ep, $et);
    ok(SaTest::wait_until(6, sub { status($n, $token) == 503
                                   && $n->error_log =~ /\[error\].*command connection to 127\.0\.0\.1:$et failed: TLS certificate does not match "127\.0\.0\.1"/ }),
       'G: a master whose certificate names another host: 503, refused by name') or diag SaTest::tail($n->error_log);
    is($evil->cmd('INFO', 'commandstats') =~ /cmdstat_get:/ ? 1 : 0, 0, 'G: no GET reached the hostile masters');
    $switch->($et, $good);
    ok(settles($n, $token, 200, 8), 'G: the real master again: 200, without a reload');
    no_alert($n, 'G');
    $n->stop;
}

# ---------------------------------------------------------------- H. a name that moves
{
    # redis.test moves from 127.0.0.2 to 127.0.0.3, whose certificate (of
    # the right CA) is for another name; then that certificate is fixed
    my $dns_dir = SaTest::new_dir('dns');
    my $dns_port = SaTest::free_port();
    SaTest::write_file("$dns_dir/answer", "127.0.0.2\n");
    my $dns = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-dns', $dns_port, $dns_dir]);
    my $named = SaTest::tls_cert('redis-test', san => 'DNS:redis.test');
    my $p2 = SaTest::TlsProxy->start(target => $redis->port, ip => '127.0.0.2', cert => $named);
    my $port = $p2->port;
    my $p3 = SaTest::TlsProxy->start(target => $redis->port, ip => '127.0.0.3', port => $port,
                                     cert => SaTest::tls_cert('other-test', san => 'DNS:other.test'));
    my $n = gateway("resolver 127.0.0.1:$dns_port valid=1s ipv6=off;\n    sa_redis redis.test:$port ssl;\n    $CA");
    ok(settles($n, $token, 200), 'H: redis.test (127.0.0.2) over TLS: 200');
    SaTest::write_file("$dns_dir/answer", "127.0.0.3\n");
    sleep 2.5;     # past valid=1s (whole seconds)
    $p2->cut;
    $p2->mode('stall');
    ok(SaTest::wait_until(6, sub { status($n, $token) == 503
                                   && $n->error_log =~ /\[error\].*command connection to redis\.test:$port failed: TLS certificate does not match "redis\.test"/ }),
       'H: moved to an address whose certificate is for another name: 503, refused by name') or diag SaTest::tail($n->error_log);
    not_blocked($n, 'H: a moved name');
    $p3->cert($named);
    ok(settles($n, $token, 200, 8), 'H: the new address shows a certificate for redis.test: 200, without a reload');
    no_alert($n, 'H');
    $n->stop;
}

done_testing;
