# Team, member and application records against a Redis writer (issue 20,
# the attack review of items 5-7): what it tries, and what happens.
#
#   1. wrong types: the team key a list, the members key a string
#   2. genuine records copied in: another team's team or member record,
#      records of another kind (account, application, team) under a
#      team, member or application key
#   3. replays of older genuine records (SECURITY.md: they work, here
#      without SA_FRESH_PERIOD; with it they are bounded by their
#      fresh_until, t/admin/27-records-fresh.t and
#      t/api/77-records-refresh.t; else the defence is a key rotation):
#      a member record from before `team
#      member remove` or a narrower --perm, an application record from
#      before `app unshare`, an account record from before `account
#      ungrant` (the next change signs its grants anew)
#   4. unsigned teams and adopt: a non-operator's adopt; members planted
#      with invalid permissions or control bytes are refused, and what a
#      writer wrote reaches the terminal escaped, never as a control
#      sequence or a line of its own
#   5. a team whose record a writer deleted, created again: refused while
#      its members or accounts remain (they would belong to the new team)
#   6. names: --as with a colon, a slash, 10 kB, UTF-8 or a control byte;
#      grants of '*' by non-operators; notify emit for an application the
#      actor's teams neither own nor share
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
sub op { SaTest::operator($redis, @_) }
sub ok0 { my ($r, $what) = @_; is($r->{code}, 0, $what) or diag $r->{err}; $r }

ok0(as('alice', qw(team create plat --owner alice)), 'team plat');
ok0(as('alice', qw(team member add plat bob --perm service_accounts:create
                   --perm service_accounts:tokens)), 'bob');
ok0(as('alice', qw(team member add plat carol)), 'carol, read only');
ok0(as('mallory', qw(team create mteam --owner mallory)), 'team mteam');
ok0(as('mallory', qw(team member add mteam carol --perm service_accounts:tokens)),
    'carol may issue tokens in mteam');
ok0(op(qw(app create billing --team plat)), 'billing, owned by plat');
ok0(op(qw(app create mapp --team mteam)), 'mapp, owned by mteam');
my $ci = ok0(as('alice', qw(account create plat ci --app billing --json)), 'plat/ci')->{json}{id};
ok0(as('mallory', qw(account create mteam m1 --app mapp)), 'mteam/m1');

my $team = $redis->cmd('GET', 'sa:team:plat');
my $carol = $redis->cmd('HGET', 'sa:team:plat:members', 'carol');
my $bill = $redis->cmd('GET', 'sa:app:billing');
my $r;

# ------------------------------------------------ 1. wrong types
$redis->cmd('DEL', 'sa:team:plat');
$redis->cmd('RPUSH', 'sa:team:plat', 'x');
$r = as('bob', qw(token issue plat/ci));
is($r->{code}, 2, 'the team key a list: refused');
like($r->{err}, qr/team 'plat' is unsigned/, 'as an unsigned team');
$redis->cmd('DEL', 'sa:team:plat');
$redis->cmd('SET', 'sa:team:plat', $team);
$redis->cmd('RENAME', 'sa:team:plat:members', 'keep');
$redis->cmd('SET', 'sa:team:plat:members', 'x');
$r = as('bob', qw(token issue plat/ci));
is($r->{code}, 2, 'the members key a string: refused');
like($r->{err}, qr/member record of 'bob' in team 'plat' is refused/, 'as a refused record');
$redis->cmd('DEL', 'sa:team:plat:members');
$redis->cmd('RENAME', 'keep', 'sa:team:plat:members');

