# The network between the gateway and Redis, with t/lib/fault-proxy in
# between (nginx -> proxy -> Redis):
#
#  A. Redis unreachable (connects hang: SYNs dropped) under traffic: 503 with
#     Retry-After: 1 within sa_redis_timeout + 1 s, never 200, never a hang;
#     once the network is back, 200 again without a reload (within the 5 s
#     backoff cap + the connect timeout + slack); then a graceful quit, no
#     crash.
#  B. Reload and quit in every state of the connections (sa_cache, so each
#     worker holds a command and a subscriber connection): connecting,
#     authenticating (AUTH never answered), subscribed and serving, dead.
#     Old workers exit, new ones answer as the state implies, quit is
#     graceful, and no worker crashes.
#  C. A silently partitioned subscriber (its traffic frozen, the command
#     connection fine): a token revoked meanwhile is refused within
#     heartbeat (1 s) + sa_redis_timeout (slack: 3 s), other tokens are
#     served through GETs, and hits come back after the partition heals.
#  D. Nothing is sent on a new connection before AUTH/SELECT/PING have
#     answered, and a failing SELECT (db=99) or AUTH (wrong password) fails
#     the connection, logged with Redis' reason: 503, never 200, and Redis
#     never runs a GET.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

# ---------------------------------------------------------------- helpers

# Team, account and a token issuer on $redis: $issue->() -> ($token, $id)
sub provision {
    my ($redis) = @_;
    my $as = sub { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) };
    $as->(qw(team create platform --owner alice));
    SaTest::apps($redis, 'platform', qw(api));
    $as->(qw(account create platform ci --app api));
    return sub {
        my $r = $as->(qw(token issue platform/ci --scope stacks:read));
        die "token issue failed: $r->{err}" if $r->{code};
        chomp(my $t = $r->{out});
        return ($t, substr($t, 4, 16));
    };
}

sub revoke {
    my ($redis, $id) = @_;
    return SaTest::admin($redis, { SA_ACTOR => 'alice' }, 'token', 'revoke', $id)->{code};
}

