# The bounded replay window (issue 22, item 7): token records signed with a
# fresh_until (SA_FRESH_PERIOD), and sa_record_max_age, which refuses a
# record without one, past it, or more than TIME ahead ($sa_status lapsed,
# 401), from Redis, from the cache and from the stale cache alike.  A
# replayed pre-revocation record works on a restarted gateway, which knows
# no versions, only until its own fresh_until.  Off by default.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use JSON::PP;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice

# a token issued by alice, signed fresh for $period (undef: no fresh_until)
sub issue {
    my ($period, @scopes) = @_;
    my $r = SaTest::admin($redis, { SA_ACTOR => 'alice',
                                    SA_FRESH_PERIOD => $period },
                          'token', 'issue', 'platform/ci',
                          map { ('--scope', $_) } @scopes ? @scopes : 'stacks:read');
    die "token issue: $r->{err}" if $r->{code};
    chomp(my $token = $r->{out});
    return ($token, SaTest::tid($token));
}
sub record { $redis->cmd('GET', "sa:tok:$_[0]") }
sub payload { my ($json) = $_[0] =~ /^sa1\.[^.]+\.(.*)$/s; decode_json($json) }
sub replay { $redis->cmd('SET', "sa:tok:$_[0]", $_[1], 'KEEPTTL') }

my $http = <<'CONF';
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m stale=5m;
    sa_record_max_age 1h;
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-SA-Status $sa_status always;
        sa_auth api;
        location / { root %%DIR%%/html; }
        location /off/ { sa_record_max_age off; alias %%DIR%%/html/; }
        location /short/ { sa_record_max_age 10s; alias %%DIR%%/html/; }
        location /app/ { sa_application api; alias %%DIR%%/html/; }
        location /app-admin/ { sa_application api; sa_scope admin:write; alias %%DIR%%/html/; }
        location /off-then/ { sa_record_max_age off; try_files /nonexistent @strict; }
        location @strict { sa_record_max_age 1h; root %%DIR%%/html; }
    }
CONF
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => $http);

sub subscribed { $redis->wait_subscribed($_[0] // 2) }
sub got {
    my ($gw, $token, $path) = @_;
    my $res = $gw->get($path // '/index.html', Authorization => "Bearer $token");
    return "$res->{status} " . ($res->{headers}{'x-sa-status'} // '-');
}
subscribed();

# configuration: a time, or off; anything else refused
my $keys = SaTest::keys_dir();
my $base = "sa_redis 127.0.0.1:1; sa_verify_key $keys/verify.key;\n";
sub conf { SaTest::Nginx->test_config(http => $base . "server { listen 127.0.0.1:%%PORT%%; $_[0] }") }
for my $bad ('0', '-1', 'soon') {
    my ($ok, $out) = conf("sa_record_max_age $bad;");
    ok(!$ok, "sa_record_max_age $bad: refused by nginx -t");
    like($out, qr/invalid value "\Q$bad\E" in "sa_record_max_age": a time of at least 1s, or "off"/,
         "sa_record_max_age $bad: the message says what it takes");
}
my ($ok, $out) = conf('sa_record_max_age 1h 2h;');
like($out, qr/invalid number of arguments in "sa_record_max_age"/, 'two values: refused');
($ok, $out) = conf('sa_record_max_age 1h; sa_record_max_age 2h;');
like($out, qr/"sa_record_max_age" directive is duplicate/, 'given twice: duplicate');
($ok, $out) = conf('sa_record_max_age 25h; location / { sa_auth api; sa_record_max_age off; }');
ok($ok, 'server and location contexts, off and a time: valid') or diag $out;

# sa-admin: a period that is no duration is a usage error, nothing written
my $keys_before = $redis->cmd('DBSIZE');
my $bad = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => 'tomorrow' },
                        'token', 'issue', 'platform/ci', '--scope', 'stacks:read');
is($bad->{code}, 1, 'SA_FRESH_PERIOD=tomorrow: exit 1');
like($bad->{err}, qr/SA_FRESH_PERIOD 'tomorrow' is not a duration/, 'and says so');
is($redis->cmd('DBSIZE'), $keys_before, 'nothing written');

# 1. a record without fresh_until (sa-admin without SA_FRESH_PERIOD)
my ($old, $oldid) = issue(undef);
ok(!exists payload(record($oldid))->{fresh_until}, 'without SA_FRESH_PERIOD: no fresh_until in the record');
is(got($nginx, $old), '401 lapsed', 'sa_record_max_age refuses a record without fresh_until');
like($nginx->error_log, qr/record of token "\Q$oldid\E" refused: it has no fresh_until/,
     'and says why');
is(got($nginx, $old, '/off/index.html'), '200 ok', 'sa_record_max_age off in a location: taken');
is(got($nginx, $old, '/off-then/index.html'), '401 lapsed',
   'taken where it is off, then an internal redirect into a location with it: refused there');
is(got($nginx, $old, '/app/index.html'), '401 lapsed', 'in a location with sa_application: refused too');
select(undef, undef, undef, 0.5);
is($redis->cmd('XLEN', 'sa:events'), 0,
   'but not reported as token.denied (a signer behind on renewals is not the account\'s doing)');

# 2. a fresh record
my ($tok, $id) = issue('30m');
my $p = payload(record($id));
cmp_ok(abs($p->{fresh_until} - (time + 1800)), '<=', 5, 'SA_FRESH_PERIOD=30m: fresh_until is now + 30 min');
is(got($nginx, $tok), '200 ok', 'a fresh record: 200');
is(got($nginx, $tok), '200 ok', 'and again, from the cache');
is(got($nginx, $tok, '/app-admin/index.html'), '403 insufficient_scope', 'a scope it lacks: 403');
ok(SaTest::wait_until(3, sub { $redis->cmd('XLEN', 'sa:events') == 1 }),
   'the control: that refusal is reported as token.denied');
is(got($nginx, $tok, '/short/index.html'), '401 lapsed',
   'fresh for 30 min, but sa_record_max_age 10s: more than TIME ahead, refused');
like($nginx->error_log, qr/record of token "\Q$id\E" refused: fresh until \d+, \d+ s ahead, more than sa_record_max_age 10 s/,
     'logged as too far ahead');

# 3. a period longer than TIME: refused everywhere it is set
my ($long, $longid) = issue('48h');
is(got($nginx, $long), '401 lapsed', 'signed fresh for 48 h, sa_record_max_age 1h: refused');
is(got($nginx, $long, '/off/index.html'), '200 ok', 'where it is off: taken');

# 4. a record that lapses while it sits in the cache
my ($short, $shortid) = issue('3s');
my $until = payload(record($shortid))->{fresh_until};
is(got($nginx, $short), '200 ok', 'fresh for 3 s: 200 (now cached, ttl 5m)');
sleep 0.2 while time < $until + 1.1;    # time passing: past its fresh_until
is(got($nginx, $short), '401 lapsed', 'its fresh_until passed: 401, though the entry is within its ttl');
like($nginx->error_log, qr/record of token "\Q$shortid\E" refused: fresh until \Q$until\E, \d+ s ago/,
     'logged with its fresh_until');
is(got($nginx, $short, '/off/index.html'), '200 ok', 'where it is off: still taken');

# 5. the replay: a revoked token's older record put back, on a gateway
#    restarted with no version memory
my ($rt, $rid) = issue('4s');
is(got($nginx, $rt), '200 ok', 'a token in use, fresh for 4 s');
my $before = record($rid);
$until = payload($before)->{fresh_until};
my $r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => '1h' },
                      'token', 'revoke', $rid);
