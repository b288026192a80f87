# The harness itself: a real Redis answers, nginx starts with our module
# loaded, and nothing is left running.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
is($redis->cmd('PING'), 'PONG', 'redis answers PING');
is($redis->cmd('SET', 'k', "v\r\nx"), 'OK', 'SET');
is($redis->cmd('GET', 'k'), "v\r\nx", 'GET returns the binary-safe value');
is($redis->cmd('GET', 'nothing'), undef, 'a missing key is nil');
$redis->cmd('RPUSH', 'l', 'a', 'b');
is_deeply($redis->cmd('LRANGE', 'l', 0, -1), ['a', 'b'], 'array reply');
isa_ok($redis->cmd_err('BOGUS'), 'SaTest::RedisError', 'error reply');

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { root %%DIR%%/html; }
    }
CONF

like(SaTest::slurp($nginx->dir . '/nginx.conf'), qr/load_module .*ngx_http_sa_module\.so/,
     'the config loads our module');
my $res = $nginx->get('/index.html');
is($res->{status}, 200, 'nginx with the module serves a file');
is($res->{content}, "hello\n", 'the file');
unlike($nginx->error_log, qr/\[(alert|emerg|crit)\]/, 'no alert in the error log');

my ($ok, $out) = SaTest::Nginx->test_config(http => <<'CONF');
    server { listen 127.0.0.1:%%PORT%%; bogus_directive; }
CONF
ok(!$ok, 'nginx -t fails on a bad config');
like($out, qr/unknown directive "bogus_directive"/, 'and says why');

my $pid = $nginx->pid;
ok($nginx->quit, 'nginx quits');
ok(!kill(0, $pid), 'the master is gone');

my $rpid = $redis->pid;
$redis->kill9;
ok(!eval { $redis->cmd('PING'); 1 }, 'a killed Redis fails cleanly');
$redis->restart;
is($redis->cmd('PING'), 'PONG', 'and restarts on the same port');
isnt($redis->pid, $rpid, 'as a new process');

done_testing;
