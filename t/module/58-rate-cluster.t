# sa_rate_limit mode=cluster (issue 25, item 4): one token's rate across two
# gateways (two nginx, 2 workers each) sharing one Redis, through the
# batching sync (ngx_http_sa_sync.c): each gateway learns what the other
# admitted within 2 x sync, so both together admit no more than one bucket
# plus the stated bound (docs/policies.md):
#     (burst + 1) + rate x T + (G - 1) x (burst + 1 + rate x 2 x sync)
# (local mode would admit G buckets' worth).  Redis frozen: the last known
# totals and local counts go on deciding (on_unavailable=allow), or a
# token with a rate is 503 unavailable (on_unavailable=deny); no worker
# blocks; the count goes on once Redis is back.  Counts a Redis writer
# puts in the counter (10^15, non-numbers) cost at most a full bucket.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $SYNC = 0.1;
my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($tr) = $f->issue(qw(--scope a:b --rate 20/s --burst 2));
my ($tb) = $f->issue(qw(--scope a:b --rate 1/h --burst 4));
my ($td) = $f->issue(qw(--scope a:b --rate 10/s --burst 1));

sub http {
    my ($mode) = @_;
    return <<"CONF";
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m stale=1h;
    sa_rate_limit zone=rl:1m mode=cluster sync=100ms $mode;
    log_format sa '\$status \$sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        root %%DIR%%/html;
        location / { sa_auth api; }
    }
CONF
}
my @gw = map { SaTest::Nginx->start(redis => $redis, workers => 2, http => http('')) } 1 .. 2;

