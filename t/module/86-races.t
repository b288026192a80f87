# A revocation a worker has already processed beats any Redis reply to a GET
# sent before it:
#  (a) within one worker, a request that arrives after the worker processed
#      the invalidation of token T never gets the verdict of a GET for T sent
#      before it (it must not board that GET's flight);
#  (b) across workers, a reply to a GET sent before some worker processed the
#      invalidation is never stored in the shared cache as valid (worker W2,
#      deaf to the invalidation, gets a pre-revoke reply; worker W1, which
#      heard it, must not serve it from the zone afterwards).
# Each is repeated with fresh tokens, with a control run without the revoke
# (the same steps then give 200, so refusing everything cannot pass).
# Redis sits behind t/lib/fault-proxy, which holds back one chosen worker's
# replies (freeze, released by the test: the race window does not depend on
# how fast sa-admin runs) or its pubsub traffic; sa-admin talks to Redis
# directly. Requests reach a chosen worker over keep-alive connections that
# worker accepted (asked for its pid at /pid).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $proxy = SaTest::Proxy->start(target => $redis->port);
my $f = SaTest::fixture($redis);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub gets { $redis->calls('get') }

# a token never requested before: (token, id)
sub fresh_token {
    my $r = as(qw(token issue platform/ci --scope a:b));
    die "token issue: $r->{err}" if $r->{code};
    chomp(my $t = $r->{out});
    return ($t, substr($t, 4, 16));
}


my $nginx = SaTest::Nginx->start(workers => 2, http => '
    sa_redis 127.0.0.1:' . $proxy->port . ';
    sa_verify_key ' . SaTest::keys_dir() . '/verify.key;
    sa_redis_timeout 3s;
    sa_cache zone=sa:1m ttl=5m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /pid { return 200 $pid; }
        location / { sa_auth api; root %%DIR%%/html; }
    }
');

# ------------------------------------------------ connections per worker

my %pool;    # worker pid => [idle keep-alive SaTest::Conn, ...]

