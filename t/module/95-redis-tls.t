# Redis over TLS (issue 24): the gateway's command connection, its
# subscriber (sa_cache) and its sentinel connection run TLS through nginx's
# own SSL layer, against Debian's redis-server with --tls-port and a CA the
# harness makes with openssl (SaTest::tls_files).
#
#   A. nginx -t: what sa_redis ... ssl, rediss://, sa_redis_ssl_* and
#      sa_redis_sentinel ... ssl sentinel_password= accept and refuse.
#   B. Verification on by default: with the right CA, a token is admitted,
#      by name (localhost) and by IP (the certificate's IP SAN), through the
#      rediss:// form, and a revocation reaches the cache's subscriber over
#      TLS at once.
#   C. Each failure is 503, one error line that names the cause, and
#      recovery without reload once fixed: a CA the server's certificate is
#      not from; a name the certificate does not carry; an expired
#      certificate (the server's swapped by CONFIG SET, then swapped back);
#      a server that wants a client certificate (none, one from another CA,
#      then the right one); TLS to a plain port, plain TCP to a TLS port.
#      sa_redis_ssl_verify off admits a certificate from an unknown CA.
#   D. sa_redis_sentinel ... ssl sentinel_password=: a sentinel with
#      requirepass, over TLS, names a TLS master, which the gateway reaches
#      and verifies by its IP address.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $T   = SaTest::tls_files();
my $KEY = SaTest::keys_dir() . '/verify.key';

sub conf {
    my ($redis_lines, %o) = @_;
    return "    $redis_lines\n    sa_verify_key $KEY;\n    sa_redis_timeout 300ms;\n"
         . ($o{cache} ? "    sa_cache zone=sa:1m ttl=5m;\n" : '') . <<'CONF';
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; sa_application api;
                     root %%DIR%%/html; }
    }
CONF
}

sub status { $_[0]->get('/index.html', Authorization => "Bearer $_[1]")->{status} }
sub settles { my ($n, $tok, $want) = @_; SaTest::wait_until(5, sub { status($n, $tok) == $want }) }
sub no_alert { unlike($_[0]->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, "$_[1]: no alert, no crash") }

# ---------------------------------------------------------------- A. nginx -t
{
    my @bad = (
        ['sa_redis unix:/tmp/r.sock ssl;', qr/has "ssl" with a unix socket/, 'ssl on a unix socket'],
        ["sa_redis rediss://u:p\@127.0.0.1:6380/0;", qr/is not redis\[s\]:\/\/host\[:port\]\[\/db\]/, 'a password in the URL'],
        ['sa_redis rediss://127.0.0.1:6380/x;', qr/invalid database number in the URL/, 'a bad database in the URL'],
        ["sa_redis 127.0.0.1:6380 ssl;\n    sa_redis_ssl_certificate $T->{client_cert};",
         qr/sa_redis_ssl_certificate and sa_redis_ssl_certificate_key go together/, 'a certificate without its key'],
        ["sa_redis 127.0.0.1:6380 ssl;\n    sa_redis_ssl_protocols TLSv9;", qr/invalid value "TLSv9"/, 'an unknown protocol'],
        ["sa_redis 127.0.0.1:6380 ssl;\n    sa_redis_ssl_trusted_certificate /nonexistent/ca.pem;",
         qr/SSL_CTX_load_verify_locations\("\/nonexistent\/ca.pem"\) failed/, 'a CA file that is not there'],
        ["sa_redis 127.0.0.1:6380 ssl;\n    sa_redis_ssl_verify maybe;", qr/invalid value "maybe"/, 'verify neither on nor off'],
        ['sa_redis 127.0.0.1:6380 sentinel_password=x;', qr/invalid parameter "sentinel_password=x"/, 'sentinel_password= on sa_redis'],
    );
    for my $c (@bad) {
        my ($ok, $out) = SaTest::Nginx->test_config(http => conf($c->[0]));
        ok(!$ok, "nginx -t refuses $c->[2]");
        like($out, $c->[1], "nginx -t says why: $c->[2]");
    }
    my @good = (
        ['sa_redis rediss://localhost:6380/2;', 'rediss://host:port/db'],
        ['sa_redis redis://127.0.0.1:6379;', 'redis://host:port'],
        ["sa_redis 127.0.0.1:6380 ssl password=p;\n    sa_redis_ssl_name redis.test;\n"
         . "    sa_redis_ssl_certificate $T->{client_cert};\n    sa_redis_ssl_certificate_key $T->{client_key};\n"
         . "    sa_redis_ssl_trusted_certificate $T->{ca};\n    sa_redis_ssl_protocols TLSv1.3;", 'every sa_redis_ssl_*'],
        ['sa_redis_sentinel sa 127.0.0.1:26380 localhost:26381 ssl sentinel_password=s sentinel_user=u password=p;',
         'sentinels over TLS with a sentinel password'],
    );
    for my $c (@good) {
        my ($ok, $out) = SaTest::Nginx->test_config(http => conf($c->[0]));
        ok($ok, "nginx -t accepts $c->[1]") or diag $out;
    }
    my ($ok, $out) = SaTest::Nginx->test_config(http => conf("sa_redis 127.0.0.1:6380 ssl;\n    sa_redis_ssl_verify off;"));
    ok($ok, 'nginx -t accepts sa_redis_ssl_verify off') or diag $out;
    like($out, qr/\[warn\].*sa_redis_ssl_verify off: the Redis server is not authenticated/, 'and warns that it is off');
}

