# The attack review of sa-admin's TLS path to Redis (issue 24;
# admin-tool/rconn.c, OpenSSL): t/lib/tls-proxy in front of a real Redis
# misbehaves at the TLS layer.  Each failure must be exit status 3 with
# one message that names the cause, within the connect (2 s) or reply
# (10 s) deadline (never a hang), and nothing half-written; what TLS
# allows must simply work.
#
#   A. Certificates: self-signed, not yet valid.
#   B. Handshakes that never end: a server that accepts and never answers,
#      one that reads the ClientHello and says nothing, a TLS 1.2 server
#      that stops before its Finished, a stopped Redis (SIGSTOP) on its TLS
#      port.
#   C. After the handshake: a KeyUpdate before every reply and a TLS record
#      per reply byte work (a team, an account, a token issued and listed);
#      a renegotiation is refused; close_notify in the middle of a reply is
#      exit 3 and the change it carried is whole or absent.
#   D. The notification worker (notify run) over TLS: its Redis goes silent
#      (SIGSTOP, behind the proxy): it exits 3 with the reason within the
#      reply deadline, it does not hang.
#   E. redis-sentinel+tls:// naming a hostile master: a TLS server whose
#      certificate names another host, a plain Redis: exit 3, nothing sent.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('sa-admin');
SaTest::api_local("the command line's own TLS connection to Redis");
# about 30 s: make test-slow (SA_TEST_SLOW=1), which .ci/run runs
plan skip_all => 'a slow suite: make test-slow' unless $ENV{SA_TEST_SLOW} || $ENV{ONLY};

my $T = SaTest::tls_files();
my $redis = SaTest::Redis->start(tls => 'no');
my $proxy = SaTest::TlsProxy->start(target => $redis->port);
my $url = 'rediss://localhost:' . $proxy->port . '/0';

sub adm {
    my ($env, @args) = @_;
    my $t0 = time;
    my $r = SaTest::admin($redis, { SA_REDIS => $url, SA_REDIS_CA => $T->{ca}, SA_ACTOR => 'alice', %$env }, @args);
    $r->{secs} = time - $t0;
    return $r;
}

my $r = adm({}, 'team', 'create', 'platform', '--owner', 'alice');
is($r->{code}, 0, 'through the proxy, verified: team create') or diag $r->{err};

# ---------------------------------------------------------------- A
my $digest = $redis->digest;
for my $c (['a self-signed certificate', SaTest::tls_cert('self', ca => 'self'), qr/TLS certificate verify failed: self-signed certificate \(localhost\)/],
           ['a certificate not yet valid', SaTest::tls_cert('future', not_before => '20990101000000Z'), qr/TLS certificate verify failed: certificate is not yet valid \(localhost\)/]) {
    my ($what, $pair, $why) = @$c;
    $proxy->cert($pair);
    $r = adm({}, 'team', 'create', 'other', '--owner', 'alice');
    is($r->{code}, 3, "A: $what: exit 3");
    like($r->{err}, qr/\Asa-admin: Redis unavailable at \Q$url\E: $why\n\z/, "A: $what: one line that says why") or diag $r->{err};
}
$proxy->cert(undef);
is($redis->digest, $digest, 'A: nothing written');

# ---------------------------------------------------------------- B
my $p12 = SaTest::TlsProxy->start(target => $redis->port, tls12 => 1);
for my $c (['stall', 'a server that accepts and never answers', qr/no answer to the ClientHello \(a stopped server, or a plain port\?\)/],
           ['stall-hello', 'a server that reads the ClientHello and says nothing', qr/no answer to the ClientHello \(a stopped server, or a plain port\?\)/],
           ['stall-finished', 'a TLS 1.2 server that stops before its Finished', qr/the server stopped in the middle of it/, $p12]) {
    my ($mode, $what, $why, $px) = @$c;
    $px //= $proxy;
    $px->mode($mode);
    my $u = 'rediss://localhost:' . $px->port . '/0';
    $r = adm({ SA_REDIS => $u }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 3, "B: $what: exit 3");
    ok($r->{secs} < 5, sprintf("B: $what: within the connect deadline (%.1f s)", $r->{secs}));
    like($r->{err}, qr/\Asa-admin: Redis unavailable at \Q$u\E: TLS handshake timed out: $why\n\z/, "B: $what: says why") or diag $r->{err};
    $px->mode('pass');
}
{
    my $u = 'rediss://localhost:' . $redis->tls_port . '/0';
    $redis->pause;
    $r = adm({ SA_REDIS => $u }, 'team', 'member', 'list', 'platform');
    $redis->resume;
    is($r->{code}, 3, 'B: a stopped Redis on its TLS port: exit 3');
    ok($r->{secs} < 5, sprintf('B: a stopped Redis: within the connect deadline (%.1f s)', $r->{secs}));
    like($r->{err}, qr/TLS handshake timed out: no answer to the ClientHello/, 'B: a stopped Redis: says why') or diag $r->{err};
}

