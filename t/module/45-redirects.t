# Internal redirects, subrequests, satisfy any and an empty application.
#
# 1. Internal redirects (index, try_files, error_page to a named location,
#    rewrite ... last, X-Accel-Redirect): a request verified once keeps its
#    verdict and identity, although sa_hide_credentials (the default) removed
#    its Authorization header; a redirect into a location with other
#    sa_scope rules is judged against them with the same record and without
#    a second Redis GET; a redirect of a success into an unprotected location
#    still logs ok and the account; a failed verdict stays failed (error_page
#    401 into a protected location: still 401, an unknown token does not
#    become "missing"); a redirect from an unprotected location into a
#    protected one verifies the token there.
# 2. Subrequests inherit the main request's verdict (as with auth_basic):
#    SSI include virtual and echo, auth_request, mirror: the upstream gets the
#    account id in $sa_account and no Authorization.
# 3. satisfy any + allow: a request let in by its address although the token
#    failed (insufficient scope, unknown, revoked, malformed) reaches the
#    upstream with neither Authorization nor X-SA-Account, and logs the
#    failure with no identity. Decision tested: $sa_account, $sa_account_name,
#    $sa_account_email, $sa_team and $sa_scopes are set only when $sa_status
#    is ok; $sa_token_id is set for any well-formed token. "Authorization:
#    Basic" is not ours and goes upstream unchanged.
# 4. sa_application from a variable (a map of the URI) with an account
#    granted '*': an empty value is refused (forbidden_application), x is
#    granted.
#
# Without sa_cache every verification is exactly one Redis GET; the GETs are
# counted from INFO commandstats around each request.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
use File::Path ();

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $up = SaTest::Recorder->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub tid { SaTest::tid($_[0]) }

sub issue { SaTest::issue_token($redis, @_) }

my $ci = $f->account;
ok($ci && $ci->{id}, 'account ci created') or BAIL_OUT('no account');
my $wild_r = SaTest::operator($redis, 'account', 'create', 'platform', 'wild', '--app', '*', '--json');
is($wild_r->{code}, 0, "sa-admin accepts --app '*'") or diag $wild_r->{err};
my $wild = $wild_r->{json} // {};

my %tok = (
    full    => issue('platform/ci', 'stacks:read', 'secret:read'),
    basic   => issue('platform/ci', 'stacks:read'),
    other   => issue('platform/ci', 'other:read'),
    gone    => issue('platform/ci', 'stacks:read'),
    revoked => issue('platform/ci', 'stacks:read'),
    wild    => issue('platform/wild', 'stacks:read'),
);
$redis->cmd('DEL', 'sa:tok:' . tid($tok{gone}));
is(as('token', 'revoke', tid($tok{revoked}))->{code}, 0, 'token revoke');

my $acct = $ci->{id};

# ---- the files served
my $port = $up->port;
my $html;
my %files = (
    'idx/index.html'      => "idx page\n",
    'fallback/x'          => "fallback\n",
    'admin/x'             => "admin\n",
    'open/x'              => "open\n",
    'target/x'            => "target\n",
    'internal/secret.txt' => "secret\n",
    'err401.html'         => "custom 401 page\n",
    'ssi/page.html'       => "account=<!--# echo var=\"sa_account\" -->\n"
                             . "sub=<!--# include virtual=\"/sub/\" -->\n",
    'ar/x'                => "behind auth_request\n",
    'mr/x'                => "mirrored\n",
    'app/x'               => "app\n",
    'app/with-/x'         => "app\n",
    'app/with-x/x'        => "app\n",
);

