# What the batching sync (ngx_http_sa_sync.c) costs Redis, counted with
# INFO commandstats, which counts every command a script runs (issue 25:
# (b-rl-cluster) at most 0.01 Redis commands per request).  1,000 tokens,
# each with a cluster rate, a daily quota and its usage, requested 3 times
# each within one sync interval: a batch costs a few commands whatever the
# number of its tokens (the EVAL, one SET, per hash of a kind and period
# one HMGET and one HSET a slice of 4,000 arguments; EXPIRE once in a
# hash's life), not a command per token and counter as the script that
# ran HINCRBY per token did (five a token: 5,000 for such a batch; 4.09
# commands per request here, where this one takes about 0.01).  And each
# token's counts arrive exactly: the usage of the day, the quota's total
# and this gateway's part, the rate's counter, however many slices the
# batch took.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $N = 1000;
my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $r = $f->as(qw(token issue platform/ci --scope a:b --rate 1000/s --burst 100 --quota 1000000/day --count), $N);
my @tok = grep { /^sat_/ } split /\n/, $r->{out};
is(scalar @tok, $N, "$N tokens with a rate and a quota") or BAIL_OUT($r->{err});
my @id = map { SaTest::tid($_) } @tok;

# sync=2s: one round of all the tokens (well under a second) lands in one
# batch, whose quota hash takes 4,001 fields: two slices (and 3,000 items,
# 4,000 in the first seconds of a minute, when the last one's rate counter
# is read too: under the 4,096 a worker holds)
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 1, http => <<'CONF');
    sa_cache zone=sa:8m ttl=5m;
    sa_rate_limit zone=rl:8m mode=cluster sync=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_application api; root %%DIR%%/html; }
    }
CONF

# one request of every token, pipelined, 250 a connection: the statuses
sub round {
    my %st;
    for (my $i = 0; $i < @tok; $i += 250) {
        my @part = @tok[$i .. ($i + 249 < $#tok ? $i + 249 : $#tok)];
        my $req = join '', map {
            "GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $part[$_]\r\n"
            . ($_ == $#part ? "Connection: close\r\n" : '') . "\r\n" } 0 .. $#part;
        $st{$1}++ for SaTest::raw_http($nginx->port, $req, timeout => 20) =~ m{^HTTP/1\.1 (\d+)}mg;
    }
    return join ' ', map { "$_=$st{$_}" } sort keys %st;
}

sub day { strftime('%Y%m%d', gmtime) }

# the day's usage, read with HGETALL (which the gateway never sends)
sub admitted {
    my %h = @{ $redis->cmd('HGETALL', 'sa:usage:' . day()) // [] };
    my %n = map { /^(\w{16}):admitted$/ ? ($1 => $h{$_}) : () } keys %h;
    return \%n;
}
sub total { my $n = 0; $n += $_ for values %{ $_[0] }; $n }

sub cmdstats {
    return { map { /^cmdstat_([\w|]+):calls=(\d+)/ ? ($1 => $2) : () }
             split /\r?\n/, $redis->cmd('INFO', 'commandstats') };
}

my $tw = time;
is(round(), "200=$N", 'the first round: every token admitted (records read, cached)');
ok(SaTest::wait_until(8, sub { total(admitted()) == $N }), 'its usage arrived');
sleep 2.2;                      # the last batch of the first round answered

my $c0 = cmdstats();
my $t0 = time;
my @rounds = map { round() } 1 .. 3;
my $took = time - $t0;
is("@rounds", join(' ', ("200=$N") x 3), sprintf('3 rounds of %d tokens in %.2f s: all admitted', $N, $took));
ok(SaTest::wait_until(8, sub { total(admitted()) == 4 * $N }), 'their usage arrived');
my $c1 = cmdstats();
my $window = time - $t0;

my %d = map { $_ => ($c1->{$_} // 0) - ($c0->{$_} // 0) } keys %$c1;
delete @d{qw(info hgetall)};            # the test's own
my $evals = $d{eval} // 0;
my $other = 0;
$other += $d{$_} for grep { $_ ne 'eval' } keys %d;
my $what = join ' ', map { "$_=$d{$_}" } sort grep { $d{$_} } keys %d;
cmp_ok($evals, '>=', 1, "the sync sent $evals EVALs");
# one a sync interval, and the batches sent at once for a quota total
# read more than 2 intervals ago (docs/policies.md, Quotas)
cmp_ok($evals, '<=', int($window / 2) + 8, sprintf('one a sync interval, a few more at once for stale quota totals (%.1f s)', $window));
cmp_ok($other, '<=', 12 * $evals,
       "Redis ran $other commands for " . (3 * $N) . " requests of $N tokens: at most 12 a batch, whatever its tokens ($what)");
cmp_ok($d{get} // 0, '<', 10, 'no GET per token: the records are cached, the sync reads no key per token');
is($d{hincrby} // 0, 0, 'no HINCRBY');
cmp_ok(($other + $evals) / (3 * $N), '<', 0.05,
       sprintf('%.4f commands per request (the per-token script: 4.09)', ($other + $evals) / (3 * $N)));

# every count exact, in spite of the slices
my $adm = admitted();
is(scalar(grep { ($adm->{$_} // 0) == 4 } @id), $N, 'usage: each token 4 admitted');
my %q = @{ $redis->cmd('HGETALL', 'sa:ctr:q:d' . day()) };
is(scalar(grep { ($q{$_} // 0) == 4 } @id), $N, 'the quota\'s total: each token 4');
my ($gw) = map { /^\w{16}:([0-9a-f]{16})$/ ? $1 : () } keys %q;
ok($gw, "this gateway's part is a field of the same hash ($gw)");
is(scalar(grep { ($q{"$_:$gw"} // 0) == 4 } @id), $N, 'and its part: 4');
is($q{_}, 1, 'the hash\'s mark: its TTL was set with its first write');
my $ttl = $redis->cmd('TTL', 'sa:ctr:q:d' . day());
ok($ttl > 86400 && $ttl <= 2 * 86400, "the quota hash is kept until a day after the day ($ttl s)");
my %rate;
for my $m (int($tw / 60) .. int(time / 60)) {
    my %h = @{ $redis->cmd('HGETALL', "sa:ctr:r:w$m") // [] };
    $rate{$_} += $h{$_} // 0 for @id;
}
is(scalar(grep { $rate{$_} == 4 } @id), $N, 'the rate\'s counters of the minutes: each token 4');

done_testing;
