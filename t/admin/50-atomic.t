# Atomicity: Redis or sa-admin killed in the middle of changes leaves no
# half-done change: no orphan token, no account without its index entries,
# no live token of a deleted account, no token whose apps differ from its
# account's.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);
use SaTest;

my $redis = SaTest::Redis->start(conf => ['appendonly yes', 'appendfsync always']);
my $json = JSON::PP->new;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }

as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(x y));

# a worker doing every kind of change, over and over, until killed
sub churn {
    my ($round) = @_;
    my $pid = fork // die;
    return $pid if $pid;
    setpgrp(0, 0);
    for my $i (1 .. 1000) {
        my $name = "a$round-$i";
        # Redis gone: stop (each command would fail at once)
        POSIX::_exit(0)
            if as('account', 'create', 'platform', $name, '--app', 'x')->{code} == 3;
        as('token', 'issue', "platform/$name", '--scope', 'a:b', '--count', 10);
        as('account', 'grant', "platform/$name", '--app', 'y');
        my $t = as('token', 'issue', "platform/$name", '--json')->{json};
        as('token', 'revoke', $t->{id}) if $t;
        as('account', 'delete', "platform/$name") if $i % 2;
    }
    POSIX::_exit(0);
}

sub payload { my ($v) = @_; $json->decode(substr($v, 91)) }

sub scan_keys {
    my ($pattern) = @_;
    my ($cursor, @keys) = (0);
    do {
        my $r = $redis->cmd('SCAN', $cursor, 'MATCH', $pattern, 'COUNT', 1000);
        $cursor = $r->[0];
        push @keys, @{ $r->[1] };
    } while ($cursor ne '0');
    return @keys;
}

sub check_consistency {
    my ($when) = @_;
    my @problems;
    my %accounts = map { $_ => 1 } @{ $redis->cmd('SMEMBERS', 'sa:team:platform:accounts') };
    my %names = @{ $redis->cmd('HGETALL', 'sa:team:platform:names') };
    my %apps;

    for my $id (keys %accounts) {
        my $v = $redis->cmd('GET', "sa:acct:$id");
        push(@problems, "indexed account $id has no record"), next unless $v;
        my $a = payload($v);
        push @problems, "account $id not in the name index"
            unless ($names{ $a->{name} } // '') eq $id;
        $apps{$id} = join ',', @{ $a->{apps} };
        for my $tid (@{ $redis->cmd('SMEMBERS', "sa:acct:$id:tokens") }) {
            push @problems, "indexed token $tid has no record"
                unless $redis->cmd('EXISTS', "sa:tok:$tid");
        }
    }
    for my $name (keys %names) {
        push @problems, "name $name points to an unindexed account"
            unless $accounts{ $names{$name} };
    }
    for my $id (map { /^sa:acct:(\w+)$/ ? $1 : () } scan_keys('sa:acct:*')) {
        push @problems, "account record $id not indexed" unless $accounts{$id};
    }
    for my $key (grep { /^sa:tok:\w+$/ } scan_keys('sa:tok:*')) {
        my $t = payload($redis->cmd('GET', $key));
        next if $t->{revoked};
        if (!$accounts{ $t->{account} }) {
            push @problems, "live token $t->{id} of deleted account $t->{account}";
        } elsif (!$redis->cmd('SISMEMBER', "sa:acct:$t->{account}:tokens", $t->{id})) {
            push @problems, "orphan token $t->{id}";
        } elsif (join(',', @{ $t->{apps} }) ne $apps{ $t->{account} }) {
            push @problems, "token $t->{id} has apps of another time";
        }
    }
    is_deeply(\@problems, [], "consistent after $when") or diag join "\n", @problems[0 .. 9];
    return scalar keys %accounts;
}

my $total = 0;
for my $round (1 .. 4) {
    my $pid = churn("r$round");
    sleep 0.3 + rand(0.7);    # the kill comes at a random moment: time is the point
    $redis->kill9;
    waitpid $pid, 0;
    $redis->launch;
    $total += check_consistency("Redis killed, round $round");
}

for my $round (1 .. 4) {
    my $pid = churn("s$round");
    sleep 0.3 + rand(0.7);    # the kill comes at a random moment: time is the point
    kill 'KILL', -$pid;
    waitpid $pid, 0;
    $total += check_consistency("sa-admin killed, round $round");
}

ok($total > 0, "the worker got work done between kills ($total accounts seen)");

done_testing;
