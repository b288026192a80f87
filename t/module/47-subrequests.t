# Subrequests into a location with sa_auth are judged (issue 21, item 1).
#
# nginx skips the access phase for subrequests (ngx_http_core_access_phase:
# r != r->main), so before the fix sa_auth did nothing there: an unprotected
# SSI page included a protected fragment for anyone, auth_request to a
# location with sa_auth answered 204 to everyone, and mirror called a
# protected upstream without a token.  Now a subrequest reaching a location
# with sa_auth is judged by that location's sa_scope and sa_application, on
# the main request's credential, verified at most once per main request:
#
# 1. SSI "include virtual" from an unprotected page: no token, an unknown
#    token, a token without the scope: the fragment is refused (the page
#    shows nginx's error page in its place), a protected proxied location is
#    not called; a token with the scope gets the fragment.  From a page
#    verified for stacks:read: the admin:write fragment is refused.  Three
#    protected includes in one page cost one Redis GET (they wait on the
#    same lookup: parked subrequests are woken, no hang).
# 2. auth_request -> a location with sa_auth (and "return 204", which runs
#    after the check): 200 with a good token, 401 with the challenge without
#    one, 403 with a token lacking the scope or the application; the main
#    request's upstream gets $sa_account.
# 3. mirror into a protected location: the upstream is called only with a
#    token that holds the scope.
# 4. Redis down: auth_request answers 500 (auth_request turns the check's
#    503 into 500), an SSI include is refused, mirror does not call the
#    upstream; nothing hangs.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
use Time::HiRes qw(time sleep);

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $up = SaTest::Recorder->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
sub issue { SaTest::issue_token($redis, @_) }

is(as(qw(team create platform --owner alice))->{code}, 0, 'team create');
SaTest::apps($redis, 'platform', qw(api));
my $ci = as(qw(account create platform ci --app api --json))->{json};
ok($ci && $ci->{id}, 'account ci created') or BAIL_OUT('no account');
my $acct = $ci->{id};

my %tok = (
    read  => issue('platform/ci', 'stacks:read'),
    admin => issue('platform/ci', 'admin:write', 'stacks:read'),
);
my $unknown = issue('platform/ci', 'admin:write');
$redis->cmd('DEL', 'sa:tok:' . substr($unknown, 4, 16));

my $port = $up->port;
my $rec = "proxy_pass http://127.0.0.1:$port; proxy_set_header X-SA-Account \$sa_account;";

my $h2port = SaTest::free_port();
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;

        # 1. SSI
        location /ssi/      { ssi on; ssi_types *; }
        location /ssi-read/ { sa_auth api; sa_scope stacks:read; ssi on; ssi_types *; }
        location /secret/   { sa_auth api; sa_scope admin:write; }
        location /adminapi/ { sa_auth api; sa_scope admin:write; $rec }

        # 2. auth_request
        location /ar/       { auth_request /_check; }
        location /ar-app/   { auth_request /_check_app; }
        location /ar-up/    { auth_request /_check; proxy_set_header Authorization ""; $rec }
        location = /_check  { internal; sa_auth api; sa_scope admin:write; return 204; }
        location = /_check_app { internal; sa_auth api; sa_application billing; return 204; }

        # 3. mirror
        location /mr/       { mirror /adminapi/mirrored; }
    }
    server {
        listen 127.0.0.1:$h2port http2;
        root %%DIR%%/html;
        location /ssi/      { ssi on; ssi_types *; }
        location /secret/   { sa_auth api; sa_scope admin:write; }
        location /ar/       { auth_request /_check; }
        location = /_check  { internal; sa_auth api; sa_scope admin:write; return 204; }
    }
CONF

my $html = $nginx->dir . '/html';
for my $d (qw(ssi ssi-read secret ar ar-app mr)) { mkdir "$html/$d" }
SaTest::write_file("$html/secret/data.txt", "SECRET-FRAGMENT\n");
SaTest::write_file("$html/ssi/page.html",
    "page<!--# include virtual=\"/secret/data.txt\" -->end\n");
SaTest::write_file("$html/ssi/proxied.html",
    "page<!--# include virtual=\"/adminapi/x\" -->end\n");
SaTest::write_file("$html/ssi/three.html",
    join('', map { "[$_<!--# include virtual=\"/secret/data.txt?$_\" -->]" } 1 .. 3) . "\n");
SaTest::write_file("$html/ssi-read/page.html",
    "read<!--# include virtual=\"/secret/data.txt\" -->end\n");
SaTest::write_file("$html/ar/x", "behind auth_request\n");
SaTest::write_file("$html/ar-app/x", "behind auth_request app\n");
SaTest::write_file("$html/mr/x", "mirrored page\n");

my $redis_up = 1;
sub gets {
    return 0 unless $redis_up;
    return $redis->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
}

