# token.quota_warning and token.quota_exhausted end to end (issue 25, item
# 3): a real nginx (2 workers, sa_rate_limit) admits a token with a quota
# of 10/day; the sync's script writes one entry of each when the total
# reaches 80 % and 100 %, once per period however many gateways and
# batches pass it; `sa-admin notify run --once` delivers each once to the
# account's subscription for the location's application, signed, with the
# count, the quota and the period.  A forged entry naming another quota or
# period is dropped; one of a token without a quota too.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use POSIX qw(strftime);
use Digest::SHA qw(hmac_sha256_hex);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $keys = SaTest::keys_dir();
my %envn = SaTest::notify_env();
my $f = SaTest::fixture($redis, apps => [qw(api)], env => \%envn);
sub as { $f->as(@_) }

my $receiver = SaTest::Receiver->start;
my ($port, $rdir) = ($receiver->port, $receiver->dir);
sub count { 0 + (SaTest::slurp("$rdir/count") || 0) }

my $set = as('notify', 'set', 'api', 'platform/ci', '--webhook', "http://127.0.0.1:$port/hook",
             '--events', 'token.quota_warning,token.quota_exhausted');
is($set->{code}, 0, 'subscribed to the quota events for api') or diag $set->{err};
chomp(my $secret = $set->{out});
my ($tok, $id) = $f->issue(qw(--scope a:b --quota 10/day));
my ($plain, $pid) = $f->issue(qw(--scope a:b));

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_rate_limit zone=rl:1m sync=20ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_application api; root %%DIR%%/html; }
    }
CONF

sub entries { grep { $_->{type} =~ /quota/ } map { { @{ $_->[1] } } } @{ $redis->cmd('XRANGE', 'sa:events', '-', '+') // [] } }

my @st;
for (1 .. 7) {
    push @st, $nginx->get('/index.html', Authorization => "Bearer $tok")->{status};
    select(undef, undef, undef, 0.05);      # batches of one or two
}
SaTest::wait_until(3, sub { ($redis->cmd('HGET', 'sa:ctr:q:d' . strftime('%Y%m%d', gmtime), $id) // 0) == 7 });
is(scalar(entries()), 0, '7 of 10: no entry yet');
for (1 .. 6) {
    push @st, $nginx->get('/index.html', Authorization => "Bearer $tok")->{status};
    select(undef, undef, undef, 0.05);
}
is("@st", '200 200 200 200 200 200 200 200 200 200 429 429 429', '10 admitted, then 429');
SaTest::wait_until(3, sub { scalar(entries()) >= 2 });
my @e = entries();
is(join(' ', sort map { $_->{type} } @e), 'token.quota_exhausted token.quota_warning',
   'one entry of each, however many batches passed 80 %');
my ($w) = grep { $_->{type} eq 'token.quota_warning' } @e;
is("$w->{token} $w->{app} $w->{quota}", "$id api 10", 'the entry names the token, app and quota');
ok($w->{used} >= 8 && $w->{used} <= 9, "written at 80 % ($w->{used})");

# forged entries: another quota, another period's kind, a token without one
my $day = 'd' . strftime('%Y%m%d', gmtime);
$redis->cmd('XADD', 'sa:events', '*', 'type', 'token.quota_warning', 'token', $id, 'app', 'api',
            'used', 1, 'quota', 5, 'period', $day, 'time', time);
$redis->cmd('XADD', 'sa:events', '*', 'type', 'token.quota_warning', 'token', $id, 'app', 'api',
            'used', 1, 'quota', 10, 'period', 'm202612', 'time', time);
$redis->cmd('XADD', 'sa:events', '*', 'type', 'token.quota_exhausted', 'token', $pid, 'app', 'api',
            'used', 1, 'quota', 10, 'period', $day, 'time', time);

my $r = SaTest::run([SaTest::admin_path(), qw(notify run --once --allow-private)],
                    env => { SA_REDIS => $redis->url, SA_SIGNING_KEY => "$keys/signing.key", %envn },
                    timeout => 30);
is($r->{code}, 0, 'the worker drains and exits') or diag $r->{err};
is(count(), 2, 'two deliveries: the warning and the exhaustion, none of the forged entries');
like($r->{out} . $r->{err}, qr/not the token's signed one/, 'the forged quota is dropped, said');
like($r->{out} . $r->{err}, qr/not of the token's quota/, 'the forged period too');
like($r->{out} . $r->{err}, qr/has no quota/, 'and the entry of a token without one');

my %got;
for my $n (1, 2) {
    my ($head, $body) = split /\r\n\r\n/, SaTest::slurp("$rdir/$n.http"), 2;
    my ($t, $v1) = $head =~ /^X-SA-Signature: t=(\d+),v1=([0-9a-f]{64})\r$/m;
    is($v1, hmac_sha256_hex("$t.$body", $secret), "delivery $n is signed");
    my $ev = JSON::PP->new->decode($body);
    $got{$ev->{type}} = $ev;
}
my $ex = $got{'token.quota_exhausted'};
ok($ex, 'token.quota_exhausted delivered');
is($ex->{data}{token}{id}, $id, 'for the token');
is("$ex->{data}{quota} $ex->{data}{period} $ex->{data}{used}", '10/day ' . strftime('%Y-%m-%d', gmtime) . ' 10',
   'with its quota, period and count');
is($ex->{account}{id}, $f->account->{id}, 'the account');
ok($got{'token.quota_warning'}, 'token.quota_warning delivered');

# no second one in the same period, whatever comes
for (1 .. 3) { $nginx->get('/index.html', Authorization => "Bearer $tok") }
sleep 0.3;
is(scalar(entries()), 0, 'no new entry in the same period (the worker took the others)');
$r = SaTest::run([SaTest::admin_path(), qw(notify run --once --allow-private)],
                 env => { SA_REDIS => $redis->url, SA_SIGNING_KEY => "$keys/signing.key", %envn },
                 timeout => 30);
is(count(), 2, 'and no new delivery');

done_testing;
