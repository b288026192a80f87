# sa_rate_limit (issue 25, item 2, local mode): each token's signed rate and
# burst in a shared-memory leaky bucket.  With 2 workers, a flood of one
# token from many connections admits exactly burst + 1 at once, then the
# rate; a refusal is 429 with Retry-After and $sa_status rate_limited
# (counted in sa_requests_total); admitted requests carry RateLimit-Policy
# and RateLimit (off with sa_rate_limit_headers off); a token without a
# rate is not limited; a policy change reaches a cached token at once.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($tb, $idb) = $f->issue(qw(--scope a:b --rate 1/h --burst 9));
my ($tr, $idr) = $f->issue(qw(--scope a:b --rate 60/m --burst 1));
my ($tn) = $f->issue(qw(--scope a:b));

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m;
    sa_rate_limit zone=rl:1m mode=local;
    log_format sa '$arg_case $status $sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        root %%DIR%%/html;
        location /quiet/ { sa_auth api; sa_rate_limit_headers off; alias %%DIR%%/html/; }
        location /metrics { sa_metrics; }
        location / { sa_auth api; }
    }
CONF

# n requests of one token at once: 20 connections, 2 processes
sub flood {
    my ($tok, $n) = @_;
    my %c;
    my @kids;
    for my $k (1 .. 2) {
        pipe(my $r, my $w) or die;
        my $pid = fork // die;
        if (!$pid) {
            close $r;
            my @s = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port) or die } 1 .. $n / 4;
            for my $s (@s) {
                print $s "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n\r\n"
                    . "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\nConnection: close\r\n\r\n";
            }
            for my $s (@s) {
                local $/;
                my $all = <$s> // '';
                print $w "$1\n" while $all =~ /^HTTP\/1\.1 (\d+)/mg;
            }
            exit 0;
        }
        close $w;
        push @kids, [$pid, $r];
    }
    for my $kid (@kids) {
        my $fh = $kid->[1];
        while (my $l = <$fh>) { chomp $l; $c{$l}++ }
        waitpid $kid->[0], 0;
    }
    return join ' ', map { "$_=$c{$_}" } sort keys %c;
}

is(flood($tb, 40), '200=10 429=30', '1/h burst 9: 40 at once over 20 connections, 2 workers: exactly 10 admitted');
is(flood($tn, 40), '200=40', 'a token without a rate: all 40');

