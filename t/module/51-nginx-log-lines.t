# nginx's own info-level lines that print a token (issue 21, item 4), and
# the advice SECURITY.md gives for them: the error log at "notice" or above.
#
# Before the module sees the request, nginx refuses it and logs the header
# line, token included, at info level: a duplicate Authorization header, a
# NUL after the token (HTTP/1: "client sent invalid header line"), a token
# followed by 9,000 bytes ("client sent too long header line"), and a NUL
# in the value over HTTP/2 ("client sent header ... with invalid value").
# The same requests against a server whose error_log is at notice leave no
# byte of the secret in its log.  If nginx ever stops logging one of them
# the first half fails, and SECURITY.md's list should shrink with it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
SaTest::fixture($redis, apps => ['api']);   # platform/ci, owner alice
my $tok = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
my $secret = substr($tok, 21, 30);

my %port = map { $_ => SaTest::free_port() } qw(info notice info2 notice2);
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:$port{info};
        listen 127.0.0.1:$port{info2} http2;
        error_log %%DIR%%/info.log info;
        location / { sa_auth api; }
    }
    server {
        listen 127.0.0.1:$port{notice};
        listen 127.0.0.1:$port{notice2} http2;
        error_log %%DIR%%/notice.log notice;
        location / { sa_auth api; }
    }
CONF

sub h1 { "GET / HTTP/1.1\r\nHost: x\r\n$_[0]\r\nConnection: close\r\n\r\n" }

# HTTP/2 prior knowledge: the preface, empty SETTINGS, one HEADERS frame
# (END_STREAM | END_HEADERS) whose HPACK block is literal, no Huffman
sub h2 {
    my ($value) = @_;
    my $block = "\x82\x86\x84"                        # GET, http, /
              . "\x01" . chr(1) . 'x'                 # :authority x
              . "\x0f\x08" . chr(length $value) . $value;   # authorization (23)
    die "value too long for one HPACK byte" if length $value > 126;
    my $frame = substr(pack('N', length $block), 1) . "\x01\x05" . pack('N', 1) . $block;
    return "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . "\0\0\0\x04\0\0\0\0\0" . $frame;
}

my @cases = (
    ['a duplicate Authorization header', 1,
     h1("Authorization: Bearer $tok\r\nAuthorization: Bearer $tok"),
     qr/client sent duplicate header line: "Authorization: Bearer sat_\w{16}_\Q$secret\E/],
    ['a NUL after the token (HTTP/1)', 1, h1("Authorization: Bearer $tok\0x"),
     qr/client sent invalid header line: "Authorization: Bearer sat_\w{16}_\Q$secret\E/],
    ['a token followed by 9,000 bytes', 1, h1("Authorization: Bearer $tok" . ('x' x 9000)),
     qr/client sent too long header line: "Authorization: Bearer sat_\w{16}_\Q$secret\E/],
    ['a NUL in the value (HTTP/2)', 2, h2("Bearer $tok\0x"),
     qr/client sent header "authorization" with invalid value: "Bearer sat_\w{16}_\Q$secret\E/],
);

for my $c (@cases) {
    my ($what, $v, $bytes, $line) = @$c;
    SaTest::raw_http($port{$v == 1 ? 'info' : 'info2'}, $bytes, timeout => 2);
    SaTest::raw_http($port{$v == 1 ? 'notice' : 'notice2'}, $bytes, timeout => 2);
    ok(SaTest::wait_until(3, sub { SaTest::slurp($nginx->dir . '/info.log') =~ $line }),
       "$what: nginx logs the token at info level");
}

my $info = SaTest::slurp($nginx->dir . '/info.log');
like($info, qr/\[info\].*\Q$secret\E/, 'the info-level log holds the secret (the lines above)');
unlike(SaTest::slurp($nginx->dir . '/notice.log'), qr/\Q$secret\E/,
       'an error log at notice: no byte of the secret, for all of them');
unlike(SaTest::slurp($nginx->dir . '/error.log'), qr/\Q$secret\E/,
       'the main error log (of neither server) has none either');

done_testing;
