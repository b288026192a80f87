# sa_redis_sentinel: the gateway asks Redis Sentinel where the master is.
#
#   A. nginx -t: what the directive accepts and refuses.
#   B. A sentinel that names a replica: ROLE says it is not the master, so
#      503, never a read from it; a +switch-master to the real master and the
#      gateway follows at once, without a reload.  A dead first sentinel is
#      skipped; no sentinel at all is 503 (never a hang).
#   C. kill -9 of the primary and of a sentinel under load (three gateways: two workers with
#      sa_cache, one worker without, one with sa_cache stale=): all serve
#      again once the sentinels
#      have promoted the replica, with no reload and no alert; a token
#      revoked just before the kill and one revoked just after are never
#      admitted; sa-admin through the sentinels' URL works after it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $KEY = SaTest::keys_dir() . '/verify.key';

sub gateway_conf {
    my ($directive, $cached) = @_;
    return "    $directive\n    sa_verify_key $KEY;\n"
         . ($cached ? "    sa_cache zone=sa:1m ttl=5m;\n" : '') . <<'CONF';
    sa_redis_timeout 300ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; sa_application api;
                     root %%DIR%%/html; }
    }
CONF
}

sub status { $_[0]->get('/index.html', Authorization => "Bearer $_[1]")->{status} }
sub no_alert { unlike($_[0]->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, "$_[1]: no alert, no crash") }

# ---------------------------------------------------------------- A. nginx -t
{
    my @cases = (
        ['sa_redis_sentinel sa;', qr/invalid number of arguments/, 'a master and no sentinel'],
        ['sa_redis_sentinel sa db=1;', qr/needs at least one sentinel/, 'only options'],
        ['sa_redis_sentinel sa unix:/tmp/s.sock;', qr/a sentinel is "host:port"/, 'a unix socket'],
        ['sa_redis_sentinel sa 127.0.0.1:99999;', qr/invalid port in sa_redis_sentinel/, 'a bad port'],
        ['sa_redis_sentinel sa 127.0.0.1:1 colour=blue;', qr/invalid parameter "colour=blue"/, 'a bad option'],
        ["sa_redis 127.0.0.1:1;\n    sa_redis_sentinel sa 127.0.0.1:1;", qr/is duplicate/, 'with sa_redis'],
    );
    for my $c (@cases) {
        my ($ok, $out) = SaTest::Nginx->test_config(http => gateway_conf($c->[0], 0));
        ok(!$ok, "nginx -t refuses $c->[2]");
        like($out, $c->[1], "nginx -t says why: $c->[2]");
    }
    my ($ok, $out) = SaTest::Nginx->test_config(
        http => gateway_conf('sa_redis_sentinel sa 127.0.0.1:26379 [::1]:26380 localhost db=2 password=p user=u;', 1));
    ok($ok, 'nginx -t accepts sentinels, options and a default port') or diag $out;
}

my $s = SaTest::Sentinels->start(master => 'sa', replicas => 1, sentinels => 3,
                                 down_after => 1000, failover_timeout => 3000);
my ($primary, $replica) = $s->nodes;
my $sentinels = 'sa_redis_sentinel sa ' . $s->sentinel_addrs . ';';

sub as { my $node = shift; SaTest::admin($node, { SA_ACTOR => 'alice' }, @_) }
as($primary, qw(team create platform --owner alice));
SaTest::apps($primary, 'platform', qw(api));
as($primary, qw(account create platform ci --app api));
sub issue { my $t = SaTest::issue_token($primary, 'platform/ci', 'stacks:read'); $primary->cmd('WAIT', 1, 2000); $t }
sub tid { substr($_[0], 4, 16) }

# t/lib/fake-sentinel naming $node as the master: (process, dir, port)
sub fake_sentinel {
    my ($node) = @_;
    my $dir = SaTest::new_dir('fake-sentinel');
    my $port = SaTest::free_port();
    my $fake = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $port, $dir]);
    SaTest::wait_for('fake sentinel', sub { SaTest::port_open($port) }, 5);
    SaTest::write_file("$dir/master", '127.0.0.1 ' . $node->port);
    return ($fake, $dir, $port);
}