is($r->{code}, 0, 'revoked') or diag $r->{err};
# the invalidation reaches the workers' subscribers a moment later
ok(SaTest::wait_until(3, sub { got($nginx, $rt) eq '401 revoked' }), 'the tombstone is read: revoked');
ok(payload(record($rid))->{fresh_until} > $until, 'the tombstone carries a later fresh_until');

$nginx->stop;
my $fresh = SaTest::Nginx->start(redis => $redis, workers => 2, http => $http);
subscribed();
replay($rid, $before);
if (time < $until - 1) {
    is(got($fresh, $rt), '200 ok', 'restarted, the pre-revocation record put back: taken until its fresh_until (the window)');
} else {
    pass('(the window had passed before the gateway was up)');
}
sleep 0.2 while time < $until + 1.1;    # time passing: past its fresh_until
is(join(' ', map { got($fresh, $rt) } 1 .. 10), join(' ', ('401 lapsed') x 10),
   'after its fresh_until: refused, 10 of 10, though no worker knows a newer version');
like($fresh->error_log, qr/record of token "\Q$rid\E" refused: fresh until \Q$until\E/,
     'logged with the replayed record\'s fresh_until');

# 6. Redis down: stale= serves cached records, never one past its fresh_until
my ($st, $stid) = issue('4s');
$until = payload(record($stid))->{fresh_until};
is(got($fresh, $st), '200 ok', 'fresh for 4 s, cached');
is(got($fresh, $tok), '200 ok', 'the 30-minute token, cached');
is(got($fresh, $tok), '200 ok', 'the 30-minute token, cached (both workers)');
$redis->pause;
sleep 0.2 while time < $until + 1.1;    # time passing: past its fresh_until
is(got($fresh, $tok), '200 ok', 'Redis frozen: a fresh record is served stale');
is(got($fresh, $st), '401 lapsed', 'Redis frozen: a lapsed one is refused, not served stale');
$redis->resume;

# 7. off by default: a gateway without the directive takes every record
$fresh->stop;
(my $plain = $http) =~ s/\s*sa_record_max_age [^;]*;//g;
unlike($plain, qr/sa_record_max_age/, 'the default configuration has no sa_record_max_age');
my $off = SaTest::Nginx->start(redis => $redis, workers => 1, http => $plain);
subscribed(1);
is(got($off, $old), '200 ok', 'off by default: a record without fresh_until is taken');
is(got($off, $short), '200 ok', 'off by default: a lapsed fresh_until means nothing');
is(got($off, $long), '200 ok', 'off by default: nor one far ahead');

done_testing;
