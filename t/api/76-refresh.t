# sa-admin serve --refresh-period D (issue 22, item 7): a child process of
# serve runs the record refresher (sa_refresh_run, as key refresh) every D:
# a record without fresh_until is stamped, one about to lapse is renewed to
# now + SA_FRESH_PERIOD, by a serve that is just running; the flag's
# refusals; the refresher stops with serve (SIGTERM) and dies with it
# (SIGKILL of serve: PR_SET_PDEATHSIG).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $JSON = JSON::PP->new->canonical;
sub fresh_until {
    my ($id) = @_;
    my ($json) = ($redis->cmd('GET', "sa:tok:$id") // '') =~ /^sa1\.[^.]+\.(.*)$/s;
    return $json ? $JSON->decode($json)->{fresh_until} : undef;
}
sub issue {
    my ($period) = @_;
    my $r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => $period },
                          qw(token issue platform/ci --scope api:read --json));
    die "token issue: $r->{err}" if $r->{code};
    return $r->{json}{id} // die "no id: $r->{out}";
}
sub serve_cmd {
    my ($env, @args) = @_;
    return SaTest::run([SaTest::admin_path(), 'serve', '--listen', '127.0.0.1:0', @args],
                       env => { SA_REDIS => $redis->url,
                                SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key', %$env },
                       timeout => 10);
}

# refusals
my $r = serve_cmd({ SA_FRESH_PERIOD => undef }, '--refresh-period', '1s');
isnt($r->{code}, 0, '--refresh-period without SA_FRESH_PERIOD: refused');
like($r->{err}, qr/--refresh-period needs SA_FRESH_PERIOD/, 'saying so');
$r = serve_cmd({ SA_FRESH_PERIOD => '2h' }, '--refresh-period', '30m');
isnt($r->{code}, 0, '--refresh-period not shorter than the window (a quarter): refused');
like($r->{err}, qr/shorter than a quarter of SA_FRESH_PERIOD/, 'saying so');
$r = serve_cmd({ SA_FRESH_PERIOD => '2h' }, '--refresh-period', 'often');
like($r->{err}, qr/invalid --refresh-period 'often'/, 'a bad duration: refused');

# records: one without fresh_until, one that lapses in 8 s
my $none = issue(undef);
is(fresh_until($none), undef, 'a record without fresh_until');
my $t0 = time;
my $due = issue('8s');
my $old = fresh_until($due);
cmp_ok(abs($old - ($t0 + 8)), '<=', 2, 'a record fresh for 8 s');

my $api = SaTest::Serve->start(redis => $redis, env => { SA_FRESH_PERIOD => '8s' },
                               args => ['--workers', 1, '--refresh-period', '1s']);
my ($pid) = $api->err =~ /refresh: every 1s, period 8s \(pid (\d+)\)/;
ok($pid && kill(0, $pid), "the refresher runs (pid " . ($pid // '?') . ')') or diag $api->err;

ok(SaTest::wait_until(10, sub { defined fresh_until($none) }),
   'the record without fresh_until: stamped by the running serve');
cmp_ok(fresh_until($none) // 0, '>', time, 'ahead of now');
my $seen;
ok(SaTest::wait_until(15, sub { ((fresh_until($due) // 0) > $old) && ($seen = time) }),
   'the record about to lapse: renewed by the running serve');
cmp_ok($seen // 1e10, '<=', $old, 'before it lapsed (runs every 1 s, window 2 s)');
my $new = fresh_until($due) // 0;
cmp_ok($new, '>=', $old + 4, "to about now + 8 s ($old -> $new)");
my $runs = () = $api->err =~ /^sa-admin: serve: refresh: \{/mg;
cmp_ok($runs, '>=', 2, "each run logs its counts ($runs runs)") or diag $api->err;

# the token still works through serve (the records renewed are genuine)
my ($tok) = $f->token('api:read');
is($api->req(GET => '/v1/me', headers => { Authorization => "Bearer $tok" })->{status},
   200, 'a token answers as usual meanwhile');

# the version memory: one refresher process for serve's life, subscribed
# to the invalidation channel
sub metric {
    my ($name) = @_;
    my $m = $api->req(GET => '/metrics')->{content} // '';
    return $m =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}
ok(SaTest::wait_until(5, sub { (metric('sa_admin_refresh_subscribed') // 0) == 1 }),
   'the refresher hears the invalidation channel (/metrics)');
my @kids = split ' ', SaTest::slurp("/proc/$pid/task/$pid/children") // '';
is(scalar @kids, 0, 'runs in the refresher itself, no process per run');

# a token of two scopes whose record is due in 1 s, saved, then narrowed
# by a change: its older record put back is refused, never renewed
my $wide = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => '3s' },
                         qw(token issue platform/ci --scope api:read --scope api:write --json));
my $rid = $wide->{json}{id};
ok($rid, 'a token of api:read and api:write') or diag $wide->{err};
my $saved = $redis->cmd('GET', "sa:tok:$rid");
my $narrow = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => '8s' },
                           'token', 'scope', $rid, '--scope', 'api:read');
is($narrow->{code}, 0, 'token scope: narrowed to api:read') or diag $narrow->{err};
is($redis->cmd('SET', "sa:tok:$rid", $saved, 'KEEPTTL'), 'OK',
   'a Redis writer puts the wider, older record back');
my $older0 = metric('sa_admin_refresh_refused_total{reason="older"}') // 0;
ok(SaTest::wait_until(10, sub {
    (metric('sa_admin_refresh_refused_total{reason="older"}') // 0) > $older0 }),
   'the refresher refuses it as older than a version it knows (/metrics)');
like($api->err, qr/token \Q$rid\E is refused: version 1 is older than version 2/,
     'and logs it');
sleep 2;
is($redis->cmd('GET', "sa:tok:$rid"), $saved,
   'never renewed: the put-back record is as it was, lapsing at its own fresh_until');
cmp_ok(fresh_until($rid), '<=', time + 1, 'which is about now');

# a version only heard on the channel (never read): the genuine record of
# a token older than it is refused too (messages are not authenticated: a
# publisher can at worst make records lapse, as at a gateway)
my $heard = issue('3s');
$older0 = metric('sa_admin_refresh_refused_total{reason="older"}') // 0;
$redis->cmd('PUBLISH', 'sa:invalidate', "$heard:7");
ok(SaTest::wait_until(10, sub {
    (metric('sa_admin_refresh_refused_total{reason="older"}') // 0) > $older0 }),
   'a version heard on the channel is remembered');
like($api->err, qr/token \Q$heard\E is refused: version 1 is older than version 7/,
     'the record older than it: refused');
cmp_ok(metric('sa_admin_refresh_versions') // 0, '>=', 3, 'the memory holds the ids seen');

# Redis gone for a run: the run fails, the refresher and its memory stay
my $rpid = $pid;
$redis->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
ok(SaTest::wait_until(10, sub { (metric('sa_admin_refresh_subscribed') // 0) == 1
                                && $api->err =~ /invalidation channel is lost/ }),
   'a lost subscription is made again') or diag $api->err;
ok(kill(0, $rpid), 'by the same refresher process');
my $known = metric('sa_admin_refresh_versions');
$redis->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
ok(SaTest::wait_until(10, sub { (metric('sa_admin_refresh_runs_failed_total') // 0) >= 1 }),
   'the run whose Redis connection broke: failed (/metrics)') or diag $api->err;
like($api->err, qr/refresh: Redis unavailable at .*\n.*refresh: the run failed; the next in 1s/,
     'logged');
my $runs0 = metric('sa_admin_refresh_runs_total');
ok(SaTest::wait_until(10, sub { metric('sa_admin_refresh_runs_total') > $runs0 + 1 }),
   'the next runs go on');
ok(kill(0, $rpid), 'in the same refresher');
cmp_ok(metric('sa_admin_refresh_versions'), '>=', $known, 'its memory kept');
is(metric('sa_admin_refresh_restarts_total'), 0, 'never started again');

# SIGHUP: the refresher reads the signing key again before its next run
kill 'HUP', $api->pid;
ok(SaTest::wait_until(10, sub { $api->err =~ /refresh: SIGHUP: the signing key is read again/ }),
   'SIGHUP reaches the refresher');

# SIGTERM: serve stops, the refresher with it
ok($api->stop, 'SIGTERM: serve stops');
is($api->exit_code, 0, 'exit 0');
ok(SaTest::wait_until(5, sub { !kill(0, $pid) }), 'and the refresher is gone');

# SIGKILL of serve: the refresher dies with it
$api = SaTest::Serve->start(redis => $redis, env => { SA_FRESH_PERIOD => '8s' },
                            args => ['--workers', 1, '--refresh-period', '1s']);
($pid) = $api->err =~ /refresh: every 1s, period 8s \(pid (\d+)\)/;
ok($pid && kill(0, $pid), 'a second serve: its refresher');
kill 'KILL', $api->pid;
ok(SaTest::wait_until(5, sub {
    my $st = SaTest::slurp("/proc/$pid/stat") // '';
    !$st || $st =~ /^\d+ \(.*\) Z /;
}), 'SIGKILL of serve: the refresher dies too (PR_SET_PDEATHSIG)');
$api->kill9;

done_testing();
