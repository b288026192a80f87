# Replays after a flood of invalidation messages (an attack review of
# issue 21, item 6).
#
# Invalidation messages are not authenticated, and each version they name
# took a slot of the version memory, pushing out the one raised longest ago,
# whoever wrote it.  So a Redis writer (who may PUBLISH) saved a used
# token's record, revoked it... or waited for sa-admin to, published 60,000
# made-up "<id>:9" (about 4 s), put the record back: 200, 20 of 20.  Each
# forgotten version was also a warn line (43,617 lines for that flood).
# Now a version only heard never pushes out one a signed record wrote, every
# token the gateway verified keeps a slot (version 1 too), and the line is
# written at most once a second with a count.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);   # platform/ci, owner alice
sub as { $f->as(@_) }

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m;
    server { listen 127.0.0.1:%%PORT%%; location / { sa_auth api; root %%DIR%%/html; } }
CONF
$redis->wait_subscribed(2);

sub status { $nginx->get('/index.html', Authorization => "Bearer $_[0]")->{status} }
sub statuses {
    my ($n, $t) = @_;
    my %s;
    $s{ status($t) }++ for 1 .. $n;
    return join ' ', map { "${_}x$s{$_}" } sort keys %s;
}

my @a = ('A' .. 'Z', 'a' .. 'z', '0' .. '9');
sub flood {
    my ($n) = @_;
    for (1 .. $n / 1000) {
        $redis->cmd('PUBLISH', 'sa:invalidate',
                    join ' ', map { join('', map { $a[rand @a] } 1 .. 16) . ':9' } 1 .. 1000);
    }
}

my @tokens;
for my $i (1 .. 2) {
    my $t = as(qw(token issue platform/ci --scope stacks:read))->{out};
    chomp $t;
    push @tokens, [$t, substr($t, 4, 16)];
}

# 1. a token in use (version 1), revoked, nobody uses it; the flood; the replay
my ($t, $id) = @{ $tokens[0] };
is(status($t), 200, 'a token in use');
my $v1 = $redis->cmd('GET', "sa:tok:$id");
as('token', 'revoke', $id);
my $t0 = time;
flood(60000);
ok(time - $t0 < 30, sprintf('60,000 made-up ids published (%.1f s)', time - $t0));
# the messages are all heard once a heartbeat after them is (a heartbeat
# is 1 s; nothing outside the worker shows that it was heard): time
sleep 1.5;
$redis->cmd('SET', "sa:tok:$id", $v1, 'KEEPTTL');
is(statuses(20, $t), '401x20', 'its pre-revoke record put back after the flood: refused, 20 of 20');

# 2. read by both workers, revoked, a smaller flood, put back without KEEPTTL
($t, $id) = @{ $tokens[1] };
is(statuses(4, $t), '200x4', 'another token in use, on both workers');
$v1 = $redis->cmd('GET', "sa:tok:$id");
as('token', 'revoke', $id);
flood(30000);
sleep 1.5;    # as above: a heartbeat after the flood
$redis->cmd('SET', "sa:tok:$id", $v1);
is(statuses(20, $t), '401x20', 'put back without KEEPTTL after a flood: refused');

my $lines = () = $nginx->error_log =~ /version memory full/g;
ok($lines >= 1 && $lines <= 40, "a full version memory is logged, at most once a second ($lines lines)");
SaTest::expect_log(qr/version memory full/);    # a warn line, the flood's own

done_testing;