# nginx whose sa_redis points at $o{port} (usually a proxy's)
sub gateway {
    my (%o) = @_;
    my $params = $o{params} ? " $o{params}" : '';
    my $keys = SaTest::keys_dir();
    my $conf = $o{conf} // '';
    return SaTest::Nginx->start(workers => $o{workers} // 1, http => <<CONF);
    sa_redis 127.0.0.1:$o{port}$params;
    sa_verify_key $keys/verify.key;
    $conf
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
}

# One request; the response with {secs} (how long it took) added.
sub fetch {
    my ($nginx, $token, $timeout) = @_;
    my $t0 = time;
    my $res = SaTest::http(url => $nginx->url('/index.html'), timeout => $timeout // 5,
                           headers => { Authorization => "Bearer $token" });
    $res->{secs} = time - $t0;
    return $res;
}

sub status { fetch(@_)->{status} }

# Requests for $secs, one after another: a list of responses.
sub traffic {
    my ($nginx, $token, $secs, $timeout) = @_;
    my @res;
    my $end = time + $secs;
    while (time < $end) {
        push @res, fetch($nginx, $token, $timeout);
        sleep 0.05;    # pacing
    }
    return @res;
}

sub histogram {
    my %n;
    $n{ $_->{status} }++ for @_;
    return join ', ', map { "$_ x$n{$_}" } sort keys %n;
}

# All 503 + Retry-After: 1, each within $max s.
sub all_unavailable {
    my ($name, $max, @res) = @_;
    ok(@res >= 3, "$name: requests were made (" . @res . ')');
    my @not = grep { $_->{status} != 503 } @res;
    ok(!@not, "$name: every request 503") or diag 'statuses: ' . histogram(@res);
    my @no_retry = grep { ($_->{headers}{'retry-after'} // '') ne '1' } @res;
    ok(!@no_retry, "$name: every answer has Retry-After: 1")
        or diag scalar(@no_retry) . ' without';
    my ($slowest) = sort { $b <=> $a } map { $_->{secs} } @res;
    cmp_ok($slowest // 99, '<', $max, "$name: every answer within $max s")
        or diag 'statuses: ' . histogram(@res);
}

sub blackhole {
    my ($proxy, $on) = @_;
    $proxy->blackhole($on);
}

# GETs Redis has run, refused or failed (INFO commandstats)
sub gets {
    my ($redis) = @_;
    my $stats = $redis->cmd('INFO', 'commandstats');
    my ($line) = $stats =~ /^cmdstat_get:(.*)$/m or return 0;
    my $n = 0;
    $n += $1 while $line =~ /(?:^|,)(?:calls|rejected_calls|failed_calls)=(\d+)/g;
    return $n;
}

# true once $token is a cache hit: three 200s that cost no GET
sub cached {
    my ($nginx, $redis, $token, $secs) = @_;
    return SaTest::wait_until($secs // 5, sub {
        return 0 unless status($nginx, $token) == 200;
        my $before = gets($redis);
        for (1 .. 3) { return 0 unless status($nginx, $token) == 200 }
        return gets($redis) == $before;
    });
}

sub quits {
    my ($nginx, $name) = @_;
    my $t0 = time;
    my $ok = eval { $nginx->quit(8) };
    ok($ok, "$name: quit is graceful, within 8 s") or diag $@ || sprintf 'killed after %.1f s', time - $t0;
}

sub log_clean {
    my ($nginx, $name) = @_;
    my @lines = split /\n/, $nginx->error_log;
    my @crash = grep { /exited on signal/ } @lines;
    ok(!@crash, "$name: no worker crashed") or diag join "\n", @crash[0 .. ($#crash < 4 ? $#crash : 4)];
    my @bad = grep { /\[(alert|crit|emerg)\]/ } @lines;
    ok(!@bad, "$name: no [alert], [crit] or [emerg] in the error log")
        or diag join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)];
}

my $start = time;
my $redis = SaTest::Redis->start;
my $issue = provision($redis);
my ($token) = $issue->();

# ---------------------------------------------------------------- A
{
    my $name = 'A (blackholed Redis)';
    my $proxy = SaTest::Proxy->start(target => $redis->port);
    my $nginx = gateway(port => $proxy->port, conf => 'sa_redis_timeout 200ms;');
    ok(SaTest::wait_until(5, sub { status($nginx, $token) == 200 }), "$name: serving first");

    blackhole($proxy, 1);
    $proxy->cut('all');
    my @res = traffic($nginx, $token, 2, 4);
    all_unavailable("$name: connects hang", 1.2, @res);

    blackhole($proxy, 0);
    my $t_up = time;
    my $back = SaTest::wait_until(10, sub { status($nginx, $token, 3) == 200 });
    ok($back, "$name: network back: 200 again within 10 s, without a reload")
        or diag 'after it: ' . histogram(traffic($nginx, $token, 0.5, 3));
    if ($back) {
        note sprintf '%s: 200 again %.2f s after the network came back', $name, time - $t_up;
        my @after = traffic($nginx, $token, 0.5, 3);
        ok(!grep({ $_->{status} != 200 } @after), "$name: and stays up")
            or diag histogram(@after);
    }
    quits($nginx, $name);
    log_clean($nginx, $name);
    $proxy->stop;
}

# ---------------------------------------------------------------- B
my $pw = 'n3tw0rk-s3cret';
my $predis = SaTest::Redis->start(password => $pw);
my $pissue = provision($predis);
my ($ptoken) = $pissue->();

# $setup->() -> (nginx, token, proxy); $expect: the status every request
# gets in that state, before and after the reload
sub reload_and_quit {
    my ($name, $expect, $setup) = @_;
    my ($nginx, $tok, $proxy) = $setup->();
    my @res = traffic($nginx, $tok, 1, 4);
    if ($expect == 200) {
        ok(!grep({ $_->{status} != 200 } @res), "$name: 200 before the reload")
            or diag histogram(@res);
    } else {
        all_unavailable("$name, before the reload", 1.2, @res);
    }
    my @old = $nginx->worker_pids;
    my $ok = eval { $nginx->reload };
    ok($ok, "$name: reload, new workers up") or diag $@;
    ok(SaTest::wait_until(5, sub { !grep { kill 0, $_ } @old }),
       "$name: the old workers exit within 5 s");
    my @crash = grep { /exited on signal/ } split /\n/, $nginx->error_log;
    ok(!@crash, "$name: no worker crashed on the reload") or diag $crash[0];
    if ($expect == 200) {
        ok(SaTest::wait_until(5, sub { status($nginx, $tok) == 200 }),
           "$name: the new workers serve");
        @res = traffic($nginx, $tok, 0.6, 4);
        ok(!grep({ $_->{status} != 200 } @res), "$name: 200 after the reload")
            or diag histogram(@res);
    } else {
        all_unavailable("$name, after the reload", 1.2, traffic($nginx, $tok, 1, 4));
    }
    quits($nginx, $name);
    log_clean($nginx, $name);
    $proxy->stop if $proxy;
}

my $b_conf = "sa_cache zone=sa:1m;\n    sa_redis_timeout 200ms;";

reload_and_quit('B1 (connecting)', 503, sub {
    my $proxy = SaTest::Proxy->start(target => $redis->port);
    blackhole($proxy, 1);
    return (gateway(port => $proxy->port, workers => 2, conf => $b_conf), $token, $proxy);
});

reload_and_quit('B2 (authenticating)', 503, sub {
    my $proxy = SaTest::Proxy->start(target => $predis->port);
    $proxy->set(qw(all down freeze));
    return (gateway(port => $proxy->port, params => "password=$pw", workers => 2,
                    conf => $b_conf), $ptoken, $proxy);
});

reload_and_quit('B3 (subscribed)', 200, sub {
    my $proxy = SaTest::Proxy->start(target => $redis->port);
    my $nginx = gateway(port => $proxy->port, workers => 2, conf => $b_conf);
    SaTest::wait_until(5, sub { $redis->subscribers == 2 });
    is($redis->subscribers, 2, 'B3 (subscribed): both workers subscribed');
    return ($nginx, $token, $proxy);
});

reload_and_quit('B4 (dead)', 503, sub {
    my $dead = SaTest::Redis->start;
    my ($tok) = provision($dead)->();
    my $nginx = gateway(port => $dead->port, workers => 2, conf => $b_conf);
    SaTest::wait_until(5, sub { $dead->subscribers == 2 });
    $dead->kill9;
    ok(SaTest::wait_until(3, sub { status($nginx, $tok) == 503 }), 'B4 (dead): Redis killed: 503');
    return ($nginx, $tok, undef);
});

# ---------------------------------------------------------------- C
{
    my $name = 'C (partitioned subscriber)';
    my $proxy = SaTest::Proxy->start(target => $redis->port);
    my $nginx = gateway(port => $proxy->port,
                        conf => "sa_cache zone=sa:1m ttl=5m;\n    sa_redis_timeout 200ms;");
    my ($t1, $id1) = $issue->();
    my ($t2) = $issue->();
    ok(SaTest::wait_until(5, sub { $redis->subscribers == 1 }), "$name: subscribed");
    ok(cached($nginx, $redis, $t1), "$name: token 1 is a cache hit");
    ok(cached($nginx, $redis, $t2), "$name: token 2 is a cache hit");

    $proxy->set(qw(pubsub both freeze));
    my $t_freeze = time;
    is(revoke($redis, $id1), 0, "$name: token 1 revoked during the freeze");
    my $t_revoke = time;
    my %seen;
    my $refused = SaTest::wait_until(3, sub {
        my $s = status($nginx, $t1, 3);
        $seen{$s}++;
        $s == 401;
    });
    my $took = time - $t_revoke;
    ok($refused, "$name: the revoked token is refused within 3 s")
        or diag 'statuses meanwhile: ' . join ', ', map { "$_ x$seen{$_}" } sort keys %seen;
    note sprintf '%s: refused %.2f s after the revoke (%.2f s after the freeze)',
                 $name, $took, time - $t_freeze if $refused;

    my $before = gets($redis);
    is(status($nginx, $t2), 200, "$name: a valid token is still served during the freeze");
    cmp_ok(gets($redis), '>', $before, "$name: through a GET, not a hit");

    # heartbeats Redis delivered but nobody heard: the subscriber is given up
    # within heartbeat + max(1 s, 4 x timeout) after the last one heard
    ok(SaTest::wait_until(6, sub { $nginx->error_log =~ /subscriber connection .* lost: no heartbeat heard for \d+ ms/ }),
       "$name: the frozen subscriber is given up and remade")
        or diag SaTest::tail($nginx->error_log, 10);

    $proxy->set(qw(pubsub both pass));
    my $t_heal = time;
    ok(cached($nginx, $redis, $t2, 12), "$name: healed: hits again within 12 s")
        and note sprintf '%s: hits again %.2f s after the partition healed', $name, time - $t_heal;
    is(status($nginx, $t1), 401, "$name: the revoked token stays refused");
    quits($nginx, $name);
    log_clean($nginx, $name);
    $proxy->stop;
}

# ---------------------------------------------------------------- D
# Replies come 300 ms late, so requests arrive while the setup commands of
# a new connection are still unanswered.
sub setup_fails {
    my ($name, $r, $tok, $params, $logged) = @_;
    my $proxy = SaTest::Proxy->start(target => $r->port);
    $proxy->set(qw(all down delay 300));
    my $before = gets($r);
    my $nginx = gateway(port => $proxy->port, params => $params,
                        conf => 'sa_redis_timeout 2s;');
    my @res = traffic($nginx, $tok, 2.5, 5);
    ok(@res >= 3, "$name: requests were made (" . @res . ')');
    ok(!grep({ $_->{status} == 200 } @res), "$name: never 200") or diag histogram(@res);
    ok(!grep({ $_->{status} != 503 } @res), "$name: every request 503") or diag histogram(@res);
    is(gets($r) - $before, 0, "$name: Redis was sent no GET");
    my ($cmd, $reason) = @$logged;
    my @why = grep { /\b$cmd\b/ && /$reason/ } split /\n/, $nginx->error_log;
    ok(@why, "$name: the error log names $cmd and Redis' reason")
        or diag SaTest::tail($nginx->error_log, 8);
    quits($nginx, $name);
    log_clean($nginx, $name);
    $proxy->stop;
}

setup_fails('D1 (SELECT fails: db=99)', $redis, $token, 'db=99',
            ['SELECT', qr/DB index is out of range|invalid DB index/i]);
setup_fails('D2 (AUTH fails: wrong password)', $predis, $ptoken, 'password=wrong',
            ['AUTH', qr/WRONGPASS|invalid password|invalid username-password/i]);

note sprintf 'total %.1f s', time - $start;
done_testing;
