# The token in a variable read before the access phase (issue 21, item 2).
#
# nginx caches a variable's value in r->variables on first use.  limit_req
# (preaccess), a map used in "if", and "if" itself (rewrite) read
# $http_authorization before sa_auth hides the header; before the fix that
# cached copy still gave the whole token to
# "proxy_set_header Authorization $http_authorization" and to an access log
# with $http_authorization.  Now hiding the header marks every cached view
# of it unread: the upstream gets no Authorization, the log "-".  Without an
# earlier read the header was hidden already (checked too).
#
# A second review found that copies kept it: a map whose value is the header
# (the usual limit_conn / limit_req key), a map extracting the token with a
# named capture, a "set" copy, and $1 of "if ($http_authorization ~ ...)"
# all gave the whole token to proxy_set_header and the access log.  Now every
# cached value holding the token's secret, and captures of the header, are
# dropped when it is hidden.
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
my $secret = substr($tok, 21, 20);

my $port = $up->port;
my $pass = "proxy_pass http://127.0.0.1:$port; proxy_set_header Authorization \$http_authorization;"
         . " proxy_set_header X-Seen \$http_authorization;";

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    limit_req_zone \$http_authorization zone=pertoken:1m rate=1000r/s;
    map \$http_authorization \$has_auth { default 0; "~." 1; }
    map \$http_authorization \$mauth { default \$http_authorization; }
    map \$http_authorization \$mtok { "~^Bearer (?<t>.+)\$" \$t; default ""; }
    limit_conn_zone \$mauth zone=perconn:1m;
    limit_req_zone \$mauth zone=permap:1m rate=1000r/s;
    log_format au '\$uri|\$http_authorization|\$sa_status';
    log_format copies '\$uri|\$mauth|\$mtok|\$t2';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/au.log au;

        location /lr/    { limit_req zone=pertoken burst=100; sa_auth api; $pass }
        location /map/   { if (\$has_auth) { set \$x 1; } sa_auth api; $pass }
        location /if/    { if (\$http_authorization ~ Bearer) { set \$x 1; } sa_auth api; $pass }
        location /plain/ { sa_auth api; $pass }
        location /c/ {
            access_log %%DIR%%/copies.log copies;
            location /c/lc/  { limit_conn perconn 10; sa_auth api; $pass proxy_set_header X-Copy \$mauth; }
            location /c/lr/  { limit_req zone=permap burst=100; sa_auth api; $pass proxy_set_header X-Copy \$mauth; }
            location /c/tok/ { if (\$mtok) { set \$x 1; } sa_auth api; $pass proxy_set_header X-Copy \$mtok; }
            location /c/set/ { set \$t2 \$http_authorization; sa_auth api; $pass proxy_set_header X-Copy \$t2; }
            location /c/cap/ { if (\$http_authorization ~ "^Bearer (.+)\$") { set \$x 1; } sa_auth api;
                               $pass proxy_set_header X-Copy \$1; }
        }
        location /any/   { satisfy any; allow 127.0.0.1; deny all;
                           limit_req zone=pertoken burst=100; sa_auth api; sa_scope admin:write; $pass }
    }
CONF

sub upstream_got {
    my ($path, $what) = @_;
    my $n = $up->count;
    my $res = $nginx->get($path, Authorization => "Bearer $tok");
    is($res->{status}, 200, "$what: 200");
    SaTest::wait_until(3, sub { $up->count > $n });
    my ($got) = $up->request($n + 1);
    ok(defined $got, "$what: the upstream got the request") or return;
    unlike($got, qr/^Authorization:/mi, "$what: no Authorization upstream");
    unlike($got, qr/^X-Seen:/mi, "$what: \$http_authorization empty upstream");
    unlike($got, qr/\Q$secret\E/, "$what: no byte of the secret upstream");
}

upstream_got('/lr/x', 'limit_req keyed on $http_authorization');
upstream_got('/map/x', 'a map of $http_authorization in if');
upstream_got('/if/x', 'if ($http_authorization ~ ...)');
upstream_got('/plain/x', 'no earlier read');
upstream_got('/any/x', 'satisfy any, refused token let in by allow, limit_req on it');

my $log = SaTest::wait_until(3, sub {
    my $l = SaTest::slurp($nginx->dir . '/au.log');
    ($l =~ tr/\n//) >= 5 ? $l : 0 });
unlike($log, qr/\Q$secret\E/, 'the access log ($http_authorization) has no byte of the secret');
like($log, qr{^/lr/x\|-\|ok$}m, 'the access log: "-" for $http_authorization after limit_req read it');

# copies made before the access phase
for (['/c/lc/x', 'limit_conn keyed on a map of $http_authorization'],
     ['/c/lr/x', 'limit_req keyed on a map of $http_authorization'],
     ['/c/tok/x', 'a map extracting the token (named capture), read by if'],
     ['/c/set/x', 'set $t2 $http_authorization'],
     ['/c/cap/x', '$1 of if ($http_authorization ~ ...)']) {
    my ($path, $what) = @$_;
    my $n = $up->count;
    my $res = $nginx->get($path, Authorization => "Bearer $tok");
    is($res->{status}, 200, "$what: 200");
    SaTest::wait_until(3, sub { $up->count > $n });
    my ($got) = $up->request($n + 1);
    ok(defined $got, "$what: the upstream got the request") or next;
    unlike($got, qr/\Q$secret\E/, "$what: no byte of the secret upstream");
    unlike($got, qr/^X-Copy:/mi, "$what: the copy is empty upstream");
}
my $copies = SaTest::wait_until(3, sub {
    my $l = SaTest::slurp($nginx->dir . '/copies.log');
    ($l =~ tr/\n//) >= 5 ? $l : 0 });
unlike($copies, qr/\Q$secret\E/, 'the access log of the copies has no byte of the secret');
like($copies, qr{^/c/lc/x\|\|\|$}m, "the access log: each copy empty");

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, 'no alert, no crash');
done_testing;
