# sa-admin serve under bad clients and faults (issue 22, items 2 and 6):
# a client that trickles its headers (slowloris) is cut at --timeout,
# 10,000 idle connections stay bounded by --max-connections and serve
# answers again once they are gone, Redis down or frozen is 503 with
# Retry-After, and SIGTERM lets a request in flight finish.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use IO::Select;
use SaTest;
use Time::HiRes qw(sleep time);

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $token = $f->token('stacks:read');
my $auth = { Authorization => "Bearer $token" };

my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--timeout', '2s', '--max-connections', 200,
    '--workers', 2 ]);
my $port = $api->port;

sub conn { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 2) }

# until the server closes the connection, writing a byte every 0.3 s
sub trickle {
    my ($sock, $bytes, $secs) = @_;
    my $t0 = time;
    for my $c (split //, $bytes) {
        last if time - $t0 > $secs;
        last unless defined syswrite($sock, $c);
        if (IO::Select->new($sock)->can_read(0.3)) {
            my $n = sysread($sock, my $buf, 4096);
            return time - $t0 if !$n;
        }
    }
    while (time - $t0 < $secs) {
        return time - $t0 unless IO::Select->new($sock)->can_read($secs) && sysread($sock, my $b, 4096);
    }
    return undef;
}

# slowloris: the headers trickle in, each byte resetting any idle timer
my $s = conn();
my $took = trickle($s, "GET /healthz HTTP/1.1\r\nHost: x\r\n" . ('X-Pad: ' . ('a' x 200) . "\r\n") x 3, 8);
ok(defined $took && $took < 4.5, 'a client trickling its headers is cut at --timeout 2s ('
   . (defined $took ? sprintf('%.1fs', $took) : 'never') . ')');
$s = conn();
syswrite($s, "GET /v1/me HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
$took = trickle($s, '{' . ('"a":1,' x 150), 8);
ok(defined $took && $took > 1.5 && $took < 4.5, 'and a client trickling its body ('
   . (defined $took ? sprintf('%.1fs', $took) : 'never') . ')');
$s = conn();
$took = trickle($s, '', 6);
ok(defined $took && $took < 4.5, 'an idle connection is closed after --timeout');
is($api->req(GET => '/healthz')->{status}, 200, 'serve answers the next client');

# a chunked body over 1 MiB: 413 once it passes the limit
$s = conn();
syswrite($s, "POST /v1/me HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            . "Transfer-Encoding: chunked\r\n\r\n");
my $chunk = 'x' x 65536;
my $got = '';
for (1 .. 40) {
    last unless defined syswrite($s, sprintf("%x\r\n%s\r\n", length $chunk, $chunk));
    if (IO::Select->new($s)->can_read(0)) { sysread($s, $got, 65536, length $got) or last }
}
IO::Select->new($s)->can_read(3) and sysread($s, $got, 65536, length $got);
like($got, qr{^HTTP/1\.1 (413|405)}, 'a chunked body without Content-Length: refused, not read forever');

# 10,000 idle connections: bounded, and serve comes back
my @idle;
for (1 .. 10000) {
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Blocking => 0) or last;
    push @idle, $c;
}
is(scalar @idle, 10000, '10,000 idle connections made (what serve does not take waits in the kernel)');
sleep 1;
my $fds = () = glob "/proc/" . $api->pid . "/fd/*";
ok($fds < 200 + 64, "serve holds at most --max-connections of them ($fds open files)");
ok($api->running, 'serve lives');
sub try_health { my $r = eval { $api->req(GET => '/healthz', timeout => 1) }; $r ? $r->{status} : 599 }
isnt(try_health(), 200, 'while they last, a new client waits (bounded, not served past the limit)');
undef @idle;
my $t0 = time;
ok(SaTest::wait_until(20, sub { try_health() == 200 }),
   'once the clients close them, serve answers again');
diag sprintf('serve answered again after %.1fs', time - $t0);

# Redis down: 503, Retry-After, and the worker that met it replaced
$redis->stop;
my $r = $api->req(GET => '/healthz');
is($r->{status}, 503, 'Redis down: healthz 503');
is($r->{headers}{'retry-after'}, '1', '503: Retry-After: 1');
is($r->{headers}{'content-type'}, 'application/problem+json', '503: problem+json');
is($r->{json}{exit}, 3, '503: exit 3');
$r = $api->req(GET => '/v1/me', headers => $auth);
is($r->{status}, 503, 'Redis down: an authenticated request 503, not 401');
$redis->launch;
$f = SaTest::fixture($redis, apps => ['api']);
$token = $f->token('stacks:read');
$auth = { Authorization => "Bearer $token" };
ok(SaTest::wait_until(10, sub { $api->req(GET => '/healthz')->{status} == 200 }),
   'Redis back: healthz 200');
is($api->req(GET => '/v1/me', headers => $auth)->{status}, 200, 'and callers are known again');

# SIGTERM with a request in flight: it is answered, then serve ends
$redis->pause;
my $pid = fork // die;
if (!$pid) {
    my $res = $api->req(GET => '/v1/me', headers => $auth, timeout => 20);
    POSIX::_exit($res->{status} == 200 ? 0 : 1);
}
sleep 0.5;
kill 'TERM', $api->pid;
sleep 0.5;
ok($api->running, 'SIGTERM: serve waits for the request in flight');
ok(!conn() || !defined $api->req(GET => '/healthz', timeout => 1)->{json},
   'and accepts nothing new');
$redis->resume;
waitpid $pid, 0;
is($? >> 8, 0, 'the request in flight got its 200');
ok(SaTest::wait_until(10, sub { !$api->running }), 'then serve ends');
is($api->exit_code, 0, 'exit status 0');

done_testing;