# ------------------------------------------------- B. a sentinel that lies
{
    my ($fake, $dir, $port) = fake_sentinel($replica);

    my $token = issue();
    my $closed = SaTest::free_port();
    my $nginx = SaTest::Nginx->start(
        http => gateway_conf("sa_redis_sentinel sa 127.0.0.1:$closed 127.0.0.1:$port;", 1));

    my $gets = sub { $replica->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0 };
    my $g0 = $gets->();
    SaTest::wait_until(2, sub { $nginx->error_log =~ /not the master \(role slave\)/ });
    my $r = $nginx->get('/index.html', Authorization => "Bearer $token");
    is($r->{status}, 503, 'B: the sentinel names a replica: 503');
    is($r->{headers}{'retry-after'}, 1, 'B: with Retry-After');
    is($gets->(), $g0, 'B: nothing was read from the replica');
    like($nginx->error_log, qr/sentinel connection to 127\.0\.0\.1:$closed failed/,
         'B: the dead first sentinel was tried and logged');
    like($nginx->error_log, qr/sentinel 127\.0\.0\.1:$port: master "sa" is at 127\.0\.0\.1:${\ $replica->port }/,
         'B: the next sentinel answered');
    like($nginx->error_log, qr/Redis command connection to 127\.0\.0\.1:${\ $replica->port } (lost|failed): not the master \(role slave\)/,
         'B: ROLE refused the replica, and the log says so');
    like(SaTest::slurp("$dir/commands.log"), qr/^SUBSCRIBE \+switch-master$/m, 'B: subscribed to +switch-master');

    # the sentinel still names the replica when asked again ...
    my $asked = () = SaTest::slurp("$dir/commands.log") =~ /get-master-addr-by-name sa/g;
    SaTest::wait_until(3, sub { (() = SaTest::slurp("$dir/commands.log") =~ /get-master-addr-by-name sa/g) > $asked });
    my $again = () = SaTest::slurp("$dir/commands.log") =~ /get-master-addr-by-name sa/g;
    cmp_ok($again, '>', $asked, 'B: a connection refused by ROLE makes the gateway ask again');

    my $switch = sub {
        SaTest::write_file("$dir/switch.tmp", $_[0]);
        rename "$dir/switch.tmp", "$dir/switch";
    };
    my $moves = sub { () = $nginx->error_log =~ /master "sa" is at 127\.0\.0\.1:$_[0]\b/g };

    # ... until it names the primary: asking again finds it
    SaTest::write_file("$dir/master", '127.0.0.1 ' . $primary->port);
    ok(SaTest::wait_until(6, sub { status($nginx, $token) == 200 }), 'B: asked again, it found the master: 200');
    is($gets->(), $g0, 'B: still nothing read from the replica');

    # /proc/net/tcp: timer 02 is keepalive, on the gateway's end of the link
    my $keepalive = grep {
        my @f = split ' ';
        $f[2] =~ /:([0-9A-F]{4})$/ && hex($1) == $port && $f[3] eq '01' && $f[5] =~ /^02:/;
    } split /\n/, SaTest::slurp('/proc/net/tcp');
    is($keepalive, 1, 'B: TCP keepalive runs on the subscribed sentinel connection');

    # steady: nothing fails, so nothing asks again; only +switch-master moves it
    $switch->('other 127.0.0.1 1 127.0.0.1 2');
    sleep 0.3;    # a negative check: time for a wrong move
    is($moves->(2), 0, 'B: a move of another master is ignored');
    is(status($nginx, $token), 200, 'B: and the gateway stays');

    my $to_replica = $moves->($replica->port);
    SaTest::write_file("$dir/master", '127.0.0.1 ' . $replica->port);
    $switch->('sa 127.0.0.1 ' . $primary->port . ' 127.0.0.1 ' . $replica->port);
    my $t0 = time;
    ok(SaTest::wait_until(2, sub { $moves->($replica->port) > $to_replica }), 'B: +switch-master: the gateway moves');
    cmp_ok(time - $t0, '<', 0.5, sprintf('B: at once (%.3f s)', time - $t0));
    is(status($nginx, $token), 503, 'B: and ROLE keeps it off the replica it was sent to');

    SaTest::write_file("$dir/master", '127.0.0.1 ' . $primary->port);
    $switch->('sa 127.0.0.1 ' . $replica->port . ' 127.0.0.1 ' . $primary->port);
    ok(SaTest::wait_until(6, sub { status($nginx, $token) == 200 }), 'B: moved back: 200, never a reload');
    is($gets->(), $g0, 'B: nothing was ever read from the replica');
    no_alert($nginx, 'B');
    $nginx->stop;

    # no sentinel answers at all
    $nginx = SaTest::Nginx->start(http => gateway_conf("sa_redis_sentinel sa 127.0.0.1:$closed;", 0));
    $t0 = time;
    $r = $nginx->get('/index.html', Authorization => "Bearer $token");
    is($r->{status}, 503, 'B: no sentinel: 503');
    cmp_ok(time - $t0, '<', 1, 'B: at once, not after a hang');
    no_alert($nginx, 'B, no sentinel');
    $nginx->stop;
    $fake->stop;
}

