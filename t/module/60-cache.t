# sa_cache: hits without Redis, immediate invalidation, lost messages,
# replayed records, stale-if-error, negative entries, last use (a full zone:
# 62-zone-full.t).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use SaTest;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub issue { $f->issue(@_) }
sub gets {
    my $stats = $redis->cmd('INFO', 'commandstats');
    return $stats =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0;
}

my ($token, $id) = issue(qw(--scope stacks:read));

# sa_redis_timeout 1s: nothing here is about a slow Redis, and a GET past
# the default 200 ms on a loaded machine would be a 503
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m;
    sa_redis_timeout 1s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            sa_auth api;
            sa_scope stacks:read;
            sa_application api;
            root %%DIR%%/html;
        }
    }
CONF

sub status { $nginx->get('/index.html', Authorization => "Bearer $_[0]")->{status} }
sub subscribed { $redis->wait_subscribed(2) }

subscribed();
is(status($token), 200, 'first request');
my $before = gets();
is(status($token), 200, 'again') for 1 .. 10;
is(gets(), $before, 'ten cache hits cost no Redis GET');

# changes take effect on the next request, even with a five-minute ttl
as('token', 'scope', $id, '--scope', 'other:read');
is(status($token), 403, 'rescope seen on the next request');
as('token', 'scope', $id, '--scope', 'stacks:read');
is(status($token), 200, 'and back');
as('account', 'ungrant', 'platform/ci', '--app', 'api');
is(status($token), 403, 'ungrant seen on the next request');
as('account', 'grant', 'platform/ci', '--app', 'api');
is(status($token), 200, 'and grant');
as('token', 'revoke', $id);
is(status($token), 401, 'revocation seen on the next request');

my ($t2, $id2) = issue(qw(--scope stacks:read));
is(status($t2), 200, 'a second token, cached');
as('account', 'delete', 'platform/ci');
is(status($t2), 401, 'account deletion seen on the next request');
as(qw(account create platform ci --app api));

# a lost message: the subscription drops, a change happens meanwhile
my ($t3, $id3) = issue(qw(--scope stacks:read));
is(status($t3), 200, 'cached');
$redis->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
is(as('token', 'revoke', $id3)->{code}, 0, 'revoked while nobody listens');
is(status($t3), 401, 'no stale grant, subscribed or not');
subscribed();
is(status($t3), 401, 'nor after resubscribing');

# a replayed older record is refused by a gateway that saw a newer one
my ($t4, $id4) = issue(qw(--scope stacks:read));
my $v1 = $redis->cmd('GET', "sa:tok:$id4");
as('token', 'scope', $id4, '--scope', 'stacks:read', '--scope', 'x:y');
is(status($t4), 200, 'version 2 seen');
$redis->cmd('SET', "sa:tok:$id4", $v1);
$redis->cmd('PUBLISH', 'sa:invalidate', $id4);
$redis->barrier;    # the message is on every subscriber's socket
is(status($t4), 401, 'version 1 replayed: refused');
like($nginx->access_log . $nginx->error_log, qr/version 1 is older than one already seen/,
     'logged as a replay');

# negative entries: a flood of one unknown token is one GET
$redis->cmd('DEL', "sa:tok:$id4");
$redis->cmd('PUBLISH', 'sa:invalidate', $id4);
my ($t5, $id5) = issue();
$redis->cmd('DEL', "sa:tok:$id5");
$before = gets();
is(status($t5), 401, 'unknown') for 1 .. 20;
ok(gets() - $before <= 2, 'twenty requests, at most one GET per worker: ' . (gets() - $before));

# last use: written at most once a minute
my ($t6, $id6) = issue(qw(--scope stacks:read));
status($t6);
SaTest::wait_for('last use', sub { $redis->cmd('GET', "sa:tok:$id6:used") });
ok(abs($redis->cmd('GET', "sa:tok:$id6:used") - time) < 5, 'last use recorded');
$redis->cmd('SET', "sa:tok:$id6:used", 'marker');
status($t6) for 1 .. 5;
sleep 0.2;    # a negative check: time for a wrong SET
is($redis->cmd('GET', "sa:tok:$id6:used"), 'marker', 'not again within the minute');
my $list = as('token', 'list', 'platform/ci', '--json')->{json};
ok((grep { $_->{id} eq $id6 } @$list), 'token list shows it');

# reload keeps the zone; the new workers resubscribe and revalidate
$nginx->reload;
subscribed();
is(status($t6), 200, 'after reload');

# stale-if-error: not by default, only within the bound when configured
$redis->kill9;
is(status($t6), 503, 'Redis down, no stale configured: 503');
$redis->launch;
$nginx->reload(http => $nginx->{http} =~ s/negative_ttl=5m/negative_ttl=5m stale=2s/r
                                      =~ s/ttl=5m /ttl=1s /r);
as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(api));
as(qw(account create platform ci --app api));
my ($t7, $id7) = issue(qw(--scope stacks:read));
my ($t8, $id8) = issue(qw(--scope stacks:read));
subscribed();
is(status($t7), 200, 'cached with ttl=1s stale=2s');
is(status($t8), 200, 'another, cached');
like($redis->cmd('GET', "sa:tok:$id7"), qr/"version":1[,}]/, 'at version 1');
# Each worker hears every change, some later than another worker that
# cached the record holding it: heard again, it leaves that record good;
# a message naming a newer version than the one cached drops it
$redis->cmd('PUBLISH', 'sa:invalidate', "$id7:1");
$redis->cmd('PUBLISH', 'sa:invalidate', "$id8:2");
$redis->barrier;    # both messages are on every subscriber's socket
$redis->kill9;
my $killed = time;
is(status($t7), 200, 'Redis down: served stale');
like($nginx->error_log, qr/serving the cached record of token "$id7"/, 'and logged');
is(status($t8), 503, 'an entry older than the version heard: not served');
sleep 3.2 - (time - $killed);    # time passing: past ttl + stale
is(status($t7), 503, 'beyond ttl + stale: 503');
$redis->launch;

# A resubscription (messages may have been lost) drops every entry, and
# the next request asks Redis; if Redis then cannot answer, stale= may
# still serve it, as it did during the outage. One an invalidation named
# never is. The gateway's GET is refused (an ACL) while SUBSCRIBE works.
as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(api));
as(qw(account create platform ci --app api));
my ($t9)  = issue(qw(--scope stacks:read));
my ($t10, $id10) = issue(qw(--scope stacks:read));
subscribed();
ok(SaTest::wait_until(5, sub { status($t9) == 200 }), 'resubscription: a token cached (Redis back)');
ok(SaTest::wait_until(3, sub { status($t10) == 200 }), 'resubscription: another, cached');
$redis->cmd('PUBLISH', 'sa:invalidate', $id10);
$redis->cmd('ACL', 'SETUSER', 'default', '-get');
$redis->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
subscribed();
is(status($t9), 200, 'resubscribed, GET refused: the dropped entry is served stale');
is(status($t10), 503, 'the entry an invalidation named is not');
like($nginx->error_log, qr/Redis answered GET|NOPERM|unavailable/, 'the refused GET is logged');
$redis->cmd('ACL', 'SETUSER', 'default', '+get');
ok(SaTest::wait_until(3, sub { status($t9) == 200 }), 'GET allowed again: 200 from Redis');
ok(SaTest::wait_until(3, sub { status($t10) == 200 }), 'and the other one');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert');
done_testing;