my $res = $nginx->get('/index.html?case=refused', Authorization => "Bearer $tb");
is($res->{status}, 429, 'then refused: 429');
ok(($res->{headers}{'retry-after'} // 0) >= 3000 && $res->{headers}{'retry-after'} <= 3600,
   "Retry-After until one fits at 1/h ($res->{headers}{'retry-after'} s)");
ok(!exists $res->{headers}{'www-authenticate'}, 'no challenge: the token is fine');
my $line = SaTest::wait_until(2, sub { SaTest::slurp($nginx->dir . '/sa.log') =~ /^refused (\d+ \S+)$/m ? $1 : 0 });
is($line, '429 rate_limited', '$sa_status rate_limited');

# the rate: 60/m burst 1 admits 2 at once, then one a second.  "Only one"
# holds while nginx sees the two requests after the pause within 2 s of the
# flood (then the bucket has not refilled two); a machine too loaded for
# that voids the round, which is made again once the bucket is full (2 s)
my ($fl, $next, $t0);
for my $try (1 .. 5) {
    select(undef, undef, undef, 2.1) if $try > 1;    # time: the bucket refills
    $t0 = time;
    $fl = flood($tr, 8);
    select(undef, undef, undef, 1.1);      # time is the test: the bucket drains
    $res = $nginx->get('/index.html', Authorization => "Bearer $tr");
    $next = $nginx->get('/index.html', Authorization => "Bearer $tr")->{status};
    last if time - $t0 < 2;
    note sprintf 'round %d took %.2f s, not within 2 s: again', $try, time - $t0;
}
is($fl, '200=2 429=6', '60/m burst 1: 2 of 8 at once');
is($res->{status}, 200, 'a second later one more is admitted');
is($res->{headers}{'ratelimit-policy'}, '"sa";q=60;w=60', 'RateLimit-Policy: the signed rate');
like($res->{headers}{'ratelimit'}, qr/^"sa";r=0;t=[12]$/, "RateLimit: none left, reset soon ($res->{headers}{'ratelimit'})");
is($next, 429, 'and the next is refused');

# headers off; a policy change reaches the cached token at once
is($f->as('token', 'scope', $idr, qw(--rate 1000/s --burst 100))->{code}, 0, 'token scope --rate 1000/s');
my $st = SaTest::wait_until(2, sub { my $r = $nginx->get('/quiet/index.html', Authorization => "Bearer $tr"); $r->{status} == 200 ? $r : 0 });
ok($st, 'the raised rate holds on the next request');
ok($st && !exists $st->{headers}{'ratelimit'} && !exists $st->{headers}{'ratelimit-policy'},
   'sa_rate_limit_headers off: no RateLimit fields');
is($f->as('token', 'scope', $idr, qw(--rate none))->{code}, 0, 'token scope --rate none');
$st = SaTest::wait_until(2, sub { my $r = $nginx->get('/index.html', Authorization => "Bearer $tr"); $r->{status} == 200 && !exists $r->{headers}{'ratelimit'} ? $r : 0 });
ok($st, 'no rate: no RateLimit fields');

my $m = $nginx->get('/metrics')->{content};
my ($n) = $m =~ /^sa_requests_total\{status="rate_limited"\} (\d+)$/m;
ok(($n // 0) >= 37, "sa_requests_total{status=\"rate_limited\"} counts the refusals ($n)");

# without sa_rate_limit the rate is not enforced, and nginx -t says so once
# (two sa_auth locations, one warning); not with sa_rate_limit, nor with
# "sa_rate_limit off", nor without sa_auth
my $head = "sa_redis 127.0.0.1:6379; sa_verify_key " . SaTest::keys_dir() . "/verify.key;\n";
my $two = "server { listen 127.0.0.1:%%PORT%%; root %%DIR%%/html; location / { sa_auth api; } location /b/ { sa_auth b; } }";
my $msg = qr/"sa_auth" without "sa_rate_limit": the rate and burst of token records are not enforced \("sa_rate_limit off;" to mean it\)/;
my $warned = qr/\[warn\] $msg/;
my ($ok, $out) = SaTest::Nginx->test_config(http => $head . $two);
ok($ok, 'no sa_rate_limit: nginx -t passes');
my @w = $out =~ /$warned/g;
is(scalar @w, 1, 'and warns once that rates are not enforced') or diag $out;
for my $case (['sa_rate_limit zone=w:1m;', 'with sa_rate_limit'], ['sa_rate_limit off;', 'with sa_rate_limit off']) {
    ($ok, $out) = SaTest::Nginx->test_config(http => $head . "$case->[0]\n" . $two);
    ok($ok && $out !~ /sa_rate_limit/, "$case->[1]: no warning") or diag $out;
}
($ok, $out) = SaTest::Nginx->test_config(http => $head . "server { listen 127.0.0.1:%%PORT%%; }");
ok($ok && $out !~ /sa_rate_limit/, 'without sa_auth: no warning') or diag $out;
($ok, $out) = SaTest::Nginx->test_config(http => $head . "sa_rate_limit off; sa_rate_limit zone=w:1m;\n" . $two);
like($out, qr/"sa_rate_limit" directive is duplicate/, 'off and a zone: duplicate');
my $plain = SaTest::Nginx->start(redis => $redis, http => $two);
my $master = $plain->pid;
@w = SaTest::slurp($plain->dir . '/error.log') =~ /\[warn\] $master#\d+: $msg/g;
is(scalar @w, 1, "a start without sa_rate_limit says so once in the error log") or diag "master $master:\n" . SaTest::slurp($plain->dir . "/error.log");
is($plain->get('/index.html', Authorization => "Bearer $tb")->{status}, 200,
   'and does not enforce the rate of a token over it');
$plain->stop;

($ok, $out) = SaTest::Nginx->test_config(http => "sa_redis 127.0.0.1:6379; sa_verify_key " . SaTest::keys_dir() . "/verify.key;\n"
    . "sa_rate_limit zone=x:1m mode=cluster sync=250ms on_unavailable=deny;\nserver { listen 127.0.0.1:%%PORT%%; location / { sa_auth api; } }");
ok($ok, 'mode=cluster with sync and on_unavailable passes (t/module/58-rate-cluster.t)') or diag $out;
($ok, $out) = SaTest::Nginx->test_config(http => "sa_redis 127.0.0.1:6379; sa_verify_key " . SaTest::keys_dir() . "/verify.key;\n"
    . "sa_rate_limit zone=x:1m mode=cluster sync=5ms;\nserver { listen 127.0.0.1:%%PORT%%; location / { sa_auth api; } }");
like($out, qr/invalid parameter "sync=5ms": from 10ms to 60s/, 'a sync below 10ms is refused');
($ok, $out) = SaTest::Nginx->test_config(http => "sa_redis 127.0.0.1:6379; sa_verify_key " . SaTest::keys_dir() . "/verify.key;\n"
    . "sa_rate_limit zone=x:1m bogus=1;\nserver { listen 127.0.0.1:%%PORT%%; location / { sa_auth api; } }");
like($out, qr/invalid parameter "bogus=1"/, 'an unknown parameter is refused');

done_testing;