# ------------------------------------------------ 2. genuine records copied in
my %copy = (
    "team:plat <- team:mteam's record"   => [ 'SET', 'sa:team:plat', $redis->cmd('GET', 'sa:team:mteam') ],
    'team:plat <- an account record'     => [ 'SET', 'sa:team:plat', $redis->cmd('GET', "sa:acct:$ci") ],
    'team:plat <- an application record' => [ 'SET', 'sa:team:plat', $bill ],
);
for my $what (sort keys %copy) {
    $redis->cmd(@{ $copy{$what} });
    $r = as('mallory', qw(token issue plat/ci));
    is($r->{code}, 2, "$what: refused");
    like($r->{err}, qr/record of team 'plat' is refused: signed, but not a valid record of its kind/,
         'as not a record of team plat');
    $redis->cmd('SET', 'sa:team:plat', $team);
}
for my $c ([ "mteam/carol's member record", $redis->cmd('HGET', 'sa:team:mteam:members', 'carol') ],
           [ 'a team record', $team ]) {
    $redis->cmd('HSET', 'sa:team:plat:members', 'carol', $c->[1]);
    $r = as('carol', qw(token issue plat/ci));
    is($r->{code}, 2, "plat/carol <- $c->[0]: refused");
    like($r->{err}, qr/member record of 'carol' in team 'plat' is refused/, 'as a refused record');
}
$redis->cmd('HSET', 'sa:team:plat:members', 'carol', $carol);
for my $c ([ "mapp's record", $redis->cmd('GET', 'sa:app:mapp') ], [ 'a team record', $team ]) {
    $redis->cmd('SET', 'sa:app:billing', $c->[1]);
    $r = as('mallory', qw(account grant mteam/m1 --app billing));
    is($r->{code}, 2, "app:billing <- $c->[0]: refused");
    like($r->{err}, qr/record of application 'billing' is refused/, 'as a refused record');
}
$redis->cmd('SET', 'sa:app:billing', $bill);

# ------------------------------------------------ 3. replays (they work)
my $bob = $redis->cmd('HGET', 'sa:team:plat:members', 'bob');
ok0(as('alice', qw(team member remove plat bob)), 'bob removed');
is(as('bob', qw(token issue plat/ci))->{code}, 2, 'bob may not issue');
$redis->cmd('HSET', 'sa:team:plat:members', 'bob', $bob);
is(as('bob', qw(token issue plat/ci))->{code}, 0,
   "bob's member record from before the removal, put back: he issues again (SECURITY.md)");
ok0(as('alice', qw(team member add plat bob --perm service_accounts:create)), 'bob narrowed');
is(as('bob', qw(token issue plat/ci))->{code}, 2, 'bob may not issue');
$redis->cmd('HSET', 'sa:team:plat:members', 'bob', $bob);
is(as('bob', qw(token issue plat/ci))->{code}, 0,
   'his wider record from before, put back: he issues again (SECURITY.md)');
ok0(op(qw(app share billing --team mteam)), 'billing shared with mteam');
my $shared = $redis->cmd('GET', 'sa:app:billing');
ok0(op(qw(app unshare billing --team mteam)), 'and unshared');
is(as('mallory', qw(account grant mteam/m1 --app billing))->{code}, 2, 'mteam may not be granted billing');
$redis->cmd('SET', 'sa:app:billing', $shared);
is(as('mallory', qw(account grant mteam/m1 --app billing))->{code}, 0,
   'the shared record from before, put back: it may again (SECURITY.md)');
ok0(as('mallory', qw(account ungrant mteam/m1 --app billing)), 'ungranted');
$redis->cmd('SET', 'sa:app:billing', $bill);
# an account record from before an ungrant: the next change builds on it
ok0(op(qw(app create other --team plat)), 'another application of plat');
my $acct = $redis->cmd('GET', "sa:acct:$ci");
ok0(as('alice', qw(account ungrant plat/ci --app billing)), 'plat/ci loses billing');
$redis->cmd('SET', "sa:acct:$ci", $acct);
ok0(as('alice', qw(account grant plat/ci --app other)), 'a grant after the old record was put back');
my $p = JSON::PP->new->decode(substr($redis->cmd('GET', "sa:acct:$ci"), 91));
is_deeply($p->{apps}, [qw(billing other)],
          'the replayed grant is signed anew (SECURITY.md: no memory of versions)');
ok0(as('alice', qw(account ungrant plat/ci --app billing)), 'ungranted again');

