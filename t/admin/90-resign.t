# sa-admin key resign: rotating the signing key (docs/key-rotation.md).
#
#   1. --help and usage errors
#   2. the whole rotation of the contract under load, through a real nginx
#      with sa_cache and two workers: a new key pair, nginx reloaded with
#      both verify keys, `key resign` with the new signing key while a
#      child process keeps requesting with valid tokens, nginx reloaded
#      with the new verify key only; not one request fails.  Afterwards
#      every record verifies with the new key and none with the old; each
#      record is its old payload with the version + 1 and the same expiry;
#      the tokens work with the same secrets; and a record signed with the
#      retired key, put back into Redis, is refused (401, tampered)
#   3. --team: only that team's records (by their signed team)
#   4. forgeries (an unsigned record, a garbage value, a genuine record
#      copied under another token's id, a forged account) are reported,
#      never re-signed, left byte for byte; exit 2
#   5. interrupted (SIGKILL) with 20,000 tokens, then run again: finishes,
#      every record re-signed exactly once; a third run re-signs nothing
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
SaTest::api_local("key resign, which needs the keys");

my $JSON = JSON::PP->new->canonical;
my $old = SaTest::keys_dir();            # what every other test signs with
my $new = SaTest::new_dir('newkey') . '/k';
my $r = SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $new]);
is($r->{code}, 0, 'a new key pair') or diag $r->{err};
my $third = SaTest::new_dir('thirdkey') . '/k';
SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $third]);

my $redis;
sub as_old { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
sub as_new {
    SaTest::admin($redis, { SA_ACTOR => 'alice',
                            SA_SIGNING_KEY => "$new/signing.key" }, @_);
}
sub resign { as_new('key', 'resign', '--old-verify-key', "$old/verify.key", @_) }
sub payload { my ($v) = @_; defined $v ? eval { $JSON->decode(substr($v, 91)) } : undef }
sub tid { substr($_[0], 4, 16) }

# every record key of a kind: tok:<16> / acct:<16>
sub record_keys {
    my ($kind) = @_;
    return sort grep { /^sa:\Q$kind\E:[0-9A-Za-z]{16}$/ } @{ $redis->cmd('KEYS', "sa:$kind:*") };
}

sub issue {
    my ($as, $account, @args) = @_;
    my $r = $as->('token', 'issue', $account, @args);
    die "token issue: $r->{err}" if $r->{code};
    return split /\n/, $r->{out};
}

# ------------------------------------------------------------ 1. usage
$redis = SaTest::Redis->start;
$r = as_new(qw(key resign --help));
is($r->{code}, 0, 'key resign --help: exit 0');
like($r->{out}, qr/^usage: sa-admin key resign --old-verify-key FILE\.\.\. \[--team TEAM\] \[--dry-run\]$/m,
     '--help: the usage line');
like($r->{out}, qr/--old-verify-key FILE.*--team TEAM.*--dry-run/s, '--help: the flags');
$r = as_new(qw(key resign));
is($r->{code}, 1, 'no --old-verify-key: exit 1');
like($r->{err}, qr/--old-verify-key FILE is required/, 'and says so');
$r = as_new('key', 'resign', '--old-verify-key', "$old/signing.key");
is($r->{code}, 1, 'a signing key as --old-verify-key: exit 1');
like($r->{err}, qr/signing key/i, 'named as such') or diag $r->{err};
$r = as_new('key', 'resign', '--old-verify-key', "$old/nope.key");
is($r->{code}, 1, 'a missing key file: exit 1');
$r = resign(qw(--team BAD!));
is($r->{code}, 1, 'an invalid team name: exit 1');
$r = resign(qw(--team nosuch));
is($r->{code}, 2, 'an unknown team: exit 2');
$r = SaTest::admin($redis, { SA_ACTOR => undef, SA_SIGNING_KEY => "$new/signing.key" },
                   'key', 'resign', '--old-verify-key', "$old/verify.key");
is($r->{code}, 0, 'no acting user: the operator runs it (audited as such)') or diag $r->{err};
$r = resign();
is($r->{code}, 0, 'an empty Redis: nothing to do') or diag $r->{err};
like($r->{out}, qr/^re-signed 0 token records and 0 account records/, 'says so');

# ------------------------------------------------------------ 2. rotation under load
as_old(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(billing));
as_old(qw(account create platform ci --app billing));
as_old(qw(team create other --owner alice));
as_old(qw(account create other x));
my @load = map { issue(\&as_old, 'platform/ci', qw(--scope stacks:read --expires 30d)) } 1 .. 5;
my ($spare) = issue(\&as_old, 'platform/ci', qw(--scope stacks:read --expires 30d));
my ($forever) = issue(\&as_old, 'platform/ci', qw(--scope stacks:read));
my ($revoked) = issue(\&as_old, 'platform/ci', qw(--scope stacks:read --expires 2d));
is(as_old('token', 'revoke', tid($revoked))->{code}, 0, 'a revoked token (a tombstone)');
my ($rotated) = issue(\&as_old, 'platform/ci', qw(--scope stacks:read --expires 9d));
is(as_old('token', 'rotate', tid($rotated), '--overlap', '1h')->{code}, 0,
   'a rotated token (its old record ends with the overlap)');
issue(\&as_old, 'other/x', qw(--scope stacks:read --count 3));
# enough records that the load runs while resign works
issue(\&as_old, 'platform/ci', qw(--scope stacks:read --expires 1d --count 3000));

my @tok_keys = record_keys('tok');
my @acct_keys = record_keys('acct');
cmp_ok(scalar @tok_keys, '>=', 3011, scalar(@tok_keys) . ' token records');
is(scalar @acct_keys, 2, '2 account records');
my %before = map { $_ => $redis->cmd('GET', $_) } @tok_keys, @acct_keys;
my %exat = map { $_ => $redis->cmd('EXPIRETIME', $_) } @tok_keys, @acct_keys;
my $spare_old = $before{ 'sa:tok:' . tid($spare) };

sub nginx_http {
    my (@verify) = @_;
    my $keys = join '', map { "    sa_verify_key $_/verify.key;\n" } @verify;
    # sa_redis_timeout 1s: a 2-core test machine also runs Redis, sa-admin
    # (under ASan in make test), the load and two workers
    return '    sa_redis 127.0.0.1:' . $redis->port . ";\n" . $keys . <<'CONF';
    sa_redis_timeout 1s;
    sa_cache zone=sa:8m ttl=60s;
    log_format sa '$status $sa_status $sa_token_id';
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        access_log %%DIR%%/sa.log sa;
        location / {
            sa_auth api;
            sa_scope stacks:read;
        }
    }
CONF
}