# ------------------------------- B2. answers and addresses that do not work
{
    my ($fake, $dir, $port) = fake_sentinel($primary);
    my $token = issue();

    # a sentinel whose address fails at once (TCP to a multicast address):
    # the next one is tried, not the same one forever
    my $nginx = SaTest::Nginx->start(
        http => gateway_conf("sa_redis_sentinel sa 224.0.0.1:26379 127.0.0.1:$port;", 0));
    ok(SaTest::wait_until(4, sub { status($nginx, $token) == 200 }),
       'B2: a sentinel address that fails at once is passed over');
    like($nginx->error_log, qr/sentinel connection to 224\.0\.0\.1:26379 failed/, 'B2: and logged');
    no_alert($nginx, 'B2 unreachable');
    $nginx->stop;

    # a host name where an IP address must be: refused, and asked again
    SaTest::write_file("$dir/master", 'localhost ' . $primary->port);
    $nginx = SaTest::Nginx->start(http => gateway_conf("sa_redis_sentinel sa 127.0.0.1:$port;", 0));
    ok(SaTest::wait_until(3, sub { $nginx->error_log =~ /names "localhost" port "\d+" for master "sa": not an IP address/ }),
       'B2: a host name from a sentinel is refused, and logged');
    is(status($nginx, $token), 503, 'B2: 503 meanwhile');
    SaTest::write_file("$dir/master", '127.0.0.1 ' . $primary->port);
    ok(SaTest::wait_until(8, sub { status($nginx, $token) == 200 }),
       'B2: the sentinel is asked again, and its IP address is used');
    no_alert($nginx, 'B2 host name');
    $nginx->stop;

    # ROLE is an admin command: an ACL user without it is told why
    my $acl = SaTest::Redis->start(conf => ['user default on nopass ~* &* +@all',
                                            'user gw on >gwpass ~* &* +@all -role']);
    SaTest::write_file("$dir/master", '127.0.0.1 ' . $acl->port);
    $nginx = SaTest::Nginx->start(http => gateway_conf("sa_redis_sentinel sa 127.0.0.1:$port user=gw password=gwpass;", 0));
    ok(SaTest::wait_until(3, sub { $nginx->error_log =~ /ROLE refused \(the ACL user needs \+role\): NOPERM/ }),
       'B2: an ACL user without +role: the log says what it needs');
    $nginx->stop;
    $fake->stop;
}

# --------------------------- D. reload and quit in every state of the link
{
    my ($fake, $dir, $port) = fake_sentinel($primary);
    my $token = issue();
    my $closed = SaTest::free_port();
    my $conf = gateway_conf("sa_redis_sentinel sa 127.0.0.1:$port 127.0.0.1:$closed;", 1);

    for my $state ('subscribed', 'frozen sentinel', 'no sentinel') {
        my $nginx = SaTest::Nginx->start(workers => 2, http => $conf);
        ok(SaTest::wait_until(3, sub { status($nginx, $token) == 200 }), "D $state: 200 first");
        $fake->pause if $state eq 'frozen sentinel';
        $fake->stop  if $state eq 'no sentinel';
        ok($nginx->reload, "D $state: reloaded");
        if ($state eq 'frozen sentinel') {
            # the new workers' set-up deadline (max(1 s, 4 x 300ms)) ends it
            ok(SaTest::wait_until(4, sub { $nginx->error_log =~ /sentinel connection to 127\.0\.0\.1:$port (lost|failed): not set up within/ }),
               "D $state: a sentinel that never answers is given up after the set-up deadline");
        }
        if ($state eq 'subscribed') {
            # the new workers asked the sentinel, found the master and
            # subscribed (sa_redis_timeout 300ms: not a deadline to meet
            # on a loaded machine)
            my @new = $nginx->worker_pids;
            SaTest::wait_until(5, sub {
                my $log = $nginx->error_log;
                !grep { $log !~ /\] $_#\d+: sa: subscribed to/ } @new;
            });
        }
        my $st = status($nginx, $token);
        ok($state eq 'subscribed' ? $st == 200 : ($st == 503 || $st == 200),
           "D $state: after the reload: $st");
        ok($nginx->quit, "D $state: quit");
        no_alert($nginx, "D $state");
        unlike($nginx->error_log, qr/open socket|still active|leak/i, "D $state: nothing left open");
        $fake->resume if $state eq 'frozen sentinel';
    }
}

