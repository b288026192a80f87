# Quotas and usage (issue 25, items 3 and 5), through the batching sync
# (ngx_http_sa_sync.c): every worker sends its counts to Redis in one EVAL
# per sync interval, never a command on the request path.
#   - usage: <prefix>usage:<YYYYMMDD> counts (fields <id>:<verdict>), per
#     token and UTC day, the requests admitted and refused by reason,
#     exactly, with 2 workers; kept 90 days (TTL); random tokens leave
#     nothing.
#   - a quota of 25/day with 2 workers and 40 requests at once over 20
#     connections: exactly 25 200s and 15 429s, quota_exceeded, Retry-After
#     to the end of the UTC day; the total in Redis is the 25 admitted.
#   - across a restart of nginx the count continues from Redis.
#   - Redis frozen (SIGSTOP) while counts wait: requests are answered
#     (cached tokens), no worker blocks; once it runs again the counts
#     arrive, each once.
#   - quota_warning (80 %) and quota_exhausted entries in the events
#     stream, once per period each.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($tq, $idq) = $f->issue(qw(--scope a:b --quota 25/day));
my ($tu, $idu) = $f->issue(qw(--scope a:b --rate 1/h --burst 4));
my ($tm, $idm) = $f->issue(qw(--scope a:b --quota 6/month));

my $HTTP = <<'CONF';
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m stale=1h;
    sa_rate_limit zone=rl:1m sync=50ms;
    log_format sa '$arg_case $status $sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        root %%DIR%%/html;
        location /scoped/ { sa_auth api; sa_scope other:x; }
        location / { sa_auth api; sa_application api; }
    }
CONF
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => $HTTP);

sub day { strftime('%Y%m%d', gmtime) }

# n requests of one token at once: n/2 connections, 2 processes
sub burst {
    my ($tok, $n, $path) = @_;
    $path //= '/index.html';
    my %c;
    my @kids;
    for my $k (1 .. 2) {
        pipe(my $r, my $w) or die;
        my $pid = fork // die;
        if (!$pid) {
            close $r;
            my @s = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port) or die } 1 .. $n / 4;
            for my $s (@s) {
                print $s "GET $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n\r\n"
                    . "GET $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\nConnection: close\r\n\r\n";
            }
            for my $s (@s) {
                local $/;
                my $all = <$s> // '';
                print $w "$1\n" while $all =~ /^HTTP\/1\.1 (\d+)/mg;
            }
            exit 0;
        }
        close $w;
        push @kids, [$pid, $r];
    }
    for my $kid (@kids) {
        my $fh = $kid->[1];
        while (my $l = <$fh>) { chomp $l; $c{$l}++ }
        waitpid $kid->[0], 0;
    }
    return join ' ', map { "$_=$c{$_}" } sort keys %c;
}

