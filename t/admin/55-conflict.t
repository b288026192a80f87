# Concurrent changes that lose the race: sa-admin makes them again after a
# random pause that grows (full jitter), long enough that 20 concurrent
# grants of one account all succeed; one that keeps losing exits 4,
# "conflict" (not 3, which says "Redis unavailable"), and says to retry.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time);
use SaTest;

my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }

is(as(qw(team create plat --owner alice))->{code}, 0, 'team');
SaTest::apps($redis, 'plat', (map { "app$_" } 1 .. 20), 'more');
my $r = as(qw(account create plat ci --json));
is($r->{code}, 0, 'account') or diag $r->{err};
my $aid = JSON::PP->new->decode($r->{out})->{id};

# 20 concurrent grants of one account, each its own application: every one
# lands (none gives up), and the account holds the 20 applications
my $n = 20;
my $dir = SaTest::new_dir('conflict');
my @pids;
for my $i (1 .. $n) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $x = SaTest::admin($redis, { SA_ACTOR => 'alice' },
                              qw(account grant plat/ci --app), "app$i");
        SaTest::write_file("$dir/$i", "$x->{code}\n$x->{err}");
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
my @failed = grep { SaTest::slurp("$dir/$_") !~ /^0\n/ } 1 .. $n;
is(scalar @failed, 0, "$n concurrent grants: none gave up")
    or diag map { "grant $_: " . SaTest::slurp("$dir/$_") } @failed;
$r = as(qw(account show plat/ci --json));
my $apps = eval { JSON::PP->new->decode($r->{out})->{apps} } // [];
is(scalar @$apps, $n, "the account holds the $n applications") or diag $r->{out};

# a conflict that never goes away (a key of another type where a token of
# the account's index should be: every attempt finds it "changed
# meanwhile"): exit 4 after retrying for a while, and nothing written
$redis->cmd('HSET', 'sa:tok:ZZZZZZZZZZZZZZZZ', 'x', 'y');
$redis->cmd('SADD', "sa:acct:$aid:tokens", 'ZZZZZZZZZZZZZZZZ');
my $before = $redis->cmd('GET', "sa:acct:$aid");
my $t0 = time;
$r = as(qw(account grant plat/ci --app more));
my $took = time - $t0;
is($r->{code}, 4, 'a change that keeps losing: exit 4 (conflict)') or diag $r->{err};
like($r->{err}, qr/^sa-admin: the account kept changing; retry$/m, 'says to retry');
cmp_ok($took, '>', 0.3, sprintf('after backing off (%.2f s), not at once', $took));
cmp_ok($took, '<', 20, 'and within seconds');
is($redis->cmd('GET', "sa:acct:$aid"), $before, 'nothing written');

done_testing;
