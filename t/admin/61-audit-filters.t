# sa-admin audit --account, --actor, --newest, --limit, --before, --after
# (issue 23, item 5; the same filters as GET /v1/audit, t/api/33): each
# keeps exactly the entries the whole log has of it, the pages of
# --newest --limit N followed with --before (the line on stderr says
# where) go through the log, --after gives the page newer; bad values are
# usage errors.  Runs over the API too (SA_TEST_API=1).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
sub must { my $r = as(@_); die "@_: $r->{err}" if $r->{code}; $r }

as('alice', qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', 'x');
must('alice', qw(team member add platform tim --perm service_accounts:tokens));
my $ci = must('alice', qw(account create platform ci --app x --json))->{json}{id};
my $cd = must('alice', qw(account create platform cd --app x --json))->{json}{id};
must('alice', 'token', 'issue', $ci, '--count', 12);
must('tim', 'token', 'issue', $cd, '--count', 9);
must('alice', 'token', 'issue', $cd, '--count', 4);

my $all = must('alice', qw(audit --team platform --json))->{json};
is(scalar @$all, 30, 'the whole log of platform: 30 entries');
my %cdtok = map { $_->{id} => 1 } @{ must('alice', 'token', 'list', $cd, '--json')->{json} };
my @cd = grep { $_->{target} eq $cd || $cdtok{ $_->{target} } } @$all;
is(scalar @cd, 14, "cd's: its creation and 13 tokens");

is_deeply(must('alice', qw(audit --team platform --account platform/cd --json))->{json}, \@cd,
          '--account TEAM/NAME: exactly its entries');
is_deeply(must('alice', 'audit', '--team', 'platform', '--account', $cd, '--json')->{json}, \@cd,
          '--account ID: the same');
is_deeply(must('alice', qw(audit --team platform --actor tim --json))->{json},
          [ grep { $_->{actor} eq 'tim' } @$all ], '--actor tim: exactly his');
is_deeply(must('alice', qw(audit --team platform --actor alice --account platform/cd --json))->{json},
          [ grep { $_->{actor} eq 'alice' } @cd ], 'both');

# newest first, by pages of 5
my ($r, @seen, $cursor, $hint);
for (1 .. 20) {
    $r = must('alice', qw(audit --team platform --newest --limit 5 --json),
              $cursor ? ('--before', $cursor) : ());
    last unless @{ $r->{json} };
    push @seen, @{ $r->{json} };
    $cursor = $r->{json}[-1]{id};
}
is_deeply([ map { $_->{id} } @seen ], [ reverse map { $_->{id} } @$all ],
          '--newest --limit 5 --before <the last id>: the whole log, newest first');

$r = must('alice', qw(audit --team platform --newest --limit 5));
my @lines = split /\n/, $r->{out};
like($lines[0], qr/^ID\s+TIME\s+TEAM\s+ACTOR\s+ACTION\s+TARGET$/, 'the table: ID first');
is(scalar @lines, 6, 'five rows');
like($lines[1], qr/^\Q$all->[-1]{id}\E\s/, 'the newest first');
like($r->{err}, qr/^sa-admin: 5 entries shown; the next ones: --before \Q$all->[-5]{id}\E$/m,
     'stderr says where the next page starts');
$r = must('alice', 'audit', '--team', 'platform', '--limit', 5, '--after', $all->[2]{id});
like($r->{err}, qr/the next ones: --after \Q$all->[7]{id}\E$/m, 'oldest first: --after');
$r = must('alice', 'audit', '--team', 'platform', '--limit', 5, '--after', $all->[2]{id}, '--json');
is_deeply([ map { $_->{id} } @{ $r->{json} } ], [ map { $_->{id} } @$all[3 .. 7] ],
          '--after ID --limit 5: the five after it');
$r = must('alice', 'audit', '--team', 'platform', '--before', $all->[3]{id}, '--after', $all->[0]{id}, '--json');
is_deeply([ map { $_->{id} } @{ $r->{json} } ], [ map { $_->{id} } @$all[1, 2] ], '--after and --before');
$r = must('alice', qw(audit --team platform --limit 40));
is($r->{err}, '', 'a page not full: no hint');

# usage errors
for my $bad ([qw(--limit 0)], [qw(--limit 1001)], [qw(--limit ten)], [qw(--before yesterday)],
             [qw(--after 1-2-3)], [qw(--actor), ''], [qw(--limit 2 --limit 3)]) {
    $r = as('alice', qw(audit --team platform), @$bad);
    is($r->{code}, 1, "audit @$bad: exit 1") or diag $r->{err};
    like($r->{err}, qr/invalid|only once/, "audit @$bad: says why");
}
$r = as('alice', qw(audit --verify --limit 3));
is($r->{code}, 1, '--verify with --limit: a usage error');
like($r->{err}, qr/--verify checks the whole log/, 'saying so');
$r = as('alice', qw(audit --team platform --account platform/nosuch));
is($r->{code}, 2, '--account of no account: exit 2');
like($r->{err}, qr/no account 'platform\/nosuch'/, 'saying so');

done_testing;
