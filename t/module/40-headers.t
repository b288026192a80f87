# What the upstream receives, byte for byte: with sa_hide_credentials on
# (the default) exactly the request the client sent minus Authorization,
# wherever Authorization stood among the other headers, through proxy_pass
# (with and without proxy_pass_request_headers), FastCGI, uwsgi and SCGI;
# and every variable that names a header ($http_host, $http_user_agent,
# $cookie_*, $content_length, $http_x_forwarded_for) still names it.
#
# The reference is the same request without Authorization sent through an
# identical location that has no sa_auth.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $up = SaTest::Recorder->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(api));
as(qw(account create platform ci --app api));
chomp(my $token = as(qw(token issue platform/ci --scope stacks:read))->{out});
my $id = substr($token, 4, 16);

my $port = $up->port;
my %pass = (
    proxy => "proxy_pass http://127.0.0.1:$port/up/;
              proxy_set_header Host \$http_host;
              proxy_set_header X-UA \$http_user_agent;
              proxy_set_header X-Cookie-A \$cookie_a;
              proxy_set_header X-CL \$content_length;
              proxy_set_header X-XFF \$http_x_forwarded_for;",
    proxy_noheaders => "proxy_pass http://127.0.0.1:$port/up/;
              proxy_pass_request_headers off;
              proxy_set_header Host \$http_host;
              proxy_set_header X-UA \$http_user_agent;
              proxy_set_header X-Cookie-A \$cookie_a;
              proxy_set_header X-XFF \$http_x_forwarded_for;",
    map({ my $m = $_;
          ($m => "${m}_pass 127.0.0.1:$port;"
                 . ($m eq 'scgi' ? '' : " ${m}_param CONTENT_LENGTH \$content_length;")
                 . " ${m}_param REQUEST_METHOD \$request_method;
                   ${m}_param X_HOST \$http_host;
                   ${m}_param X_UA \$http_user_agent;
                   ${m}_param X_COOKIE_A \$cookie_a;
                   ${m}_param X_XFF \$http_x_forwarded_for;") } qw(fastcgi uwsgi scgi)),
);

my $locations = '';
for my $name (sort keys %pass) {
    $locations .= "location /a/$name/ { sa_auth api; sa_scope stacks:read; $pass{$name} }\n";
    $locations .= "location /b/$name/ { $pass{$name} }\n";
}

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    server {
        listen 127.0.0.1:%%PORT%%;
        $locations
    }
CONF

# What the upstream got for one raw request.
sub upstream_gets {
    my ($raw) = @_;
    my $before = $up->count;
    my $res = SaTest::Conn->new($nginx->port)->request($raw);
    return (undef, $res) unless $res && $res->{status} == 200 && $up->count == $before + 1;
    return (($up->request)[0], $res);
}

my @others = (
    [Host => 'tenant-a.example'],
    ['User-Agent' => 'real-ua'],
    [Cookie => 'a=cookie-a; b=2'],
    ['X-Forwarded-For' => '10.0.0.1'],
    ['X-Pad' => 'tenant-b.example'],
);

my $auth = ['Authorization' => "Bearer $token"];

for my $name (sort keys %pass) {
    for my $method ('GET', 'POST') {
        my @base = @others;
        push @base, ['Content-Length' => 11] if $method eq 'POST';
        my $body = $method eq 'POST' ? 'hello=world' : '';
        for my $pos (0 .. @base) {
            my @with = @base;
            splice @with, $pos, 0, $auth;
            my $head = sub { join '', map { "$_->[0]: $_->[1]\r\n" } @_ };
            my ($got, $res) = upstream_gets("$method /a/$name/x HTTP/1.1\r\n"
                                            . $head->(@with) . "\r\n$body");
            my ($want) = upstream_gets("$method /b/$name/x HTTP/1.1\r\n"
                                       . $head->(@base) . "\r\n$body");
            my $what = "$name, $method, Authorization at position $pos of " . @with;
            ok(defined $got, "$what: proxied")
                or diag("status $res->{status}"), next;
            is($got, $want, "$what: upstream got the request byte for byte, minus Authorization")
                or diag(explain({ got => $got, want => $want }));
            unlike($got, qr/Bearer|\Q$id\E/, "$what: no trace of the token");
        }
    }
}

# what the issue reproduced: Host reaches the upstream unchanged
my ($got) = upstream_gets("GET /a/proxy/x HTTP/1.1\r\nAuthorization: Bearer $token\r\n"
    . "Host: tenant-a.example\r\nUser-Agent: real-ua\r\nX-Pad: tenant-b.example\r\n\r\n");
like($got, qr/\r\nHost: tenant-a\.example\r\n/, 'Host: tenant-a.example upstream');
like($got, qr/\r\nX-UA: real-ua\r\n/, '$http_user_agent is the User-Agent');

# sa_hide_credentials off: the header goes upstream as it came
$nginx->reload(http => $nginx->{http} =~ s{sa_auth api;}{sa_auth api; sa_hide_credentials off;}gr);
($got) = upstream_gets("GET /a/proxy/x HTTP/1.1\r\nAuthorization: Bearer $token\r\n"
                       . "Host: tenant-a.example\r\n\r\n");
like($got, qr/\r\nAuthorization: Bearer \Q$token\E\r\n/, 'hiding off: Authorization passed on');
like($got, qr/\r\nHost: tenant-a\.example\r\n/, 'hiding off: Host unchanged');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert');
done_testing;
