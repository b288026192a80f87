# sa-admin serve, the server itself (issue 22, items 2, 3, 5): listeners
# (TCP and unix), the answers every route shares (problem+json, the
# statuses the parent gives alone, the security headers), /healthz,
# /metrics, /v1/me for each kind of caller, the user header only on a
# trusted listener, operators, SIGHUP and SIGTERM.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
use Time::HiRes qw(sleep);

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};
my $sock = SaTest::tmp_dir() . '/api.sock';
my $proxy = SaTest::tmp_dir() . '/proxy.sock';

my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--listen', "unix:$sock",
    '--trusted-listen', "unix:$proxy", '--operator', 'root-person',
    '--workers', 2 ]);
my @addrs = $api->addrs;
is(scalar @addrs, 3, 'one "listening on" line per listener');
like($addrs[0], qr/^127\.0\.0\.1:\d+$/, 'the TCP address as bound (port 0: the real port)');
is($addrs[1], "unix:$sock", 'the unix socket');
is($addrs[2], "unix:$proxy", 'the trusted unix socket');

my %security = (
    'x-content-type-options' => 'nosniff',
    'cache-control' => 'no-store',
    'content-security-policy' => "default-src 'none'; frame-ancestors 'none'",
    'referrer-policy' => 'no-referrer',
    'x-frame-options' => 'DENY',
);
sub secure {
    my ($r, $what) = @_;
    my @bad = grep { ($r->{headers}{$_} // '') ne $security{$_} } sort keys %security;
    ok(!@bad, "$what: the security headers") or diag "missing or wrong: @bad";
    ok(!exists $r->{headers}{'access-control-allow-origin'}, "$what: no CORS");
}
sub problem {
    my ($r, $status, $type, $exit, $what) = @_;
    is($r->{status}, $status, "$what: $status") or diag $r->{raw};
    is($r->{headers}{'content-type'}, 'application/problem+json', "$what: problem+json");
    is($r->{json}{type}, "urn:sa-admin:$type", "$what: type urn:sa-admin:$type");
    is($r->{json}{status}, $status, "$what: the body's status");
    ok(length($r->{json}{title} // '') && length($r->{json}{detail} // ''),
       "$what: a title and a detail");
    is($r->{json}{exit}, $exit, "$what: the CLI's exit status $exit");
    secure($r, $what);
}

# /healthz: Redis answers
my $r = $api->req(GET => '/healthz');
is($r->{status}, 200, 'healthz: 200');
is_deeply($r->{json}, { status => 'ok', redis => 'ok' }, 'healthz: Redis reachable');
is($r->{headers}{'content-type'}, 'application/json', 'healthz: JSON');
secure($r, 'healthz');
is($api->req(GET => '/healthz', listener => "unix:$sock")->{status}, 200,
   'the unix socket answers');

# no credential: 401 with WWW-Authenticate
$r = $api->req(GET => '/v1/me');
problem($r, 401, 'unauthenticated', 2, 'no credential');
is($r->{headers}{'www-authenticate'}, 'Bearer', '401: WWW-Authenticate: Bearer');
$r = $api->req(GET => '/v1/me', headers => { Authorization => 'Bearer ' . SaTest::forged_token() });
problem($r, 401, 'unauthenticated', 2, 'a forged token');
$r = $api->req(GET => '/v1/me', headers => { Authorization => 'Basic YWxpY2U6eA==' });
is($r->{status}, 401, 'another scheme: 401');

# a service account's token
my ($token, $tid) = $f->issue('--scope', 'service_accounts:tokens', '--scope', 'stacks:read');
$r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $token" });
is($r->{status}, 200, 'a valid token: 200') or diag $r->{raw};
is($r->{json}{actor}, "$aid\@platform.sa.invalid", "me: the account's email");
is($r->{json}{proof}, "token:$tid", 'me: proven by the token id');
is($r->{json}{channel}, 'api', 'me: channel api');
is($r->{json}{kind}, 'account', 'me: a service account');
is($r->{json}{team}, 'platform', 'me: its team');
is_deeply($r->{json}{scopes}, ['service_accounts:tokens', 'stacks:read'], "me: the token's scopes");
ok(!$r->{json}{operator}, 'me: no operator');
secure($r, 'me');
my $secret = substr($token, 21);
unlike($api->err, qr/\Q$secret\E/, 'the secret never reaches the log');

# the user header: honoured on the trusted listener only
$r = $api->req(GET => '/v1/me', listener => "unix:$proxy",
               headers => { 'X-Forwarded-User' => 'bob' });
is($r->{status}, 200, 'trusted listener: the user header names the caller') or diag $r->{raw};
is($r->{json}{actor}, 'bob', 'trusted: actor bob');
is($r->{json}{proof}, 'proxy', 'trusted: proof proxy');
is($r->{json}{scopes}, undef, 'trusted: no scopes');
$r = $api->req(GET => '/v1/me', headers => { 'X-Forwarded-User' => 'bob' });
problem($r, 401, 'unauthenticated', 2, 'the user header on a TCP listener not trusted');
$r = $api->req(GET => '/v1/me', listener => "unix:$sock",
               headers => { 'X-Forwarded-User' => 'bob' });
is($r->{status}, 401, 'the user header on a unix listener not trusted: ignored, 401');
like($api->err, qr/X-Forwarded-User ignored \(not a trusted listener\)/, 'and logged');
$r = $api->req(GET => '/v1/me', headers => { 'X-Forwarded-User' => 'bob',
                                             Authorization => "Bearer $token" });
is($r->{json}{actor}, "$aid\@platform.sa.invalid",
   'untrusted: the header changes nothing next to a token');
$r = $api->req(GET => '/v1/me', listener => "unix:$proxy",
               headers => { 'X-Forwarded-User' => "$aid\@platform.sa.invalid" });
is($r->{status}, 401, "trusted: the header cannot name a service account");
$r = $api->req(GET => '/v1/me', listener => "unix:$proxy",
               headers => { 'X-Forwarded-User' => "bob\x01" });
is($r->{status}, 401, 'trusted: no user name, 401');

# operators: --operator people
$r = $api->req(GET => '/v1/me', listener => "unix:$proxy",
               headers => { 'X-Forwarded-User' => 'root-person' });
ok($r->{json}{operator}, '--operator root-person: an operator');
$r = $api->req(POST => '/v1/teams', listener => "unix:$proxy", json => { team => 'newteam', owner => 'erin' },
               headers => { 'X-Forwarded-User' => 'root-person' });
is($r->{status}, 201, 'an --operator person creates a team') or diag $r->{raw};
is_deeply($r->{json}, { team => 'newteam', owner => 'erin' }, "the CLI's --json object");
my ($entry) = grep { $_->{action} eq 'team.create' && $_->{team} eq 'newteam' }
              @{ SaTest::operator($redis, qw(audit --json))->{json} };
is_deeply([ @$entry{qw(actor proof channel)} ], ['root-person', 'proxy', 'api'],
          'audited as root-person, proven by the proxy, over the API');

# what the parent answers alone
$r = $api->req(GET => '/v1/nothing-here');
problem($r, 404, 'not-found', 2, 'unknown route');
$r = $api->req(GET => '/v1/me/');
is($r->{status}, 404, 'a trailing slash is another path: 404');
$r = $api->req(DELETE => '/v1/me', headers => { 'Content-Type' => 'application/json' });
problem($r, 405, 'method-not-allowed', 1, 'wrong method');
is($r->{headers}{allow}, 'GET', '405: Allow');
$r = $api->req(POST => '/v1/nothing', content => 'x' x 10,
               headers => { 'Content-Length' => 2 * 1024 * 1024 + 1, 'Content-Type' => 'application/json' });
problem($r, 413, 'too-large', 1, 'a body over 1 MiB by its Content-Length');

# /metrics: requests by route and status, latency, auth failures
$r = $api->req(GET => '/metrics');
is($r->{status}, 200, 'metrics: 200');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'metrics: the Prometheus text format');
like($r->{content}, qr/^sa_admin_requests_total\{route="me",status="401"\} ([5-9]|\d\d)$/m,
     'metrics: 401s of /v1/me counted');
like($r->{content}, qr/^sa_admin_requests_total\{route="healthz",status="200"\} 2$/m,
     'metrics: by route and status');
like($r->{content}, qr/^sa_admin_request_duration_seconds_bucket\{route="me",le="\+Inf"\} \d+$/m,
     'metrics: a latency histogram');
like($r->{content}, qr/^sa_admin_request_duration_seconds_count\{route="healthz"\} 2$/m,
     'metrics: its count');
my ($fails) = $r->{content} =~ /^sa_admin_auth_failures_total (\d+)$/m;
ok($fails >= 5, "metrics: auth failures ($fails)");
like($r->{content}, qr/^sa_admin_user_header_ignored_total 3$/m,
     'metrics: the user header ignored three times');
secure($r, 'metrics');

# SIGHUP: new workers (which read the keys again), answering as before
my @before = $api->workers;
is(scalar @before, 2, 'two workers');
kill 'HUP', $api->pid;
ok(SaTest::wait_until(10, sub {
    my @now = $api->workers;
    @now == 2 && !grep { my $p = $_; grep { $_ == $p } @before } @now;
}), 'SIGHUP: both workers replaced');
$r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $token" });
is($r->{status}, 200, 'after SIGHUP: answering');

# a flood of bad tokens: every one counted, the log bounded
{
    my $lines = sub { scalar(() = $api->err =~ /^sa-admin: serve: 401 from/mg) };
    my ($l0, $t0) = ($lines->(), Time::HiRes::time());
    $api->req(GET => '/v1/me', headers => { Authorization => 'Bearer ' . SaTest::forged_token() }) for 1 .. 100;
    my $secs = Time::HiRes::time() - $t0;
    my $logged = $lines->() - $l0;
    my $bound = 2 * 10 * (int($secs) + 2);
    ok($logged <= $bound, sprintf('100 refusals in %.1fs: %d lines logged, at most %d (10 a second a worker)',
                                  $secs, $logged, $bound));
    like($api->req(GET => '/metrics')->{content}, qr/^sa_admin_auth_failures_total (\d+)$/m, 'metrics');
    my ($n) = $api->req(GET => '/metrics')->{content} =~ /^sa_admin_auth_failures_total (\d+)$/m;
    ok($n >= 105, "every refusal counted ($n)");
}

# SIGHUP reads the keys again: a verify key replaced takes effect then
{
    my $other = SaTest::new_dir('other-keys');
    my $g = SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $other]);
    die $g->{err} if $g->{code};
    my $vk = SaTest::tmp_dir() . '/verify.key';
    SaTest::write_file($vk, SaTest::slurp(SaTest::keys_dir() . '/verify.key'));
    my $k = SaTest::Serve->start(redis => $redis, env => { SA_VERIFY_KEY => $vk },
                                 args => ['--workers', 1]);
    my $me = sub { $k->req(GET => '/v1/me', headers => { Authorization => "Bearer $token" })->{status} };
    is($me->(), 200, 'keys: a token verified by the verify key');
    SaTest::write_file($vk, SaTest::slurp("$other/verify.key"));
    is($me->(), 200, 'keys: another verify key in the file: still the one read at start');
    my @w = $k->workers;
    kill 'HUP', $k->pid;
    SaTest::wait_until(10, sub { my @n = $k->workers; @n == 1 && $n[0] != $w[0] });
    is($me->(), 401, 'keys: after SIGHUP, the new verify key: the token no longer verifies');
    SaTest::write_file($vk, SaTest::slurp(SaTest::keys_dir() . '/verify.key'));
    @w = $k->workers;
    kill 'HUP', $k->pid;
    SaTest::wait_until(10, sub { my @n = $k->workers; @n == 1 && $n[0] != $w[0] });
    is($me->(), 200, 'keys: the first one back, SIGHUP: verified again');
    $k->stop;
}

