# Faults: Redis killed and restarted, Redis paused, reload and quit under
# load; and no log ever holds a token's secret.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my @all_tokens;    # every token used here, for the log check at the end

# (Re)creates the team, the account and a token; returns the token.
sub provision {
    my $as = sub { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) };
    $as->(qw(team create platform --owner alice));
    SaTest::apps($redis, 'platform', qw(billing));
    $as->(qw(account create platform ci --app billing));
    my $r = $as->(qw(token issue platform/ci --scope stacks:read));
    die "token issue failed: $r->{err}" if $r->{code};
    chomp(my $token = $r->{out});
    push @all_tokens, $token;
    return $token;
}

my $token = provision();

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_redis_timeout 300ms;
    log_format sa '$status $sa_status $sa_token_id $pid';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/access.log combined;
        access_log %%DIR%%/sa.log sa;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF

sub fetch { $nginx->get('/index.html', Authorization => "Bearer $_[0]") }
sub status_of { fetch($_[0])->{status} }

sub sa_log { SaTest::slurp($nginx->dir . '/sa.log') }

# Polls until every worker has served the token with 200 (each worker has
# its own connection and its own backoff); true if that happened in $secs.
sub all_workers_recover {
    my ($secs, $tok) = @_;
    my $mark = length sa_log();
    my @workers = $nginx->worker_pids;
    return SaTest::wait_until($secs, sub {
        status_of($tok);
        my %ok = map { /^200 ok \S+ (\d+)$/ ? ($1 => 1) : () } split /\n/, substr(sa_log(), $mark);
        !grep { !$ok{$_} } @workers;
    });
}

sub is_unavailable {
    my ($res, $name) = @_;
    is($res->{status}, 503, "$name: 503");
    is($res->{headers}{'retry-after'}, '1', "$name: Retry-After: 1");
    ok(!exists $res->{headers}{'www-authenticate'}, "$name: no WWW-Authenticate");
}

sub last_logged_status {
    my @lines = split /\n/, sa_log();
    return $lines[-1] // '';
}

is(status_of($token), 200, 'baseline: 200');
my @workers = sort $nginx->worker_pids;

# ---- Redis killed: 503 at once, then back without touching nginx
$redis->kill9;
for my $n (1 .. 3) {
    my $t0 = time;
    is_unavailable(fetch($token), "Redis killed, request $n");
    cmp_ok(time - $t0, '<', 1, "Redis killed, request $n: answered at once");
}
SaTest::wait_until(2, sub { last_logged_status() =~ /^503 / });
like(last_logged_status(), qr/^503 unavailable /, '$sa_status unavailable');

# a longer outage, so that the reconnect backoff has grown
my %outage;
for (1 .. 5) { sleep 0.5; $outage{ status_of($token) }++ }    # time passing: the outage
is_deeply(\%outage, { 503 => 5 }, 'a 2.5 s outage: 503 throughout');

my $t_up = time;
$redis->launch;
$token = provision();    # the restarted Redis is empty
ok(all_workers_recover(8 - (time - $t_up), $token),
   'Redis restarted: every worker serves 200 again within 8 s');
note sprintf 'recovered %.2f s after the restart', time - $t_up;
is_deeply([sort $nginx->worker_pids], \@workers, 'without a reload or new workers');

# ---- Redis paused: sa_redis_timeout bounds the wait
$redis->pause;
for my $n (1 .. 3) {
    my $t0 = time;
    my $res = fetch($token);
    my $elapsed = time - $t0;
    is_unavailable($res, "Redis paused, request $n");
    cmp_ok($elapsed, '<', 1.5, "Redis paused, request $n: answered within 1.5 s")
        or diag sprintf 'took %.2f s', $elapsed;
    sleep 0.5;    # the third request comes after the dead-connection check
}
$t_up = time;
$redis->resume;
ok(all_workers_recover(8, $token), 'Redis resumed: every worker serves 200 again within 8 s');
note sprintf 'recovered %.2f s after the resume', time - $t_up;

# ---- reload and quit while requests keep coming
# A child requests for $secs and writes one status per line to $file.
sub background_load {
    my ($secs, $file) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    open my $out, '>', $file or POSIX::_exit(1);
    $out->autoflush(1);
    my $end = time + $secs;
    while (time < $end) {
        my $res = SaTest::http(url => $nginx->url('/index.html'), timeout => 2,
                               headers => { Authorization => "Bearer $token" });
        print {$out} "$res->{status}\n";
    }
    close $out;
    POSIX::_exit(0);
}

sub statuses {
    my ($file) = @_;
    my %n;
    $n{$_}++ for split /\n/, SaTest::slurp($file);
    return \%n;
}

# until the load has had $n more answers
sub answered {
    my ($file, $n) = @_;
    my $before = () = SaTest::slurp($file) =~ /\n/g;
    SaTest::wait_for("$n more answers to the load", sub {
        (() = SaTest::slurp($file) =~ /\n/g) >= $before + $n });
}

my $load = SaTest::tmp_dir() . '/load-reload';
my $kid = background_load(2, $load);
answered($load, 5);
ok($nginx->reload, 'reload under load');
answered($load, 5);
ok($nginx->reload, 'second reload under load');
waitpid $kid, 0;
my $seen = statuses($load);
cmp_ok($seen->{200} // 0, '>', 10, 'the load got through') or diag explain $seen;
SKIP: {
    # under valgrind a new worker takes longer than sa_redis_timeout to
    # connect, so its first requests get 503: timing, not a memory error
    skip 'timing: new workers under SA_TEST_NGINX_WRAPPER connect slowly', 1
        if $ENV{SA_TEST_NGINX_WRAPPER};
    is_deeply([sort keys %$seen], ['200'], 'every request during the reloads: 200')
        or diag explain $seen;
}
is(status_of($token), 200, 'new workers serve');

# the secret check below also covers the lines that refusals produce
my $bad = $token =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/er;
push @all_tokens, $bad;
is(status_of($bad), 401, 'a mistyped token: 401');

$load = SaTest::tmp_dir() . '/load-quit';
$kid = background_load(2, $load);
answered($load, 5);
my $master = $nginx->pid;
ok($nginx->quit(10), 'quit under load: graceful, within 10 s');
ok(!kill(0, $master), 'the master is gone');
waitpid $kid, 0;
$seen = statuses($load);
ok(!grep({ $_ != 200 && $_ != 599 } keys %$seen),
   'during quit: 200 or connection refused, nothing else') or diag explain $seen;

my $errors = $nginx->error_log;
unlike($errors, qr/\[alert\]/, 'no [alert] in the error log');
unlike($errors, qr/open socket/, 'no "open socket" in the error log');
unlike($errors, qr/\[(crit|emerg)\]|exited on signal/, 'no crash');

# ---- no secret in any log
my %logs = (
    'error.log'  => $errors,
    'access.log' => $nginx->access_log,
    'sa.log'     => SaTest::slurp($nginx->dir . '/sa.log'),
);
ok(length $logs{'sa.log'} && length $logs{'access.log'}, 'the access logs are not empty');
for my $t (@all_tokens) {
    my $secret = substr($t, 21);
    my @needles = ($t, $secret, substr($secret, 0, 16), substr($secret, -16));
    for my $log (sort keys %logs) {
        my @hits = grep { index($logs{$log}, $_) >= 0 } @needles;
        is(scalar @hits, 0, "$log holds no part of token " . substr($t, 0, 20) . '...');
    }
}
like($logs{'sa.log'}, qr/ \Q@{[ substr($token, 4, 16) ]}\E \d+$/m, 'the logs name tokens by id');

done_testing;
