# The audit log: refused attempts leave an entry (rate-limited), and the
# log is a chain (seq, prev, link, kept by the scripts) that
# 'sa-admin audit --verify' checks: an XADDed entry, an XDELed one and a
# cut-off end are reported (exit 2); concurrent writers keep it intact.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use POSIX ();
use SaTest;

my $redis = SaTest::Redis->start;
sub as { my $who = shift; SaTest::admin($redis, { SA_ACTOR => $who }, @_) }

is(as('alice', qw(team create plat --owner alice))->{code}, 0, 'team');
is(as('alice', qw(account create plat a))->{code}, 0, 'account');

# refused attempts: an entry, at most one a minute per actor/team/perm
for (1 .. 3) {
    is(as('bob', qw(account create plat b))->{code}, 2, 'bob may not create');
}
my $r = as('alice', qw(audit --json));
my @denied = grep { $_->{action} eq 'denied' } @{ $r->{json} // [] };
is(scalar @denied, 1, 'three refused attempts: one entry (rate-limited)')
    or diag $r->{out};
is($denied[0]{actor}, 'bob', 'naming the actor');
is($denied[0]{target}, 'service_accounts:create', 'the permission lacked');
is($denied[0]{team}, 'plat', 'and the team');
is(as('bob', qw(account delete plat/a))->{code}, 2, 'bob may not delete');
$r = as('alice', qw(audit --json));
is(scalar(grep { $_->{action} eq 'denied' } @{ $r->{json} }), 2,
   'another permission: its own entry');

# 20 concurrent writers: one chain, no number twice
my @pids;
for my $i (1 .. 20) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        as('alice', 'account', 'create', 'plat', "c$i");
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
$r = as('alice', qw(audit --verify --json));
is($r->{code}, 0, 'after 20 concurrent writers: intact') or diag $r->{err};
is($r->{json}{problems}, 0, 'no problem');
my $n = $redis->cmd('XLEN', 'sa:audit');
is($r->{json}{entries}, $n, "every entry read ($n)");
is($r->{json}{last}, $n, 'numbered 1 to N');
like(as('alice', qw(audit --verify))->{out}, qr/^audit log: \d+ entries .*intact$/m,
     'said so');

# a forged entry (XADD by a Redis writer)
my $forged = $redis->cmd('XADD', 'sa:audit', '*', 'time', 1, 'actor', 'mallory',
                         'action', 'team.create', 'target', 'x', 'team', 'x');
$r = as('alice', qw(audit --verify));
is($r->{code}, 2, 'a forged entry: exit 2');
like($r->{err}, qr/audit entry \Q$forged\E: not chained/, 'names it');
like($r->{out}, qr/NOT intact/, 'and says the log is not intact');
$redis->cmd('XDEL', 'sa:audit', $forged);

# a forged entry that copies the fields of a chained one
my $ents = $redis->cmd('XRANGE', 'sa:audit', '-', '+');
my %last = @{ $ents->[-1][1] };
$forged = $redis->cmd('XADD', 'sa:audit', '*', %last);
$r = as('alice', qw(audit --verify));
is($r->{code}, 2, 'a copied entry: exit 2');
like($r->{err}, qr/audit entry \Q$forged\E: number \d+ after \d+/, 'names it');
$redis->cmd('XDEL', 'sa:audit', $forged);
is(as('alice', qw(audit --verify))->{code}, 0, 'intact again');

# an entry deleted in the middle
my $mid = $ents->[5][0];
$redis->cmd('XDEL', 'sa:audit', $mid);
$r = as('alice', qw(audit --verify));
is($r->{code}, 2, 'an XDELed entry: exit 2');
like($r->{err}, qr/: 1 entry before it missing \(deleted\)/, 'reported as a gap');

# the newest entry deleted
$redis->cmd('XDEL', 'sa:audit', $ents->[-1][0]);
$r = as('alice', qw(audit --verify));
like($r->{err}, qr/the newest 1 entry is missing/, 'a cut-off end is reported');

# --verify is about the whole log
is(as('alice', qw(audit --verify --team plat))->{code}, 1,
   '--verify with --team: a usage error');

done_testing;
