# Every command has --help: it prints the command's usage on stdout and
# exits 0, without Redis, a key or an actor (one help convention).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my %env = (SA_REDIS => 'redis://127.0.0.1:1/0', SA_SIGNING_KEY => undef,
           SA_ACTOR => undef);
my @commands;
for my $group (qw(key team account token audit notify user)) {
    my $r = SaTest::run([SaTest::admin_path(), $group, '--help'], env => \%env);
    is($r->{code}, 0, "$group --help: exit 0");
    push @commands, map { [split ' '] } $r->{out} =~ /^  sa-admin ($group \S+(?: \S+)?)/mg
        if $group ne 'audit';
}
ok(@commands > 15, 'the groups list their commands: ' . scalar @commands);

# "team member add|list ...": a subgroup's commands
@commands = map { my $c = $_; $c->[2] && $c->[2] =~ /\|/
                      ? (map { [@$c[0, 1], $_] } split /\|/, $c->[2]) : $c } @commands;
for my $c (@commands) {
    my @words = grep { /^[a-z]+$/ } @$c;
    my $r = SaTest::run([SaTest::admin_path(), @words, '--help'], env => \%env);
    is($r->{code}, 0, "@words --help: exit 0") or diag $r->{err};
    like($r->{out}, qr/^usage: sa-admin \Q@words\E/, "@words --help: its usage");
}
done_testing;