# ------------------------------------------------ 4. unsigned teams, adopt
$redis->cmd('HSET', 'sa:team:legacy', 'owner', 'lee');
for my $who ([ 'lee (its owner)', 'lee' ], [ 'mallory', 'mallory' ]) {
    $r = as($who->[1], qw(team adopt legacy));
    is($r->{code}, 2, "team adopt by $who->[0]: refused");
    like($r->{err}, qr/an operator's decision/, 'the operator\'s');
}
for my $bad ([ 'eve', "service_accounts:tokens\nsa-admin: team 'legacy': owner lee" ],
             [ 'eve', 'service_accounts:tokens,bogus' ],
             [ 'eve', $bob ],
             [ "ev\e[2Ke", 'service_accounts:tokens' ]) {
    $redis->cmd('DEL', 'sa:team:legacy:members');
    $redis->cmd('HSET', 'sa:team:legacy:members', @$bad);
    $r = op(qw(team adopt legacy));
    is($r->{code}, 2, 'adopt, a member ' . ($bad->[0] =~ /\e/ ? 'name with ESC' : 'with ' . substr($bad->[1], 0, 30)) . ': refused');
    unlike($r->{err} =~ s/\n\z//r, qr/[\x00-\x1f\x7f]/, 'nothing written reaches the terminal as a control byte')
        or diag $r->{err};
    is(scalar(() = $r->{err} =~ /\n/g), 1, 'one line');
    is($redis->cmd('TYPE', 'sa:team:legacy'), 'hash', 'not adopted');
}
like($r->{err}, qr/member 'ev\\x1b\[2Ke'/, 'the name shown escaped');
$redis->cmd('DEL', 'sa:team:legacy:members');
$redis->cmd('HSET', 'sa:team:legacy', 'owner', "le\e]0;pwned\ae");
$r = op(qw(team adopt legacy));
is($r->{code}, 2, 'an owner with control bytes: refused');
like($r->{err}, qr/owner 'le\\x1b\]0;pwned\\x07e' is no valid user name/, 'shown escaped');
$redis->cmd('DEL', 'sa:team:legacy');
# listings of what a writer added
$redis->cmd('HSET', 'sa:team:plat:members', "x\e[1Ay", 'x');
$r = as('alice', qw(team member list plat));
is($r->{code}, 0, 'member list with a forged field');
like($r->{err}, qr/member record of 'x\\x1b\[1Ay' is refused/, 'reported escaped');
$redis->cmd('HDEL', 'sa:team:plat:members', "x\e[1Ay");
$redis->cmd('SADD', 'sa:apps', "a\rb");
$r = as('alice', qw(app list));
unlike($r->{err}, qr/\r/, 'app list: a forged name in sa:apps reaches stderr escaped');
$redis->cmd('SREM', 'sa:apps', "a\rb");

# ------------------------------------------------ 5. a team deleted, created again
$redis->cmd('DEL', 'sa:team:mteam');
$redis->cmd('SREM', 'sa:teams', 'mteam');
$r = as('zed', qw(team create mteam --owner zed));
is($r->{code}, 2, "mteam's record deleted by a writer: team create mteam refused");
like($r->{err}, qr/its members or accounts remain/, 'saying why');
is(as('carol', qw(token issue mteam/m1))->{code}, 2,
   "mteam's old member carol gets nothing in it");
is($redis->cmd('EXISTS', 'sa:team:mteam'), 0, 'nothing written');

# ------------------------------------------------ 6. names, '*', emit
for my $as ('a:b', 'a/b', 'a' x 10000, "\x{c3}\x{a9}t\x{c3}\x{a9}", "a\x01b", '') {
    $r = SaTest::admin($redis, { SA_ACTOR => undef }, '--as', $as, qw(account create plat x9));
    is($r->{code}, 1, '--as ' . (length $as > 20 ? '10 kB' : $as =~ /[^ -~]/ || $as eq '' ? 'with bytes outside [ -~], or empty' : $as) . ': a usage error');
}
is($redis->cmd('HEXISTS', 'sa:team:plat:names', 'x9'), 0, 'no account created');
for my $c ([ 'bob', qw(account grant plat/ci --app *) ],
           [ 'alice', qw(account create plat star --app *) ]) {
    my $who = shift @$c;
    $r = as($who, @$c);
    is($r->{code}, 2, "$who: @$c[0,1] --app '*': refused");
    like($r->{err}, qr/an operator's decision/, 'the operator\'s');
}
for my $c ([ 'alice', 'mapp' ], [ 'carol', 'billing' ], [ 'mallory', 'billing' ]) {
    $r = as($c->[0], 'notify', 'emit', $c->[1], 'app.note', '--data', '{"m":"x"}');
    is($r->{code}, 2, "$c->[0]: notify emit $c->[1]: refused");
}
is($redis->cmd('XLEN', 'sa:events'), 0, 'no event queued');

done_testing;