my $nginx = SaTest::Nginx->start(workers => 2, http => nginx_http($old));
is($nginx->get('/index.html', Authorization => "Bearer $load[0]")->{status}, 200,
   'before: a token works with the old verify key');

# the load: a child requesting in a loop, one connection per request,
# counting what is not 200; it writes "total bad {why}" as it goes
my $dir = SaTest::new_dir('load');
my $pid = fork // die "fork: $!";
if (!$pid) {
    my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
    my $url = $nginx->url('/index.html');
    my ($n, $bad, %why) = (0, 0);
    my $report = sub {
        SaTest::write_file("$dir/count.tmp", "$n $bad " . JSON::PP->new->canonical->encode(\%why));
        rename "$dir/count.tmp", "$dir/count";
    };
    until (-e "$dir/stop") {
        my $res = $http->get($url, { headers => { Authorization => "Bearer $load[$n % @load]" } });
        $n++;
        if ($res->{status} != 200) {
            $bad++;
            $why{"$res->{status} $res->{reason}"}++;
        }
        $report->() if $n % 5 == 0;
    }
    $report->();
    POSIX::_exit(0);
}

sub load_count { my ($n) = split ' ', SaTest::slurp("$dir/count"); $n // 0 }
sub more_load {
    my ($what, $more) = @_;
    my $from = load_count();
    ok(SaTest::wait_until(30, sub { load_count() >= $from + ($more // 100) }),
       "load keeps running: $what");
}

more_load('with the old verify key');
ok($nginx->reload(http => nginx_http($old, $new)), 'nginx reloaded with both verify keys');
more_load('with both verify keys');

my $during = load_count();
my $t0 = time;
$r = resign('--json');
my $took = time - $t0;
is($r->{code}, 0, 'key resign with the new signing key: exit 0') or diag $r->{err};
is($r->{json}{tokens}, scalar @tok_keys, "every token record re-signed ($r->{json}{tokens})");
is($r->{json}{accounts}, 2, 'both account records re-signed');
is_deeply([@{ $r->{json} }{qw(teams members apps)}], [2, 0, 1],
          'and both team records and the application record');
is($r->{json}{refused}, 0, 'none refused');
is($r->{json}{current}, 0, 'none signed with the new key before');
cmp_ok(load_count() - $during, '>', 0,
       sprintf('requests were served while resign ran (%d in %.1f s)', load_count() - $during, $took));
like(SaTest::slurp($nginx->dir . '/sa.log'), qr/^200 ok /m, 'the gateway logged them as ok');
more_load('after resign, both keys');

ok($nginx->reload(http => nginx_http($new)), 'nginx reloaded with the new verify key only');
more_load('with the new verify key only', 200);

SaTest::write_file("$dir/stop", '');
waitpid $pid, 0;
my ($total, $bad, $why) = split ' ', SaTest::slurp("$dir/count"), 3;
cmp_ok($total, '>', 500, "the load made $total requests");
is($bad, 0, 'not one request failed across the whole rotation') or diag $why;

# every record verifies with the new key, none with the old
$r = resign('--json');
is($r->{code}, 0, 'resign again: exit 0');
is_deeply([@{ $r->{json} }{qw(tokens accounts current refused)}],
          [0, 0, scalar(@tok_keys) + 2 + 3, 0],
          'again: nothing re-signed, every record already signed with the new key');
$r = SaTest::admin($redis, { SA_SIGNING_KEY => "$old/signing.key" },
                   'key', 'resign', '--old-verify-key', "$third/verify.key", '--dry-run', '--json');
is($r->{code}, 2, 'with the old key as signing key: every record refused');
is($r->{json}{refused}, scalar(@tok_keys) + 2 + 3, 'none verifies with the old key');

# each record: its old payload, version + 1, same expiry
my ($same, $ttl_same, @diff) = (0, 0);
for my $k (@tok_keys, @acct_keys) {
    my $now = $redis->cmd('GET', $k);
    my ($p0, $p1) = (payload($before{$k}), payload($now));
    $p0->{version}++;
    if ($JSON->encode($p0) eq $JSON->encode($p1)) { $same++ } else { push @diff, $k }
    $ttl_same++ if $redis->cmd('EXPIRETIME', $k) == $exat{$k};
}
is($same, scalar(@tok_keys) + 2, 'every record: the same payload, version + 1') or diag "@diff[0..4]";
is($ttl_same, scalar(@tok_keys) + 2, 'every record: the same expiry (EXPIRETIME)');
is(payload($redis->cmd('GET', 'sa:tok:' . tid($revoked)))->{revoked}, JSON::PP::true,
   'the tombstone stays a tombstone');
cmp_ok($exat{ 'sa:tok:' . tid($forever) }, '==', -1, 'a token without expiry ...');
is($redis->cmd('EXPIRETIME', 'sa:tok:' . tid($forever)), -1, '... still has none');

for my $t (@load, $forever) {
    is($nginx->get('/index.html', Authorization => "Bearer $t")->{status}, 200,
       'after the switch: token ' . tid($t) . ' works, same secret');
}
is($nginx->get('/index.html', Authorization => "Bearer $revoked")->{status}, 401,
   'the revoked token stays refused');

# a record signed with the retired key: the gateway never saw this token
$redis->cmd('SET', 'sa:tok:' . tid($spare), $spare_old, 'KEEPTTL');
my $res = $nginx->get('/index.html?spare', Authorization => "Bearer $spare");
is($res->{status}, 401, 'a record signed with the retired key is refused');
ok(SaTest::wait_until(2, sub { SaTest::slurp($nginx->dir . '/sa.log') =~ /^401 tampered \Q@{[tid($spare)]}\E$/m }),
   'as tampered');
like($nginx->error_log, qr/\Q@{[tid($spare)]}\E/, 'and logged at error level');

my $audit = as_new(qw(audit --json))->{json};
ok((grep { $_->{action} eq 'key.resign' && $_->{team} eq '*' } @$audit),
   'the run is in the audit log');
# the audit log's checkpoints were re-signed too (audit:sig)
$r = as_new(qw(audit --verify --json));
is($r->{code}, 0, 'audit --verify with the new key: intact') or diag $r->{err};
is($r->{json}{unsigned}, 0, 'every entry signed, those from before the rotation too');
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_VERIFY_KEY => "$old/verify.key" },
                   qw(audit --verify));
is($r->{code}, 2, 'with the retired verify key: refused');
like($r->{err}, qr/its signature does not verify/, 'the checkpoints are the new key\'s');
$nginx->stop;
$redis->stop;

# ------------------------------------------------------------ 3. --team, 4. forgeries
$redis = SaTest::Redis->start;
as_old(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(billing));
my $ci = as_old(qw(account create platform ci --app billing --json))->{json}{id};
as_old(qw(team create other --owner alice));
my $x = as_old(qw(account create other x --json))->{json}{id};
my @mine = issue(\&as_old, 'platform/ci', qw(--scope stacks:read --count 3));
my @theirs = issue(\&as_old, 'other/x', qw(--scope stacks:read --count 2));
my %snap = map { $_ => $redis->cmd('GET', $_) } record_keys('tok'), record_keys('acct');

$r = resign(qw(--team platform --dry-run --json));
is($r->{code}, 0, '--team --dry-run: exit 0');
is_deeply([@{ $r->{json} }{qw(tokens accounts)}], [3, 1], '--dry-run counts the team\'s records');
is($redis->cmd('GET', 'sa:tok:' . tid($mine[0])), $snap{ 'sa:tok:' . tid($mine[0]) }, '--dry-run writes nothing');

$r = resign(qw(--team platform --json));
is($r->{code}, 0, '--team platform: exit 0') or diag $r->{err};
is_deeply([@{ $r->{json} }{qw(tokens accounts teams apps refused)}], [3, 1, 1, 1, 0],
          '--team: 3 tokens, 1 account, its team and its application');
for my $t (@mine) {
    is(payload($redis->cmd('GET', 'sa:tok:' . tid($t)))->{version}, 2, 'platform token re-signed');
}
is(payload($redis->cmd('GET', "sa:acct:$ci"))->{version}, 2, 'platform account re-signed');
# meanwhile sa-admin with the new key refuses to change what is still signed
# with the old one (rather than taking it for tampered and revoking it)
$r = as_new('token', 'revoke', tid($theirs[1]));
is($r->{code}, 2, 'before resign: the new key refuses to revoke an old-signed token');
$r = as_new(qw(account delete other/x));
is($r->{code}, 2, 'before resign: the new key refuses to delete an old-signed account');
for my $k ("sa:acct:$x", map { 'sa:tok:' . tid($_) } @theirs) {
    is($redis->cmd('GET', $k), $snap{$k}, "--team leaves $k of the other team as it was");
}

# forgeries: an unsigned record claiming everything, a garbage value, a
# genuine (old-signed) record copied under another id, a forged account
my $genuine = $snap{ 'sa:tok:' . tid($theirs[0]) };
my $p = payload($genuine);
$p->{id} = 'F0rgedF0rgedF0rg';
$p->{scopes} = ['*'];
$p->{team} = 'platform';
my %forged = (
    'sa:tok:F0rgedF0rgedF0rg' => 'sa1.' . ('A' x 86) . '.' . $JSON->encode($p),
    'sa:tok:GarbageGarbage00' => 'hello',
    'sa:tok:CopiedCopiedCop1' => $genuine,
    'sa:acct:F0rgedAccount000' => 'sa1.' . ('B' x 86) . '.{"kind":"account","id":"F0rgedAccount000","team":"platform","apps":["*"],"version":1}',
);
$redis->cmd('SET', $_, $forged{$_}) for keys %forged;

$r = resign('--json');
is($r->{code}, 2, 'forgeries present: exit 2') or diag $r->{err};
is_deeply([@{ $r->{json} }{qw(tokens accounts teams current refused)}], [2, 1, 1, 4 + 2, 4],
          'the other team\'s genuine records re-signed, the platform ones (and its team and app) current, 4 refused');
like($r->{err}, qr/token F0rgedF0rgedF0rg is refused: it verifies with neither/, 'the unsigned record is reported');
like($r->{err}, qr/token GarbageGarbage00 is refused/, 'the garbage is reported');
like($r->{err}, qr/token CopiedCopiedCop1 is refused: the record names another token/, 'the copy is reported');
like($r->{err}, qr/account F0rgedAccount000 is refused/, 'the forged account is reported');
like($r->{err}, qr/4 records were refused .* not re-signed/, 'and summed up');
for my $k (sort keys %forged) {
    is($redis->cmd('GET', $k), $forged{$k}, "$k is left byte for byte");
}

$r = resign(qw(--team platform --json));
is($r->{code}, 2, '--team platform: the forgeries naming platform are reported again');
is($r->{json}{refused}, 2, 'only those claiming the team (the unsigned token, the account)');

# nginx: a forged record is refused, a re-signed one accepted
my $gw = SaTest::Nginx->start(http => nginx_http($new));
is($gw->get('/index.html', Authorization => "Bearer $mine[0]")->{status}, 200,
   'a re-signed token works with the new verify key');
is($gw->get('/index.html', Authorization => "Bearer $theirs[0]")->{status}, 200,
   'so does the other team\'s, re-signed by the full run');
$gw->stop;
$redis->stop;

# ------------------------------------------------------------ 5. interrupted
$redis = SaTest::Redis->start;
as_old(qw(team create platform --owner alice));
as_old(qw(account create platform ci));
my $N = 20000;
# 20,000 with the sanitizer build on a loaded 2-core machine: over 30 s
$r = SaTest::run_admin(redis => $redis, env => { SA_ACTOR => 'alice' }, timeout => 180,
                       args => ['token', 'issue', 'platform/ci', '--count', $N]);
is($r->{code}, 0, "$N tokens");

my $bg = SaTest::Process->start(
    cmd => [SaTest::admin_path(), 'key', 'resign', '--old-verify-key', "$old/verify.key"],
    env => { SA_REDIS => $redis->url, SA_ACTOR => 'alice',
             SA_SIGNING_KEY => "$new/signing.key" });
my $progress = SaTest::wait_until(60, sub { $bg->err =~ /records read, [1-9]\d* re-signed/ || !$bg->running });
my $interrupted = $bg->running;
$bg->kill9;
SKIP: {
    skip 'resign finished before the first progress line: nothing to interrupt', 6
        unless $interrupted;
    ok($progress, 'progress on stderr once it runs longer than a second');
    like($bg->err, qr/^sa-admin: key resign: \d+ records read, \d+ re-signed, \d+ already current, 0 refused \(\d+ s\)$/m,
         'the progress line');

    my $d = resign(qw(--dry-run --json))->{json};
    cmp_ok($d->{current}, '>', 0, "killed with $d->{current} records re-signed");
    cmp_ok($d->{tokens} + $d->{accounts}, '>', 0, ($d->{tokens} + $d->{accounts}) . ' left');

    $r = resign('--json');
    is($r->{code}, 0, 'run again: exit 0') or diag $r->{err};
    is_deeply([@{ $r->{json} }{qw(tokens accounts current)}], [@$d{qw(tokens accounts current)}],
              'it re-signs exactly what was left, and skips what was done');
}
my $v2 = $redis->cmd('EVAL', <<'LUA', 0);
local n = 0
for _, k in ipairs(redis.call('KEYS', 'sa:tok:*')) do
    if string.find(redis.call('GET', k), '"version":2[,}]') then n = n + 1 end
end
return n
LUA
is($v2, $N, 'every token record re-signed exactly once (version 2)');
$r = resign('--json');
is($r->{code}, 0, 'a third run: exit 0');
is_deeply([@{ $r->{json} }{qw(tokens accounts current)}], [0, 0, $N + 1 + 1], 'it re-signs nothing (the tokens, the account, the team)');

done_testing;
