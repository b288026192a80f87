# Hostile requests: every one gets the right 400 or 401, never a 500, never
# a crash; and a flood of random well-formed tokens costs at most one GET
# per token (the negative cache absorbs repeats).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis);   # platform/ci, owner alice
sub gets { $redis->calls('get') }

my $token = $f->issue(qw(--scope a:b));

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    sa_cache zone=sa:4m ttl=1m negative_ttl=1m;
    log_format sa '$status $sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF

sub raw {
    my ($headers) = @_;
    my $res = SaTest::raw_http($nginx->port,
        "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n$headers\r\n");
    my ($status) = $res =~ m{^HTTP/1\.1 (\d{3})};
    return ($status // 0, $res);
}

my ($s, $res) = raw("Authorization: Bearer $token\r\n");
is($s, 200, 'the valid token, raw');

my @cases = (
    [ 'empty Authorization',          "Authorization: \r\n",                   401 ],
    [ 'Authorization: Bearer',        "Authorization: Bearer\r\n",             401 ],
    [ 'duplicate Authorization',      "Authorization: Bearer $token\r\nAuthorization: Bearer $token\r\n", 400 ],
    [ 'a NUL byte in the token',      "Authorization: Bearer " . substr($token, 0, 30) . "\0" . substr($token, 31) . "\r\n", 400 ],
    [ 'non-ASCII bytes',              "Authorization: Bearer sat_\xc3\xa9\xff" . ('a' x 64) . "\r\n", 401 ],
    [ 'a tab inside the token',       "Authorization: Bearer sat_ab\tcd\r\n",  401 ],
    [ 'Basic credentials',            "Authorization: Basic YWxpY2U6c2VjcmV0\r\n", 401 ],
    [ 'an 8 KiB token',               "Authorization: Bearer sat_" . ('A' x 8000) . "\r\n", 401 ],
    [ 'a 64 KiB token',               "Authorization: Bearer sat_" . ('A' x 65536) . "\r\n", 400 ],
    [ 'the token, one char short',    "Authorization: Bearer " . substr($token, 0, -1) . "\r\n", 401 ],
    [ 'the token, one char changed',  "Authorization: Bearer " . substr($token, 0, 30) . (substr($token, 30, 1) eq 'A' ? 'B' : 'A') . substr($token, 31) . "\r\n", 401 ],
    [ 'the token with CR LF inside',  "Authorization: Bearer " . substr($token, 0, 30) . "\r\n" . substr($token, 30) . "\r\n", 401 ],
);
for my $c (@cases) {
    my ($name, $headers, $want) = @$c;
    ($s, $res) = raw($headers);
    is($s, $want, "$name: $want");
}

($s, $res) = raw('');
is($s, 401, 'no header: 401');
like($res, qr/^WWW-Authenticate: Bearer realm="api"\r$/m, 'with the challenge');

unlike(SaTest::slurp($nginx->dir . '/sa.log'), qr/^5\d\d /m, 'no 5xx in the access log');
unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'no alert, no crash');
# nginx itself, at info level, logs a duplicate header line in full: the
# module's own lines never hold the secret
my $secret = substr($token, 21);
my $ours = join '', grep { /\bsa(_redis)?: / } split /^/, $nginx->error_log;
unlike($ours . SaTest::slurp($nginx->dir . '/sa.log'), qr/\Q$secret\E/,
       'the secret is in none of the module\'s log lines');

# (last: nginx logs the request line, query string included, with any line)
my $q = $nginx->get("/index.html?access_token=$token");
is($q->{status}, 401, 'a token in the query string does not count');

# a flood of random well-formed tokens: one GET each at most, repeats free
my @crc = map { my $c = $_; $c = $c & 1 ? 0xEDB88320 ^ ($c >> 1) : $c >> 1 for 1 .. 8; $c } 0 .. 255;
sub crc32 { my $c = 0xFFFFFFFF; $c = $crc[($c ^ ord) & 0xFF] ^ ($c >> 8) for split //, $_[0]; $c ^ 0xFFFFFFFF }
my @b62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');
sub b62 { join '', map { $b62[rand 62] } 1 .. $_[0] }
sub forge {
    my $head = 'sat_' . b62(16) . '_' . b62(43);
    my ($crc, $check) = (crc32($head), '');
    for (1 .. 6) { $check = $b62[$crc % 62] . $check; $crc = int($crc / 62) }
    return $head . $check;
}

my @forged = map { forge() } 1 .. 300;
my $before = gets();
my $unknown = grep { $nginx->get('/index.html', Authorization => "Bearer $_")->{status} == 401 }
              @forged;
is($unknown, 300, '300 random well-formed tokens: all 401');
my $spent = gets() - $before;
ok($spent <= 300, "at most one GET each ($spent)");
$before = gets();
$nginx->get('/index.html', Authorization => "Bearer $_") for @forged;
is(gets() - $before, 0, 'the same 300 again: no GET (negative cache)');
like(SaTest::slurp($nginx->dir . '/sa.log'), qr/^401 unknown$/m, 'logged as unknown');

done_testing;
