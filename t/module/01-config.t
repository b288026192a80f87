# Configuration errors fail "nginx -t" with a clear message.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $keys = SaTest::keys_dir();
my $dir = SaTest::tmpdir();

sub conf_fails {
    my ($http, $message, $name) = @_;
    my ($ok, $out) = SaTest::Nginx->test_config(http => $http);
    ok(!$ok, "$name: nginx -t fails");
    like($out, $message, "$name: message") or diag $out;
}

sub server {
    my ($location) = @_;
    return "server { listen 127.0.0.1:%%PORT%%; location / { $location } }";
}

my $base = "sa_redis 127.0.0.1:6379; sa_verify_key $keys/verify.key;\n";

my ($ok, $out) = SaTest::Nginx->test_config(http => $base . server(
    'sa_auth "api"; sa_scope stacks:read deploy:write; sa_scope a.b-c_d:x;'
    . ' sa_application $host; sa_hide_credentials off;'
    . ' limit_except GET { sa_scope stacks:write; sa_auth off; }'));
ok($ok, 'a full valid configuration passes') or diag $out;

conf_fails($base . server('sa_auth api; sa_scope Stacks:read;'),
           qr/invalid scope "Stacks:read"/, 'upper case scope');
conf_fails($base . server('sa_auth api; sa_scope stacks;'),
           qr/invalid scope "stacks"/, 'scope without action');
conf_fails($base . server('sa_auth api; sa_scope stacks:*;'),
           qr/invalid scope "stacks:\*"/, 'wildcard as a required scope');
conf_fails("sa_redis 127.0.0.1:6379; sa_verify_key $dir/none.key;"
           . server('sa_auth api;'),
           qr/sa_verify_key .*none\.key.*No such file/, 'missing key file');
conf_fails("sa_redis 127.0.0.1:6379; sa_verify_key $keys/signing.key;"
           . server('sa_auth api;'),
           qr/is a signing key, expected a verify key/, 'signing key given');
SaTest::spit("$dir/short.key", "sa-verify-key-v1 AAAA\n");
conf_fails("sa_redis 127.0.0.1:6379; sa_verify_key $dir/short.key;"
           . server('sa_auth api;'),
           qr/wrong key size/, 'short key');
conf_fails("sa_redis 127.0.0.1:abc; sa_verify_key $keys/verify.key;"
           . server('sa_auth api;'),
           qr/invalid port in sa_redis/, 'bad port');
conf_fails("sa_redis 127.0.0.1:6379 db=x; sa_verify_key $keys/verify.key;"
           . server('sa_auth api;'),
           qr/invalid "db" value/, 'bad db');
conf_fails("sa_redis 127.0.0.1:6379 colour=blue; sa_verify_key $keys/verify.key;"
           . server('sa_auth api;'),
           qr/invalid parameter "colour=blue"/, 'unknown parameter');
conf_fails(server('sa_auth api;'),
           qr/"sa_auth" requires "sa_redis" \(or "sa_redis_sentinel"\) and "sa_verify_key"/,
           'sa_auth without Redis');
conf_fails($base . server('sa_auth "a\"b";'),
           qr/needs a non-empty realm without quotes/, 'quote in realm');
conf_fails($base . 'server { listen 127.0.0.1:%%PORT%%; sa_redis 127.0.0.1:1; }',
           qr/"sa_redis" directive is not allowed here/, 'sa_redis in server');

conf_fails($base . 'sa_redis_prefix ' . ('p' x 101) . ';' . server('sa_auth api;'),
           qr/sa_redis_prefix "p+" is too long: at most 100 bytes/, 'prefix too long');
($ok, $out) = SaTest::Nginx->test_config(http => $base . 'sa_redis_prefix ' . ('p' x 100) . ';'
                                         . server('sa_auth api;'));
ok($ok, 'a prefix of 100 bytes passes') or diag $out;
conf_fails($base . 'sa_cache zone=sa:1m heartbeat=0;' . server('sa_auth api;'),
           qr/invalid parameter "heartbeat=0"/, 'heartbeat 0');
conf_fails($base . 'sa_cache zone=sa:1m versions=4;' . server('sa_auth api;'),
           qr/invalid parameter "versions=4"/, 'a version memory below one set of 8');
conf_fails($base . 'sa_cache zone=sa:1m versions=lots;' . server('sa_auth api;'),
           qr/invalid parameter "versions=lots"/, 'versions not a number');
conf_fails($base . 'sa_cache zone=sa:1m heartbeat=soon;' . server('sa_auth api;'),
           qr/invalid time "heartbeat=soon"/, 'heartbeat not a time');
($ok, $out) = SaTest::Nginx->test_config(http => $base
    . 'sa_cache zone=sa:1m ttl=5m negative_ttl=2s stale=10s heartbeat=250ms versions=100000;'
    . server('sa_auth api;'));
ok($ok, 'sa_cache with every parameter') or diag $out;

# key rotation: up to 4 verify keys
{
    my @k = map { my $d = SaTest::new_dir("k$_");
                  SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $d]);
                  "$d/verify.key" } 1 .. 5;
    my $keys4 = join '', map { "sa_verify_key $_; " } @k[0 .. 3];
    ($ok, $out) = SaTest::Nginx->test_config(http => "sa_redis 127.0.0.1:6379; $keys4"
                                             . server('sa_auth api;'));
    ok($ok, 'four sa_verify_key lines pass') or diag $out;
    conf_fails("sa_redis 127.0.0.1:6379; $keys4 sa_verify_key $k[4];" . server('sa_auth api;'),
               qr/"sa_verify_key" directive is given more than 4 times/, 'a fifth key');
}

($ok, $out) = SaTest::Nginx->test_config(http => server('sa_auth off;'));
ok($ok, 'sa_auth off needs no Redis') or diag $out;

($ok, $out) = SaTest::Nginx->test_config(
    http => "sa_redis unix:$dir/redis.sock db=3 password=secret user=gw;"
            . " sa_verify_key $keys/verify.key; sa_redis_timeout 50ms;"
            . " sa_redis_prefix test:;" . server('sa_auth api;'));
ok($ok, 'unix socket, db, password, user, timeout, prefix') or diag $out;

done_testing;
