# A cache entry remembers which token bytes it proved against its record's
# hash (a SipHash-128 of them under a key drawn with the zone), so that the
# same token again costs no BLAKE2b; without a cache every request hashes.  What it must never do: admit other bytes under
# the same id.  A token with the id of a genuine one that was just admitted,
# another secret and a valid checksum is refused as unknown, every time,
# with and without sa_cache, and the genuine one is still admitted after it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(api));
as(qw(account create platform ci --app api));

my @crc = map { my $c = $_; $c = $c & 1 ? 0xEDB88320 ^ ($c >> 1) : $c >> 1 for 1 .. 8; $c } 0 .. 255;
sub crc32 { my $c = 0xFFFFFFFF; $c = $crc[($c ^ ord) & 0xFF] ^ ($c >> 8) for split //, $_[0]; $c ^ 0xFFFFFFFF }
my @b62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');

# the same id, another secret (one character changed, or all), a valid check
sub twin {
    my ($token, $secret) = @_;
    my $head = substr($token, 0, 21) . $secret;
    my ($crc, $check) = (crc32($head), '');
    for (1 .. 6) { $check = $b62[$crc % 62] . $check; $crc = int($crc / 62) }
    return $head . $check;
}

for my $cached (1, 0) {
    my $name = $cached ? 'sa_cache' : 'no cache';
    my $nginx = SaTest::Nginx->start(redis => $redis, http => ($cached ? "sa_cache zone=sa:1m ttl=5m;\n" : '') . <<'CONF');
    log_format sa '$sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        location / { sa_auth api; sa_scope stacks:read; root %%DIR%%/html; }
    }
CONF
    my $token = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
    my $secret = substr($token, 21, length($token) - 27);
    (my $one_off = $secret) =~ s/^(.)/$1 eq 'a' ? 'b' : 'a'/e;
    my @twins = (twin($token, $one_off), twin($token, join '', map { $b62[rand 62] } 1 .. length $secret));
    isnt($_, $token, "$name: a twin differs from the token") for @twins;

    my $get = sub { $nginx->get('/index.html', Authorization => "Bearer $_[0]")->{status} };
    is($get->($token), 200, "$name: the genuine token, proven") for 1 .. 3;
    for my $round (1 .. 3) {
        is($get->($_), 401, "$name: same id, another secret: 401 (round $round)") for @twins;
        is($get->($token), 200, "$name: the genuine one still admitted (round $round)");
    }
    my @log = split /\n/, SaTest::slurp($nginx->dir . '/sa.log');
    is(scalar(grep { $_ eq 'unknown' } @log), 6, "$name: the six twins logged as unknown");
    unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, "$name: no alert");
    $nginx->stop;
}

done_testing;