# ---------------------------------------------------------------- C
for my $mode (qw(keyupdate split)) {
    $proxy->mode($mode);
    my $acct = "ci-$mode";
    $r = adm({}, 'account', 'create', 'platform', $acct);
    is($r->{code}, 0, "C: $mode: account create") or diag $r->{err};
    $r = adm({}, 'token', 'issue', "platform/$acct", '--scope', 'a:b');
    is($r->{code}, 0, "C: $mode: token issue") or diag $r->{err};
    my ($tok) = $r->{out} =~ /(sat_\S+)/;
    ok($tok, "C: $mode: a token");
    $r = adm({}, 'token', 'list', "platform/$acct");
    is($r->{code}, 0, "C: $mode: token list") or diag $r->{err};
    my $id = SaTest::tid($tok // 'sat_x');
    like($r->{out}, qr/\Q$id\E/, "C: $mode: lists it");
}
like($proxy->log, qr/keyupdate/, 'C: the proxy did send KeyUpdates');
$proxy->mode('pass');

{
    $p12->mode('reneg');
    my $u = 'rediss://localhost:' . $p12->port . '/0';
    $r = adm({ SA_REDIS => $u }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 3, 'C: a TLS 1.2 server that renegotiates: exit 3');
    like($r->{err}, qr/\Asa-admin: Redis unavailable at \Q$u\E: the server asked for a TLS renegotiation, refused/, 'C: renegotiation: refused, and said so')
        or diag $r->{err};
    like($p12->log, qr/no renegotiation/, 'C: the server heard the refusal');
    $p12->mode('pass');
}

{
    $proxy->mode('close-mid');
    $r = adm({}, 'account', 'create', 'platform', 'cut');
    is($r->{code}, 3, 'C: close_notify in the middle of a reply: exit 3');
    like($r->{err}, qr/the server closed the connection/, 'C: close_notify: says so') or diag $r->{err};
    $proxy->mode('pass');
    $r = adm({}, 'account', 'list', 'platform');
    is($r->{code}, 0, 'C: the server sane again: account list');
    my $there = $r->{out} =~ /\bcut\b/ ? 1 : 0;
    $r = adm({}, 'account', 'create', 'platform', 'cut');
    is($r->{code}, $there ? 1 : 0, 'C: the cut change was whole or absent: created again only if absent')
        or diag $r->{err};
}

# ---------------------------------------------------------------- D
{
    my $w = SaTest::Process->start(
        cmd => [SaTest::admin_path(), qw(notify run --allow-private)],
        env => { SA_REDIS => $url, SA_REDIS_CA => $T->{ca}, SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
                 SaTest::notify_env() });
    ok(SaTest::wait_until(5, sub { $proxy->log =~ /client: \d+ bytes/ }), 'D: the worker reads over TLS');
    sleep 1;
    ok($w->running, 'D: and keeps running');
    # Redis goes silent: every connection stalls, the worker's is frozen
    $redis->pause;
    my $t0 = time;
    ok(SaTest::wait_until(20, sub { !$w->running }), sprintf('D: a silent Redis: the worker exits (%.1f s)', time - $t0));
    $redis->resume;
    is($w->exit_code, 3, 'D: exit 3');
    like($w->err, qr/Redis/, 'D: says Redis') or diag $w->err;
}

# ---------------------------------------------------------------- E
{
    # a TLS sentinel names a master at a hostile address: a TLS server
    # whose certificate (of the right CA) names another host, then a plain
    # Redis; nothing reaches either
    my $sdir = SaTest::new_dir('sentinel');
    my $sport = SaTest::free_port();
    my $sentinel = SaTest::Process->start(cmd => [$^X, SaTest::root() . '/t/lib/fake-sentinel', $sport, $sdir]);
    SaTest::wait_for('fake-sentinel', sub { SaTest::port_open($sport) }, 5);
    my $stls = SaTest::TlsProxy->start(target => $sport);
    my $evil = SaTest::Redis->start;
    my $evil_tls = SaTest::TlsProxy->start(target => $evil->port,
                                           cert => SaTest::tls_cert('evil', san => 'DNS:redis.example.com'));
    my $surl = 'redis-sentinel+tls://localhost:' . $stls->port . '/0#sa';
    SaTest::write_file("$sdir/master", '127.0.0.1 ' . $proxy->port);
    $r = adm({ SA_REDIS => $surl }, 'team', 'member', 'list', 'platform');
    is($r->{code}, 0, 'E: through a TLS sentinel, the master it names') or diag $r->{err};
    SaTest::write_file("$sdir/master", '127.0.0.1 ' . $evil_tls->port);
    $r = adm({ SA_REDIS => $surl }, 'team', 'create', 'evil', '--owner', 'alice');
    is($r->{code}, 3, 'E: a master whose certificate names another host: exit 3');
    like($r->{err}, qr/TLS certificate verify failed: IP address mismatch \(127\.0\.0\.1\)/, 'E: refused by its address') or diag $r->{err};
    SaTest::write_file("$sdir/master", '127.0.0.1 ' . $evil->port);
    $r = adm({ SA_REDIS => $surl }, 'team', 'create', 'evil', '--owner', 'alice');
    is($r->{code}, 3, 'E: a master at a plain Redis: exit 3');
    ok($r->{secs} < 12, sprintf('E: a plain master: no hang (%.1f s)', $r->{secs}));
    like($r->{err}, qr/TLS handshake (timed out|failed)/, 'E: a plain master: the handshake named') or diag $r->{err};
    is($evil->cmd('DBSIZE'), 0, 'E: nothing reached the hostile masters');
}

done_testing;