# requests of one token for $secs over $conns keep-alive connections to
# each of @ports, all at once: { status => count }, and the time from the
# first request sent to the last answer read
sub flood {
    my ($tok, $secs, $conns, @ports) = @_;
    my @kids;
    my $t0 = time;
    for my $port (@ports) {
        for my $c (1 .. $conns) {
            pipe(my $r, my $w) or die;
            my $pid = fork // die;
            if (!$pid) {
                close $r;
                my %n;
                my $s;
                my $end = $t0 + $secs;
                while (time < $end) {
                    # keepalive_requests ends a connection now and then
                    $s //= IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die;
                    print $s "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n\r\n";
                    my $head = '';
                    while ($head !~ /\r\n\r\n/) {
                        my $got = sysread($s, $head, 4096, length $head) or last;
                    }
                    my ($st) = $head =~ /^HTTP\/1\.1 (\d+)/;
                    if (!$st) { undef $s; next }
                    my ($len) = $head =~ /^Content-Length: (\d+)/mi;
                    my $body = length($head) - index($head, "\r\n\r\n") - 4;
                    while (defined $len && $body < $len) {
                        my $got = sysread($s, my $buf, $len - $body) or last;
                        $body += $got;
                    }
                    $n{$st}++;
                    undef $s if $head =~ /^Connection: close/mi;
                }
                print $w join(' ', %n), "\n";
                exit 0;
            }
            close $w;
            push @kids, [$pid, $r];
        }
    }
    my %c;
    for my $kid (@kids) {
        my $fh = $kid->[1];
        my %n = split ' ', (<$fh> // '');
        $c{$_} += $n{$_} for keys %n;
        waitpid $kid->[0], 0;
    }
    return (\%c, time - $t0);
}

sub counts { my ($c) = @_; join ' ', map { "$_=$c->{$_}" } sort keys %$c }

# the bound, for a rate of $rate/s and $burst over $t s with 2 gateways
sub bound {
    my ($rate, $burst, $t) = @_;
    return ($burst + 1) + $rate * $t + 1 * ($burst + 1 + $rate * 2 * $SYNC);
}

# What Redis holds of token $tok's cluster rate count, over its minutes
# (sa:ctr:r:w<minute>): (the requests admitted, the gateways that admitted
# them), each gateway's part in the field <id>:<its 16 hex digits>
sub counted {
    my ($tok) = @_;
    my $id = SaTest::tid($tok);
    my ($n, %gw) = (0);
    for my $k (@{ $redis->cmd('KEYS', 'sa:ctr:r:*') }) {
        my %h = @{ $redis->cmd('HGETALL', $k) };
        for (grep { /^\Q$id\E:[0-9a-f]{16}$/ } keys %h) { $n += $h{$_}; $gw{$_} = 1 }
    }
    return ($n, scalar keys %gw);
}

# Waits until Redis holds at least $n admitted requests of $tok, from
# $gateways gateways (a sync's EVAL counts a gateway's request and answers
# the total), then until every reply Redis sent is read: a gateway that
# has heard the others' count acts on it from its next request on.
sub heard {
    my ($what, $tok, $n, $gateways) = @_;
    # (20 s: a batch whose reply a loaded machine delayed past
    # sa_redis_timeout is sent again after a backoff)
    SaTest::wait_for($what, sub { my ($got, $gw) = counted($tok); $got >= $n && $gw == $gateways }, 20);
    $redis->barrier;
    SaTest::wait_for("$what: the replies read", sub { SaTest::replies_read($redis->port) }, 20);
}

sub cmdstats {
    return { map { /^cmdstat_(\w+):calls=(\d+)/ ? ($1 => $2) : () }
             split /\r?\n/, $redis->cmd('INFO', 'commandstats') };
}

# ---- a sustained flood at both gateways: one bucket, not two
my $cs0 = cmdstats();
my ($c, $t) = flood($tr, 3, 4, map { $_->port } @gw);
my $cs1 = cmdstats();
my $ok = $c->{200} // 0;
my $max = bound(20, 2, $t);
cmp_ok($ok, '<=', int($max) + 2,
       sprintf('20/s burst 2 for %.2f s at 2 gateways: %d admitted, at most one bucket + the bound (%.0f; 2 local buckets: %.0f)',
               $t, $ok, $max, 2 * (3 + 20 * $t)));
cmp_ok($ok, '>=', 20 * ($t - 1), 'and not far below one bucket (the rate is admitted)');
cmp_ok($c->{429} // 0, '>', 0, 'the rest refused: 429 (' . counts($c) . ')');
is(join(' ', sort grep { $_ != 200 && $_ != 429 } keys %$c), '', 'nothing but 200 and 429');
my $evals = ($cs1->{eval} // 0) - ($cs0->{eval} // 0);
my $n = ($c->{200} // 0) + ($c->{429} // 0);
cmp_ok($evals, '<=', 4 * ($t / $SYNC + 3), "Redis: $evals EVALs for $n requests, at most one per sync per worker (4 workers)");
my $gets = ($cs1->{get} // 0) - ($cs0->{get} // 0);
cmp_ok($gets, '<=', $evals + 4, "and $gets GETs: the sync script's own, and a first lookup per gateway; nothing per request");

# ---- a burst at one gateway, then at the other once it has heard of it
($c) = flood($tb, 0.5, 2, $gw[0]->port);
is($c->{200} // 0, 5, '1/h burst 4 at gateway A: 5 admitted');
my $tb_a = my $tb_n = $c->{200} // 0;
heard("A's count in Redis", $tb, $tb_n, 1);
my $b1 = $gw[1]->get('/index.html', Authorization => "Bearer $tb")->{status};
$tb_n++ if $b1 == 200;
heard('B has a node: it read A\'s count', $tb, $tb_n, 1 + ($b1 == 200));
($c) = flood($tb, 0.5, 2, $gw[1]->port);
my $b = ($c->{200} // 0) + ($b1 == 200);
$tb_n += $c->{200} // 0;
cmp_ok($b, '<=', 1 + 1, "then gateway B, which had heard of A's 5: $b admitted (local mode: 5)");

# ---- Redis frozen: on_unavailable=allow goes on with the local count
$redis->pause;
my $t0 = time;
($c, $t) = flood($tr, 1.5, 2, $gw[0]->port);
$redis->resume;
$ok = $c->{200} // 0;
ok($ok > 0 && $ok <= 3 + 20 * $t + 1, sprintf('Redis frozen, allow: the local count decides (%d admitted in %.2f s)', $ok, $t));
is(join(' ', sort grep { $_ != 200 && $_ != 429 } keys %$c), '', 'nothing but 200 and 429 (' . counts($c) . ')');
cmp_ok(($c->{200} // 0) + ($c->{429} // 0), '>', 20, 'and no worker blocked: answers kept coming');

# ---- on_unavailable=deny: 503 unavailable while the sync is down
my $deny = SaTest::Nginx->start(redis => $redis, workers => 1, http => http('on_unavailable=deny'));
is($deny->get('/index.html', Authorization => "Bearer $td")->{status}, 200, 'deny: with Redis up, admitted');
my (undef, $tb_gw) = counted($tb);    # the gateways before the third's request
is($deny->get('/index.html', Authorization => "Bearer $tb")->{status}, 200, 'a third gateway, new to the 1/h token: its first request is admitted (the bound\'s burst term)');
# its own part there: its read went out after A's count was in (B's may
# come later, its batches kept back by a backoff after the freeze)
heard('the third gateway read the count', $tb, $tb_a + 1, $tb_gw + 1);
is($deny->get('/index.html', Authorization => "Bearer $tb")->{status}, 429, 'then it has heard of the others\' count: 429');
$redis->pause;
sleep 1.5;                          # the sync's reply deadline passes
my @st = map { $deny->get('/index.html', Authorization => "Bearer $td")->{status} } 1 .. 3;
$redis->resume;
is("@st", '503 503 503', 'deny: Redis frozen, a token with a rate is 503');
my $line = SaTest::wait_until(2, sub { SaTest::slurp($deny->dir . '/sa.log') =~ /^503 (\S+)$/m ? $1 : 0 });
is($line, 'unavailable', '$sa_status unavailable');
my $back = SaTest::wait_until(5, sub { $deny->get('/index.html', Authorization => "Bearer $td")->{status} == 200 });
ok($back, 'Redis back: admitted again');

# ---- a Redis writer's counts (not signed): at most a full bucket for a
# while (a node takes a count it had not been hearing as at most one), or
# local mode; never a crash, a blocked worker or more than a bucket
my ($th, $idh) = $f->issue(qw(--scope a:b --rate 10/s --burst 9));
my $g = $gw[0];
# (A's connection to Redis may still be coming back from the freeze above)
ok(SaTest::wait_until(5, sub { $g->get('/index.html', Authorization => "Bearer $th")->{status} == 200 }),
   'a fresh token at gateway A');
my $key = 'sa:ctr:r:w' . int(time / 60);
SaTest::wait_until(2, sub { $redis->cmd('HEXISTS', $key, $idh) });
$redis->cmd('HSET', $key, $idh, '999999999999999');
sleep 4 * $SYNC;
($c) = flood($th, 0.3, 2, $g->port);
cmp_ok($c->{200} // 0, '<=', 10 + 10 * 2 * $SYNC + 1,
       'a total of 10^15 written in Redis: at most the bucket A had left until it reads it (' . counts($c) . ')');
($c) = flood($th, 0.3, 2, $g->port);
cmp_ok($c->{200} // 0, '<=', 10 * 0.3 + 2, 'then its bucket is full: only the rate (' . counts($c) . ')');
sleep 2.2;                            # two full buckets drain at 10/s
($c) = flood($th, 0.2, 2, $g->port);
cmp_ok($c->{200} // 0, '>=', 5, 'and a burst again once it drained: the lie costs a bucket, not the token (' . counts($c) . ')');
$redis->cmd('HSET', $key, $idh, 'lots', map { ($_ => -5) } grep { /^\Q$idh\E:/ } @{ $redis->cmd('HKEYS', $key) });
($c) = flood($th, 0.5, 2, $g->port);
cmp_ok($c->{200} // 0, '<=', 10 + 5 + 2, 'non-numbers in the counter: ignored, the local bucket decides (' . counts($c) . ')');
is(join(' ', sort grep { $_ != 200 && $_ != 429 } keys %$c), '', 'nothing but 200 and 429');

SaTest::expect_log(qr/Redis .*(timed out|did not answer|owes|unavailable|stall)/i, qr/sa: Redis/);
done_testing;