# ---------------------------------------------- C. kill -9 of the primary
my @gateways = (
    [ 'cached, 2 workers', SaTest::Nginx->start(workers => 2, http => gateway_conf($sentinels, 1)) ],
    [ 'no cache',          SaTest::Nginx->start(workers => 1, http => gateway_conf($sentinels, 0)) ],
);
(my $stale_conf = gateway_conf($sentinels, 1)) =~ s/ttl=5m;/ttl=5m stale=60s;/;
my $stale = SaTest::Nginx->start(workers => 1, http => $stale_conf);

my $good = issue();
my $before = issue();
my $after = issue();
for my $g (@gateways, [ 'stale', $stale ]) {
    my ($name, $nginx) = @$g;
    ok(SaTest::wait_until(3, sub { status($nginx, $good) == 200 }), "C $name: 200 through the sentinels");
    is(status($nginx, $before), 200, "C $name: the token to revoke works too");
    is(status($nginx, $after), 200, "C $name: and the other one");
}

# load: both gateways, all three tokens, new connections (so both workers)
my $load_dir = SaTest::new_dir('load');
my @ports = (map({ $_->[1]->port } @gateways), $stale->port);
my $load = SaTest::Process->start(cmd => [$^X, '-e', <<'PERL', $load_dir, $good, $before, $after, @ports]);
use IO::Socket::INET; use Time::HiRes qw(time sleep);
my ($dir, @tokens) = splice @ARGV, 0, 4;
my @names = qw(good before after);
$| = 1;
until (-e "$dir/stop") {
    for my $port (@ARGV) {
        for my $i (0 .. 2) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 3) or next;
            print $s "GET /index.html HTTP/1.0\r\nAuthorization: Bearer $tokens[$i]\r\n\r\n";
            my $line = <$s> // '';
            my ($code) = $line =~ m{^HTTP/1\.\d (\d+)} or next;
            printf "%.3f %d %s %d\n", time, $port, $names[$i], $code;
        }
    }
    sleep 0.005;    # pacing
}
PERL

SaTest::wait_for('the load on every gateway', sub {
    my $out = $load->out;
    !grep { $out !~ /^\S+ $_ /m } @ports;
});
sub via_sentinels { SaTest::run_admin(redis => $s->url(db => 0), env => { SA_ACTOR => 'alice' }, args => [@_]) }
is(via_sentinels('token', 'revoke', tid($before))->{code}, 0, 'C: a token revoked just before the kill, through the sentinels');
my $revoked_before = time;
is($primary->cmd('WAIT', 1, 2000), 1, 'C: the revocation is on the replica');
for my $g (@gateways, [ 'stale', $stale ]) {
    ok(SaTest::wait_until(1, sub { status($g->[1], $before) == 401 }), "C $g->[0]: refused before the kill");
}
sleep 0.3;    # the load runs on a little before the kill: time

# the primary dies, and with it the sentinel every gateway's first worker
# listens to (workers start at sentinel number worker % 3)
my $killed = time;
$primary->kill9;
($s->sentinels)[0]->kill9;

# revoked "just after": sa-admin finds no master, waits for the new one
my $rv = via_sentinels('token', 'revoke', tid($after));
my $revoked_after = time;
is($rv->{code}, 0, sprintf('C: a token revoked just after the kill (sa-admin returned %.2f s after it)',
                           $revoked_after - $killed)) or diag $rv->{err};
my $new = $s->wait_failover(from => $primary, timeout => 20);
my $promoted = time;
is($new, $replica, 'C: the sentinels promoted the replica');

