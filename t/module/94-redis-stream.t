# The attack review of the gateway's own Redis reply reader (issue 21,
# items 5-7), as an attacker who is Redis, a sentinel or the network path:
#
#   A. Replies split at every byte (t/lib/hostile-redis trickles a real
#      Redis one byte a segment): set-up, records, the subscription, an
#      invalidation: all read right, no protocol error.
#   B. A reply that arrives after its request timed out is matched to its
#      own command, never to the next one: the next token is 200 (a reply
#      matched one command late would be the other token's record, 401);
#      a reply later than the connection's deadline ends the connection,
#      and nothing late is read on the next one.
#   C. GET answered with bytes no real Redis sends, at the bounds: bulk
#      strings of 64 KiB - 1, 64 KiB (401: not a record; the connection
#      stays) and 64 KiB + 1 (503, protocol error); arrays of 64 and 65
#      elements, replies of 256 and 257 items; nesting 3 and 4 deep; a reply of 68 KiB and one byte
#      more; an error line of 1024 and 1025 bytes; another token's genuine
#      record (401, the record's own token 200); malformed lengths.  A
#      reply of a type GET never gets is 503 (garbage from Redis), not 401.
#      What Redis says reaches the error log escaped: no control byte.
#   D. Pub/sub pushes of the wrong shape after the SUBSCRIBE confirmations
#      (1, 2, 4 elements, pmessage, integer, nil or array fields, a status
#      kind, a kind with a NUL, unsubscribe, an error): protocol error; and
#      messages of 64 KiB - 1, 64 KiB, 64 KiB of <id>:<version> items,
#      64 KiB + 1 and 1 MiB (read: a message is no record) and 1 MiB + 1
#      (protocol error, as soon as its length is announced).
#   E. Invalidation messages published on a real Redis by a client allowed
#      to PUBLISH: empty, spaces, a 10 kB id, <id>: with no, negative,
#      non-numeric, overflowing or 10 kB versions, 15-byte, UTF-8 and
#      control-byte ids, a newline, 64 KiB of x: the token stays 200 (no
#      version raised), the worker lives.  <id>:2^64-1 is taken as a
#      version: that token is refused (what SECURITY.md says PUBLISH can do).
#   F. A sentinel naming odd addresses: ports 0, 65536, -1, "abc", huge,
#      empty; host names (1 kB), a NUL, control bytes, an IPv6 zone:
#      refused, logged escaped and cut short, the gateway keeps its master;
#      an IPv6 address is followed ([::1]:port), and back.
#      2,000 subscribe confirmations, malformed +switch-master messages or
#      refused addresses on the subscription: a line or none, not 2,000.
#   G. nginx reload (HUP), quit, and kill -9 of a worker while a reply is
#      half-read (trickled) and while a command waits for the set-up (PING
#      answered 1.5 s late): the request in flight is answered 200 (killed:
#      its connection closed), the old worker exits, the next serves 200.
#   I. sa-admin account delete of an account of 4,001 tokens: one message
#      of about 80 kB, read (it was refused as longer than a record, the
#      subscription dropped on every gateway and the versions unlearned).
#   H. A Redis that answers just often enough to keep its deadline (a byte
#      every 100 ms) and a flood of random tokens: at 4096 replies owed no
#      more commands are sent (503 at once, logged once a second), the
#      worker's memory stops growing; a sane server again: served.
# Each: the worker lives (same pid, no "exited on signal"), and the log
# check at the end.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use SaTest;

# about 45 s: make test-slow (SA_TEST_SLOW=1), which .ci/run runs
plan skip_all => 'a slow suite: make test-slow' unless $ENV{SA_TEST_SLOW} || $ENV{ONLY};

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $KEY = SaTest::keys_dir() . '/verify.key';
my $redis = SaTest::Redis->start;
SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(team create platform --owner alice));
SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(account create platform ci));
my @tokens = map { SaTest::issue_token($redis, 'platform/ci', 'a:b') } 1 .. 4;
my ($token, $other) = @tokens;
sub tid { substr($_[0], 4, 16) }

my $hdir = SaTest::new_dir('hostile');
my $hport = SaTest::free_port();
my $hostile = SaTest::Process->start(
    cmd => [$^X, SaTest::root() . '/t/lib/hostile-redis', $hport, $hdir, $redis->port]);
SaTest::wait_for('hostile-redis', sub { SaTest::port_open($hport) }, 5);

# hostile-redis options, read as each connection is accepted
sub opt {
    my ($name, $value) = @_;
    if (defined $value) { SaTest::write_file("$hdir/$name.tmp", $value); rename "$hdir/$name.tmp", "$hdir/$name" }
    else { unlink "$hdir/$name" }
}
sub mode { opt('mode', $_[0]) }
sub clear_opts { opt($_) for qw(trickle delay hold-on raw-get raw-push raw-ping) }

