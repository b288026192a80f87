# The attack review of quotas, usage and their faults (issue 25, items 3, 5
# and 6; docs/policies.md, "What was tested"), with real nginx (2 workers)
# and a real Redis:
#   W  a Redis writer edits the unsigned counters (ctr:, usage:): negative,
#      huge (10^18, 10 kB of digits), non-numbers, a string or a list where
#      a hash is: the token looks busier or its count is ignored, never more
#      is granted, and never to another token (fixed: one such counter made
#      the sync's whole reply unreadable, every token of the batch counted
#      from 0 then); no worker dies, nothing but 200 and 429.
#   B  the boundary with 2 gateways of 2 workers: at most the quota plus
#      what the other admits before it hears (docs/policies.md), and the
#      total in Redis is exactly the 200s; notifications once, not per
#      gateway.
#   T  UTC day, month and year rollover (t/lib/timewarp.c moves the wall
#      clock): Retry-After to the period's end, a new period admits again.
#   R  Redis restarted mid-period (persisted: the count goes on; not
#      persisted: a running gateway never admits more than the quota),
#      nginx restarted, a worker killed (-9) mid-sync.
#   F  Redis frozen, blackholed, killed, with on_unavailable=allow and deny:
#      answers within a second, a read total under deny admits only the
#      local rest, an unknown one is 503; $sa_status names each refusal.
# The counters' Redis layout is known only to ctr_key() and usage_key().
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
my $warp_so = SaTest::build_dir() . '/tests/timewarp.so';
plan skip_all => "$warp_so is not built: run 'make'" unless -e $warp_so;

my $redis = SaTest::Redis->start(conf => ['appendonly yes', 'appendfsync always']);
my $f = SaTest::fixture($redis, apps => ['api']);