sub usage {
    my ($id) = @_;
    my %h = @{ $redis->cmd('HGETALL', 'sa:usage:' . day()) // [] };
    return join ' ', map { /^\Q$id\E:(.*)/ ? "$1=$h{$_}" : () } sort keys %h;
}

sub quota_total {
    my ($id, $period) = @_;
    return $redis->cmd('HGET', "sa:ctr:q:$period", $id) // 0;
}

# usage: admitted and refused by reason, exactly
is(burst($tu, 12), '200=5 429=7', 'rate 1/h burst 4: 5 of 12 admitted');
is($nginx->get('/scoped/index.html', Authorization => "Bearer $tu")->{status}, 403, 'a scope refused');
is($nginx->get('/index.html', Authorization => 'Bearer ' . SaTest::forged_token())->{status}, 401, 'a forged token');
my $u = SaTest::wait_until(3, sub { my $x = usage($idu); $x eq 'admitted=5 insufficient_scope=1 rate_limited=7' ? $x : 0 }) || usage($idu);
is($u, 'admitted=5 insufficient_scope=1 rate_limited=7', 'usage: the day\'s counts by reason, exactly');
my $ttl = $redis->cmd('TTL', 'sa:usage:' . day());
ok($ttl > 89 * 86400 && $ttl <= 90 * 86400, "kept 90 days (TTL $ttl s)");
is(join(' ', sort grep { !/^\Q$idu\E:/ } @{ $redis->cmd('HKEYS', 'sa:usage:' . day()) }), '_',
   'a forged token leaves nothing in Redis (the day\'s hash holds the token\'s counts and its mark)');
my $cli = $f->as('token', 'usage', $idu, '--json')->{json};
is(join(' ', map { "$_=$cli->{total}{$_}" } qw(admitted refused rate_limited insufficient_scope)),
   'admitted=5 refused=8 rate_limited=7 insufficient_scope=1', 'sa-admin token usage: the requests made');

# a daily quota, exactly, with 2 workers
is(burst($tq, 40), '200=25 429=15', 'quota 25/day: 40 at once over 20 connections, 2 workers: exactly 25 admitted');
my $res = $nginx->get('/index.html?case=over', Authorization => "Bearer $tq");
is($res->{status}, 429, 'then 429');
my $left = 86400 - time % 86400;
my $ra = $res->{headers}{'retry-after'} // 0;
ok($ra >= $left - 5 && $ra <= $left + 1, "Retry-After: the end of the UTC day ($ra s, $left left)");
ok(!exists $res->{headers}{'www-authenticate'}, 'no challenge: the token is fine');
my $line = SaTest::wait_until(2, sub { SaTest::slurp($nginx->dir . '/sa.log') =~ /^over (\d+ \S+)$/m ? $1 : 0 });
is($line, '429 quota_exceeded', '$sa_status quota_exceeded');
is(SaTest::wait_until(3, sub { quota_total($idq, 'd' . day()) == 25 ? 25 : 0 }), 25, 'the total in Redis: the 25 admitted');
$u = SaTest::wait_until(5, sub { my $x = usage($idq); $x eq 'admitted=25 quota_exceeded=16' ? $x : 0 }) || usage($idq);
is($u, 'admitted=25 quota_exceeded=16', 'usage counts both');

# a monthly quota across a restart
my $month = strftime('%Y%m', gmtime);
is(burst($tm, 4), '200=4', 'quota 6/month: 4 admitted');
SaTest::wait_until(3, sub { quota_total($idm, "m$month") == 4 });
is(quota_total($idm, "m$month"), 4, 'in Redis: 4');
$nginx->stop;
$nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => $HTTP);
is($nginx->get('/index.html', Authorization => "Bearer $tm")->{status}, 200, 'after a restart: the 5th');
SaTest::wait_until(3, sub { quota_total($idm, "m$month") == 5 });
is(burst($tm, 8), '200=1 429=7', 'the count continued from Redis: only the 6th of 8 more');
is(SaTest::wait_until(3, sub { quota_total($idm, "m$month") == 6 ? 6 : 0 }), 6, 'in Redis: 6');

# after the restart an exhausted quota's first request, counted before the
# total is read, is the bound; the read goes at once, not a sync later
is($nginx->get('/index.html', Authorization => "Bearer $tq")->{status}, 200,
   'after a restart: the first request of an exhausted quota passes (the stated bound)');
select(undef, undef, undef, 0.01);
is($nginx->get('/index.html', Authorization => "Bearer $tq")->{status}, 429,
   '10 ms later, well within sync=50ms, the total is read: 429');

