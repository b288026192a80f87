# sa-admin over TLS (issue 24, item 4): rediss:// and redis-sentinel+tls://
# against Debian's redis-server with --tls-port and the harness's CA
# (SaTest::tls_files), through admin-tool/rconn.c (hiredis 0.14 has no
# TLS: its redisReader over our own OpenSSL I/O).
#
#   A. Verification always on: the right CA (--redis-ca, SA_REDIS_CA) works,
#      by name and by IP; another CA, the system's CAs, an expired
#      certificate, a name the certificate lacks, a server that wants a
#      client certificate, TLS to a plain port and plain TCP to a TLS port
#      are each exit 3 with a clear message, and nothing written;
#      --redis-insecure skips the checks; a client certificate works; a CA
#      file that is not there, or a certificate without its key, is exit 1.
#   B. redis-sentinel+tls://: a TLS sentinel names the TLS master.
#   C. Admin tests that matter, run whole with every sa-admin over TLS
#      (SA_TEST_REDIS_TLS=1: SA_REDIS=rediss://localhost:PORT/0, SA_REDIS_CA):
#      teams, accounts, tokens, atomic changes, the audit log, the
#      notification worker, the admin API's server.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');
SaTest::api_local("the command line's own TLS connection to Redis");

my $T = SaTest::tls_files();
# also on 127.0.0.2, an address the certificate does not name
my $redis = SaTest::Redis->start(tls => 'no', conf => ['bind 127.0.0.1 127.0.0.2']);
my $tp = $redis->tls_port;
my $url = "rediss://localhost:$tp/0";

sub adm {
    my ($env, @args) = @_;
    return SaTest::admin($redis, { SA_REDIS => $url, SA_REDIS_CA => $T->{ca}, SA_ACTOR => 'alice', %$env }, @args);
}

# ---------------------------------------------------------------- A
my $r = adm({}, 'team', 'create', 'platform', '--owner', 'alice');
is($r->{code}, 0, 'A: team create over rediss:// with SA_REDIS_CA') or diag $r->{err};
is($redis->cmd('EXISTS', 'sa:team:platform'), 1, 'A: the team is in Redis');
$r = adm({ SA_REDIS_CA => undef }, '--redis-ca', $T->{ca}, 'team', 'member', 'list', 'platform');
is($r->{code}, 0, 'A: --redis-ca FILE works too');
like($r->{out}, qr/alice/, 'A: and reads back the team');
$r = adm({ SA_REDIS => "rediss://127.0.0.1:$tp/0" }, 'team', 'member', 'list', 'platform');
is($r->{code}, 0, 'A: by IP address (the certificate\'s IP SAN)') or diag $r->{err};

my $digest = $redis->digest;
my @refused = (
    ['another CA', { SA_REDIS_CA => $T->{other_ca} },
     qr/\Asa-admin: Redis unavailable at rediss:\/\/localhost:$tp\/0: TLS certificate verify failed: (self-signed certificate in certificate chain|unable to get local issuer certificate) \(localhost\)\n\z/],
    ['the system CAs (no SA_REDIS_CA)', { SA_REDIS_CA => undef },
     qr/TLS certificate verify failed: (self-signed certificate in certificate chain|unable to get local issuer certificate)/],
    ['a name the certificate lacks', { SA_REDIS => "rediss://127.0.0.2:$tp/0" },
     qr/\Asa-admin: Redis unavailable at rediss:\/\/127\.0\.0\.2:$tp\/0: TLS certificate verify failed: IP address mismatch \(127\.0\.0\.2\)\n\z/],
    ['TLS to a plain port', { SA_REDIS => 'rediss://localhost:' . $redis->port . '/0' },
     qr/TLS (handshake timed out: no answer to the ClientHello \(a stopped server, or a plain port\?\)|handshake failed: (wrong version number|packet length too long|record layer failure))/],
    ['plain TCP to a TLS port', { SA_REDIS => "redis://127.0.0.1:$tp/0" },
     qr/Redis unavailable at redis:\/\/127\.0\.0\.1:$tp\/0: (Connection reset by peer|Server closed the connection|Resource temporarily unavailable)/],
);
for my $c (@refused) {
    $r = adm($c->[1], 'team', 'create', 'other', '--owner', 'alice');
    is($r->{code}, 3, "A: $c->[0]: exit 3");
    like($r->{err}, $c->[2], "A: $c->[0]: says why") or diag $r->{err};
}
is($redis->digest, $digest, 'A: nothing was written by the refused runs');

is($redis->cmd('CONFIG', 'SET', 'tls-cert-file', $T->{expired}), 'OK', 'A: the server shows an expired certificate');
$r = adm({}, 'team', 'member', 'list', 'platform');
is($r->{code}, 3, 'A: an expired certificate: exit 3');
like($r->{err}, qr/TLS certificate verify failed: certificate has expired \(localhost\)/, 'A: an expired certificate: says so');
$r = adm({ SA_REDIS_CA => undef }, '--redis-insecure', 'team', 'member', 'list', 'platform');
is($r->{code}, 0, 'A: --redis-insecure takes it (and no CA)') or diag $r->{err};
$redis->cmd('CONFIG', 'SET', 'tls-cert-file', $T->{cert});
is(adm({}, 'team', 'member', 'list', 'platform')->{code}, 0, 'A: the right certificate again: works');

