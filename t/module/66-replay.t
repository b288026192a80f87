# Replayed older records on a running caching gateway (issue 21, item 6):
# a Redis writer puts back a record saved before a revoke or a rescope.
# The invalidation carries the new version, and the version memory, apart
# from the evictable entries, keeps it against floods and reloads.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use POSIX ();
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub issue { $f->issue(@_) }
sub record { $redis->cmd('GET', "sa:tok:$_[0]") }
sub replay { $redis->cmd('SET', "sa:tok:$_[0]", $_[1], 'KEEPTTL') }


my $http = <<'CONF';
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; root %%DIR%%/html; }
        location /admin/ {
            sa_auth api; sa_scope admin:write;
            alias %%DIR%%/html/;
        }
    }
CONF
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => $http);

sub status {
    my ($token, $path) = @_;
    return $nginx->get($path // '/index.html', Authorization => "Bearer $token")->{status};
}
# statuses of n requests, as "401x20" or "200x3 401x17"
sub statuses {
    my ($n, @req) = @_;
    my %s;
    $s{ status(@req) }++ for 1 .. $n;
    return join ' ', map { "${_}x$s{$_}" } sort keys %s;
}
sub subscribed { $redis->wait_subscribed(2) }
subscribed();

# 1. revoked, nobody uses it afterwards, its old record back 3 s later
my ($ta, $ida) = issue(qw(--scope stacks:read));
is(status($ta), 200, 'a token in use (cached)');
my $v1a = record($ida);
as('token', 'revoke', $ida);
sleep 3;    # time passing: the replay comes 3 s later
replay($ida, $v1a);
is(statuses(20, $ta), '401x20', 'its pre-revoke record put back 3 s later: refused');
like($nginx->error_log, qr/version 1 is older than one already seen/, 'logged as a replay');

# a message naming a lower version lowers nothing
$redis->cmd('PUBLISH', 'sa:invalidate', "$ida:1");
$redis->barrier;    # the message is on every subscriber's socket
is(statuses(10, $ta), '401x10', 'an invalidation naming version 1 does not undo it');

# 2. put back as soon as the invalidation is heard
my ($tb, $idb) = issue(qw(--scope stacks:read));
is(status($tb), 200, 'another token in use');
my $v1b = record($idb);
my $sub = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis->port) or die;
print $sub "SUBSCRIBE sa:invalidate\r\n";
<$sub> for 1 .. 6;
my $pid = fork // die;
if (!$pid) {
    as('token', 'revoke', $idb);
    POSIX::_exit(0);
}
my @msg = map { scalar <$sub> } 1 .. 7;
replay($idb, $v1b);
waitpid $pid, 0;
close $sub;
(my $payload = $msg[6]) =~ s/\r?\n//;
like($payload, qr/^\Q$idb\E:2$/, 'the message names the token and its new version');
is(statuses(20, $tb), '401x20', 'put back right after the message: refused');

# 3. reload, then 12,000 random well-formed tokens, then the replay
my ($tc, $idc) = issue(qw(--scope stacks:read));
is(status($tc), 200, 'a third token in use');
my $v1c = record($idc);
as('token', 'revoke', $idc);
is(status($tc), 401, 'revoked: the tombstone read');
$nginx->reload;
subscribed();
is(SaTest::flood($nginx->port, 12000), 12000, '12,000 forged tokens answered');
replay($idc, $v1c);
is(statuses(20, $tc), '401x20', 'after a reload and the flood: the replay still refused, 20 of 20');

# 4. a rescoped token's older, wider record does not bring the scope back
my ($td, $idd) = issue(qw(--scope stacks:read --scope admin:write));
is(status($td, '/admin/index.html'), 200, 'admin:write while the token has it');
my $v1d = record($idd);
as('token', 'scope', $idd, '--scope', 'stacks:read');
is(status($td, '/admin/index.html'), 403, 'rescoped: 403');
$nginx->reload;
subscribed();
is(SaTest::flood($nginx->port, 12000), 12000, 'another 12,000 forged tokens');
replay($idd, $v1d);
my $got = statuses(20, $td, '/admin/index.html');
unlike($got, qr/200/, "the wider record put back: never 200 ($got)");
is(statuses(10, $td), '401x10', 'and the token is refused while the older record is there');

# the memory has its own bound: a table of 8 keeps only what fits, logs it
$nginx->reload(http => $http =~ s/negative_ttl=5m/negative_ttl=5m versions=8/r);
subscribed();
$redis->cmd('PUBLISH', 'sa:invalidate',
            join ' ', map { SaTest::forged_token() =~ /^sat_(.{16})/ ? "$1:7" : () } 1 .. 9);
SaTest::wait_for('the log line', sub { $nginx->error_log =~ /version memory full/ });
pass('a full version memory says so');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'no alert');

# the window that remains (SECURITY.md): a gateway started afresh has no
# memory, and takes the put-back record of the third token, still in Redis
$nginx->stop;
my $fresh = SaTest::Nginx->start(redis => $redis, workers => 2, http => $http);
subscribed();
is($fresh->get('/index.html', Authorization => "Bearer $tc")->{status}, 200,
   'a restarted gateway knows no versions: the replayed record is taken');
as('token', 'revoke', $idc);
is($fresh->get('/index.html', Authorization => "Bearer $tc")->{status}, 401,
   'until the token is changed again');
done_testing;
