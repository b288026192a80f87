# The bounded replay window of the records permission checks read (team,
# member, application, account; issue 22 point 7 extended, SECURITY.md):
# with SA_FRESH_PERIOD each carries a signed fresh_until; a record past it
# is refused (exit 3, 503 over the API, naming the record); key refresh
# renews them with the token records, leaves a lapsed one (it could be a
# replay) unless --lapsed, and renewed records keep working.  In both
# passes: local, and through serve (SA_TEST_API=1).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $P = '3s';
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u, SA_FRESH_PERIOD => $P }, @_) }
sub op { SaTest::operator($redis, { SA_FRESH_PERIOD => $P }, @_) }
sub ok0 { my ($r, $what) = @_; is($r->{code}, 0, $what) or diag $r->{err}; $r }
sub payload { my ($v) = @_; JSON::PP->new->decode(($v =~ /^sa1\.[^.]+\.(.*)$/s)[0]) }
sub refresh { ok0(op(qw(key refresh --period 3s --within 2s --json), @_), "key refresh @_") }
# (--lapsed in past(): nothing put back is in Redis then; robust to a slow run)
# waits until the time is past $t, keeping everything fresh but what is gone
sub past {
    my ($t) = @_;
    while (time < $t + 1.2) { refresh("--lapsed"); sleep 0.7 }
}

ok0(as('alice', qw(team create plat --owner alice)), 'team plat');
ok0(as('alice', qw(team member add plat bob --perm service_accounts:tokens)), 'bob may issue');
ok0(op(qw(app create billing --team plat)), 'billing');
my $ci = ok0(as('alice', qw(account create plat ci --app billing --json)), 'plat/ci')->{json}{id};

my %rec = (team => $redis->cmd('GET', 'sa:team:plat'),
           member => $redis->cmd('HGET', 'sa:team:plat:members', 'bob'),
           application => $redis->cmd('GET', 'sa:app:billing'),
           account => $redis->cmd('GET', "sa:acct:$ci"));
for my $k (sort keys %rec) {
    my $fu = payload($rec{$k})->{fresh_until};
    ok(defined $fu && abs($fu - (time + 3)) <= 2, "the $k record carries fresh_until = now + 3 s")
        or diag explain payload($rec{$k});
}

# --------------------------------------------- the removed member's replay
my $bob = $rec{member};
my $until = payload($bob)->{fresh_until};
ok0(as('bob', qw(token issue plat/ci)), 'bob issues');
ok0(as('alice', qw(team member remove plat bob)), 'bob removed');
$redis->cmd('HSET', 'sa:team:plat:members', 'bob', $bob);
is(as('bob', qw(token issue plat/ci))->{code}, 0,
   'his record from before the removal, put back at once: he issues (the window)');
$redis->cmd('HDEL', 'sa:team:plat:members', 'bob');
past($until);
$redis->cmd('HSET', 'sa:team:plat:members', 'bob', $bob);
my $r = as('bob', qw(token issue plat/ci));
is($r->{code}, 3, 'put back after its fresh_until: refused (exit 3, 503 over the API)');
like($r->{err}, qr/the member record of 'bob' in team 'plat' is refused: its fresh_until has passed/,
     'naming the record and why');
unlike($r->{err}, qr/written by something other/, 'not as a forgery');
ok0(as('alice', qw(token issue plat/ci)), 'the owner, the team and account records renewed: issues');

# the refresher leaves the lapsed record: it could be a replay
my $j = refresh()->{json};
cmp_ok($j->{records}{lapsed}, '>=', 1, 'key refresh counts the lapsed member record');
cmp_ok($j->{records}{renewed} + $j->{records}{fresh}, '>=', 3,
       'and renews the others (team, application, account) or finds them fresh') or diag explain $j;
is($redis->cmd('HGET', 'sa:team:plat:members', 'bob'), $bob, 'the lapsed record left as it is');
$r = op(qw(key refresh --period 3s --within 2s));
like($r->{err}, qr/had lapsed and is left .*key refresh --lapsed/, 'the text form warns, naming --lapsed');
like($r->{out}, qr/team, member, application, account and personal token records/,
     'and counts the records');
is(as('bob', qw(token issue plat/ci))->{code}, 3, 'bob still refused');

# --lapsed: the operator's decision (no replay), then it works again
ok0(op(qw(key refresh --period 3s --within 2s --lapsed)), 'key refresh --lapsed');
isnt($redis->cmd('HGET', 'sa:team:plat:members', 'bob'), $bob, 'the lapsed record renewed');
is(as('bob', qw(token issue plat/ci))->{code}, 0, 'bob issues again (renewed)');
$redis->cmd('HDEL', 'sa:team:plat:members', 'bob');

# --------------------------------------------- the other kinds past it
my $acct = $redis->cmd('GET', "sa:acct:$ci");
my $app = $redis->cmd('GET', 'sa:app:billing');
my $team = $redis->cmd('GET', 'sa:team:plat');
$until = payload($team)->{fresh_until};
$until = payload($_)->{fresh_until} > $until ? payload($_)->{fresh_until} : $until for $acct, $app;
past($until);
$redis->cmd('SET', "sa:acct:$ci", $acct);
$r = as('alice', qw(token issue plat/ci));
is($r->{code}, 3, 'the account record put back past its fresh_until: token issue refused');
like($r->{err}, qr/account 'plat\/ci' is refused: its fresh_until has passed/, 'naming it') or diag $r->{err};
refresh();
ok0(op(qw(key refresh --period 3s --within 2s --lapsed)), 'renewed with --lapsed');
$redis->cmd('SET', 'sa:team:plat', $team);
$r = as('alice', qw(token issue plat/ci));
is($r->{code}, 3, 'the team record past its fresh_until: refused');
like($r->{err}, qr/the record of team 'plat' is refused: its fresh_until has passed/, 'naming it');
ok0(op(qw(key refresh --period 3s --within 2s --lapsed)), 'renewed with --lapsed');
ok0(as('alice', qw(token issue plat/ci)), 'renewed: issues');
$redis->cmd('SET', 'sa:app:billing', $app);
$r = as('alice', qw(account grant plat/ci --app billing));
ok($r->{code} == 3 || $r->{code} == 0, 'a grant held already needs no application record');
ok0(as('alice', qw(account ungrant plat/ci --app billing)), 'ungrant (no application record read)');
$r = as('alice', qw(account grant plat/ci --app billing));
is($r->{code}, 3, 'the application record past its fresh_until: the grant refused');
like($r->{err}, qr/the record of application 'billing' is refused: its fresh_until has passed/, 'naming it');

# --------------------------------------------- without SA_FRESH_PERIOD
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => undef },
                   qw(account grant plat/ci --app billing));
is($r->{code}, 0, 'without SA_FRESH_PERIOD (nor SA_RECORD_MAX_AGE) the check is off') or diag $r->{err};
ok(!exists payload($redis->cmd('GET', "sa:acct:$ci"))->{fresh_until},
   'and the record it signs has no fresh_until (the old one dropped)');
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => $P }, qw(token issue plat/ci));
is($r->{code}, 0, 'with SA_FRESH_PERIOD, a record without fresh_until is taken (signed before it was set)')
    or diag $r->{err};
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => $P, SA_RECORD_MAX_AGE => '1h' },
                   qw(token issue plat/ci));
is($r->{code}, 3, 'with SA_RECORD_MAX_AGE too, it is refused') or diag $r->{err};
like($r->{err}, qr/it has no fresh_until \(SA_RECORD_MAX_AGE is set/, 'saying so');

done_testing;
