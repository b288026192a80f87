# sa-admin serve when things break in the middle of a change (issue 22,
# item 6): Redis frozen while tokens are being issued (503 once its reply
# deadline passes, Retry-After) and a worker SIGKILLed in the middle of a
# token issue (500, the worker replaced).  Whatever was cut, every token
# either exists, is in its account's index and in the audit, or none of
# these: no change is half-written.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
use POSIX ();
use Time::HiRes qw(sleep time);

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};
my $op = sub { my $r = SaTest::operator($redis, @_); die "@_: $r->{err}" if $r->{code}; $r };
chomp(my $alice = $op->(qw(user token issue alice))->{out});

my $api = SaTest::Serve->start(redis => $redis, args => ['--workers', 2]);

# many tokens in one request (1000, the most one may ask): the worker is
# busy long enough to be cut
sub issue_in_background {
    my ($count) = @_;
    my $pid = fork // die;
    return $pid if $pid;
    my $r = $api->req(POST => "/v1/accounts/$aid/tokens", timeout => 60,
                      headers => { Authorization => "Bearer $alice" },
                      json => { scopes => ['stacks:read'], count => $count });
    SaTest::write_file(SaTest::tmp_dir() . "/answer.$$", "$r->{status} " . ($r->{headers}{'retry-after'} // '-'));
    POSIX::_exit(0);
}
sub answer_of { my ($pid) = @_; waitpid $pid, 0; SaTest::slurp(SaTest::tmp_dir() . "/answer.$pid") }

# every token record of the account is in its index and in the audit, and
# every token.issue entry names a record
sub consistent {
    my ($what) = @_;
    # scripts a killed worker had sent still run in Redis after it died,
    # each whole: wait until they are done, then read (not atomically)
    my $size = -1;
    SaTest::wait_until(10, sub {
        my $was = $size;
        $size = $redis->cmd('DBSIZE');
        return 1 if $size == $was;
        sleep 0.2;
        return 0;
    });
    my %index = map { $_ => 1 } @{ $redis->cmd('SMEMBERS', "sa:acct:$aid:tokens") // [] };
    my @keys = grep { /^sa:tok:[^:]+$/ } @{ $redis->cmd('KEYS', 'sa:tok:*') };
    my %records = map { substr($_, 7) => 1 } @keys;
    my %audited = map { $_->{target} => 1 } grep { $_->{action} eq 'token.issue' }
                  @{ $op->(qw(audit --json))->{json} };
    is_deeply([ sort keys %records ], [ sort keys %audited ], "$what: every token record audited, every audited token there ("
              . scalar(keys %records) . ')');
    my $idx = $redis->cmd('EXISTS', "sa:acct:$aid:tokens") ? [ sort keys %index ] : [ sort keys %records ];
    is_deeply($idx, [ sort keys %records ], "$what: the account's index the same")
        or diag 'index key: ' . join(' ', grep { /acct/ } @{ $redis->cmd('KEYS', '*') });
    return scalar keys %records;
}

is(consistent('at the start'), 0, 'no token yet');

# Redis frozen while the worker is issuing: 503 after the reply deadline
my $hog = $redis->hog(2);      # Redis kept busy: the batch is spread out
my $pid = issue_in_background(1000);
SaTest::wait_until(10, sub { scalar(@{ $redis->cmd('KEYS', 'sa:tok:*') }) > 0 });
$redis->pause;
$hog->stop;
my $t0 = time;
my $answer = answer_of($pid);
like($answer, qr/^503 1$/, 'Redis frozen mid-issue: 503 with Retry-After: 1') or diag $answer;
ok(time - $t0 < 20, sprintf('within the reply deadline (%.1fs)', time - $t0));
$redis->resume;
my $n1 = consistent('after the freeze');
ok($n1 > 0 && $n1 < 1000, "the freeze cut the issue part-way ($n1 of 1000 made)");
is($api->req(GET => '/healthz')->{status}, 200, 'serve answers once Redis is back');

# a worker SIGKILLed in the middle of an issue
my @before = $api->workers;
$hog = $redis->hog(2);
$pid = issue_in_background(1000);
my $start = $n1;
SaTest::wait_until(10, sub { scalar(grep { /^sa:tok:[^:]+$/ } @{ $redis->cmd('KEYS', 'sa:tok:*') }) > $start + 5 });
# one of the two holds the request; both go
kill 'KILL', $_ for @before;
$hog->stop;
$answer = answer_of($pid);
like($answer, qr/^(500|503) /, "the worker killed mid-issue: the request answered ($answer), not hung");
my $n2 = consistent('after SIGKILL');
ok($n2 > $n1 && $n2 < $n1 + 1000, 'the kill cut the issue part-way (' . ($n2 - $n1) . ' of 1000 made)');
ok(SaTest::wait_until(10, sub { my @w = $api->workers; @w == 2 && !grep { my $o = $_; grep { $_ == $o } @before } @w }),
   'the workers replaced');
my $r = $api->req(POST => "/v1/accounts/$aid/tokens", headers => { Authorization => "Bearer $alice" },
                  json => { scopes => ['stacks:read'] });
is($r->{status}, 201, 'and a token issued afterwards') or diag $r->{raw};
consistent('at the end');
# the checkpoint is signed after the change: entries whose signer was cut
# are reported unsigned, never as a broken chain
$r = SaTest::operator($redis, qw(audit --verify --json));
is($r->{json}{problems}, 0, 'audit --verify: the chain holds (no link broken, none missing)') or diag $r->{err};
ok($r->{json}{unsigned} <= 2000, "at most the cut requests' entries unsigned ($r->{json}{unsigned})");
unlike($r->{err}, qr/link is not the hash|deleted|gap/, 'nothing reported but unsigned entries');

done_testing;
