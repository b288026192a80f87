# The sync's EVAL answered with what no real Redis running its script sends
# (t/lib/hostile-redis, mode raw: GET answers the token's genuine record,
# EVAL the bytes of the case): a status, an integer, nil, an array, a bulk
# that is not "BAD (TOTAL MINE)*", numbers too long or negative, more or
# fewer numbers than counters, a reply announced as 100 MB.  Each time the
# worker lives (same pid), keeps answering, logs it at error level, and
# counts on; a total that is not a number changes nothing; an error reply
# keeps the batch, which is sent again later (less and less often: a few
# error lines, not one a tick), and once a real Redis answers, the kept
# counts arrive, once.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use POSIX qw(strftime);
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $KEY = SaTest::keys_dir() . '/verify.key';
my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($tok, $id) = $f->issue(qw(--scope a:b --quota 1000/day));

my $hdir = SaTest::new_dir('hostile');
my $hport = SaTest::free_port();
my $hostile = SaTest::Process->start(
    cmd => [$^X, SaTest::root() . '/t/lib/hostile-redis', $hport, $hdir, $redis->port]);
SaTest::wait_for('hostile-redis', sub { SaTest::port_open($hport) }, 5);
sub mode { SaTest::write_file("$hdir/mode.tmp", $_[0]); rename "$hdir/mode.tmp", "$hdir/mode" }
sub eval_reply { SaTest::write_file("$hdir/raw-eval.tmp", $_[0]); rename "$hdir/raw-eval.tmp", "$hdir/raw-eval" }

my $rec = $redis->cmd('GET', "sa:tok:$id");
SaTest::write_file("$hdir/raw-get", '$' . length($rec) . "\r\n$rec\r\n");
eval_reply("+OK\r\n");
mode('raw');

my $nginx = SaTest::Nginx->start(http => "    sa_redis 127.0.0.1:$hport;\n    sa_verify_key $KEY;\n"
    . "    sa_redis_timeout 300ms;\n" . <<'CONF');
    sa_rate_limit zone=rl:1m sync=20ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
my ($pid) = $nginx->worker_pids;
sub get { $nginx->get('/index.html', Authorization => "Bearer $tok")->{status} }
sub errors { my @l = grep { /sync/ && /\[error\]/ } split /\n/, $nginx->error_log; scalar @l }

my $day = 'd' . strftime('%Y%m%d', gmtime);
my @cases = (
    ["+OK\r\n", 'a status'],
    [":5\r\n", 'an integer'],
    ["\$-1\r\n", 'nil'],
    ["*2\r\n:0\r\n:1\r\n", 'an array'],
    ["\$5\r\nhello\r\n", 'a word'],
    ["\$1\r\n0\r\n", 'no numbers for the counter'],
    ["\$7\r\n0 1 1 1\r\n", 'one pair too many'],
    ["\$6\r\n0 -5 0\r\n", 'a negative total'],
    ["\$24\r\n0 99999999999999999999 0\r\n", 'a number of 20 digits'],
    ["\$7\r\n0 1\t1 x\r\n", 'control bytes'],
);
my $n = 0;
for my $c (@cases) {
    my ($bytes, $what) = @$c;
    eval_reply($bytes);
    my $before = errors();
    my $st = get();
    $n++;
    ok($st == 200 || $st == 429, "$what: answered ($st)");
    ok(SaTest::wait_until(2, sub { errors() > $before }), "$what: said at error level");
    is(($nginx->worker_pids)[0], $pid, "$what: the worker lives");
}
like($nginx->error_log, qr/sync: Redis answered batch \d+ with something the script does not return/,
     'the line says what happened');

# a total too large to be true is the Redis' word: over quota, nothing worse
eval_reply("\$22\r\n0 999999999999999999 0\r\n");
get();
SaTest::wait_until(2, sub { get() == 429 });
is(get(), 429, 'a hostile total of 10^18 refuses the quota (a writer can; never a crash)');
is(($nginx->worker_pids)[0], $pid, 'the worker lives');

# a 100 MB announcement: the connection ends (resp guard), counts kept
eval_reply("\$100000000\r\n");
my $st = get();
ok($st == 200 || $st == 429 || $st == 503, "a 100 MB reply announced: answered ($st)");
ok(SaTest::wait_until(3, sub { $nginx->error_log =~ /protocol|too large|oversized|refus/i }), 'refused as announced');
is(($nginx->worker_pids)[0], $pid, 'the worker lives');

# error replies: the batch is kept and sent again, ever less often
eval_reply("-ERR hostile\r\n");
SaTest::wait_until(3, sub { $nginx->error_log =~ /Redis error: ERR hostile/ });
my $m0 = () = $nginx->error_log =~ /Redis error: ERR hostile/g;
sleep 2;
my $m1 = () = $nginx->error_log =~ /Redis error: ERR hostile/g;
ok($m1 - $m0 < 12, 'an error reply is tried again less and less often (' . ($m1 - $m0) . ' in 2 s at sync=20ms)');

# a real Redis: the kept counts arrive (the requests made while it erred)
$redis->cmd('DEL', 'sa:usage:' . substr($day, 1), "sa:ctr:q:$day");
my $u0 = 0;
mode('pass');
SaTest::wait_until(8, sub { ($redis->cmd('HGET', 'sa:usage:' . substr($day, 1), "$id:quota_exceeded") // 0) > 0 });
ok(($redis->cmd('HGET', 'sa:usage:' . substr($day, 1), "$id:quota_exceeded") // 0) >= 1,
   'a real Redis again: the counts kept through the errors arrive');
is(get(), 429, 'and the gateway still answers');

# on_unavailable=deny: a token whose total was never read while the sync
# fails is 503; allow (above) counted it from 0
my ($tok2, $id2) = $f->issue(qw(--scope a:b --quota 1000/day));
$rec = $redis->cmd('GET', "sa:tok:$id2");
SaTest::write_file("$hdir/raw-get", '$' . length($rec) . "\r\n$rec\r\n");
eval_reply("-ERR hostile\r\n");
mode('raw');
my $deny = SaTest::Nginx->start(http => "    sa_redis 127.0.0.1:$hport;\n    sa_verify_key $KEY;\n"
    . "    sa_redis_timeout 300ms;\n" . <<'CONF');
    sa_rate_limit zone=rl:1m sync=20ms on_unavailable=deny;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
sub get2 { $deny->get('/index.html', Authorization => "Bearer $tok2")->{status} }
is(get2(), 200, 'deny: the first request, the sync not yet failed, is admitted');
ok(SaTest::wait_until(3, sub { get2() == 503 }), 'deny: once the sync fails, a total never read is 503');
like($deny->error_log, qr/quota(?:'s total)? is unknown and Redis unavailable \(on_unavailable=deny\)/, 'and says why');
mode('pass');
ok(SaTest::wait_until(8, sub { get2() == 200 }), 'deny: with a Redis that answers, 200 again');

SaTest::expect_log(qr/is unknown and Redis unavailable/, qr/sa: sync: /, qr/sa: Redis error: ERR hostile/, qr/Redis .*(protocol|lost|unavailable|no reply|closed)/i,
                   qr/sa: no reply from Redis/);
done_testing;