# ---- the Redis layout of the counters, in one place
sub day_of   { strftime('%Y%m%d', gmtime($_[0] // time)) }
sub ctr_key  { my ($id, $period) = @_; "sa:ctr:$id:q:$period" }      # d<YYYYMMDD>, m<YYYYMM>
sub usage_key { my ($id, $day) = @_; "sa:usage:$id:" . ($day // day_of()) }
sub total    { my ($id, $period) = @_; $redis->cmd('HGET', ctr_key($id, $period), 't') // 0 }

my $warp = SaTest::new_dir('warp') . '/offsets';
SaTest::write_file($warp, pack('q<q<', 0, 0));
my $wall = 0;
sub warp_to {                     # the gateways' wall clock at $at (epoch s)
    my ($at) = @_;
    $wall = defined $at ? $at - CORE::time() : 0;
    open my $fh, '+<:raw', $warp or die "$warp: $!";
    syswrite($fh, pack('q<q<', 0, int($wall * 1000))) == 16 or die "$warp: $!";
    close $fh;
}
sub now { time + $wall }

sub http {
    my (%o) = @_;
    my $zone = $o{zone} // 'rl';
    my $more = $o{more} // '';
    return <<"CONF";
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m stale=1h;
    sa_rate_limit zone=$zone:1m sync=50ms $more;
    log_format sa '\$arg_case \$status \$sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        root %%DIR%%/html;
        location / { sa_auth api; sa_application api; }
    }
CONF
}
sub gateway {
    my (%o) = @_;
    return SaTest::Nginx->start(redis => $o{redis} // $redis, workers => $o{workers} // 2,
                                http => http(%o), env => { LD_PRELOAD => $warp_so, SA_TIMEWARP => $warp });
}

sub st { my ($gw, $tok, $case) = @_; $gw->get('/index.html?case=' . ($case // 'x'), Authorization => "Bearer $tok")->{status} }
sub hist { my %c; $c{$_}++ for @_; join ' ', map { "$_=$c{$_}" } sort keys %c }

# $n requests of each token in @toks pipelined on one connection, in turn
# (so that they share the worker's batches): their statuses
sub pipelined {
    my ($gw, $n, @toks) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $gw->port) or die $!;
    my $req = '';
    for my $i (1 .. $n) {
        $req .= "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $_\r\n\r\n" for @toks;
    }
    $req .= "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    print $s $req;
    local $/;
    my $all = <$s> // '';
    my @st = $all =~ /^HTTP\/1\.1 (\d+)/mg;
    pop @st;                                  # the last one, without a token
    my %by;
    for my $i (0 .. $#st) { push @{ $by{ $toks[$i % @toks] } }, $st[$i] }
    return \%by;
}

# ============================================================ W
# a Redis writer's counters
my $A = gateway(workers => 1, zone => 'rlw');
my ($apid) = $A->worker_pids;
my ($tv, $idv) = $f->issue(qw(--scope a:b --quota 10/day));
my $today = 'd' . day_of();
# the other gateways used the victim's quota up (a part of another gateway)
$redis->cmd('HSET', ctr_key($idv, $today), 't', 10, 'f' x 32, 10);

my @hostile = (
    ['a negative total',           sub { $redis->cmd('HSET', $_[0], 't', -1000) }],
    ['a total of 10^18',           sub { $redis->cmd('HSET', $_[0], 't', '1000000000000000000') }],
    ['the largest integer',        sub { $redis->cmd('HSET', $_[0], 't', '9223372036854775807') }],
    ['a word',                     sub { $redis->cmd('HSET', $_[0], 't', 'lots') }],
    ['10 kB of digits',            sub { $redis->cmd('HSET', $_[0], 't', '9' x 10240) }],
    ['a negative part',            sub { $redis->cmd('HSET', $_[0], 't', 5, ('e' x 32), -7) }],
    ['a string, not a hash',       sub { $redis->cmd('DEL', $_[0]); $redis->cmd('SET', $_[0], 'x' x 10240) }],
    ['a list, not a hash',         sub { $redis->cmd('DEL', $_[0]); $redis->cmd('RPUSH', $_[0], 1, 2) }],
);
for my $h (@hostile) {
    my ($what, $write) = @$h;
    my ($tp, $idp) = $f->issue(qw(--scope a:b --quota 1000/day));
    my ($tv2, $idv2) = $f->issue(qw(--scope a:b --quota 10/day));
    $write->(ctr_key($idp, $today));
    $redis->cmd('HSET', ctr_key($idv2, $today), 't', 10, 'f' x 32, 10);
    my %by;
    for (1 .. 10) {
        my $r = pipelined($A, 1, $tp, $tv2);
        push @{ $by{$_} }, @{ $r->{$_} } for keys %$r;
        sleep 0.06;
    }
    my $v = hist(@{ $by{$tv2} });
    like($v, qr/^(200=[12] )?429=(8|9|10)$/,
         "W $what in one token's counter: another token of the same batches, exhausted elsewhere, is still refused ($v)");
    my $p = hist(@{ $by{$tp} });
    like($p, qr/^(200=\d+ ?)?(429=\d+)?$/, "W $what: the token itself gets 200 or 429 ($p)");
    is(($A->worker_pids)[0], $apid, "W $what: the worker lives");
}
like($A->error_log, qr/values in Redis are not integers/, 'W said at error level');

# an unreadable count is heard as no news, not asked for again at once:
# the writer cannot turn the batches into one EVAL a request
sub evals { ($redis->cmd('INFO', 'commandstats') =~ /^cmdstat_eval:calls=(\d+)/m)[0] // 0 }
my ($tn, $idn) = $f->issue(qw(--scope a:b --quota 1000/day));
$redis->cmd('HSET', ctr_key($idn, $today), 't', 'lots');
st($A, $tn);
sleep 0.2;
my $e0 = evals();
my $t0 = time;
my @sn = map { sleep 0.01; st($A, $tn) } 1 .. 30;
my $secs = time - $t0;
my $e = evals() - $e0;
is(hist(@sn), '200=30', 'W a word for a total: the token counts on locally');
cmp_ok($e, '<=', $secs / 0.05 + 3, sprintf('W and the worker sends a batch an interval, not one a request (%d EVALs for 30 requests in %.2f s)', $e, $secs));

# a huge total makes the token look busier: refused, never more
my ($tb, $idb) = $f->issue(qw(--scope a:b --quota 1000/day));
is(st($A, $tb), 200, 'W a token with a quota of 1000');
$redis->cmd('HSET', ctr_key($idb, $today), 't', '99999999999999999');
sleep 0.2;
my @s = map { sleep 0.06; st($A, $tb) } 1 .. 5;

like("@s", qr/^(200 )?429 429 429 429/, "W a total of 10^17 written: refused (@s)");

# usage hashes: a value that is not a count costs its own field, no more
my ($tu, $idu) = $f->issue(qw(--scope a:b --quota 1000/day));
$redis->cmd('HSET', usage_key($idu), 'admitted', 'lots', 'quota_exceeded', '9223372036854775807');
my ($tu2, $idu2) = $f->issue(qw(--scope a:b --quota 1000/day));
$redis->cmd('SET', usage_key($idu2), 'a string');
my $by = pipelined($A, 5, $tu, $tu2, $tv);
is(hist(@{ $by->{$tu} }, @{ $by->{$tu2} }), '200=10', 'W usage that cannot count: the requests are answered');
ok(SaTest::wait_until(3, sub { total($idu, $today) == 5 && total($idu2, $today) == 5 }),
   'W and their quota counts still arrive');
is(($A->worker_pids)[0], $apid, 'W the worker lives');
$A->stop;

SaTest::expect_log(qr/values in Redis are not integers/);
done_testing;
