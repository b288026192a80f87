# sa_rate_limit under attack (issue 25, the attack review): the bucket's
# arithmetic at its edges, time that jumps, and the ways around a limit.
#
# nginx runs under t/lib/timewarp.c (LD_PRELOAD), which shifts its
# monotonic clock (ngx_current_msec, the bucket's and the timers' time) and
# its wall clock (ngx_time(), what "date -s" steps) by offsets this test
# writes while it runs: an hour passes in a write, not in an hour.
#
# 1. burst 0 (what --rate without --burst gives) admits one request per
#    1/rate, over and over; it once admitted the first only, and then
#    nothing while the node lived.
# 2. A drained bucket admits burst + 1 at once, as a new one does (it once
#    admitted burst).
# 3. A bucket is dropped only once it has drained: 1/h stays 1/h after a
#    minute of silence (the node was once dropped after a minute unused,
#    and the next request found a new, empty bucket).
# 4. The wall clock stepped back or forward by hours changes nothing; the
#    monotonic clock alone drains.  Retry-After is whole seconds, never 0.
# 5. Ways around: an auth_request check (the documented pattern) and an
#    error_page into another protected location are refused as the
#    request itself is (both were admitted); HTTP/2 streams and pipelined
#    requests on one connection each count.
# 7. A Redis writer putting back the token's older genuine record, signed
#    before its rate was set, is refused by the version memory (sa_cache).
# 8. A full zone drops its least recently used bucket, drained or not, as
#    limit_req does: 600 other tokens used once each while a 1/h token is
#    idle reset its bucket in a 32k zone.  That is said at warn level (at
#    most once a second), so that the zone can be made larger.
# 6. A reload keeps the buckets; one that changes the zone's size starts
#    them afresh (as limit_req's zones do).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
my $warp_so = SaTest::build_dir() . '/tests/timewarp.so';
plan skip_all => "$warp_so is not built: run 'make'" unless -e $warp_so;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($t0) = $f->issue(qw(--scope a:b --rate 10/s));
my ($td) = $f->issue(qw(--scope a:b --rate 1/s --burst 2));
my ($th) = $f->issue(qw(--scope a:b --rate 1/h));
my ($tw) = $f->issue(qw(--scope a:b --rate 1/m --burst 1));
my ($ta) = $f->issue(qw(--scope a:b --rate 1/h));
my ($te) = $f->issue(qw(--scope a:b --rate 1/h));
my ($ta2) = $f->issue(qw(--scope a:b --rate 1/h));
my ($ta3) = $f->issue(qw(--scope a:b --rate 1/h));
my ($t2) = $f->issue(qw(--scope a:b --rate 1/h --burst 4));
my ($tz) = $f->issue(qw(--scope a:b --rate 1/h));
my ($tr, $idr) = $f->issue(qw(--scope a:b));

my $warp = SaTest::new_dir('warp') . '/offsets';
my ($mono, $wall) = (0, 0);
sub warp {
    ($mono, $wall) = @_;
    open my $fh, '+<:raw', $warp or die "$warp: $!";
    sysseek $fh, 0, 0;
    syswrite($fh, pack('q<q<', $mono * 1000, $wall * 1000)) == 16 or die "$warp: $!";
    close $fh;
}
SaTest::write_file($warp, pack('q<q<', 0, 0));

my $h2port = SaTest::free_port();
my $tls = SaTest::tls_files();
my $http = <<"CONF";
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m;
    sa_rate_limit zone=rl:1m;
    log_format sa '\$arg_case \$status \$sa_status';
    log_format other '\$request_uri \$status \$sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:$h2port ssl http2;
        ssl_certificate $tls->{cert};
        ssl_certificate_key $tls->{key};
        access_log %%DIR%%/sa.log sa;
        root %%DIR%%/html;
        location /ar/ {
            auth_request /_sa_check;
            alias %%DIR%%/html/;
        }
        location /ar2/ {
            # rules the main request's token fails: its own check is not
            # the one that counts
            sa_application elsewhere;
            auth_request /_sa_check;
            alias %%DIR%%/html/;
        }
        location /ar3/ {
            auth_request /_sa_check;
            error_page 500 = \@limited;
            alias %%DIR%%/html/;
        }
        location \@limited {
            if (\$sa_status = rate_limited) { return 429; }
            return 500;
        }
        location = /_sa_check {
            internal;
            sa_auth api;
            return 204;
        }
        location /ep/ {
            sa_auth api;
            error_page 429 = /other/index.html;
            alias %%DIR%%/html/;
        }
        location /other/ {
            sa_auth api;
            access_log %%DIR%%/other.log other;
            alias %%DIR%%/html/;
        }
        location / { sa_auth api; }
    }
