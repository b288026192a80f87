# SaTest::fixture, the prologue most tests share: team platform (owner
# alice), account platform/ci with its applications, and tokens of it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api billing)]);
my $acct = $f->account;
is($acct->{name}, 'ci', 'the account platform/ci');
is($acct->{team}, 'platform', 'in team platform');
is_deeply([sort @{ $acct->{apps} }], [qw(api billing)],
          'granted the applications asked for') or diag explain $acct;
my $members = $f->as(qw(team member list platform --json))->{json};
is_deeply([map { [$_->{user}, $_->{owner} ? 1 : 0] } @$members], [['alice', 1]],
          'alice owns the team') or diag explain $members;

my ($token, $id) = $f->issue(qw(--scope stacks:read));
like($token, qr/^sat_\w{16}_\w+$/, 'issue: a token');
is($id, SaTest::tid($token), 'and its id in list context');
is(SaTest::tid($token), substr($token, 4, 16), 'tid: the 16 characters after sat_');
my $one = $f->token('a:b', 'c:d');
like($one, qr/^sat_/, 'token(@scopes): one token');
my $list = $f->as(qw(token list platform/ci --json))->{json};
is(scalar @$list, 2, 'both are the account\'s') or diag explain $list;
my ($t2) = grep { $_->{id} eq SaTest::tid($one) } @$list;
is_deeply([sort @{ $t2->{scopes} }], [qw(a:b c:d)], 'with the scopes asked for');

ok(!eval { SaTest::fixture($redis); 1 }, 'a step that fails dies (the team exists)');
like($@, qr/fixture: sa-admin team create platform --owner alice failed/, 'naming it');

my $g = SaTest::fixture($redis, team => 'other', owner => 'olga', account => 'svc');
is($g->account->{team}, 'other', 'team, owner and account name can be chosen');
like($g->issue, qr/^sat_/, 'and its tokens are of other/svc');

done_testing;
