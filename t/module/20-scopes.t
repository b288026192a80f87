# Scopes and applications: any-of within a line, all-of across lines,
# wildcards, inner blocks replacing outer lines, limit_except, sa_application
# from a regex capture, changes seen on the very next request, satisfy.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(billing)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub tid { SaTest::tid($_[0]) }

sub issue { SaTest::issue_token($redis, @_) }


my %tok = (
    read   => issue('platform/ci', 'stacks:read'),
    write  => issue('platform/ci', 'stacks:write'),
    deploy => issue('platform/ci', 'deploy:write'),
    both   => issue('platform/ci', 'stacks:read', 'deploy:write'),
    rw     => issue('platform/ci', 'stacks:read', 'stacks:write'),
    wild   => issue('platform/ci', 'stacks:*'),
    star   => issue('platform/ci', '*'),
    logs   => issue('platform/ci', 'logs:read'),
    none   => issue('platform/ci'),
);

my $pass = 'proxy_pass http://unix:%%DIR%%/backend.sock;';
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<CONF);
    log_format sa '\$arg_case \$status \$sa_status';
    server {
        listen unix:%%DIR%%/backend.sock;
        access_log off;
        location / { return 200 "ok \$request_method\\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        sa_auth api;
        location /open/  { $pass }
        location /any/   { sa_scope stacks:read deploy:write; $pass }
        location /all/   { sa_scope stacks:read; sa_scope deploy:write; $pass }
        location /write/ { sa_scope stacks:write; $pass }
        location /outer/ {
            sa_scope stacks:read;
            $pass
            location /outer/inner/ { sa_scope deploy:write; $pass }
        }
        location /stacks/ {
            sa_scope stacks:read;
            $pass
            limit_except GET { sa_scope stacks:write; }
        }
        location ~ ^/apps/([a-z]+)/ { sa_application \$1; $pass }
        location /empty/ { set \$app ""; sa_application \$app; $pass }
        location /both-fail/ { sa_application payroll; sa_scope logs:read; $pass }
        location /public/ { sa_auth off; $pass }
        location /lan/ {
            satisfy any; allow 127.0.0.1; deny all;
            $pass
        }
        location /nolan/ {
            satisfy any; deny all;
            $pass
        }
        location /strict/ {
            satisfy all; deny all;
            $pass
        }
    }
CONF

my $seq = 0;
# req(method, path, token name or undef) -> [status, challenge, sa_status]
sub req {
    my ($method, $path, $who) = @_;
    my $case = 'c' . ++$seq;
    my $res = $nginx->request($method, "$path?case=$case",
                              defined $who ? (Authorization => "Bearer $tok{$who}") : ());
    my $logged = SaTest::wait_until(2, sub {
        SaTest::slurp($nginx->dir . '/sa.log') =~ /^$case \d+ (\S+)$/m ? $1 : 0;
    });
    return [$res->{status}, $res->{headers}{'www-authenticate'}, $logged || '(not logged)'];
}

sub allowed {
    my ($method, $path, $who) = @_;
    is(req($method, $path, $who)->[0], 200, "$method $path with $who: 200");
}

# denied(method, path, who, scope line or undef, sa_status)
sub denied {
    my ($method, $path, $who, $scope, $status) = @_;
    my $got = req($method, $path, $who);
    my $challenge = 'Bearer realm="api", error="insufficient_scope"'
                  . (defined $scope ? qq{, scope="$scope"} : '');
    is_deeply($got, [403, $challenge, $status // 'insufficient_scope'],
              "$method $path with $who: 403 " . ($status // 'insufficient_scope'));
}

# ---- any-of, all-of, no sa_scope
allowed(GET => '/any/', $_) for qw(read deploy both wild star);
denied(GET => '/any/', $_, 'stacks:read deploy:write') for qw(write logs);
allowed(GET => '/all/', $_) for qw(both star);
denied(GET => '/all/', 'read', 'deploy:write');
denied(GET => '/all/', 'deploy', 'stacks:read');
denied(GET => '/all/', 'wild', 'deploy:write');
allowed(GET => '/open/', $_) for qw(read logs star);
denied(GET => '/open/', 'none', undef);
denied(GET => '/any/', 'none', 'stacks:read deploy:write');
denied(GET => '/all/', 'none', 'stacks:read');
denied(GET => '/write/', 'none', 'stacks:write');

# ---- wildcards: resource:* covers every action of that resource only
allowed(GET => '/write/', $_) for qw(write wild star);
denied(GET => '/write/', $_, 'stacks:write') for qw(read deploy logs);

# ---- an inner location's sa_scope replaces the outer one
allowed(GET => '/outer/', 'read');
denied(GET => '/outer/', 'deploy', 'stacks:read');
allowed(GET => '/outer/inner/', 'deploy');
denied(GET => '/outer/inner/', 'read', 'deploy:write');

# ---- limit_except: GET needs read, other methods need write (only)
allowed(GET => '/stacks/', 'read');
denied(POST => '/stacks/', 'read', 'stacks:write');
denied(DELETE => '/stacks/', 'read', 'stacks:write');
allowed(POST => '/stacks/', 'write');
denied(GET => '/stacks/', 'write', 'stacks:read');
allowed($_ => '/stacks/', 'rw') for qw(GET POST);
allowed($_ => '/stacks/', 'wild') for qw(GET POST PUT);
is(req(POST => '/stacks/', undef)->[0], 401, 'POST /stacks/ without a token: 401');

# ---- sa_application from a regex capture
allowed(GET => '/apps/billing/x', 'read');
denied(GET => '/apps/payroll/x', 'read', undef, 'forbidden_application');
denied(GET => '/empty/', 'read', undef, 'forbidden_application');       # empty: refused
denied(GET => '/apps/payroll/x', 'star', undef, 'forbidden_application');
denied(GET => '/both-fail/', 'read', undef, 'forbidden_application');  # application first

SaTest::operator($redis, qw(account create platform all --app *));
$tok{everywhere} = issue('platform/all', 'stacks:read');
allowed(GET => "/apps/$_/x", 'everywhere') for qw(billing payroll);

# ---- changes take effect on the very next request
$tok{change} = issue('platform/ci', 'stacks:read');
allowed(GET => '/stacks/', 'change');
is(as('token', 'scope', tid($tok{change}), '--scope', 'deploy:write')->{code}, 0, 'token scope');
denied(GET => '/stacks/', 'change', 'stacks:read');
allowed(GET => '/outer/inner/', 'change');
as('token', 'scope', tid($tok{change}), '--scope', 'stacks:write');
allowed(POST => '/stacks/', 'change');
as('token', 'scope', tid($tok{change}));
denied(POST => '/stacks/', 'change', 'stacks:write');
denied(GET => '/open/', 'change', undef);

$tok{grant} = issue('platform/ci', 'stacks:read');
allowed(GET => '/apps/billing/x', 'grant');
is(as(qw(account ungrant platform/ci --app billing))->{code}, 0, 'account ungrant');
denied(GET => '/apps/billing/x', 'grant', undef, 'forbidden_application');
allowed(GET => '/stacks/', 'grant');    # no sa_application there
as(qw(account grant platform/ci --app billing));
allowed(GET => '/apps/billing/x', 'grant');

$tok{revoke} = issue('platform/ci', 'stacks:read');
allowed(GET => '/stacks/', 'revoke');
is(as('token', 'revoke', tid($tok{revoke}))->{code}, 0, 'token revoke');
is_deeply(req(GET => '/stacks/', 'revoke'),
          [401, 'Bearer realm="api", error="invalid_token"', 'revoked'], 'revoked: 401');

as(qw(account create platform doomed --app billing));
$tok{doomed} = issue('platform/doomed', 'stacks:read');
allowed(GET => '/stacks/', 'doomed');
is(as(qw(account delete platform/doomed))->{code}, 0, 'account delete');
is_deeply(req(GET => '/stacks/', 'doomed'),
          [401, 'Bearer realm="api", error="invalid_token"', 'revoked'], 'deleted account: 401');

# ---- sa_auth off, satisfy any / all
is(req(GET => '/public/', undef)->[0], 200, 'sa_auth off: no token needed');
is(req(GET => '/lan/', undef)->[0], 200, 'satisfy any, allowed address: no token needed');
is(req(GET => '/nolan/', undef)->[0], 401, 'satisfy any, address denied, no token: 401');
allowed(GET => '/nolan/', 'read');
is(req(GET => '/strict/', 'read')->[0], 403, 'satisfy all, deny all: a valid token still gets 403');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, 'no alert, no crash');

done_testing;