# Opens connections until each of the two workers holds at least $n.
sub stock {
    my ($n) = @_;
    for (1 .. 200) {
        my @full = grep { @{ $pool{$_} } >= $n } keys %pool;
        return if @full >= 2;
        my $c = SaTest::Conn->new($nginx->port);
        my $r = $c->get('/pid') or die "no answer to /pid\n";
        my $pid = $r->{body};
        if (@{ $pool{$pid} //= [] } < $n) { push @{ $pool{$pid} }, $c } else { $c->close }
    }
    die 'connections did not reach both workers: '
        . join(', ', map { "$_: " . @{ $pool{$_} } } keys %pool) . "\n";
}

stock(2);
my ($W1, $W2) = sort { $a <=> $b } keys %pool;

sub conn_on {
    my ($pid) = @_;
    stock(1) until @{ $pool{$pid} };
    return shift @{ $pool{$pid} };
}

sub request_raw {
    "GET /index.html HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer $_[0]\r\n\r\n";
}

# Sends a request through worker $pid without reading the answer.
sub send_via {
    my ($pid, $token) = @_;
    my $c = conn_on($pid);
    $c->send_raw(request_raw($token));
    return [$pid, $c];
}

# The status of a request sent with send_via ('none' if no answer).
sub status_of {
    my ($sent) = @_;
    my ($pid, $c) = @$sent;
    my $r = $c->response(8) or do { $c->close; return 'none' };
    if (lc($r->{headers}{connection} // '') eq 'close') { $c->close }
    else { push @{ $pool{$pid} }, $c }
    return $r->{status};
}

sub status_via { status_of(send_via(@_)) }

# ------------------------------------------------ the proxy's connections

# worker pid => { command => proxy connection id, pubsub => id }
my %link;
my %at_proxy;    # worker pid => [its connections as the proxy lists them]
SaTest::wait_for('both workers subscribed through the proxy', sub {
    return 0 unless 2 == (() = $redis->cmd('CLIENT', 'LIST', 'TYPE', 'pubsub') =~ /^id=/mg);
    my %by;
    for my $c ($proxy->conns) {
        my $pid = SaTest::socket_owner($c->{port}, $W1, $W2) or next;
        push @{ $by{$pid} }, $c;
    }
    return 0 unless 2 == grep { $by{$_} && @{ $by{$_} } == 2 } $W1, $W2;
    %at_proxy = %by;
    return 1;
}, 10);
# The subscriptions are in place at Redis, so the proxy has seen every
# SUBSCRIBE it will see. Its kind is trusted when it names one pubsub and one
# command connection per worker.
for my $pid ($W1, $W2) {
    my %kind = map { $_->{kind} => $_->{id} } @{ $at_proxy{$pid} };
    $link{$pid} = \%kind if $kind{command} && $kind{pubsub};
}
# Otherwise (fault-proxy looks for SUBSCRIBE only in the last 64 bytes of what
# it has forwarded, so a SUBSCRIBE of several channels can go unnoticed) the
# command connection is found by holding one connection's upstream: it is the
# one whose freeze keeps a request's GET from reaching Redis.
for my $pid (grep { !$link{$_} } $W1, $W2) {
    note("worker $pid: the proxy did not tell its pubsub connection; probing");
    my ($x, $y) = map { $_->{id} } @{ $at_proxy{$pid} };
    my ($token) = fresh_token();
    $proxy->set($x, 'up', 'freeze');
    my $before = gets();
    my $sent = send_via($pid, $token);
    my $not_x = SaTest::wait_until(0.5, sub { gets() > $before });
    $proxy->set($x, 'up', 'pass');
    my $status = status_of($sent);
    die "probe request through worker $pid: $status\n" unless $status eq '200';
    $link{$pid} = $not_x ? { command => $y, pubsub => $x } : { command => $x, pubsub => $y };
}
note("worker $_: command connection $link{$_}{command}, pubsub $link{$_}{pubsub}")
    for $W1, $W2;

# Waits (briefly) until Redis has seen a GET beyond $before: the GET of the
# request just sent went out before the revoke that follows.
sub wait_get {
    my ($before) = @_;
    SaTest::wait_until(1, sub { gets() > $before }) or diag('no GET seen at Redis');
    sleep 0.05;    # the races below are timed against the proxy: time
}

sub revoke {
    my ($id) = @_;
    my $r = as('token', 'revoke', $id);
    is($r->{code}, 0, "sa-admin token revoke $id") or diag($r->{err});
}

my ($ctok) = fresh_token();
is(status_via($W1, $ctok), 200, "the token works through worker $W1");
is(status_via($W2, $ctok), 200, "and through worker $W2");

# ------------------------------------------------ (a) one worker

# Request A's GET reply is held at the proxy; meanwhile T is revoked and the
# worker's (untouched) subscriber processes the invalidation; request B
# arrives after that. Returns (A's status, B's status).
sub one_worker {
    my ($W, $revoke) = @_;
    my ($token, $id) = fresh_token();
    my $cmd = $link{$W}{command};
    $proxy->set($cmd, 'down', 'freeze');
    my $before = gets();
    my $req_a = send_via($W, $token);
    wait_get($before);
    revoke($id) if $revoke;
    sleep 0.2;                               # the worker reads the PUBLISH
    my $req_b = send_via($W, $token);
    sleep 0.2;                               # B reaches the worker's handler
    $proxy->set($cmd, 'down', 'pass');
    return (status_of($req_a), status_of($req_b));
}

{
    my ($sa, $sb) = one_worker($W1, 0);
    is($sa, 200, '(a) control, no revoke: A 200');
    is($sb, 200, '(a) control, no revoke: B 200');
}
for my $round (1 .. 3) {
    my ($sa, $sb) = one_worker($W1, 1);
    like($sa, qr/^(200|401)$/, "(a) round $round: A (sent before the revoke) 200 or 401: $sa");
    is($sb, 401, "(a) round $round: B, sent after the worker saw the revoke, 401");
}

# ------------------------------------------------ (b) two workers

# W2 is deaf (its pubsub replies frozen) and its GET reply held until after
# W1 has processed the revoke; A's answer comes back, then B goes through W1.
# Returns (A's status, B's status, then W2's status once it caught up).
sub two_workers {
    my ($revoke) = @_;
    my ($token, $id) = fresh_token();
    my ($cmd, $sub) = ($link{$W2}{command}, $link{$W2}{pubsub});
    $proxy->set($sub, 'down', 'freeze');
    $proxy->set($cmd, 'down', 'freeze');
    my $before = gets();
    my $req_a = send_via($W2, $token);
    wait_get($before);
    revoke($id) if $revoke;
    sleep 0.3;                               # W1 processes the invalidation
    $proxy->set($cmd, 'down', 'pass');
    my $sa = status_of($req_a);
    my $sb = status_via($W1, $token);
    $proxy->set($sub, 'down', 'pass');       # W2 hears it now
    sleep 0.2;                               # (nothing outside shows it)
    return ($sa, $sb, status_via($W2, $token));
}

{
    my ($sa, $sb, $s2) = two_workers(0);
    is($sa, 200, '(b) control, no revoke: A through W2 200');
    is($sb, 200, '(b) control, no revoke: B through W1 200');
    is($s2, 200, '(b) control, no revoke: W2 again 200');
}
for my $round (1 .. 3) {
    my ($sa, $sb, $s2) = two_workers(1);
    like($sa, qr/^(200|401)$/, "(b) round $round: A through deaf W2 200 or 401: $sa");
    is($sb, 401, "(b) round $round: B through W1, which saw the revoke, 401");
    is($s2, 401, "(b) round $round: W2, once it heard the revoke, 401");
}

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'no alert, no crash');
done_testing;
