# sa_redis pointing at a read replica (a Redis on each gateway host), with
# sa-admin writing to the primary: records and invalidations are replicated
# in order, so a revocation reaches the gateway within the replication lag,
# with and without sa_cache (and the cache's heartbeats, published on the
# replica itself, keep its hits alive).  Writes the gateway makes (last use,
# token.denied) are refused by a read-only replica: silently, no log spam.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $primary = SaTest::Redis->start;
my $replica = SaTest::Redis->start(conf => ['replicaof 127.0.0.1 ' . $primary->port]);
SaTest::wait_for('replication', sub { $replica->cmd('INFO', 'replication') =~ /master_link_status:up/ }, 10);

my $f = SaTest::fixture($primary, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub gets { $replica->calls('get') }
sub replicated { my ($id) = @_; SaTest::wait_until(3, sub { $replica->cmd('EXISTS', "sa:tok:$id") }) }
sub status { $_[0]->get('/index.html', Authorization => "Bearer $_[1]")->{status} }

for my $cached (1, 0) {
    my $name = $cached ? 'with sa_cache' : 'without a cache';
    my $nginx = SaTest::Nginx->start(redis => $replica, http => ($cached ? "sa_cache zone=sa:1m ttl=5m;\n" : '') . <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; sa_application api;
                     root %%DIR%%/html; }
    }
CONF
    my $token = SaTest::issue_token($primary, 'platform/ci', 'stacks:read');
    my $id = substr($token, 4, 16);
    ok(replicated($id), "$name: the record reached the replica");
    is(status($nginx, $token), 200, "$name: 200 through the replica");

    if ($cached) {
        SaTest::wait_until(3, sub { my $g = gets(); status($nginx, $token); gets() == $g });
        my $g = gets();
        is(status($nginx, $token), 200, "$name: again") for 1 .. 3;
        is(gets(), $g, "$name: cache hits (the subscriber on the replica is proven alive)");
    }

    my $t0 = time;
    is(as('token', 'revoke', $id)->{code}, 0, "$name: revoked on the primary");
    my $refused = SaTest::wait_until(2, sub { status($nginx, $token) == 401 });
    ok($refused, sprintf('%s: refused %.3f s after the revoke returned', $name, time - $t0));

    my $weak = SaTest::issue_token($primary, 'platform/ci', 'other:read');
    replicated(substr($weak, 4, 16));
    is(status($nginx, $weak), 403, "$name: a refusal (token.denied cannot be written on a replica)");
    sleep 0.2;    # a negative check: time for a wrong error line
    unlike($nginx->error_log, qr/\[error\]/, "$name: no error logged for the refused writes");
    unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, "$name: no alert");
    $nginx->stop;
}

done_testing;