my $rec = "proxy_pass http://127.0.0.1:$port; proxy_set_header X-SA-Account \$sa_account;";
my $any = 'satisfy any; allow 127.0.0.1; deny all;';
my $auth = 'sa_auth api; sa_scope stacks:read;';

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    map \$uri \$app_of_uri { ~^/app/with-(?<a>[a-z]*)/ \$a; default ""; }
    log_format sa '\$http_x_case|\$status|\$sa_status|\$sa_token_id|\$sa_account|\$sa_account_name|\$sa_account_email|\$sa_team|\$sa_scopes';
    server {
        listen unix:%%DIR%%/backend.sock;
        access_log off;
        location /xa-backend/ {
            add_header X-Accel-Redirect /internal/secret.txt;
            return 200 "";
        }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        access_log %%DIR%%/sa.log sa;

        # 1. internal redirects
        location /idx/      { $auth index index.html; }
        location /tf/       { $auth try_files \$uri /fallback/x; }
        location /fallback/ { $auth }
        location /tf-admin/ { $auth try_files \$uri /admin/x; }
        location /admin/    { sa_auth api; sa_scope admin:write; }
        location /tf-open/  { $auth try_files \$uri /open/x; }
        location /open/     { }
        location /plain/    { try_files \$uri /fallback/x; }
        location /ep/       { $auth error_page 404 = \@named; }
        location \@named    { $auth $rec }
        location /rw/       { $auth rewrite ^/rw/(.*)\$ /target/\$1 last; }
        location /target/   { $auth }
        location /rw-admin/ { $auth rewrite ^/rw-admin/(.*)\$ /admin/\$1 last; }
        location /xa/       { $auth proxy_pass http://unix:%%DIR%%/backend.sock:/xa-backend/; }
        location /internal/ { internal; sa_auth api; sa_scope secret:read; }
        location /e401/     { $auth error_page 401 /err401.html; }
        location = /err401.html { $auth }

        # 2. subrequests
        location /ssi/      { $auth ssi on; ssi_types *; }
        location /sub/      { $auth $rec }
        location /ar/       { $auth auth_request /auth; }
        location = /auth {
            internal;
            proxy_pass http://127.0.0.1:$port;
            proxy_set_header X-SA-Account \$sa_account;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
        location /mr/       { $auth mirror /mirror; }
        location = /mirror  { internal; $rec }

        # 3. satisfy any
        location /any/      { $any $auth $rec }
        location /any-tf/   { $any $auth try_files \$uri \@any_named; }
        location \@any_named { $any $auth $rec }

        # 4. an application from a variable
        location /app/      { sa_auth api; sa_application \$app_of_uri; }
    }
CONF

$html = $nginx->dir . '/html';
for my $f (sort keys %files) {
    (my $d = "$html/$f") =~ s{/[^/]+$}{};
    File::Path::make_path($d);
    SaTest::write_file("$html/$f", $files{$f});
}

# ---- helpers

sub gets {
    return $redis->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
}

# req(case, path, Authorization or undef) -> HTTP::Tiny response, with
# {gets} = Redis GETs it cost and {recorded} = the recorder's requests
# before it (for recorded_since)
sub req {
    my ($case, $path, $authz) = @_;
    my ($g, $n) = (gets(), $up->count);
    my $res = $nginx->get($path, 'X-Case' => $case,
                          defined $authz ? (Authorization => $authz) : ());
    $res->{gets} = gets() - $g;
    $res->{recorded} = $n;
    return $res;
}

sub bearer { "Bearer $tok{$_[0]}" }

# The access-log fields of the request sent with X-Case: $case (the line may
# trail the response)
my @FIELDS = qw(status sa_status token account name email team scopes);
sub logged {
    my ($case) = @_;
    my $line = SaTest::wait_until(3, sub {
        SaTest::slurp($nginx->dir . '/sa.log') =~ /^\Q$case\E\|(.*)$/m ? $1 : 0;
    });
    return { map { $_ => '(not logged)' } @FIELDS } unless $line;
    my %h;
    @h{@FIELDS} = split /\|/, $line, -1;
    return \%h;
}

# The one request the recorder got since $res was sent (mirror: in the
# background, so wait); undef if none or more than one
sub recorded_since {
    my ($res, $what) = @_;
    my $n = $res->{recorded};
    SaTest::wait_until(3, sub { $up->count > $n });
    my $got = $up->count - $n;
    if ($got != 1) {
        diag("$what: the recorder got $got requests, not 1");
        return undef;
    }
    return ($up->request($n + 1))[0];
}

sub header_of {
    my ($bytes, $name) = @_;
    return undef unless defined $bytes;
    return $bytes =~ /^\Q$name\E:[ \t]*(.*?)\r$/mi ? $1 : undef;
}

sub has_no_auth {
    my ($bytes, $what) = @_;
    ok(defined $bytes && $bytes !~ /^Authorization:/mi, "$what: no Authorization upstream")
        or diag(defined $bytes ? $bytes : '(nothing recorded)');
}

sub sent_account {
    my ($bytes, $what) = @_;
    is(header_of($bytes, 'X-SA-Account'), $acct, "$what: X-SA-Account is the account id");
}

my $realm = 'Bearer realm="api"';
my $invalid = 'Bearer realm="api", error="invalid_token"';
sub scope_challenge { qq{Bearer realm="api", error="insufficient_scope", scope="$_[0]"} }

# ok + identity in the log, one GET
sub ok_logged {
    my ($case, $res, $what) = @_;
    is($res->{gets}, 1, "$what: exactly one Redis GET");
    my $l = logged($case);
    is($l->{sa_status}, 'ok', "$what: \$sa_status ok after the redirect");
    is($l->{account}, $acct, "$what: \$sa_account is the account id after the redirect");
}

# =================================================================== 1.

# index: /idx/ -> /idx/index.html, same location
my $res = req('idx', '/idx/', bearer('basic'));
is($res->{status}, 200, 'index: 200 for the verified token') or diag "$res->{status} $res->{content}";
is($res->{content}, "idx page\n", 'index: the index file');
ok_logged('idx', $res, 'index');

# try_files into another protected location, same scope
$res = req('tf', '/tf/nothing', bearer('basic'));
is($res->{status}, 200, 'try_files into a protected location: 200') or diag "$res->{status}";
is($res->{content}, "fallback\n", 'try_files: the fallback file');
ok_logged('tf', $res, 'try_files');

# try_files into a location that needs a scope the token lacks
$res = req('tf_admin', '/tf-admin/nothing', bearer('basic'));
is($res->{status}, 403, 'try_files into a location needing admin:write: 403');
is($res->{headers}{'www-authenticate'}, scope_challenge('admin:write'),
   'try_files into admin: the insufficient_scope challenge names admin:write');
is($res->{gets}, 1, 'try_files into admin: judged with the same record, one GET');
is(logged('tf_admin')->{sa_status}, 'insufficient_scope', 'try_files into admin: insufficient_scope');

# a success redirected into an unprotected location
$res = req('tf_open', '/tf-open/nothing', bearer('basic'));
is($res->{status}, 200, 'try_files into an unprotected location: 200');
is($res->{content}, "open\n", 'try_files into an unprotected location: the file');
ok_logged('tf_open', $res, 'try_files into an unprotected location');

# from an unprotected location into a protected one: verified there
$res = req('plain_ok', '/plain/nothing', bearer('basic'));
is($res->{status}, 200, 'unprotected -> protected: a valid token is verified there, 200');
ok_logged('plain_ok', $res, 'unprotected -> protected');
$res = req('plain_none', '/plain/nothing', undef);
is($res->{status}, 401, 'unprotected -> protected: no token, 401');
is(logged('plain_none')->{sa_status}, 'missing', 'unprotected -> protected: missing');

# error_page 404 = @named, proxying
$res = req('ep', '/ep/nothing', bearer('basic'));
is($res->{status}, 200, 'error_page 404 = @named (protected): 200') or diag "$res->{status}";
my $got = recorded_since($res, 'error_page @named');
has_no_auth($got, 'error_page @named');
sent_account($got, 'error_page @named');
ok_logged('ep', $res, 'error_page @named');

# rewrite ... last
$res = req('rw', '/rw/x', bearer('basic'));
is($res->{status}, 200, 'rewrite into a protected location: 200');
is($res->{content}, "target\n", 'rewrite: the target file');
ok_logged('rw', $res, 'rewrite');
$res = req('rw_admin', '/rw-admin/x', bearer('basic'));
is($res->{status}, 403, 'rewrite into a location needing admin:write: 403');
is($res->{headers}{'www-authenticate'}, scope_challenge('admin:write'),
   'rewrite into admin: the challenge names admin:write');
is($res->{gets}, 1, 'rewrite into admin: one GET');

# X-Accel-Redirect to an internal protected location
$res = req('xa_full', '/xa/x', bearer('full'));
is($res->{status}, 200, 'X-Accel-Redirect, token with secret:read: 200') or diag "$res->{status}";
is($res->{content}, "secret\n", 'X-Accel-Redirect: the internal file');
ok_logged('xa_full', $res, 'X-Accel-Redirect');
$res = req('xa_basic', '/xa/x', bearer('basic'));
is($res->{status}, 403, 'X-Accel-Redirect, token without secret:read: 403');
is($res->{headers}{'www-authenticate'}, scope_challenge('secret:read'),
   'X-Accel-Redirect without secret:read: the challenge names secret:read');
unlike($res->{content}, qr/secret\n/, 'X-Accel-Redirect without secret:read: not the file');
is($res->{gets}, 1, 'X-Accel-Redirect without secret:read: one GET');
is(logged('xa_basic')->{sa_status}, 'insufficient_scope', 'X-Accel-Redirect: insufficient_scope logged');
is(req('xa_direct', '/internal/secret.txt', bearer('full'))->{status}, 404,
   'the internal location is not reachable from outside');

# a failed verdict stays failed: error_page 401 into a protected location
# the challenge of the failed verdict, sent once (the redirected request
# must not add a second copy to the one the first pass set)
sub every_challenge {
    my ($res, $want, $what) = @_;
    my $h = $res->{headers}{'www-authenticate'};
    my @h = ref $h ? @$h : defined $h ? ($h) : ();
    ok(@h && !grep({ $_ ne $want } @h), "$what: the challenge is $want")
        or diag explain \@h;
    is(scalar @h, 1, "$what: one WWW-Authenticate header, not one per pass");
}
$res = req('e401_unknown', '/e401/x', bearer('gone'));
is($res->{status}, 401, 'error_page 401 into a protected location, unknown token: 401');
unlike($res->{content}, qr/custom 401 page/, 'the protected error page is not served');
every_challenge($res, $invalid, 'error_page 401, unknown token');
is($res->{gets}, 1, 'error_page 401, unknown token: the verdict is kept, one GET');
is(logged('e401_unknown')->{sa_status}, 'unknown', 'error_page 401: still unknown, not missing');
$res = req('e401_none', '/e401/x', undef);
is($res->{status}, 401, 'error_page 401, no token: 401');
every_challenge($res, $realm, 'error_page 401, no token');
is($res->{gets}, 0, 'error_page 401, no token: no GET');
is(logged('e401_none')->{sa_status}, 'missing', 'error_page 401, no token: missing');
$res = req('e401_ok', '/e401/x', bearer('basic'));
is($res->{status}, 404, 'no error_page redirect for a valid token: the 404 of the missing file');

# =================================================================== 2.

# SSI: echo in the main request, include virtual as a subrequest
$res = req('ssi', '/ssi/page.html', bearer('basic'));
is($res->{status}, 200, 'SSI page: 200') or diag "$res->{status}";
like($res->{content}, qr/^account=\Q$acct\E$/m, 'SSI echo var="sa_account" prints the account id');
like($res->{content}, qr/^sub=ok$/m, 'SSI include virtual: the subrequest was served');
$got = recorded_since($res, 'SSI include');
like($got // '', qr{^GET /sub/ }, 'SSI include: the recorder got /sub/');
has_no_auth($got, 'SSI include');
sent_account($got, 'SSI include');
is($res->{gets}, 1, 'SSI: one GET for the page and its subrequest');
is(logged('ssi')->{sa_status}, 'ok', 'SSI: ok logged');
$res = req('ssi_none', '/ssi/page.html', undef);
is($res->{status}, 401, 'SSI page without a token: 401');
is($up->count, $res->{recorded}, 'SSI page without a token: no subrequest upstream');

# auth_request
$res = req('ar', '/ar/x', bearer('basic'));
is($res->{status}, 200, 'auth_request: 200') or diag "$res->{status}";
is($res->{content}, "behind auth_request\n", 'auth_request: the file');
$got = recorded_since($res, 'auth_request');
like($got // '', qr{^GET /auth }, 'auth_request: the recorder got the /auth subrequest');
has_no_auth($got, 'auth_request subrequest');
sent_account($got, 'auth_request subrequest');
is($res->{gets}, 1, 'auth_request: one GET');

# mirror
$res = req('mr', '/mr/x', bearer('basic'));
is($res->{status}, 200, 'mirror: 200');
is($res->{content}, "mirrored\n", 'mirror: the file');
$got = recorded_since($res, 'mirror');
like($got // '', qr{^GET /mirror }, 'mirror: the recorder got the mirror subrequest');
has_no_auth($got, 'mirror subrequest');
sent_account($got, 'mirror subrequest');

# =================================================================== 3.

# satisfy any: allowed by address whatever the token says
sub any_case {
    my ($case, $authz, $what) = @_;
    my $res = req($case, '/any/x', $authz);
    is($res->{status}, 200, "satisfy any, $what: 200 (allowed by address)");
    ok(!exists $res->{headers}{'www-authenticate'}, "satisfy any, $what: no challenge");
    my $got = recorded_since($res, "satisfy any, $what");
    return ($got, logged($case));
}

for my $c (['any_scope',   'other',   'insufficient_scope', 'a token lacking the scope'],
           ['any_unknown', 'gone',    'unknown',            'an unknown token'],
           ['any_revoked', 'revoked', 'revoked',            'a revoked token']) {
    my ($case, $t, $status, $what) = @$c;
    my ($got, $l) = any_case($case, bearer($t), $what);
    has_no_auth($got, "satisfy any, $what");
    is(header_of($got, 'X-SA-Account'), undef, "satisfy any, $what: no X-SA-Account upstream");
    is($l->{sa_status}, $status, "satisfy any, $what: \$sa_status $status");
    is($l->{token}, tid($tok{$t}), "satisfy any, $what: \$sa_token_id still set");
    is(join('|', @$l{qw(account name email team scopes)}), '-|-|-|-|-',
       "satisfy any, $what: no identity variable set");
}

my ($g2, $l2) = any_case('any_garbage', 'Bearer garbage', 'a malformed token');
has_no_auth($g2, 'satisfy any, Bearer garbage');
is(header_of($g2, 'X-SA-Account'), undef, 'satisfy any, Bearer garbage: no X-SA-Account');
is($l2->{sa_status}, 'malformed', 'satisfy any, Bearer garbage: malformed');
is($l2->{token}, '-', 'satisfy any, Bearer garbage: no token id');

($g2, $l2) = any_case('any_ok', bearer('basic'), 'a valid token');
has_no_auth($g2, 'satisfy any, a valid token');
sent_account($g2, 'satisfy any, a valid token');
is($l2->{sa_status}, 'ok', 'satisfy any, a valid token: ok');
is($l2->{account}, $acct, 'satisfy any, a valid token: $sa_account logged');
is($l2->{team}, 'platform', 'satisfy any, a valid token: $sa_team logged');

($g2, $l2) = any_case('any_basic', 'Basic YWxpY2U6c2VjcmV0', 'Basic credentials');
is(header_of($g2, 'Authorization'), 'Basic YWxpY2U6c2VjcmV0',
   'satisfy any, Basic: Authorization passed on unchanged');
is(header_of($g2, 'X-SA-Account'), undef, 'satisfy any, Basic: no X-SA-Account');
is($l2->{sa_status}, 'missing', 'satisfy any, Basic: missing');

($g2, $l2) = any_case('any_none', undef, 'no credentials');
is($l2->{sa_status}, 'missing', 'satisfy any, no credentials: missing');

# satisfy any, an unknown token, redirected to a named location that is also
# satisfy any + sa_auth: still unknown (the hidden header must not turn it
# into missing), still no credential upstream
$res = req('any_tf', '/any-tf/nothing', bearer('gone'));
is($res->{status}, 200, 'satisfy any + try_files @named, unknown token: 200');
$got = recorded_since($res, 'satisfy any + try_files');
has_no_auth($got, 'satisfy any + try_files, unknown token');
is(header_of($got, 'X-SA-Account'), undef, 'satisfy any + try_files, unknown token: no X-SA-Account');
is($res->{gets}, 1, 'satisfy any + try_files, unknown token: one GET');
is(logged('any_tf')->{sa_status}, 'unknown', 'satisfy any + try_files: still unknown');

# identity only with ok, outside satisfy any too: a plain 403
$res = req('plain_403', '/admin/x', bearer('basic'));
is($res->{status}, 403, 'a token without admin:write at /admin/: 403');
my $l = logged('plain_403');
is($l->{sa_status}, 'insufficient_scope', 'plain 403: insufficient_scope');
is($l->{token}, tid($tok{basic}), 'plain 403: $sa_token_id set');
is(join('|', @$l{qw(account name email team scopes)}), '-|-|-|-|-',
   'plain 403: no identity variable set');

# =================================================================== 4.

$res = req('app_empty', '/app/x', bearer('wild'));
is($res->{status}, 403, "sa_application from a map, no value, account granted '*': 403");
is($res->{headers}{'www-authenticate'}, 'Bearer realm="api", error="insufficient_scope"',
   'empty application: the insufficient_scope challenge');
is(logged('app_empty')->{sa_status}, 'forbidden_application', 'empty application: forbidden_application');
$res = req('app_blank', '/app/with-/x', bearer('wild'));
is($res->{status}, 403, "an empty application from a map, account granted '*': 403");
is(logged('app_blank')->{sa_status}, 'forbidden_application', 'empty from a map: forbidden_application');
$res = req('app_x', '/app/with-x/x', bearer('wild'));
is($res->{status}, 200, "application x from a map, account granted '*': 200");
is($res->{content}, "app\n", 'application x: the file');
is(logged('app_x')->{sa_status}, 'ok', 'application x: ok');
$res = req('app_ci', '/app/with-x/x', bearer('basic'));
is($res->{status}, 403, 'application x, account granted only api: 403');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, 'no alert, no crash');
done_testing;