# ---------------------------------------------------------------- B. it works
my $redis = SaTest::Redis->start(tls => 'no');
my $f = SaTest::fixture($redis, apps => [qw(api)]);
my $token = $f->token('stacks:read');
my $tp = $redis->tls_port;
my $CA = "sa_redis_ssl_trusted_certificate $T->{ca};";

{
    my $n = SaTest::Nginx->start(http => conf("sa_redis localhost:$tp ssl;\n    $CA"));
    is(status($n, $token), 200, 'B: over TLS, verified by name (localhost)');
    is(status($n, 'sat_' . ('x' x 70)), 401, 'B: a malformed token is still 401');
    no_alert($n, 'B');
    $n->stop;

    $n = SaTest::Nginx->start(http => conf("sa_redis 127.0.0.1:$tp ssl;\n    $CA"));
    is(status($n, $token), 200, 'B: verified by IP address (the certificate\'s IP SAN)');
    $n->stop;

    $n = SaTest::Nginx->start(http => conf("sa_redis rediss://localhost:$tp/0;\n    $CA"));
    is(status($n, $token), 200, 'B: rediss://localhost:port/0');
    $n->stop;

    # the subscriber over TLS: a revocation evicts the cached record at once
    $n = SaTest::Nginx->start(http => conf("sa_redis localhost:$tp ssl;\n    $CA", cache => 1));
    my ($tok, $id) = $f->issue('--scope', 'stacks:read');
    ok(settles($n, $tok, 200), 'B: sa_cache over TLS: 200');
    my $gets = sub { $redis->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0 };
    SaTest::wait_until(3, sub { my $g = $gets->(); status($n, $tok); $gets->() == $g });
    my $g = $gets->();
    is(status($n, $tok), 200, 'B: again');
    is($gets->(), $g, 'B: a cache hit (the TLS subscriber is proven alive by its heartbeats)');
    is($f->as('token', 'revoke', $id)->{code}, 0, 'B: revoked');
    my $t0 = time;
    ok(SaTest::wait_until(2, sub { status($n, $tok) == 401 }),
       sprintf('B: refused %.3f s after the revoke (the invalidation came over TLS)', time - $t0));
    no_alert($n, 'B: cache');
    $n->stop;
}

# ---------------------------------------------------------------- C. failures
sub fails_then_recovers {
    my (%c) = @_;
    my $n = SaTest::Nginx->start(http => conf($c{conf}));
    is(status($n, $token), 503, "C: $c{what}: 503");
    ok(SaTest::wait_until(3, sub { $n->error_log =~ $c{log} }), "C: $c{what}: the error log says why")
        or diag SaTest::tail($n->error_log);
    like($n->error_log, qr/\[error\].*$c{log}/, "C: $c{what}: at error level");
    if ($c{fix}) {
        $c{fix}->();
        ok(settles($n, $token, 200), "C: $c{what}: 200 once fixed, without a reload");
        $c{unfix}->() if $c{unfix};
    }
    no_alert($n, "C: $c{what}");
    $n->stop;
}

fails_then_recovers(
    what => 'a CA the certificate is not from',
    conf => "sa_redis localhost:$tp ssl;\n    sa_redis_ssl_trusted_certificate $T->{other_ca};",
    log  => qr/Redis command connection to localhost:$tp failed: TLS certificate verify error: \((19:self-signed certificate in certificate chain|20:unable to get local issuer certificate)\)/);