# notifications in the events stream, once each
my @ev = map { { @{ $_->[1] } } } @{ $redis->cmd('XRANGE', 'sa:events', '-', '+') // [] };
my @warn = grep { $_->{type} eq 'token.quota_warning' } @ev;
my @done = grep { $_->{type} eq 'token.quota_exhausted' } @ev;
is(scalar(grep { $_->{token} eq $idq } @warn), 1, 'one token.quota_warning for the daily quota');
is(scalar(grep { $_->{token} eq $idq } @done), 1, 'one token.quota_exhausted');
is(scalar(grep { $_->{token} eq $idm } @warn), 1, 'and one of each for the monthly one');
my ($w) = grep { $_->{token} eq $idq } @warn;
is(join(' ', map { "$_=" . ($w->{$_} // '') } qw(app quota period)), 'app=api quota=25 period=d' . day(), 'the warning names the app, quota and period');
ok($w->{used} >= 20 && $w->{used} <= 25, "at 80 % or more: the batch that crossed it ($w->{used})");

# Redis frozen while counts wait: answered from the cache, counted later
is($nginx->get('/index.html', Authorization => "Bearer $tu")->{status}, 200, 'another token, cached after the restart');
SaTest::wait_until(3, sub { usage($idm) eq 'admitted=6 quota_exceeded=7' });
is(usage($idm), 'admitted=6 quota_exceeded=7', 'usage across the restart: 6 admitted, 7 refused');
$redis->pause;
my $t0 = time;
my @st = map { $nginx->get('/index.html', Authorization => "Bearer $tm")->{status} } 1 .. 6;
my $took = time - $t0;
is("@st", '429 429 429 429 429 429', 'Redis frozen: the cached token over its quota is still 429');
ok($took < 3, sprintf('no worker blocked (6 requests in %.2f s)', $took));
sleep 1.5;            # the sync's reply deadline passes: the batch is kept
is($nginx->get('/index.html', Authorization => "Bearer $tu")->{status}, 200, 'another token answered meanwhile');
$redis->resume;
my $u2 = SaTest::wait_until(5, sub { my $x = usage($idm); $x =~ /quota_exceeded=13\b/ ? $x : 0 });
is($u2, 'admitted=6 quota_exceeded=13', 'Redis back: the counts arrived');
sleep 0.5;
is(usage($idm), 'admitted=6 quota_exceeded=13', 'each once');
is(usage($idu), 'admitted=7 insufficient_scope=1 rate_limited=7', 'and the other token\'s');
$cli = $f->as('account', 'usage', 'platform/ci', '--json')->{json};
is("$cli->{total}{admitted} $cli->{total}{refused}", '39 38', 'sa-admin account usage: all its tokens\' requests');

# two gateways share a quota through Redis.  A gateway hears the others'
# count in the reply to its own batches, and reads it again at once when
# what it heard is older than 2 intervals: one that was idle while the
# other used the quota up lets through at most the request that asked.
my ($ts, $ids) = $f->issue(qw(--scope a:b --quota 20/day));
my $other = SaTest::Nginx->start(redis => $redis, workers => 2, http => $HTTP =~ s/zone=rl:1m/zone=rl2:1m/r);
sub seq {
    my ($gw, $n) = @_;
    my %c;
    for (1 .. $n) {
        $c{ $gw->get('/index.html', Authorization => "Bearer $ts")->{status} }++;
        select(undef, undef, undef, 0.02);
    }
    return join ' ', map { "$_=$c{$_}" } sort keys %c;
}
is(seq($nginx, 5), '200=5', 'gateway A: 5 of the 20');
# A's count in Redis (each of its workers sends its own batch)
SaTest::wait_until(3, sub { quota_total($ids, 'd' . day()) == 5 });
is(seq($other, 20), '200=15 429=5', 'gateway B: the 15 left, having read A\'s 5');
# B's count in Redis, and nothing left to be read: A is the one behind
SaTest::wait_until(3, sub { quota_total($ids, 'd' . day()) == 20 });
$redis->barrier;
SaTest::wait_until(3, sub { SaTest::replies_read($redis->port) });
sleep 0.1;    # time passing: what A heard is now older than 2 intervals
my $late = seq($nginx, 10);
like($late, qr/^(200=1 )?429=(9|10)$/, "gateway A, idle meanwhile: at most the first of 10 ($late)");
my ($extra) = $late =~ /^200=(\d+)/;
my $want = 20 + ($extra // 0);
is(SaTest::wait_until(3, sub { quota_total($ids, 'd' . day()) == $want ? $want : 0 }), $want, "the shared total: $want");
is(scalar(grep { /^\Q$ids\E:[0-9a-f]{16}$/ } @{ $redis->cmd('HKEYS', 'sa:ctr:q:d' . day()) }), 2,
   'one part per gateway');

SaTest::expect_log(qr/Redis .*(timed out|did not answer|owes|unavailable|stall)/i, qr/sa: Redis/);
done_testing;
