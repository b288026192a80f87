# Why "limit_req_zone $sa_account" limits nothing, and what works instead
# (issue 25; docs/policies.md "limit_req and $sa_account"): limit_req runs
# in the preaccess phase, before sa_auth's access handler has set
# $sa_account, and skips a request whose key is empty.  Authenticating in
# one server and limiting in a second one that the first proxies to, keyed
# on the account it sends along, works: each account gets its own bucket.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $t1 = $f->token('a:b');
my $t2 = $f->token('a:b');
$f->as(qw(account create platform other --app api));
chomp(my $t3 = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(token issue platform/other --scope a:b))->{out});

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    limit_req_zone $sa_account zone=wrong:1m rate=1r/m;
    limit_req_zone $http_x_sa_account zone=right:1m rate=1r/m;
    limit_req_status 429;
    server {
        listen unix:%%DIR%%/limited.sock;
        access_log off;
        root %%DIR%%/html;
        location / {
            # a static file: "return" would answer in the rewrite phase,
            # before limit_req's preaccess phase
            limit_req zone=right burst=2 nodelay;
            try_files /index.html =404;
        }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        location /wrong/ {
            sa_auth api;
            limit_req zone=wrong burst=2 nodelay;
            try_files /index.html =404;
        }
        location /right/ {
            sa_auth api;
            proxy_set_header X-Sa-Account $sa_account;
            proxy_pass http://unix:%%DIR%%/limited.sock;
        }
    }
CONF

sub count {
    my ($path, $tok, $n) = @_;
    my %c;
    $c{ $nginx->get($path, Authorization => "Bearer $tok")->{status} }++ for 1 .. $n;
    return join ' ', map { "$_=$c{$_}" } sort keys %c;
}

is(count('/wrong/', $t1, 10), '200=10',
   'limit_req_zone $sa_account: 10 of 10 admitted, nothing limited (the key is empty in preaccess)');
is(count('/right/', $t1, 10), '200=3 429=7',
   'limited in the proxied server on X-Sa-Account: 1 + burst 2 admitted, 7 refused');
is(count('/right/', $t2, 2), '429=2', 'per account: another token of the same account shares the bucket');
is(count('/right/', $t3, 4), '200=3 429=1', 'another account has its own bucket');
my $r = $nginx->get('/right/', Authorization => 'Bearer ' . SaTest::forged_token());
is($r->{status}, 401, 'an unknown token never reaches the limiter');
my $spoof = $nginx->get('/right/', Authorization => "Bearer $t3", 'X-Sa-Account' => 'someone-else');
is($spoof->{status}, 429,
   'a client-sent X-Sa-Account is replaced by proxy_set_header: still its own (spent) bucket');

done_testing;