sub req {
    my ($path, $token) = @_;
    my ($g, $n) = (gets(), $up->count);
    my $res = $nginx->get($path, defined $token ? (Authorization => "Bearer $token") : ());
    $res->{gets} = gets() - $g;
    $res->{recorded} = $n;
    return $res;
}

my $secret = qr/SECRET-FRAGMENT/;

# =================================================================== 1. SSI

for my $c ([undef, 'no token', 401], [$unknown, 'an unknown token', 401],
           [$tok{read}, 'a stacks:read token', 403]) {
    my ($t, $what, $code) = @$c;
    my $res = req('/ssi/page.html', $t);
    is($res->{status}, 200, "SSI, unprotected page, $what: the page is served");
    like($res->{content}, qr/^page.*end$/s, "SSI, $what: the page around the include");
    unlike($res->{content}, $secret, "SSI include of an admin:write file, $what: refused");
    like($res->{content}, qr{<title>$code }, "SSI, $what: nginx's $code page in its place");
}

my $res = req('/ssi/page.html', $tok{admin});
like($res->{content}, qr/^pageSECRET-FRAGMENT\nend$/, 'SSI include, an admin:write token: the fragment');
is($res->{gets}, 1, 'SSI include, an admin:write token: one GET');

$res = req('/ssi-read/page.html', $tok{read});
is($res->{status}, 200, 'SSI, page verified for stacks:read: 200');
like($res->{content}, qr/^read.*end$/s, 'SSI, page verified for stacks:read: the page');
unlike($res->{content}, $secret, 'SSI, stacks:read page: the admin:write fragment is refused');
is($res->{gets}, 1, 'SSI, stacks:read page: the subrequest reuses the verdict, one GET');

$res = req('/ssi-read/page.html', $tok{admin});
like($res->{content}, qr/^readSECRET-FRAGMENT\nend$/, 'SSI, admin token on the read page: the fragment');

