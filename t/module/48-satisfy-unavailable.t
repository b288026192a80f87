# "satisfy any" while Redis cannot answer (issue 21, item 3).
#
# With "satisfy any; allow 127.0.0.1; deny all; sa_auth api;" and Redis
# down, a request without a token got 200 (sa_auth refused it with 401, the
# next checker, allow, granted), but one with a well-formed token got 503:
# the module's 503 ended the access phase before allow could grant.  A
# monitor that always sends its token lost access in every Redis outage.
# Now, under "satisfy any", Redis' failure refuses nothing: allow still
# grants (200, no Retry-After, no token upstream, $sa_status unavailable),
# and when no checker grants the answer is still 503 with Retry-After.
# Under "satisfy all" nothing changes: 503.  Both for Redis stopped (the
# lookup fails at once) and paused (the lookup times out while the request
# waits).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $up = SaTest::Recorder->start;
SaTest::fixture($redis, apps => ['api']);   # platform/ci, owner alice
my $tok = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');

my $port = $up->port;
my $rec = "proxy_pass http://127.0.0.1:$port; proxy_set_header X-SA-Status \$sa_status;";

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    sa_redis_timeout 200ms;
    log_format st '\$uri|\$status|\$sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        access_log %%DIR%%/st.log st;

        location /any/      { satisfy any; allow 127.0.0.1; deny all; sa_auth api; $rec }
        location /any-deny/ { satisfy any; deny all; sa_auth api; }
        location /all/      { satisfy all; allow 127.0.0.1; sa_auth api; }
    }
CONF
for my $d (qw(any-deny all)) {
    mkdir $nginx->dir . "/html/$d";
    SaTest::write_file($nginx->dir . "/html/$d/x", "$d file\n");
}

sub req {
    my ($path, $token) = @_;
    my $n = $up->count;
    my $res = $nginx->get($path, defined $token ? (Authorization => "Bearer $token") : ());
    $res->{recorded} = $n;
    return $res;
}

# Redis up: the baseline
my $res = req('/any/x', $tok);
is($res->{status}, 200, 'Redis up, satisfy any, a good token: 200');
is(req('/all/x', $tok)->{status}, 200, 'Redis up, satisfy all, a good token: 200');

sub outage {
    my ($how) = @_;

    my $res = req('/any/x', undef);
    is($res->{status}, 200, "$how, satisfy any + allow, no token: 200");

    $res = req('/any/x', $tok);
    is($res->{status}, 200, "$how, satisfy any + allow, a well-formed token: 200 like without one");
    ok(!exists $res->{headers}{'retry-after'}, "$how, satisfy any + allow: no Retry-After on the 200");
    ok(!exists $res->{headers}{'www-authenticate'}, "$how, satisfy any + allow: no challenge on the 200");
    SaTest::wait_until(3, sub { $up->count > $res->{recorded} });
    my ($got) = $up->request($res->{recorded} + 1);
    like($got // '', qr{^GET /any/x }, "$how, satisfy any + allow: the upstream got the request");
    unlike($got // '', qr/^Authorization:/mi, "$how, satisfy any + allow: without the token");
    like($got // '', qr/^X-SA-Status: unavailable\r$/mi, "$how, satisfy any + allow: \$sa_status unavailable");

    $res = req('/any-deny/x', $tok);
    is($res->{status}, 503, "$how, satisfy any, nothing grants, a token: 503");
    is($res->{headers}{'retry-after'}, '1', "$how, satisfy any, nothing grants: Retry-After: 1");
    $res = req('/any-deny/x', undef);
    is($res->{status}, 401, "$how, satisfy any, nothing grants, no token: 401");

    $res = req('/all/x', $tok);
    is($res->{status}, 503, "$how, satisfy all + allow, a token: 503");
    is($res->{headers}{'retry-after'}, '1', "$how, satisfy all: Retry-After: 1");
}

$redis->pause;
outage('Redis paused');
$redis->resume;

is(req('/any/x', $tok)->{status}, 200, 'Redis back: 200');

$redis->stop;
outage('Redis stopped');

my $log = SaTest::wait_until(3, sub {
    my $l = SaTest::slurp($nginx->dir . '/st.log');
    $l =~ /any-deny.*\n.*any-deny/s ? $l : 0 });
like($log, qr{^/any/x\|200\|unavailable$}m, 'the access log: 200 with $sa_status unavailable');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, 'no alert, no crash');
done_testing;
