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
#      elements; nesting 3 and 4 deep; a reply of 68 KiB and one byte
#      more; an error line of 1024 and 1025 bytes; another token's genuine
#      record (401, the record's own token 200); malformed lengths.  A
#      reply of a type GET never gets is 503 (garbage from Redis), not 401.
#      What Redis says reaches the error log escaped: no control byte.
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
    # everything Redis sends after the GET of $token is held 700 ms
    opt('delay', 700);
    opt('hold-on', 'sa:tok:' . tid($token));
    my $nginx = gateway(timeout => '500ms');
    my ($pid) = $nginx->worker_pids;
    is(status($nginx, '/index.html', $other), 200, 'B: a token before: 200');
    my $t0 = time;
    is(status($nginx, '/index.html', $token), 503, 'B: its reply held past sa_redis_timeout: 503');
    my $s = send_request($nginx, $other);
    is(read_status($s), 200, 'B: the next token, whose GET was sent before the late reply came: 200, its own record');
    cmp_ok(time - $t0, '>=', 0.6, 'B: (it was answered after the late reply)');
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

done_testing;
