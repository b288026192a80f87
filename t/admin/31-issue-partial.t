# token issue --count N stopped part-way (issue 22): the tokens issued
# before the refusal or the failure are real, so they are printed (their
# secrets this once), with a non-zero exit and a message saying so; in
# local mode and through sa-admin --api (the problem's "issued").  A
# refusal: Redis refusing writes (maxmemory) in the middle of the batch;
# a failure: Redis gone between batches.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->{account}{id};
sub tokens_in_redis {
    return scalar @{ $redis->cmd('SMEMBERS', "sa:acct:$aid:tokens") // [] };
}
sub check_shown {
    my ($r, $what, $json) = @_;
    my @shown = $json ? map { $_->{token} } @{ $r->{json} // [] }
                      : $r->{out} =~ /^(sat_\w{16}_\S+)$/mg;
    cmp_ok(scalar @shown, '>', 0, "$what: the tokens issued before it are printed ("
           . scalar(@shown) . ')') or diag $r->{err};
    my @real = grep { defined $redis->cmd('GET', 'sa:tok:' . SaTest::tid($_)) } @shown;
    is(scalar @real, scalar @shown, "$what: each is a real token");
    return scalar @shown;
}

# a refusal in the middle of a batch: Redis out of memory for writes
my $before = tokens_in_redis();
my $used = $redis->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m ? $1 : die;
$redis->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cmd('CONFIG', 'SET', 'maxmemory', $used + 400_000);
my $r = as(qw(token issue platform/ci --scope api:read --count 3000));
$redis->cmd('CONFIG', 'SET', 'maxmemory', 0);
isnt($r->{code}, 0, 'refused part-way: a non-zero exit') or diag $r->{err};
my $n = check_shown($r, 'refused part-way');
cmp_ok($n, '<', 3000, 'fewer than asked');
is(tokens_in_redis() - $before, $n, 'exactly those exist (every change sent was answered)');
like($r->{err}, qr/$n tokens? had been issued when the error below stopped the command: .*shown only this once/,
     'stderr says how many were issued and shown') or diag $r->{err};
like($r->{err}, qr/OOM|memory/i, 'and the refusal');
unlike($r->{err}, qr/may exist unseen/, 'no token unseen');
ok(!grep({ $_ !~ /^sat_/ } split /\n/, $r->{out}), 'stdout holds the tokens alone');

# the same with --json: the array of what was issued
$before = tokens_in_redis();
$used = $redis->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m ? $1 : die;
$redis->cmd('CONFIG', 'SET', 'maxmemory', $used + 1_500_000);
$r = as(qw(token issue platform/ci --scope api:read --count 3000 --json));
$redis->cmd('CONFIG', 'SET', 'maxmemory', 0);
isnt($r->{code}, 0, '--json, refused part-way: a non-zero exit');
$n = check_shown($r, '--json', 1);
is(tokens_in_redis() - $before, $n, '--json: exactly those exist');

# nothing issued: no empty output, the refusal alone
$used = $redis->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m ? $1 : die;
$redis->cmd('CONFIG', 'SET', 'maxmemory', $used - 1000 > 0 ? 1 : 1);
$r = as(qw(token issue platform/ci --scope api:read --count 5));
$redis->cmd('CONFIG', 'SET', 'maxmemory', 0);
isnt($r->{code}, 0, 'refused at once: a non-zero exit');
is($r->{out}, '', 'nothing printed');
unlike($r->{err}, qr/had been issued/, 'and nothing said issued');

done_testing();
