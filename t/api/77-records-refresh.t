# serve --refresh-period D and the records permission checks read (issue
# 22 point 7 extended; t/admin/27-records-fresh.t for the CLI): serve's
# refresher renews team, member, application and account records with the
# token records; with SA_FRESH_PERIOD a member's removal leaves a signed
# tombstone (a higher version), so the removed member's older record put
# back by a Redis writer is refused by the refresher's version memory (heard
# on <prefix>records, or read), never renewed, and lapses at its own
# fresh_until: then every permission check refuses it (503 over the API,
# exit 3).  The memory is seeded by the refresher's first run at start.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my %E = (SA_FRESH_PERIOD => '8s');
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u, %E }, @_) }
sub op { SaTest::operator($redis, { %E }, @_) }
sub ok0 { my ($r, $what) = @_; is($r->{code}, 0, $what) or diag $r->{err}; $r }
sub payload { my ($v) = @_; JSON::PP->new->decode((($v // '') =~ /^sa1\.[^.]+\.(.*)$/s)[0] // 'null') }
sub member { $redis->cmd('HGET', 'sa:team:plat:members', $_[0]) }

ok0(as('alice', qw(team create plat --owner alice)), 'team plat');
ok0(as('alice', qw(team member add plat bob --perm service_accounts:tokens)), 'bob may issue');
ok0(as('alice', qw(team member add plat carol --perm service_accounts:tokens)), 'carol may issue');
ok0(as('alice', qw(team member add plat dave --perm service_accounts:tokens)), 'dave may issue');
ok0(op(qw(app create billing --team plat)), 'billing');
my $ci = ok0(as('alice', qw(account create plat ci --app billing --json)), 'plat/ci')->{json}{id};

my $api = SaTest::Serve->start(redis => $redis, env => { %E },
                               args => ['--workers', 1, '--refresh-period', '1s']);
sub metric {
    my ($name) = @_;
    my $m = $api->req(GET => '/metrics')->{content} // '';
    return $m =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}
ok(SaTest::wait_until(10, sub { (metric('sa_admin_refresh_subscribed') // 0) == 1 }),
   'the refresher hears its channels');
my $t0 = payload($redis->cmd('GET', 'sa:team:plat'))->{fresh_until};
ok(SaTest::wait_until(10, sub { payload($redis->cmd('GET', 'sa:team:plat'))->{fresh_until} > $t0 }),
   'the team record renewed by the running serve');
ok(SaTest::wait_until(5, sub { (metric('sa_admin_refresh_records_renewed_total') // 0) >= 1 }),
   'counted in /metrics');
like($api->err, qr/refresh: \{.*"records":\{[^}]*"renewed":[1-9]/, 'and in the log line');

# ------------------------------------------------ bob removed, his record put back
my $bob = member('bob');
my $until = payload($bob)->{fresh_until};
ok0(as('alice', qw(team member remove plat bob)), 'bob removed');
my $tomb = payload(member('bob'));
ok($tomb && $tomb->{removed} && !@{ $tomb->{perms} } && $tomb->{version} == payload($bob)->{version} + 1,
   'a signed tombstone: removed, no permissions, a higher version') or diag explain $tomb;
is(as('bob', qw(token issue plat/ci))->{code}, 2, 'bob may not issue');
my $list = as('alice', qw(team member list plat --json));
ok(!grep({ $_->{user} eq 'bob' } @{ $list->{json} // [] }), 'nor is he listed') or diag $list->{out};
my $older0 = metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0;
$redis->cmd('HSET', 'sa:team:plat:members', 'bob', $bob);
ok(SaTest::wait_until(10, sub {
    (metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0) > $older0 }),
   'the refresher refuses the put-back record as older than the tombstone (/metrics)');
like($api->err, qr/the member record 'plat\/bob' is refused: version 1 is older than version 2/,
     'and logs it');
is(as('bob', qw(token issue plat/ci))->{code}, 0, 'within its fresh_until bob issues (the window)');
sleep 0.2 while time < $until + 1.2;
is(member('bob'), $bob, 'never renewed: as it was put back');
my $r = as('bob', qw(token issue plat/ci));
is($r->{code}, 3, 'past its fresh_until: refused (exit 3)');
like($r->{err}, qr/the member record of 'bob' in team 'plat' is refused: its fresh_until has passed/,
     'naming the record');
ok0(as('alice', qw(token issue plat/ci)), 'alice (team and account records renewed) issues');
ok0(as('carol', qw(token issue plat/ci)), 'carol (her member record renewed) issues');

# the same through serve itself: 503
my $tok = SaTest::operator($redis, { %E }, qw(user token issue bob));
chomp(my $btok = $tok->{out});
$r = $api->req(POST => "/v1/accounts/$ci/tokens", headers => { Authorization => "Bearer $btok" },
               json => {});
is($r->{status}, 503, 'bob through serve: 503') or diag $r->{content};
like($r->{content}, qr/fresh_until has passed/, 'saying why') or diag $r->{content};

# ------------------------------------------------ a narrowed member: the version memory
my $carol = member('carol');
ok0(as('alice', qw(team member add plat carol --perm service_accounts:create)), 'carol narrowed');
$older0 = metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0;
$redis->cmd('HSET', 'sa:team:plat:members', 'carol', $carol);
ok(SaTest::wait_until(10, sub {
    (metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0) > $older0 }),
   'her wider record put back: refused as older');
sleep 0.2 while time < payload($carol)->{fresh_until} + 1.2;
is(as('carol', qw(token issue plat/ci))->{code}, 3, 'and refused once past its fresh_until');

# ------------------------------------------------ seeded at start
$api->stop;
my $dave = member('dave');
ok0(as('alice', qw(team member remove plat dave)), 'dave removed while serve is down (nobody hears it)');
$api = SaTest::Serve->start(redis => $redis, env => { %E },
                            args => ['--workers', 1, '--refresh-period', '1s']);
ok(SaTest::wait_until(10, sub { $api->err =~ /refresh: \{/ }), 'the first run at start reads the tombstone');
$older0 = metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0;
$redis->cmd('HSET', 'sa:team:plat:members', 'dave', $dave);
ok(SaTest::wait_until(10, sub {
    (metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0) > $older0 }),
   "dave's record put back after the start: refused as older (the memory seeded by the first run)");
like($api->err, qr/the member record 'plat\/dave' is refused: version 1 is older than version 2/,
     'and logged');

done_testing;
