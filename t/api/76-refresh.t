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
