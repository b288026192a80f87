# A woken request runs its phases once.  When a client event shares the
# epoll batch with the Redis reply, whichever runs the phases first judges;
# the posted wake then does nothing (from a review: content handlers ran
# twice: a POST reached the upstream twice, a protected file was cut off).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
# it stops the worker by pid, which /proc does not show under a wrapper
plan skip_all => 'needs the worker pid: not under SA_TEST_NGINX_WRAPPER'
    if $ENV{SA_TEST_NGINX_WRAPPER};
my $redis = SaTest::Redis->start;
my $proxy = SaTest::Proxy->start(target => $redis->port);
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
my $tok = SaTest::issue_token($redis, 'platform/ci', 'a:b');
sub gets { $redis->calls('get') }
my $p2 = SaTest::free_port();

my $nginx = SaTest::Nginx->start(workers => 1, http => '
    sa_redis 127.0.0.1:' . $proxy->port . ';
    sa_verify_key ' . SaTest::keys_dir() . '/verify.key;
    sa_redis_timeout 10s;
    upstream back { server 127.0.0.1:' . $p2 . '; keepalive 4; }
    server {
        listen 127.0.0.1:' . $p2 . ';
        access_log %%DIR%%/backend.log;
        location / { return 200 "backend\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        sendfile off;
        location = /big { }
        location /api/ { sa_auth api; proxy_pass http://back; proxy_http_version 1.1; proxy_set_header Connection ""; }
        location /files/ { sa_auth api; }
    }
');
SaTest::write_file("$nginx->{dir}/html/big", 'x' x (8 << 20));
mkdir "$nginx->{dir}/html/files";
SaTest::write_file("$nginx->{dir}/html/files/big", 'y' x (8 << 20));
my ($wpid) = $nginx->worker_pids;
sub backend_count { my $l = SaTest::slurp("$nginx->{dir}/backend.log"); scalar(() = $l =~ /\n/g) }

# warm the upstream keepalive cache
is($nginx->get('/api/warm', Authorization => "Bearer $tok")->{status}, 200, 'warm-up 200');

# a keep-alive connection whose write event is active (EPOLLET): a response
# that had to wait for the socket
sub primed_conn {
    my $c = SaTest::Conn->new($nginx->port);
    $c->send_raw("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep 0.3;    # unread, so that nginx's writes fill the socket: time is the point
    my $r = $c->response(10);
    die "big failed" unless $r && length $r->{body} == (8 << 20);
    return $c;
}

# sends $req on $c while the GET reply is held, then lets the reply and one
# more client byte become ready in the same epoll batch
sub race {
    my ($c, $req) = @_;
    $proxy->set('command', 'down', 'freeze');
    my $g = gets();
    $c->send_raw($req);
    SaTest::wait_until(2, sub { gets() > $g }) or diag 'no GET at Redis';
    # the race itself: the reply and the client's byte must both be waiting
    # when the stopped worker runs again, so these pauses are the test
    sleep 0.1;
    kill 'STOP', $wpid;
    $proxy->set('command', 'down', 'pass');
    sleep 0.2;
    $c->send_raw("G");             # the first byte of a pipelined request
    sleep 0.1;
    kill 'CONT', $wpid;
}

for my $round (1 .. 3) {
    my $c = primed_conn();
    my $before = backend_count();
    race($c, "POST /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\nContent-Length: 0\r\n\r\n");
    my $res = $c->response(5);
    sleep 0.5;    # a negative check: time for a second POST
    my $n = backend_count() - $before;
    is($res ? $res->{status} : 'none', 200, "(1) round $round: 200");
    is($n, 1, "(1) round $round: one POST reached the upstream (got $n)");
    $c->close;
}

{
    my $c = primed_conn();
    my $mark = length $nginx->error_log;
    race($c, "GET /files/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n\r\n");
    sleep 0.5;    # the race's outcome, if it cut the file, is seen after it
    my $res = $c->response(10);
    my $len = $res ? length $res->{body} : -1;
    is($len, 8 << 20, "(2) the protected file arrives whole (got $len bytes)");
    my $new = substr($nginx->error_log, $mark);
    unlike($new, qr/\[alert\]/, '(2) no alert') or diag(join "\n", grep { /alert/ } split /\n/, $new);
}
done_testing;
