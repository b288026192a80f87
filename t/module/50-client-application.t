# "sa_application $http_x_app;" lets the client choose which grant is
# checked (issue 21, item 4): a client sending "X-App: billing" is judged
# for billing.  "nginx -t" now warns when the value uses a variable the
# client sets directly ($http_*, $arg_*, $cookie_*, also as ${...}), and
# stays quiet for a fixed value or one the client does not set.  The
# configuration still passes: the warning is advice, the behaviour is
# shown below as the reason for it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $keys = SaTest::keys_dir();
my $base = "sa_redis 127.0.0.1:6379; sa_verify_key $keys/verify.key;\n";

sub check {
    my ($value) = @_;
    my ($ok, $out) = SaTest::Nginx->test_config(http => $base
        . "server { listen 127.0.0.1:%%PORT%%; location / { sa_auth api; sa_application $value; } }");
    return ($ok, $out);
}

for my $c (['$http_x_app', 'http_x_app'], ['$arg_app', 'arg_app'],
           ['$cookie_app', 'cookie_app'], ['"app-${http_x_app}"', 'http_x_app'],
           ['$HTTP_X_APP', 'HTTP_X_APP'], ['"$host-$arg_app"', 'arg_app']) {
    my ($value, $var) = @$c;
    my ($ok, $out) = check($value);
    ok($ok, "sa_application $value: nginx -t still passes") or diag $out;
    like($out, qr/\[warn\] sa_application "[^"]*" uses "\$\Q$var\E", which the client sets/,
         "sa_application $value: nginx -t warns about \$$var") or diag $out;
}

for my $value ('billing', '$host', '$server_name', '"$scheme-x"', '$http2', '$server_addr') {
    my ($ok, $out) = check($value);
    ok($ok, "sa_application $value: passes");
    unlike($out, qr/sa_application .* uses/, "sa_application $value: no warning") or diag $out;
}

# why: the client picks the grant
my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
is(as(qw(team create platform --owner alice))->{code}, 0, 'team create');
SaTest::apps($redis, 'platform', qw(api billing));
is(as(qw(account create platform ci --app api --app billing))->{code}, 0, 'account granted api and billing');
my $tok = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        location / { sa_auth api; sa_application $http_x_app; }
    }
CONF
like($nginx->error_log, qr/\[warn\] sa_application "\$http_x_app" uses/, 'the warning at start-up too');
is($nginx->get('/', Authorization => "Bearer $tok", 'X-App' => 'billing')->{status}, 200,
   'X-App: billing: the client chose billing, 200');
is($nginx->get('/', Authorization => "Bearer $tok", 'X-App' => 'payroll')->{status}, 403,
   'X-App: payroll: 403');

done_testing;