for my $g (@gateways) {
    my ($name, $nginx) = @$g;
    ok(SaTest::wait_until(5, sub { status($nginx, $good) == 200 }), "C $name: serves again, no reload");
    cmp_ok(time - $promoted, '<', 1, sprintf("C $name: within a second of the promotion (%.2f s after it, %.2f s after the kill)",
                                            time - $promoted, time - $killed));
    is(status($nginx, $after), 401, "C $name: the token revoked on the new master is refused");
    is(status($nginx, $before), 401, "C $name: the token revoked before the kill is still refused");
    like($nginx->error_log, qr/master "sa" is at 127\.0\.0\.1:${\ $new->port }/, "C $name: followed the switch");
}
sleep 1;    # and a little after the gateways followed: time
SaTest::write_file("$load_dir/stop", '');
SaTest::wait_until(5, sub { !$load->running });

my (%seen, %first_200_after, %stale_seen, $lines);
for (split /\n/, $load->out) {
    my ($t, $port, $name, $code) = split ' ';
    $lines++;
    # stale= trades revocation for availability: counted on its own
    if ($port == $stale->port) {
        $stale_seen{$name}{$code}++;
        $stale_seen{"$name after"}{$code}++ if $name eq 'before' && $t > $revoked_before + 0.05;
        next;
    }
    $seen{$name}{$code}++;
    # a request sent before the revoke returned may rightly get 200
    $seen{"$name after"}{$code}++ if $name eq 'after' && $t > $revoked_after + 0.05;
    $seen{"$name after"}{$code}++ if $name eq 'before' && $t > $revoked_before + 0.05;
    $first_200_after{$port} //= $t if $name eq 'good' && $code == 200 && $t > $killed;
}
cmp_ok($lines, '>', 100, "C: load ran ($lines requests)");
is_deeply([ sort keys %{ $seen{good} } ], [ grep { $seen{good}{$_} } 200, 503 ], 'C: the good token got only 200 and 503');
cmp_ok(scalar keys %{ $seen{'before after'} // {} }, '>', 0, 'C: the token revoked before the kill was tried under load');
is($seen{'before after'}{200} // 0, 0, 'C: and never admitted');
cmp_ok(scalar keys %{ $seen{'after after'} // {} }, '>', 0, 'C: the token revoked just after the failover was tried under load');
is($seen{'after after'}{200} // 0, 0, 'C: and never admitted once the revoke returned');
ok($seen{good}{503}, 'C: there was an outage to ride out (' . ($seen{good}{503} // 0) . ' 503s)');
for my $g (@gateways) {
    my $p = $g->[1]->port;
    ok(defined $first_200_after{$p}, "C $g->[0]: 200 again under load")
        and diag(sprintf("C %s: first 200 %.2f s after the kill; the promotion was seen %.2f s after it",
                         $g->[0], $first_200_after{$p} - $killed, $promoted - $killed));
}

# stale=: the outage is not seen, and an invalidated entry is never served
cmp_ok($stale_seen{good}{200} // 0, '>', 0, 'C stale: the good token was served under load');
is($stale_seen{good}{503} // 0, 0, 'C stale: never a 503 for it: the cached grant rode out the failover');
cmp_ok(scalar keys %{ $stale_seen{'before after'} // {} }, '>', 0, 'C stale: the token revoked before the kill was tried');
is($stale_seen{'before after'}{200} // 0, 0, 'C stale: and never served stale (its entry was invalidated)');
like($stale->error_log, qr/master "sa" is at 127\.0\.0\.1:${\ $new->port }/, 'C stale: followed the switch');
no_alert($stale, 'C stale');

# sa-admin through the sentinels, against the new master
my $via = via_sentinels(qw(token issue platform/ci --scope stacks:read));
{
    is($via->{code}, 0, 'C: sa-admin through the sentinel URL issues a token after the failover') or diag $via->{err};
    chomp(my $fresh = $via->{out});
    for my $g (@gateways) {
        is(status($g->[1], $fresh), 200, "C $g->[0]: that token works");
    }
}

for my $g (@gateways) {
    no_alert($g->[1], "C $g->[0]");
    unlike($g->[1]->error_log, qr/reconfigur|reload/i, "C $g->[0]: no reload");
}

done_testing;