# a worker killed is replaced
my ($w) = $api->workers;
kill 'KILL', $w;
ok(SaTest::wait_until(10, sub { my @now = $api->workers; @now == 2 && !grep { $_ == $w } @now }),
   'a worker killed is replaced');
is($api->req(GET => '/healthz')->{status}, 200, 'and serve answers');

# SIGTERM: exits 0, the unix sockets gone
ok($api->stop, 'SIGTERM: serve ends');
is($api->exit_code, 0, 'exit status 0');
ok(!-e $sock, 'its unix socket removed');
like($api->err, qr/stopped$/m, 'it says so');

# usage errors
for my $bad ([[], qr/no listener/], [['--listen', 'nowhere'], qr/invalid listen address/],
             [['--listen', '127.0.0.1:0', '--user-header', 'X-U'], qr/needs --trusted-listen/],
             [['--listen', '127.0.0.1:0', '--workers', '0'], qr/invalid --workers/],
             [['--listen', '127.0.0.1:0', '--operator', 'bad name'], qr/invalid user name/]) {
    my $res = SaTest::operator($redis, 'serve', @{ $bad->[0] });
    is($res->{code}, 1, "serve @{ $bad->[0] }: exit 1");
    like($res->{err}, $bad->[1], "serve @{ $bad->[0] }: $bad->[1]");
}
my $res = SaTest::admin($redis, { SA_SIGNING_KEY => '/nonexistent/key' }, 'serve', '--listen', '127.0.0.1:0');
isnt($res->{code}, 0, 'no signing key: serve does not start');
unlike($res->{err}, qr/listening on/, 'and never listens');

done_testing;
