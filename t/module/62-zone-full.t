# A full sa_cache zone keeps serving: the least recently used entries make
# room, and a record that cannot be stored is simply not cached.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub gets { $redis->calls('get') }

my @tokens = split /\n/, as(qw(token issue platform/ci --scope a:b --count 400))->{out};
is(scalar @tokens, 400, '400 tokens');

# the smallest zone nginx accepts (8 pages) holds far fewer than 400 records
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    sa_cache zone=tiny:32k ttl=5m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
SaTest::wait_for('subscribed', sub {
    $redis->cmd('CLIENT', 'LIST', 'TYPE', 'pubsub') =~ /^id=/m;
});

for my $pass (1, 2) {
    my $before = gets();
    my $ok = grep { $nginx->get('/index.html', Authorization => "Bearer $_")->{status} == 200 }
             @tokens;
    is($ok, 400, "pass $pass: every token served by a full zone");
    my $misses = gets() - $before;
    ok($misses > 0, "pass $pass: evicted entries are fetched again ($misses GETs)");
}

# the most recent entries are still there
my $before = gets();
$nginx->get('/index.html', Authorization => "Bearer $tokens[-1]") for 1 .. 5;
is(gets() - $before, 0, 'the most recently used token is still cached');
unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'no alert');

done_testing;