CONF
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => $http,
                                 env => { LD_PRELOAD => $warp_so, SA_TIMEWARP => $warp });

sub get {
    my ($tok, $path, $case) = @_;
    return $nginx->get(($path // '/index.html') . '?case=' . ($case // 'x'), Authorization => "Bearer $tok");
}
sub codes { join ' ', map { get($_[0], $_[1])->{status} } 1 .. $_[2] }
sub logged {
    my ($case) = @_;
    return SaTest::wait_until(2, sub {
        SaTest::slurp($nginx->dir . '/sa.log') =~ /^\Q$case\E (\d+ \S+)$/m ? $1 : 0;
    }) || '(not logged)';
}

# 1. burst 0: one at a time, every 1/rate
my (@c, $r);
for my $i (1 .. 4) {
    push @c, get($t0)->{status};
    warp($mono + 0.2, $wall);       # two intervals of 10/s pass
}
is("@c", '200 200 200 200', '10/s burst 0: a request every 0.2 s is admitted, each time');
is(codes($t0, undef, 2), '200 429', 'and two at once: one');

# 2. a drained bucket: burst + 1 at once, as a new one
is(codes($td, undef, 4), '200 200 200 429', '1/s burst 2, new: 3 at once');
warp($mono + 10, $wall);
is(codes($td, undef, 4), '200 200 200 429', 'drained (10 s later): 3 at once again');
warp($mono + 10, $wall);
get($td);
$r = get($td);
is($r->{headers}{'ratelimit'}, '"sa";r=1;t=1', 'RateLimit after 2 of 3: one left, one more back in 1 s (not 2, the bucket empty)');

# 3. a minute of silence does not empty a bucket of 1/h
is(codes($th, undef, 2), '200 429', '1/h: one');
warp($mono + 61, $wall);
get($t0);                            # the zone is used: nodes may expire
$r = get($th, undef, 'minute');
is($r->{status}, 429, '1/h, 61 s later: still refused');
ok(($r->{headers}{'retry-after'} // 0) >= 3530 && $r->{headers}{'retry-after'} <= 3540,
   "Retry-After the rest of the hour ($r->{headers}{'retry-after'} s)");
is(logged('minute'), '429 rate_limited', '$sa_status rate_limited');
warp($mono + 3600 - 61, $wall);
is(get($th)->{status}, 200, 'an hour after the first: admitted');

# 4. the wall clock stepped back and forward: the monotonic clock alone counts
is(codes($tw, undef, 3), '200 200 429', '1/m burst 1: two');
warp($mono, $wall - 7200);
$r = get($tw);
is($r->{status}, 429, 'date set 2 h back: still refused');
ok(($r->{headers}{'retry-after'} // 0) >= 1 && $r->{headers}{'retry-after'} <= 60,
   "Retry-After in the minute ($r->{headers}{'retry-after'} s)");
warp($mono, $wall + 7200 * 2);
is(get($tw)->{status}, 429, 'date set 2 h forward: still refused');
warp($mono + 59, 0);
is(get($tw)->{status}, 429, '59 s of monotonic time later: not yet');
warp($mono + 1, $wall);
$r = get($tw);
is($r->{status}, 200, 'a minute later: one fits');
is($r->{headers}{'ratelimit'}, '"sa";r=0;t=60',
   'RateLimit: none left, one more in 60 s (the draft\'s t: until more quota is made available, not until the bucket is empty, 120 s)');
is($r->{headers}{'ratelimit-policy'}, '"sa";q=1;w=60', 'RateLimit-Policy: the signed 1/m');
warp($mono + 59.5, $wall);
$r = get($tw);
is($r->{status}, 429, '59.5 s later: not yet');
is($r->{headers}{'retry-after'}, 1, 'Retry-After 1 for the last half second, not 0');

# 5. ways around: auth_request, error_page, HTTP/2, pipelining
is(codes($ta, '/ar/index.html', 3), '200 500 500',
   'auth_request to sa_auth, 1/h: one, then refused (auth_request turns 429 into 500)');
is(codes($ta2, '/ar2/index.html', 3), '200 500 500',
   'the same where the main request\'s location has rules the token fails');
is(codes($ta3, '/ar3/index.html', 2), '200 429',
   'the main request\'s $sa_status is rate_limited: error_page 500 can answer 429');
is(codes($te, '/ep/index.html', 2), '200 429', 'error_page 429 into another protected location: still 429');
get($te, '/ep/index.html', 'ep');
is(SaTest::wait_until(2, sub { SaTest::slurp($nginx->dir . '/other.log') =~ m{^/ep/index\.html\?case=ep (\d+ \S+)$}m ? $1 : 0 }),
   '429 rate_limited', '$sa_status rate_limited there');

SKIP: {
    my $curl = SaTest::run([qw(curl --version)]);
    skip 'no curl with HTTP/2', 2 unless $curl->{code} == 0 && $curl->{out} =~ /HTTP2/;
    my $url = "https://127.0.0.1:$h2port/index.html";
    my $out = SaTest::run(['curl', '-sk', '--http2', '-H', "Authorization: Bearer $t2",
                           map { ('-o', '/dev/null', '-w', '%{http_version} %{http_code} %{num_connects}\n', $url) } 1 .. 8]);
    is(join(' ', $out->{out} =~ /^2 (\d+) /mg), join(' ', (200) x 5, (429) x 3),
       '8 requests on one HTTP/2 connection, 1/h burst 4: 5 admitted');
    my $n = 0;
    $n += $_ for $out->{out} =~ / (\d+)$/mg;
    is($n, 1, '(one connection)');
}
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port) or die;
print $s join '', map { "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tz\r\n"
                        . ($_ == 4 ? "Connection: close\r\n" : '') . "\r\n" } 1 .. 4;
my $all = do { local $/; <$s> } // '';
close $s;
is(join(' ', $all =~ /^HTTP\/1\.1 (\d+)/mg), '200 429 429 429', '4 pipelined requests of 1/h: one');

# 7. replay of a looser, older record
my $old = $redis->cmd('GET', "sa:tok:$idr");
is(get($tr)->{status}, 200, 'a token without a rate: verified');
is($f->as('token', 'scope', $idr, qw(--rate 1/h))->{code}, 0, 'token scope --rate 1/h');
is(SaTest::wait_until(2, sub { my $s = get($tr)->{status}; $s == 429 ? $s : 0 }), 429, 'then limited: one, 429');
$redis->cmd('SET', "sa:tok:$idr", $old);
$redis->cmd('PUBLISH', 'sa:invalidate', $idr);
is(SaTest::wait_until(2, sub { my $s = get($tr, undef, 'replay')->{status}; $s == 401 ? $s : 0 }), 401,
   'the record from before the rate put back (and the cache entry dropped): 401, not 200');
like($nginx->error_log, qr/version 1 is older than one already seen/, 'refused as a replay');

# 6. reloads
is(get($tz)->{status}, 429, 'refused before a reload');
ok($nginx->reload, 'reload, the same zone');
is(get($tz)->{status}, 429, 'the bucket is kept');
(my $bigger = $http) =~ s/zone=rl:1m/zone=rl:2m/ or die;
ok($nginx->reload(http => $bigger), 'reload with rl:2m');
is(get($tz)->{status}, 200, 'a zone of a new size starts afresh');

# 8. a full zone
my ($tv) = $f->issue(qw(--scope a:b --rate 1/h));
my @many = split /\n/, $f->as(qw(token issue platform/ci --scope a:b --rate 1/h --count 600))->{out};
is(scalar @many, 600, '600 tokens of 1/h');
my $small = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    sa_rate_limit zone=small:32k;
    server { listen 127.0.0.1:%%PORT%%; root %%DIR%%/html; location / { sa_auth api; } }
CONF
is(join(' ', map { $small->get('/index.html', Authorization => "Bearer $tv")->{status} } 1 .. 2), '200 429',
   'a 32k zone: 1/h, one');
my %c;
$c{ $small->get('/index.html', Authorization => "Bearer $_")->{status} }++ for @many;
is(join(' ', map { "$_=$c{$_}" } sort keys %c), '200=600', '600 other tokens, once each: all admitted (a full zone refuses no one)');
is($small->get('/index.html', Authorization => "Bearer $tv")->{status}, 200,
   'the idle 1/h token\'s bucket was dropped: admitted again (limit_req\'s zones do the same)');
my @warn = $small->error_log =~ /\[warn\].*(sa_rate_limit zone "small" is full: .*)/g;
ok(@warn >= 1 && @warn <= 3, scalar(@warn) . ' warning(s), at most one a second') or diag $small->error_log;
like($warn[0] // '', qr/dropped the bucket of a token that had not drained/, 'saying what it cost');

done_testing;
