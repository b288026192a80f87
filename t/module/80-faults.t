# Faults: a server speaking broken RESP, Redis moved to another port, Redis
# out of memory, a slow network.  Nothing is granted that should not be.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use SaTest;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis);   # platform/ci, owner alice
sub as { $f->as(@_) }
my $token = as(qw(token issue platform/ci --scope a:b))->{out};
chomp $token;

# a TCP server on a free port run by a child: $serve->($client) per connection
sub server_child {
    my ($serve) = @_;
    my $l = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1) or die;
    my $pid = fork // die;
    if (!$pid) {
        $SIG{CHLD} = 'IGNORE';
        $SIG{TERM} = 'DEFAULT';
        while (my $c = $l->accept) {
            next if fork;
            $serve->($c);
            POSIX::_exit(0);
        }
        POSIX::_exit(0);
    }
    return ($pid, $l->sockport);
}

sub gateway {
    my ($port, $extra) = @_;
    return SaTest::Nginx->start(http => <<CONF);
    sa_redis 127.0.0.1:$port;
    sa_verify_key @{[ SaTest::keys_dir() ]}/verify.key;
    $extra
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
}

sub status { $_[0]->get('/index.html', Authorization => "Bearer $token")->{status} }

# 1. broken RESP, and well-formed RESP of the wrong type
for my $case (['garbage', "!?\x00\xffnot resp at all\r\n"],
              ['a huge bulk length', "\$99999999999999999999\r\n"],
              ['an integer for GET', ":42\r\n"],
              ['an array for GET', "*1\r\n\$1\r\nx\r\n"]) {
    my ($name, $answer) = @$case;
    my $answered = SaTest::tmp_dir() . '/answered-' . length($answer);
    my ($pid, $port) = server_child(sub {
        my ($c) = @_;
        while (sysread($c, my $buf, 4096)) { syswrite($c, $answer); SaTest::write_file($answered, '') }
    });
    my $nginx = gateway($port, 'sa_redis_timeout 300ms;');
    SaTest::wait_for("$name: the set-up answered", sub { -e $answered });
    my %seen;
    $seen{ status($nginx) }++ for 1 .. 10;
    ok(!$seen{200}, "$name: never 200");
    ok(!grep({ $_ >= 500 && $_ != 503 } keys %seen), "$name: 401 or 503 only")
        or diag explain \%seen;
    unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, "$name: no crash");
    $nginx->stop;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

# 2. Redis moves to another port: a reload with the new address recovers
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
is(status($nginx), 200, 'serving');
my $dump = $redis->cmd('GET', 'sa:tok:' . substr($token, 4, 16));
my $moved = SaTest::Redis->start;
$moved->cmd('SET', 'sa:tok:' . substr($token, 4, 16), $dump);
# the signed team record: sa-admin checks the permission on it first
$moved->cmd('SET', 'sa:team:platform', $redis->cmd('GET', 'sa:team:platform'));
$redis->stop;
is(status($nginx), 503, 'old Redis gone: 503');
ok($nginx->reload(redis => $moved), 'reload with the new address');
like(SaTest::slurp($nginx->dir . '/nginx.conf'), qr/sa_redis 127\.0\.0\.1:@{[ $moved->port ]};/,
     'the config names the new port');
SaTest::wait_for('recovery', sub { status($nginx) == 200 }, 5);
is(status($nginx), 200, 'recovered on the new port');

# 3. Redis out of memory: the gateway keeps serving, sa-admin fails whole
my $cached = SaTest::Nginx->start(redis => $moved, http => <<'CONF');
    sa_cache zone=sa:1m ttl=5m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
$moved->wait_subscribed(1);
is(status($cached), 200, 'cached');
$moved->cmd('CONFIG', 'SET', 'maxmemory', 1);
$moved->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
my $digest = $moved->digest;
my $r = SaTest::admin($moved, { SA_ACTOR => 'alice' }, 'token', 'revoke', substr($token, 4, 16));
isnt($r->{code}, 0, 'sa-admin refused under maxmemory');
like($r->{err}, qr/OOM/, 'saying why');
is($moved->digest, $digest, 'nothing half applied');
is(status($cached), 200, 'the gateway keeps serving') for 1 .. 3;
is(status($nginx), 200, 'without a cache too (reads work)');
$moved->cmd('CONFIG', 'SET', 'maxmemory', 0);

# 4. a slow network: a proxy that delays every chunk by 150 ms
my ($proxy, $pport) = server_child(sub {
    my ($c) = @_;
    my $up = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $moved->port) or return;
    my $sel = IO::Select->new($c, $up);
    while (my @ready = $sel->can_read) {
        for my $from (@ready) {
            sysread($from, my $buf, 65536) or return;
            sleep 0.15;    # the slow network itself
            syswrite($from == $c ? $up : $c, $buf);
        }
    }
});
my $slow = gateway($pport, 'sa_redis_timeout 100ms;');
# the set-up crosses the proxy (150 ms a chunk) to and fro: let it finish,
# so that the request below meets a ready connection (time, not a state)
sleep 1;
my $t0 = time;
is(status($slow), 503, 'slower than sa_redis_timeout: 503');
ok(time - $t0 < 1, 'answered within the timeout, not the delay');
$slow->stop;
my $patient = gateway($pport, 'sa_redis_timeout 2s;');
SaTest::wait_for('patient gateway', sub { status($patient) == 200 }, 5);
is(status($patient), 200, 'a timeout above the delay: 200');
kill 'TERM', $proxy;
waitpid $proxy, 0;

done_testing;