for my $c ([undef, 'no token'], [$tok{read}, 'a stacks:read token']) {
    my ($t, $what) = @$c;
    $res = req('/ssi/proxied.html', $t);
    like($res->{content}, qr/^page.*end$/s, "SSI include of a protected proxied location, $what: the page");
    sleep 0.2;    # a negative check: time for a wrong upstream call
    is($up->count, $res->{recorded}, "SSI include of a protected proxied location, $what: upstream not called");
}
$res = req('/ssi/proxied.html', $tok{admin});
SaTest::wait_until(3, sub { $up->count > $res->{recorded} });
my ($got) = $up->request($res->{recorded} + 1);
like($got // '', qr{^GET /adminapi/x }, 'SSI include of a protected proxied location, admin token: upstream called');
like($got // '', qr/^X-SA-Account: \Q$acct\E\r$/mi, '... with the account');
unlike($got // '', qr/^Authorization:/mi, '... and no Authorization');

# three protected includes, started together: one lookup, all answered
$res = req('/ssi/three.html', $tok{admin});
is($res->{content}, "[1SECRET-FRAGMENT\n][2SECRET-FRAGMENT\n][3SECRET-FRAGMENT\n]\n",
   'SSI, three protected includes: all three served');
is($res->{gets}, 1, 'SSI, three protected includes: one GET for all of them');
$res = req('/ssi/three.html', $tok{read});
unlike($res->{content}, $secret, 'SSI, three protected includes, stacks:read: all refused');
is($res->{gets}, 1, 'SSI, three protected includes, stacks:read: one GET');

# =================================================================== 2. auth_request

$res = req('/ar/x', $tok{admin});
is($res->{status}, 200, 'auth_request -> sa_auth, admin:write token: 200');
is($res->{content}, "behind auth_request\n", 'auth_request: the file');
is($res->{gets}, 1, 'auth_request: one GET');

$res = req('/ar/x', undef);
is($res->{status}, 401, 'auth_request -> sa_auth, no token: 401');
is($res->{headers}{'www-authenticate'}, 'Bearer realm="api"', 'auth_request, no token: the challenge of the check');
unlike($res->{content}, qr/behind/, 'auth_request, no token: not the file');

$res = req('/ar/x', $unknown);
is($res->{status}, 401, 'auth_request -> sa_auth, unknown token: 401');
is($res->{headers}{'www-authenticate'}, 'Bearer realm="api", error="invalid_token"',
   'auth_request, unknown token: invalid_token');

$res = req('/ar/x', $tok{read});
is($res->{status}, 403, 'auth_request -> sa_auth, stacks:read token: 403');
unlike($res->{content}, qr/behind/, 'auth_request, stacks:read token: not the file');

$res = req('/ar-app/x', $tok{admin});
is($res->{status}, 403, 'auth_request -> sa_application billing, account granted api: 403');

$res = req('/ar-up/x', $tok{admin});
is($res->{status}, 200, 'auth_request then proxy: 200');
SaTest::wait_until(3, sub { $up->count > $res->{recorded} });
($got) = $up->request($res->{recorded} + 1);
like($got // '', qr/^X-SA-Account: \Q$acct\E\r$/mi, 'auth_request then proxy: the upstream gets $sa_account');
unlike($got // '', qr/^Authorization:/mi, 'auth_request then proxy, Authorization "" (as documented): no token upstream');

# =================================================================== 3. mirror

for my $c ([undef, 'no token'], [$tok{read}, 'a stacks:read token']) {
    my ($t, $what) = @$c;
    $res = req('/mr/x', $t);
    is($res->{status}, 200, "mirror, $what: the main request is served");
    is($res->{content}, "mirrored page\n", "mirror, $what: its file");
    sleep 0.3;    # a negative check: time for a wrong upstream call
    is($up->count, $res->{recorded}, "mirror into a protected location, $what: upstream not called");
}
$res = req('/mr/x', $tok{admin});
is($res->{status}, 200, 'mirror, admin token: 200');
ok(SaTest::wait_until(3, sub { $up->count > $res->{recorded} }),
   'mirror into a protected location, admin token: upstream called');
($got) = $up->request($res->{recorded} + 1);
like($got // '', qr{^GET /adminapi/mirrored }, 'mirror: the mirrored request');
like($got // '', qr/^X-SA-Account: \Q$acct\E\r$/mi, 'mirror: with the account');

# =================================================================== HTTP/2

# h2c with prior knowledge: (status, body) of one stream
sub h2 {
    my ($path, $token) = @_;
    my $r = SaTest::run(['curl', '-s', '--http2-prior-knowledge', '-w', '\n%{http_code}',
                         defined $token ? ('-H', "Authorization: Bearer $token") : (),
                         "http://127.0.0.1:$h2port$path"], timeout => 10);
    my ($body, $code) = $r->{out} =~ /^(.*)\n(\d+)$/s ? ($1, $2) : ($r->{out}, 0);
    return ($code, $body);
}
SKIP: {
    my ($code) = h2('/ssi/page.html');
    skip 'curl without HTTP/2', 6 unless $code;
    my $body;
    ($code, $body) = h2('/ssi/three.html', $tok{admin});
    is($code, 200, 'HTTP/2: SSI page with three protected includes, admin token: 200');
    is($body, "[1SECRET-FRAGMENT\n][2SECRET-FRAGMENT\n][3SECRET-FRAGMENT\n]\n", 'HTTP/2: all three served');
    ($code, $body) = h2('/ssi/three.html');
    unlike($body, $secret, 'HTTP/2: SSI includes without a token: refused');
    is((h2('/ar/x', $tok{admin}))[0], 200, 'HTTP/2: auth_request -> sa_auth, admin token: 200');
    is((h2('/ar/x', $tok{read}))[0], 403, 'HTTP/2: auth_request -> sa_auth, stacks:read token: 403');
    is((h2('/ar/x'))[0], 401, 'HTTP/2: auth_request -> sa_auth, no token: 401');
}

# =================================================================== 4. Redis down

# paused: the parked subrequests are woken by the lookup's timeout
$redis->pause;
$redis_up = 0;
my $t0 = time;
$res = req('/ssi/three.html', $tok{admin});
is($res->{status}, 200, 'SSI, three includes, Redis paused: the page, no hang');
unlike($res->{content}, $secret, 'SSI, three includes, Redis paused: all refused');
is(() = $res->{content} =~ /<title>503 /g, 3, 'SSI, Redis paused: three 503 pages in their place');
$res = req('/ar/x', $tok{admin});
is($res->{status}, 500, 'auth_request -> sa_auth, Redis paused: 500 after the timeout');
ok(time - $t0 < 5, 'Redis paused: answered within the timeouts');
$redis->resume;
$redis_up = 1;
$res = req('/ar/x', $tok{admin});
is($res->{status}, 200, 'auth_request -> sa_auth, Redis back: 200');

$redis->stop;
$redis_up = 0;
$res = req('/ar/x', $tok{admin});
is($res->{status}, 500, 'auth_request -> sa_auth, Redis down: 500 (auth_request turns 503 into 500)');
like($nginx->error_log, qr/auth request unexpected status: 503/, 'auth_request logs the 503 of the check');
$res = req('/ssi/page.html', $tok{admin});
is($res->{status}, 200, 'SSI, Redis down: the page');
unlike($res->{content}, $secret, 'SSI, Redis down: the include is refused');
my $n = $up->count;
$res = req('/mr/x', $tok{admin});
is($res->{status}, 200, 'mirror, Redis down: the main request is served');
sleep 0.3;    # a negative check: time for a wrong upstream call
is($up->count, $n, 'mirror, Redis down: upstream not called');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, 'no alert, no crash');
done_testing;