sub gateway {
    my (%o) = @_;
    my $redis_line = $o{redis} // "sa_redis 127.0.0.1:$hport;";
    my $nginx = SaTest::Nginx->start(workers => $o{workers} // 1,
        http => "    $redis_line\n    sa_verify_key $KEY;\n"
        . ($o{cached} ? "    sa_cache zone=sa:1m ttl=1m;\n" : '')
        . '    sa_redis_timeout ' . ($o{timeout} // '300ms') . ";\n" . <<'CONF');
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

sub status { $_[0]->get($_[1] // '/index.html', $_[2] ? (Authorization => "Bearer $_[2]") : ())->{status} }
sub crashes { my @n = $_[0]->error_log =~ /exited on signal/g; scalar @n }
sub protocol_errors { my @n = $_[0]->error_log =~ /protocol error/g; scalar @n }

# a request sent now, its answer read later
sub send_request {
    my ($nginx, $tok) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port, Proto => 'tcp')
        or die "connect: $!";
    print {$s} "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             . "Authorization: Bearer $tok\r\n\r\n";
    return $s;
}
sub read_status {
    my ($s, $secs) = @_;
    my ($got, $until) = ('', time + ($secs // 10));
    while ((my $left = $until - time) > 0) {
        last unless IO::Select->new($s)->can_read($left);
        last unless sysread($s, $got, 65536, length $got);
    }
    return $got =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'closed';
}

my $ONLY = $ENV{ONLY} // '';
sub section { !$ONLY || $ONLY =~ /\Q$_[0]\E/ }

# ---------------------------------------------- A. one byte a segment
if (section('A')) {
    clear_opts();
    mode('pass');
    opt('trickle', 1);
    my $nginx = gateway(cached => 1, timeout => '10s');
    my ($pid) = $nginx->worker_pids;
    ok(SaTest::wait_until(20, sub { $nginx->error_log =~ /subscribed to/ }),
       'A: set up and subscribed, one byte a segment');
    is(status($nginx, '/index.html', $token), 200, 'A: a record read one byte a segment: 200');
    is(status($nginx, '/index.html', SaTest::forged_token()), 401, 'A: an unknown token: 401');
    is(status($nginx, '/index.html', $tokens[2]), 200, 'A: another record: 200');
    SaTest::admin($redis, { SA_ACTOR => 'alice' }, 'token', 'revoke', tid($tokens[2]));
    ok(SaTest::wait_until(15, sub { status($nginx, '/index.html', $tokens[2]) == 401 }),
       'A: revoked: the invalidation read one byte a segment, 401');
    is(protocol_errors($nginx), 0, 'A: no protocol error');
    is(($nginx->worker_pids)[0], $pid, 'A: the same worker');
    $nginx->quit;
    clear_opts();
}

# ---------------------------------------------- B. replies that come late
if (section('B')) {
    clear_opts();
    mode('pass');
    # everything Redis sends after the GET of $token is held 1 s
    opt('delay', 1000);
    opt('hold-on', 'sa:tok:' . tid($token));
    my $nginx = gateway(timeout => '800ms');
    my ($pid) = $nginx->worker_pids;
    is(status($nginx, '/index.html', $other), 200, 'B: a token before: 200');
    my $t0 = time;
    is(status($nginx, '/index.html', $token), 503, 'B: its reply held past sa_redis_timeout: 503');
    my $s = send_request($nginx, $other);
    is(read_status($s), 200, 'B: the next token, whose GET was sent before the late reply came: 200, its own record');
    cmp_ok(time - $t0, '>=', 0.9, 'B: (it was answered after the late reply)');
    is(status($nginx, '/index.html', $tokens[3]), 200, 'B: and the one after: 200');
    unlike($nginx->error_log, qr/connection to \S+ lost/, 'B: the connection stayed up');
    is(protocol_errors($nginx), 0, 'B: no protocol error');
    $nginx->quit;

    # later than the connection's deadline (4 x timeout, at least 1 s)
    opt('delay', 1500);
    $nginx = gateway(timeout => '250ms');
    ($pid) = $nginx->worker_pids;
    is(status($nginx, '/index.html', $token), 503, 'B: a reply held past the deadline: 503');
    ok(SaTest::wait_until(5, sub { $nginx->error_log =~ /command connection to \S+ lost: no reply for 1000 ms/ }),
       'B: the connection ended at its deadline');
    ok(SaTest::wait_until(5, sub { status($nginx, '/index.html', $other) == 200 }),
       'B: the next token on the next connection: 200');
    is(status($nginx, '/index.html', $tokens[3]), 200, 'B: and the one after: 200');
    is(protocol_errors($nginx), 0, 'B: nothing late was read');
    is(($nginx->worker_pids)[0], $pid, 'B: the same worker');
    $nginx->quit;
    clear_opts();
}

# ------------------------------------------- C. GET answered with garbage
if (section('C')) {
    clear_opts();
    mode('raw');
    my $K = 65536;
    my $bulk = sub { '$' . length($_[0]) . "\r\n$_[0]\r\n" };
    # [[63 x :1] x 3, [$last x :1]]: 252 + $last + 4 items below the top
    my $items = sub { "*4\r\n" . ("*63\r\n" . ":1\r\n" x 63) x 3 . "*$_[0]\r\n" . ":1\r\n" x $_[0] };
    my $nest = sub { my ($d) = @_; ('*1' . "\r\n") x $d . ":1\r\n" };
    # [64 KiB bulk, bulk]: $total bytes on the wire
    my $sized = sub {
        my ($total) = @_;
        my $head = "*2\r\n" . $bulk->('x' x $K);
        my $n = $total - length($head) - 7 - 2;     # "$NNNN\r\n" ... "\r\n"
        my $r = $head . $bulk->('y' x $n);
        die "sized: " . length($r) unless length($r) == $total;
        return $r;
    };
    my $record = $redis->cmd('GET', 'sa:tok:' . tid($other));
    my @cases = (
        # name, reply, status, protocol error (regex) or undef
        ['bulk of 64 KiB - 1',  $bulk->('x' x ($K - 1)), 401],
        ['bulk of 64 KiB',      $bulk->('x' x $K), 401],
        ['empty bulk',          "\$0\r\n\r\n", 401],
        ["another token's record", $bulk->($record), 401],
        ['bulk of 64 KiB + 1',  '$' . ($K + 1) . "\r\n" . 'x' x ($K + 1) . "\r\n", 503, qr/bulk string longer than a record/],
        ['array of 64',         "*64\r\n" . ":1\r\n" x 64, 503, undef, qr/answered GET for token "\w+" with .*, not a string/],
        ['array of 65',         "*65\r\n" . ":1\r\n" x 65, 503, qr/array of too many elements/],
        ['256 items',           $items->(63), 503, undef, qr/answered GET for token "\w+" with .*, not a string/],
        ['257 items',           $items->(64), 503, qr/too many elements in one reply/],
        ['nested 3 deep',       $nest->(3), 503, undef, qr/answered GET for token "\w+" with .*, not a string/],
        ['nested 4 deep',       $nest->(4), 503, qr/arrays nested too deep/],
        ['nil array (nil, as hiredis reads it)', "*-1\r\n", 401],
        ['a reply of 68 KiB',   $sized->($K + 4096), 503, undef, qr/answered GET for token "\w+" with .*, not a string/],
        ['a reply of 68 KiB + 1', $sized->($K + 4097), 503, qr/reply longer than a record/],
        ['an integer',          ":42\r\n", 503, undef, qr/answered GET for token "\w+" with .*, not a string/],
        ['a status',            "+OK\r\n", 503, undef, qr/answered GET for token "\w+" with .*, not a string/],
        ['an error of 1024',    '-' . 'E' x 1024 . "\r\n", 503, undef, qr/Redis error: E{253}\.\.\./],
        ['an error of 1025',    '-' . 'E' x 1025 . "\r\n", 503, qr/line too long/],
        ['control bytes',       "-ERR \e]0;owned\a \e[31mred\0nul\x7f\xff\r\n", 503, undef,
         qr/Redis error: ERR \\x1b\]0;owned\\x07 \\x1b\[31mred\\x00nul\\x7f\\xff$/m],
        ['bulk length -2',      "\$-2\r\n", 503, qr/bulk string longer than a record|malformed number/],
        ['bulk length 01',      "\$01\r\nx\r\n", 503, qr/malformed number/],
        ['bulk length " 5"',    "\$ 5\r\nxxxxx\r\n", 503, qr/malformed number/],
        ['bulk without CRLF',   "\$1\r\nxy\r\n", 503, qr/bulk string not ended by CRLF/],
        ['unknown type',        "%1\r\n", 503, qr/unknown reply type/],
        ['CR without LF',       "+OK\rX\n", 503, qr/CR without LF/],
    );
    for my $c (grep { !$ENV{CASE} || $_->[0] =~ /$ENV{CASE}/ } @cases) {
        my ($name, $reply, $want, $why, $logged) = @$c;
        opt('raw-get', $reply);
        my $nginx = gateway();
        my ($pid) = $nginx->worker_pids;
        is(status($nginx, '/index.html', $token), $want, "C $name: $want");
        if ($why) {
            ok(SaTest::wait_until(3, sub { $nginx->error_log =~ /\[error\].*command connection to \S+ lost: protocol error: $why/ }),
               "C $name: protocol error: $why");
        } else {
            is(protocol_errors($nginx), 0, "C $name: no protocol error: the connection stays");
            is(status($nginx, '/index.html', $token), $want, "C $name: and again on it");
        }
        like($nginx->error_log, $logged, "C $name: logged") if $logged;
        if ($name eq "another token's record") {
            is(status($nginx, '/index.html', $other), 200, "C $name: that record's own token: 200");
        }
        is(status($nginx, '/open/index.html'), 200, "C $name: a location without sa_auth: 200");
        my $log = $nginx->error_log;
        $log =~ s/\n//g;
        unlike($log, qr/[\x00-\x1f\x7f]/, "C $name: no control byte in the error log");
        is(crashes($nginx), 0, "C $name: no worker exited on a signal");
        is(($nginx->worker_pids)[0], $pid, "C $name: the same worker");
        $nginx->quit;
    }
    clear_opts();
}

# ------------------------------- D. pub/sub pushes of the wrong shape
if (section('D')) {
    clear_opts();
    mode('raw');
    my $K = 65536;
    my $bulk = sub { '$' . length($_[0]) . "\r\n$_[0]\r\n" };
    my $msg = sub { "*3\r\n" . join '', map { $bulk->($_) } 'message', 'sa:invalidate', $_[0] };
    my $ids = join ' ', map { sprintf('%016d:%d', $_, $_) } 1 .. 3800;   # 64 KiB of items
    my @cases = (
        # name, push, protocol error (regex) or undef
        ['a message of 64 KiB - 1', $msg->('x' x ($K - 1))],
        ['a message of 64 KiB',     $msg->('x' x $K)],
        ['64 KiB of <id>:<version>', $msg->(substr($ids, 0, $K))],
        ['a message of 64 KiB + 1', $msg->('x' x ($K + 1))],
        ['a message of 1 MiB',      $msg->('x' x (16 * $K))],
        ['a message of 1 MiB + 1',  $msg->('x' x (16 * $K + 1)), qr/bulk string longer than a message/],
        ['a bulk of 1 MiB + 1 announced', "*3\r\n" . $bulk->('message') . $bulk->('sa:invalidate') . '$' . (16 * $K + 1) . "\r\n",
         qr/bulk string longer than a message/],
        ['one element',             "*1\r\n" . $bulk->('message'), qr/not a pub\/sub message/],
        ['two elements',            "*2\r\n" . $bulk->('message') . $bulk->('sa:invalidate'), qr/not a pub\/sub message/],
        ['four elements',           "*4\r\n" . join('', map { $bulk->($_) } qw(message sa:invalidate x y)), qr/not a pub\/sub message/],
        ['pmessage',                "*4\r\n" . join('', map { $bulk->($_) } qw(pmessage * sa:invalidate x)), qr/not a pub\/sub message/],
        ['an empty array',          "*0\r\n", qr/not a pub\/sub message/],
        ['a nil array',             "*-1\r\n", qr/not a pub\/sub message/],
        ['a status',                "+OK\r\n", qr/not a pub\/sub message/],
        ['an integer channel',      "*3\r\n" . $bulk->('message') . ":1\r\n" . $bulk->('x'), qr/not a pub\/sub message/],
        ['an integer payload',      "*3\r\n" . $bulk->('message') . $bulk->('sa:invalidate') . ":1\r\n", qr/not a pub\/sub message/],
        ['a nil payload',           "*3\r\n" . $bulk->('message') . $bulk->('sa:invalidate') . "\$-1\r\n", qr/not a pub\/sub message/],
        ['an array payload',        "*3\r\n" . $bulk->('message') . $bulk->('sa:invalidate') . "*1\r\n:1\r\n", qr/not a pub\/sub message/],
        ['a status kind',           "*3\r\n+message\r\n" . $bulk->('sa:invalidate') . $bulk->('x'), qr/not a pub\/sub message/],
        ['a kind with a NUL',       "*3\r\n" . join('', map { $bulk->($_) } "message\0", 'sa:invalidate', 'x'), qr/not a pub\/sub message/],
        ['a string count',          "*3\r\n" . join('', map { $bulk->($_) } qw(subscribe sa:invalidate 1)), qr/not a pub\/sub message/],
        ['unsubscribe',             "*3\r\n" . join('', map { $bulk->($_) } qw(unsubscribe sa:invalidate)) . ":0\r\n", qr/not a pub\/sub message/],
        ['an error',                "-ERR no\r\n", qr/not a pub\/sub message/],
    );
    for my $c (grep { !$ENV{CASE} || $_->[0] =~ /$ENV{CASE}/ } @cases) {
        my ($name, $push, $why) = @$c;
        opt('raw-push', $push);
        my $nginx = gateway(cached => 1);
        my ($pid) = $nginx->worker_pids;
        if ($why) {
            ok(SaTest::wait_until(3, sub { $nginx->error_log =~ /\[error\].*subscriber connection to \S+ lost: protocol error: $why/ }),
               "D $name: protocol error: $why");
        } else {
            ok(SaTest::wait_until(3, sub { $nginx->error_log =~ /subscribed to/ }), "D $name: subscribed");
            is(protocol_errors($nginx), 0, "D $name: no protocol error");
        }
        my $st = status($nginx, '/index.html', $token);
        ok($st == 401 || $st == 503, "D $name: the token (nil from this Redis): $st");
        is(status($nginx, '/open/index.html'), 200, "D $name: a location without sa_auth: 200");
        is(crashes($nginx), 0, "D $name: no worker exited on a signal");
        is(($nginx->worker_pids)[0], $pid, "D $name: the same worker");
        $nginx->quit;
    }
    clear_opts();
}

# --------------------------- E. malformed invalidation messages, real Redis
if (section('E')) {
    clear_opts();
    my $nginx = gateway(redis => 'sa_redis 127.0.0.1:' . $redis->port . ';', cached => 1);
    my ($pid) = $nginx->worker_pids;
    ok(SaTest::wait_until(5, sub { $nginx->error_log =~ /subscribed to/ }), 'E: subscribed');
    is(status($nginx, '/index.html', $token), 200, 'E: the token, cached');
    my $id = tid($token);
    my @payloads = (
        ['empty', ''],
        ['spaces', ' ' x 1000],
        ['no colon, 10 kB id', $id . 'x' x 10_000],
        ['<id>:', "$id:"],
        ['<id>:-1', "$id:-1"],
        ['<id>:abc', "$id:abc"],
        ['<id>:2x', "$id:2x"],
        ['<id>: 5', "$id: 5"],
        ['<id>:2^64 (overflows)', "$id:18446744073709551616"],
        ['<id>:10^30', "$id:" . '1' . '0' x 30],
        ['<id>:10 kB of digits', "$id:" . '9' x 10_000],
        ['<id>:1:2', "$id:1:2"],
        ['<id>:+3', "$id:+3"],
        ['<id>;5', "$id;5"],
        ['a 15-byte id', substr($id, 0, 15) . ':9'],
        ['UTF-8 id', "\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}\x{e9}:9"],
        ['control bytes', "\0\1\2\3\e[31m\r\n\t\x7f\xff\xfe\0\0\0:9"],
        ['a newline inside', "$id\n:9 $id\r\n"],
        ['64 KiB of x', 'x' x 65536],
    );
    for my $c (@payloads) {
        my ($name, $payload) = @$c;
        utf8::encode($payload) if utf8::is_utf8($payload);
        $redis->cmd('PUBLISH', 'sa:invalidate', $payload);
        ok(SaTest::wait_until(3, sub { status($nginx, '/index.html', $token) == 200 }),
           "E $name: the token still 200 (no version raised)");
    }
    is(protocol_errors($nginx), 0, 'E: no protocol error');
    is(crashes($nginx), 0, 'E: no worker exited on a signal');
    is(($nginx->worker_pids)[0], $pid, 'E: the same worker throughout');
    unlike($nginx->error_log, qr/older than one already seen/, 'E: no record refused as older');

    # what a client allowed to PUBLISH can do: raise a version past the record's
    $redis->cmd('PUBLISH', 'sa:invalidate', tid($other) . ':18446744073709551615');
    ok(SaTest::wait_until(3, sub { status($nginx, '/index.html', $other) == 401 }),
       'E <id>:2^64-1: that token refused (a version above its record: documented)');
    like($nginx->error_log, qr/version \d+ is older than one already seen/, 'E <id>:2^64-1: logged as older');
    is(status($nginx, '/index.html', $token), 200, 'E <id>:2^64-1: other tokens unaffected');
    $nginx->quit;
}

# ------------------------------------------------- F. odd sentinel answers
if (section('F')) {
    clear_opts();
    my $dir = SaTest::new_dir('fake-sentinel');
    my $port = SaTest::free_port();
    my $fake = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $port, $dir]);
    SaTest::wait_for('fake sentinel', sub { SaTest::port_open($port) }, 5);
    my $rport = $redis->port;

    # get-master-addr-by-name answering port 0: no usable address, then a good one
    SaTest::write_file("$dir/master", '127.0.0.1 0');
    my $nginx = gateway(redis => "sa_redis_sentinel sa 127.0.0.1:$port;");
    my ($pid) = $nginx->worker_pids;
    ok(SaTest::wait_until(5, sub { $nginx->error_log =~ /names "127\.0\.0\.1" port "0" for master "sa": not an IP address and a port/ }),
       'F get-master-addr port 0: refused');
    is(status($nginx, '/index.html', $token), 503, 'F get-master-addr port 0: 503, no master');
    SaTest::write_file("$dir/master", "127.0.0.1 $rport");
    ok(SaTest::wait_until(10, sub { status($nginx, '/index.html', $token) == 200 }), 'F: a good answer: 200');
    SaTest::wait_for('the sentinel subscription', sub { SaTest::slurp("$dir/commands.log") =~ /^SUBSCRIBE/m }, 5);

    my $switch = sub {
        SaTest::write_file("$dir/switch.tmp", "sa 127.0.0.1 $rport $_[0] $_[1]");
        rename "$dir/switch.tmp", "$dir/switch";
    };
    my @bad = (
        ['port 0', '127.0.0.1', '0'],
        ['port 65536', '127.0.0.1', '65536'],
        ['port -1', '127.0.0.1', '-1'],
        ['port abc', '127.0.0.1', 'abc'],
        ['a huge port', '127.0.0.1', '9' x 40],
        ['an empty port', '127.0.0.1', ''],
        ['a host name', 'localhost', $rport],
        ['a long host name', 'redis.' . 'x' x 1000 . '.example', $rport],
        ['a NUL in the host', "127.0.0.1\0x", $rport],
        ['control bytes', "\e[31m\x7f", "\e[0m"],
        ['an IPv6 zone', 'fe80::1%eth0', $rport],
    );
    # refusals are logged at most once a second: each case in a second of its own
    my $next_second = sub { sleep 1.05 - (time - int time) };
    for my $c (@bad) {
        my ($name, $host, $p) = @$c;
        $next_second->();
        my $mark = length $nginx->error_log;
        $switch->($host, $p);
        ok(SaTest::wait_until(3, sub { substr($nginx->error_log, $mark) =~ /sentinel \S+ names ".*" port ".*" for master "sa": not an IP address and a port|malformed \+switch-master/ }),
           "F $name: refused");
        my $log = substr($nginx->error_log, $mark);
        $log =~ s/\n//g;
        unlike($log, qr/[\x00-\x1f\x7f-\xff]/, "F $name: logged escaped");
        unlike($log, qr/x{300}/, "F $name: logged cut short");
        is(status($nginx, '/index.html', $token), 200, "F $name: the gateway keeps its master");
    }

    # IPv6: followed (nothing listens there), then back
    my $mark = length $nginx->error_log;
    $switch->('::1', $rport);
    ok(SaTest::wait_until(5, sub { substr($nginx->error_log, $mark) =~ /master "sa" is at \[::1\]:$rport/ }),
       'F IPv6: followed, written [::1]:port');
    SaTest::write_file("$dir/switch.tmp", "sa ::1 $rport 127.0.0.1 $rport");
    rename "$dir/switch.tmp", "$dir/switch";
    ok(SaTest::wait_until(10, sub { status($nginx, '/index.html', $token) == 200 }), 'F IPv6: and back: 200');

    # floods on the subscription: each kind logged a few times, not 2,000
    my $bulk = sub { '$' . length($_[0]) . "\r\n$_[0]\r\n" };
    my $push = sub { "*3\r\n" . $bulk->($_[0]) . $bulk->('+switch-master') . $_[1] };
    my @floods = (
        ['subscribe confirmations', $push->('subscribe', ":1\r\n"), qr/\[info\].*sa: Redis sentinel connection to /, 0],
        ['malformed +switch-master', $push->('message', $bulk->('sa 1 2')), qr/malformed \+switch-master/, 1],
        ['port 0', $push->('message', $bulk->("sa 127.0.0.1 $rport 127.0.0.1 0")), qr/not an IP address and a port/, 1],
    );
    for my $c (@floods) {
        my ($name, $one, $line, $least) = @$c;
        $next_second->();
        my $mark = length $nginx->error_log;
        SaTest::write_file("$dir/raw.tmp", $one x 2000);
        rename "$dir/raw.tmp", "$dir/raw";
        ok(SaTest::wait_until(5, sub { !-e "$dir/raw" }), "F 2,000 $name: sent");
        sleep 0.5;
        my $n = () = substr($nginx->error_log, $mark) =~ /$line/g;
        ok($n >= $least && $n <= 3, "F 2,000 $name: logged $n times");
        is(status($nginx, '/index.html', $token), 200, "F 2,000 $name: the gateway keeps its master");
    }
    is(crashes($nginx), 0, 'F: no worker exited on a signal');
    is(($nginx->worker_pids)[0], $pid, 'F: the same worker throughout');
    $nginx->quit;
}

# ------------------------------ G. reload, quit, kill -9 mid-reply
if (section('G')) {
    SaTest::expect_log(qr/worker process \d+ exited on signal 9/);
    clear_opts();
    mode('pass');
    my $gone = sub { my ($p) = @_; SaTest::wait_until(10, sub { !kill 0, $p }) };

    # a reply half-read: the record trickles, 4 ms a byte
    opt('trickle', 4);
    my $nginx = gateway(timeout => '10s');
    my ($pid) = $nginx->worker_pids;
    my $s = send_request($nginx, $token);
    sleep 0.5;
    ok($nginx->reload, 'G half-read: reloaded');
    is(read_status($s, 15), 200, 'G half-read, HUP: the request in flight answered by the old worker, 200');
    ok($gone->($pid), 'G half-read, HUP: the old worker exited');
    is(status($nginx, '/index.html', $token), 200, 'G half-read, HUP: the new worker: 200');

    ($pid) = $nginx->worker_pids;
    $s = send_request($nginx, $token);
    sleep 0.5;
    kill 'KILL', $pid;
    is(read_status($s, 15), 'closed', 'G half-read, kill -9: that request closed');
    ok(SaTest::wait_until(10, sub { my ($w) = $nginx->worker_pids; $w && $w != $pid }), 'G half-read, kill -9: a new worker');
    is(status($nginx, '/index.html', $token), 200, 'G half-read, kill -9: the new worker: 200');

    ($pid) = $nginx->worker_pids;
    $s = send_request($nginx, $token);
    sleep 0.5;
    kill 'QUIT', $nginx->pid;
    is(read_status($s, 15), 200, 'G half-read, QUIT: the request in flight answered, 200');
    ok($nginx->quit(10), 'G half-read, QUIT: nginx exited');
    clear_opts();

    # commands queued: the set-up PING is answered 1.5 s late
    opt('delay', 1500);
    opt('hold-on', 'PING');
    $nginx = gateway(timeout => '5s');
    ($pid) = $nginx->worker_pids;
    $s = send_request($nginx, $token);
    sleep 0.3;
    ok($nginx->reload, 'G queued: reloaded');
    is(read_status($s, 15), 200, 'G queued, HUP: the queued request answered once set up, 200');
    ok($gone->($pid), 'G queued, HUP: the old worker exited');
    is(status($nginx, '/index.html', $token), 200, 'G queued, HUP: the new worker: 200');

    # a worker whose connection is set up asks nothing: restart to queue again
    $nginx->quit;
    $nginx = gateway(timeout => '5s');
    ($pid) = $nginx->worker_pids;
    $s = send_request($nginx, $token);
    sleep 0.3;
    kill 'KILL', $pid;
    is(read_status($s, 15), 'closed', 'G queued, kill -9: that request closed');
    ok(SaTest::wait_until(10, sub { my ($w) = $nginx->worker_pids; $w && $w != $pid }), 'G queued, kill -9: a new worker');
    is(status($nginx, '/index.html', $token), 200, 'G queued, kill -9: the new worker: 200');
    $nginx->quit;

    $nginx = gateway(timeout => '5s');
    $s = send_request($nginx, $token);
    sleep 0.3;
    kill 'QUIT', $nginx->pid;
    is(read_status($s, 15), 200, 'G queued, QUIT: the queued request answered, 200');
    ok($nginx->quit(10), 'G queued, QUIT: nginx exited');
    clear_opts();
    my @alerts = grep { /\[(alert|crit|emerg)\]/ && !/worker process \d+ exited on signal 9$/ }
                 map { split /\n/, SaTest::slurp($_) } glob(SaTest::tmp_dir() . '/nginx*/error.log');
    is(scalar @alerts, 0, 'G: no alert but the two kills') or diag join "\n", @alerts;
    my @kills = grep { /exited on signal 9$/ }
                map { split /\n/, SaTest::slurp($_) } glob(SaTest::tmp_dir() . '/nginx*/error.log');
    is(scalar @kills, 2, 'G: (the two kills are in the log)');
}

# ------------------- H. a Redis that answers just often enough, and a flood
if (section('H')) {
    clear_opts();
    mode('pass');
    opt('trickle', 100);         # "$-1\r\n" every 0.5 s: within the deadline
    my $nginx = gateway();
    my ($pid) = $nginx->worker_pids;
    my $rss = sub { SaTest::slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+) kB/m ? $1 : 0 };
    # random well-formed tokens, 300 at a time, for $secs
    my $flood = sub {
        my ($secs) = @_;
        my ($sent, $sel) = (0, IO::Select->new);
        my $until = time + $secs;
        while (time < $until) {
            while ($sel->count < 300) {
                my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port) or last;
                print {$s} "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         . 'Authorization: Bearer ' . SaTest::forged_token() . "\r\n\r\n";
                $sel->add($s);
                $sent++;
            }
            for my $s ($sel->can_read(0.05)) {
                next if sysread($s, my $b, 4096);
                $sel->remove($s);
                close $s;
            }
        }
        $_->close for $sel->handles;
        return $sent;
    };
    my $rss0 = $rss->();
    my $n = $flood->(5);
    my $rss1 = $rss->();
    ok(SaTest::wait_until(2, sub { $nginx->error_log =~ /\[error\].*command connection to \S+ owes 4096 replies: no command sent until it answers/ }),
       "H: $n requests: at 4096 replies owed, no more commands sent");
    my $t0 = time;
    is(status($nginx, '/index.html', $token), 503, 'H: the next request: 503');
    cmp_ok(time - $t0, '<', 0.25, 'H: at once, not after sa_redis_timeout (300 ms)');
    $n += $flood->(4);
    my $grown = $rss->() - $rss1;
    cmp_ok($grown, '<', 1024, "H: 4 s more of it: the worker's RSS grew by $grown kB (from $rss0 kB)");
    my $lines = () = $nginx->error_log =~ /owes \d+ replies/g;
    cmp_ok($lines, '<=', 12, "H: $lines \"owes\" lines in 9 s of flood");
    # the server restarts sane: what was owed is dropped, and served again
    opt('trickle');
    mode('fake');
    ok(SaTest::wait_until(10, sub { status($nginx, '/index.html', $token) == 401 }),
       'H: a new connection answers (nil: 401)');
    is(crashes($nginx), 0, 'H: no worker exited on a signal');
    is(($nginx->worker_pids)[0], $pid, 'H: the same worker');
    $nginx->quit;
    clear_opts();
    mode('pass');
}

# ------------- I. a real change of thousands of tokens, in one message
if (section('I')) {
    clear_opts();
    my $nginx = gateway(redis => 'sa_redis 127.0.0.1:' . $redis->port . ';', cached => 1);
    ok(SaTest::wait_until(5, sub { $nginx->error_log =~ /subscribed to/ }), 'I: subscribed');
    is(status($nginx, '/index.html', $token), 200, 'I: the token, cached');
    SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(account create platform many));
    my $many = SaTest::issue_token($redis, 'platform/many', 'a:b');
    is(status($nginx, '/index.html', $many), 200, 'I: a token of an account of 4,000, cached');
    my $r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(token issue platform/many --scope a:b --count 4000));
    is($r->{code}, 0, 'I: sa-admin token issue --count 4000') or diag $r->{err};
    # one change of every token of the account: 4,001 items, in messages of
    # at most 1,000 (a subscriber of our own counts them)
    my $sub = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis->port)
        or die "subscriber: $!";
    $sub->blocking(0);
    print $sub "SUBSCRIBE sa:invalidate\r\n";
    my $heard = '';
    SaTest::wait_until(5, sub { sysread($sub, $heard, 65536, length $heard); $heard =~ /subscribe/ });
    $r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(account delete platform/many));
    is($r->{code}, 0, 'I: sa-admin account delete') or diag $r->{err};
    my $items = sub { my $n = 0; $n += scalar(split / /) for $heard =~ /\$7\r\nmessage\r\n\$13\r\nsa:invalidate\r\n\$\d+\r\n([^\r]*)\r\n/g; $n };
    SaTest::wait_until(5, sub { sysread($sub, $heard, 1 << 20, length $heard); $items->() >= 4001 });
    my @msgs = $heard =~ /\$7\r\nmessage\r\n\$13\r\nsa:invalidate\r\n\$(\d+)\r\n/g;
    is(scalar @msgs, 5, 'I: 4,001 changed tokens published in 5 messages');
    ok(!grep({ $_ > 30000 } @msgs), "I: each of at most about 25 kB (@msgs)");
    ok(SaTest::wait_until(5, sub { status($nginx, '/index.html', $many) == 401 }), 'I: its token refused');
    sleep 0.5;
    unlike($nginx->error_log, qr/protocol error/, 'I: its invalidation messages read, no protocol error');
    like($nginx->error_log, qr/token "\w+": revoked/, 'I: (refused as revoked)');
    unlike($nginx->error_log, qr/subscriber connection to \S+ lost/, 'I: the subscription stayed up');
    is(status($nginx, '/index.html', $token), 200, 'I: the token still 200');
    $nginx->quit;
}

done_testing;