$r = adm({ SA_REDIS_CA => '/nonexistent/ca.pem' }, 'team', 'member', 'list', 'platform');
is($r->{code}, 1, 'A: a CA file that is not there: exit 1');
like($r->{err}, qr/cannot read the CA certificates in \/nonexistent\/ca\.pem/, 'A: and says which');
$r = adm({}, '--redis-cert', $T->{client_cert}, 'team', 'member', 'list', 'platform');
is($r->{code}, 1, 'A: --redis-cert without --redis-key: exit 1');
like($r->{err}, qr/--redis-cert and --redis-key go together/, 'A: and says so');
$r = adm({ SA_REDIS => 'redis://127.0.0.1:' . $redis->port . '/0' }, 'team', 'member', 'list', 'platform');
is($r->{code}, 0, 'A: plain redis:// is unchanged (SA_REDIS_CA unused)');

{
    my $strict = SaTest::Redis->start(tls => 'yes');
    my $surl = 'rediss://localhost:' . $strict->tls_port . '/0';
    $r = adm({ SA_REDIS => $surl }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 3, 'A: a server that wants a client certificate, none given: exit 3');
    like($r->{err}, qr/Redis unavailable at \Q$surl\E: (TLS read failed: tlsv13 alert certificate required|the server closed the connection|TLS handshake failed)/,
         'A: says why') or diag $r->{err};
    $r = adm({ SA_REDIS => $surl, SA_REDIS_CERT => $T->{other_client_cert}, SA_REDIS_KEY => $T->{other_client_key} }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 3, 'A: a client certificate from another CA: exit 3');
    $r = adm({ SA_REDIS => $surl }, '--redis-cert', $T->{client_cert}, '--redis-key', $T->{client_key},
             'team', 'create', 'ops', '--owner', 'alice');
    is($r->{code}, 0, 'A: --redis-cert and --redis-key: works') or diag $r->{err};
    is($strict->cmd('EXISTS', 'sa:team:ops'), 1, 'A: written over mutual TLS');
    $strict->stop;
}

# ---------------------------------------------------------------- B
{
    package TlsSentinel;
    our @ISA = ('SaTest::Sentinels::Sentinel');
    sub _conf_text {
        my ($self) = @_;
        my $t = SaTest::tls_files();
        return join "\n",
            'bind 127.0.0.1', "port $self->{port}", 'daemonize no',
            "dir $self->{dir}", "logfile $self->{dir}/redis.log",
            "tls-port $self->{tls_port}", "tls-cert-file $t->{cert}", "tls-key-file $t->{key}",
            "tls-ca-cert-file $t->{ca}", 'tls-auth-clients no', 'tls-replication yes',
            "sentinel monitor sa 127.0.0.1 $self->{master_port} 1", '';
    }
}
{
    my $s = TlsSentinel->start(tls => 'no', master_port => $tp);
    SaTest::wait_until(5, sub { ((eval { $s->cmd('SENTINEL', 'get-master-addr-by-name', 'sa') } || [])->[1] // 0) == $tp });
    my $surl = 'redis-sentinel+tls://localhost:' . $s->tls_port . '/0#sa';
    $r = adm({ SA_REDIS => $surl }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 0, 'B: redis-sentinel+tls:// finds the TLS master') or diag $r->{err};
    like($r->{out}, qr/alice/, 'B: and reads from it');
    $r = adm({ SA_REDIS => $surl, SA_REDIS_CA => $T->{other_ca} }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 3, 'B: another CA: exit 3');
    like($r->{err}, qr/no master for sa from sentinels localhost:\d+: sentinel localhost:\d+: TLS certificate verify failed/,
         'B: the sentinel\'s certificate is refused, and said so');
    $s->stop;
}

# ---------------------------------------------------------------- C
# (seven files again, about 30 s: make test-slow, SA_TEST_SLOW=1)
if ($ENV{SA_TEST_SLOW}) {
    my @files = ((map { "t/admin/$_" } qw(10-teams.t 20-accounts.t 30-tokens.t 50-atomic.t 60-audit.t
                                          81-notify-worker.t)),
                 't/api/10-serve.t');
    my $root = SaTest::root();
    for my $file (@files) {
        my $run = SaTest::run([$^X, '-I', "$root/t/lib", "$root/$file"],
                              env => { SA_TEST_REDIS_TLS => 1 }, timeout => 300);
        my @not_ok = grep { /^not ok/ } split /\n/, $run->{out};
        ok($run->{code} == 0 && !@not_ok && $run->{out} =~ /^1\.\.\d+/m,
           "C: $file passes with sa-admin over TLS")
            or diag join "\n", @not_ok[0 .. ($#not_ok < 9 ? $#not_ok : 9)], SaTest::tail($run->{err});
    }
}

done_testing;
