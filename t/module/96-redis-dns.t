# A Redis host name that moves (issue 24, item 3): with http's "resolver",
# sa_redis's name is resolved through it at every (re)connect; without, it
# is resolved once at start and nginx -t warns.  The DNS server is
# t/lib/fake-dns on a loopback UDP port, whose answer for redis.test moves
# from 127.0.0.2 to 127.0.0.3 while the old Redis dies (the new one, its
# replica, promoted): the gateway follows, without a reload.  A name that
# does not resolve is 503 and an error line, and recovers when it does.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $KEY = SaTest::keys_dir() . '/verify.key';

sub conf {
    my ($lines) = @_;
    return "    $lines\n    sa_verify_key $KEY;\n    sa_redis_timeout 300ms;\n" . <<'CONF';
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; sa_application api;
                     root %%DIR%%/html; }
    }
CONF
}
sub status { $_[0]->get('/index.html', Authorization => "Bearer $_[1]")->{status} }

# ---------------------------------------------------------------- nginx -t
{
    my ($ok, $out) = SaTest::Nginx->test_config(http => conf('sa_redis localhost:6379;'));
    ok($ok, 'nginx -t: a name without a resolver is taken') or diag $out;
    like($out, qr/\[warn\].*sa: Redis "localhost:6379" is resolved once, now: without "resolver" in http, a name that moves is not followed/,
         'nginx -t: and warns that it will not be followed');
    ($ok, $out) = SaTest::Nginx->test_config(http => conf('sa_redis no-such-host.invalid:6379;'));
    ok(!$ok, 'nginx -t: a name that does not resolve, without a resolver: refused');
    like($out, qr/sa: Redis "no-such-host\.invalid:6379": host not found/, 'nginx -t: says so');
    ($ok, $out) = SaTest::Nginx->test_config(http => conf("resolver 127.0.0.1:1;\n    sa_redis redis.test:6379;"));
    ok($ok, 'nginx -t: with a resolver, the name is not resolved at start') or diag $out;
    unlike($out, qr/is resolved once/, 'nginx -t: and no warning');
}

# ---------------------------------------------------------------- the move
my $old = SaTest::Redis->start(host => '127.0.0.2');
my $new = SaTest::Redis->start(host => '127.0.0.3', port => $old->port,
                               conf => ['replicaof 127.0.0.2 ' . $old->port]);
SaTest::wait_for('replication', sub { $new->cmd('INFO', 'replication') =~ /master_link_status:up/ }, 10);
my $f = SaTest::fixture($old, apps => [qw(api)]);
my $token = $f->token('stacks:read');
SaTest::wait_until(3, sub { $new->cmd('EXISTS', 'sa:tok:' . substr($token, 4, 16)) });

my $dns_dir = SaTest::new_dir('dns');
my $dns_port = SaTest::free_port();
SaTest::write_file("$dns_dir/answer", "127.0.0.2\n");
my $dns = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-dns', $dns_port, $dns_dir]);
sleep 0.2;

my $port = $old->port;
my $n = SaTest::Nginx->start(workers => 2, http => conf("resolver 127.0.0.1:$dns_port valid=1s ipv6=off;\n    sa_redis redis.test:$port;"));
ok(SaTest::wait_until(5, sub { status($n, $token) == 200 }), 'redis.test (127.0.0.2): 200');
like(SaTest::slurp("$dns_dir/queries.log"), qr/^redis\.test 1$/m, 'the gateway asked the DNS server for redis.test');

# the move: DNS first, then the old primary dies and the replica takes over
SaTest::write_file("$dns_dir/answer", "127.0.0.3\n");
my $mark = length $n->error_log;
$old->kill9;
$new->cmd('REPLICAOF', 'NO', 'ONE');
my $t0 = time;
my $back = SaTest::wait_until(10, sub { status($n, $token) == 200 });
ok($back, sprintf('followed redis.test to 127.0.0.3: the first 200 %.1f s after the move, without a reload', time - $t0));
# both workers: each reconnect asks the name again once valid=1s is over
my $all = SaTest::wait_until(15, sub {
    my %pids = map { $_ => 1 } substr($n->error_log, $mark)
        =~ /\[info\] (\d+)#\d+: sa: Redis command connection to redis\.test:$port$/mg;
    keys %pids == 2;
});
ok($all, sprintf('both workers connected again (to 127.0.0.3) %.1f s after the move', time - $t0));
my %seen;
$seen{ status($n, $token) }++ for 1 .. 20;
is_deeply(\%seen, { 200 => 20 }, 'and every request after that: 200');
like($n->error_log, qr/Redis command connection to redis\.test:$port (lost|failed)/, 'the old connection ended, logged');

# a name that does not resolve: 503, logged, and recovery
SaTest::write_file("$dns_dir/answer", "fail\n");
sleep 2.5;     # past valid=1s (whole seconds): the cached answer is gone
$new->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
sleep 0.3;     # the reconnect asks the name again
my $codes = join ',', map { status($n, $token) } 1 .. 3;
like($codes, qr/503/, "a name that does not resolve: 503 ($codes)");
ok(SaTest::wait_until(5, sub { $n->error_log =~ /\[error\].*Redis command connection to redis\.test:$port failed: "redis\.test" could not be resolved \(2: Server failure\)/ }),
   'and an error line naming the name and why') or diag SaTest::tail($n->error_log);
SaTest::write_file("$dns_dir/answer", "127.0.0.3\n");
ok(SaTest::wait_until(10, sub { status($n, $token) == 200 }), 'it resolves again: 200, without a reload');
unlike($n->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'no alert, no crash');
ok($n->quit(10), 'graceful quit with the resolver (no timer left)');

done_testing;