fails_then_recovers(
    what => 'the system bundle (the default) does not know the test CA',
    conf => "sa_redis localhost:$tp ssl;",
    log  => qr/connection to localhost:$tp failed: TLS certificate verify error: \((19|20):/);

fails_then_recovers(
    what => 'a name the certificate does not carry',
    conf => "sa_redis 127.0.0.1:$tp ssl;\n    $CA\n    sa_redis_ssl_name redis.example.com;",
    log  => qr/failed: TLS certificate does not match "redis\.example\.com"/);

is($redis->cmd('CONFIG', 'SET', 'tls-cert-file', $T->{expired}), 'OK', 'C: the server now shows an expired certificate');
fails_then_recovers(
    what => 'an expired certificate',
    conf => "sa_redis localhost:$tp ssl;\n    $CA",
    log  => qr/failed: TLS certificate verify error: \(10:certificate has expired\)/,
    fix  => sub { $redis->cmd('CONFIG', 'SET', 'tls-cert-file', $T->{cert}) });

{
    # a server that wants client certificates: none, one from another CA, the right one
    my $strict = SaTest::Redis->start(tls => 'yes');
    my $sp = $strict->tls_port;
    my $ft = SaTest::fixture($strict, apps => [qw(api)]);
    my $tok = $ft->token('stacks:read');
    my $n = SaTest::Nginx->start(http => conf("sa_redis localhost:$sp ssl;\n    $CA"));
    is(status($n, $tok), 503, 'C: no client certificate for a server that wants one: 503');
    ok(SaTest::wait_until(3, sub { $n->error_log =~ /\[error\].*connection to localhost:$sp (failed|lost): SSL_(read|write)\(\) failed: tlsv13 alert certificate required/ }),
       'C: no client certificate: OpenSSL\'s reason, at error level') or diag SaTest::tail($n->error_log);
    no_alert($n, 'C: no client certificate');
    $n->stop;

    $n = SaTest::Nginx->start(http => conf("sa_redis localhost:$sp ssl;\n    $CA\n"
        . "    sa_redis_ssl_certificate $T->{other_client_cert};\n    sa_redis_ssl_certificate_key $T->{other_client_key};"));
    is(status($n, $tok), 503, 'C: a client certificate from another CA: 503');
    no_alert($n, 'C: a foreign client certificate');
    $n->stop;

    $n = SaTest::Nginx->start(http => conf("sa_redis localhost:$sp ssl;\n    $CA\n"
        . "    sa_redis_ssl_certificate $T->{client_cert};\n    sa_redis_ssl_certificate_key $T->{client_key};"));
    is(status($n, $tok), 200, 'C: the right client certificate (tls-auth-clients yes): 200');
    no_alert($n, 'C: a client certificate');
    $n->stop;
}

fails_then_recovers(
    what => 'TLS to a plain port',
    conf => "sa_redis localhost:${\ $redis->port } ssl;\n    $CA",
    log  => qr/connection to localhost:${\ $redis->port } failed: TLS handshake not done within 1200 ms: no answer to the ClientHello \(a stopped server, or a plain port\?\)/);

fails_then_recovers(
    what => 'plain TCP to a TLS port',
    conf => "sa_redis 127.0.0.1:$tp;",
    log  => qr/connection to 127\.0\.0\.1:$tp (failed|lost): (recv\(\) failed \(104: Connection reset by peer\)|the server closed the connection) during the set-up \(a TLS port\? see "ssl"\)/);

{
    my $n = SaTest::Nginx->start(http => conf("sa_redis localhost:$tp ssl;\n    sa_redis_ssl_trusted_certificate $T->{other_ca};\n    sa_redis_ssl_verify off;"));
    is(status($n, $token), 200, 'C: sa_redis_ssl_verify off: a certificate from an unknown CA is taken');
    $n->stop;
}

# ---------------------------------------------------------------- D. sentinel
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
            'requirepass ' . $self->{password},
            "sentinel monitor sa 127.0.0.1 $self->{master_port} 1", '';
    }
}
{
    my $s = TlsSentinel->start(tls => 1, password => 'sentinel-secret', master_port => $tp);
    ok(SaTest::wait_until(5, sub { ((eval { $s->cmd('SENTINEL', 'get-master-addr-by-name', 'sa') } || [])->[1] // 0) == $tp }),
       'D: the sentinel (requirepass, TLS) names the master\'s TLS port');
    my $sp = $s->tls_port;
    my $n = SaTest::Nginx->start(http => conf("sa_redis_sentinel sa localhost:$sp ssl sentinel_password=sentinel-secret;\n    $CA", cache => 1));
    ok(settles($n, $token, 200), 'D: through a TLS sentinel with a password, to the TLS master: 200');
    unlike($n->error_log, qr/sentinel connection to \S+ (failed|lost)/, 'D: the sentinel connection was never refused');
    no_alert($n, 'D');
    $n->stop;

    $n = SaTest::Nginx->start(http => conf("sa_redis_sentinel sa localhost:$sp ssl sentinel_password=wrong;\n    $CA"));
    is(status($n, $token), 503, 'D: a wrong sentinel password: 503');
    ok(SaTest::wait_until(3, sub { $n->error_log =~ /sentinel connection to localhost:$sp (failed|lost): AUTH refused: WRONGPASS/ }),
       'D: a wrong sentinel password: logged') or diag SaTest::tail($n->error_log);
    $n->stop;
}

done_testing;
