# sa-admin key refresh (issue 22, item 7): token records renewed before
# their fresh_until lapses, nothing else in them changed.
#
#   1. --help and usage errors
#   2. a run: records without fresh_until stamped (spread over the window
#      to the period), due ones renewed to now + period, fresh ones, revoked
#      and expired ones left byte for byte; versions, expiries and every
#      other field kept; no audit entry, no invalidation; a second run
#      renews nothing; --dry-run writes nothing
#   3. a record that does not verify with the signing key: reported, left,
#      exit 2, the others renewed
#   4. through a gateway with sa_record_max_age and a cache: a cached
#      token renewed silently keeps working past its old fresh_until
#   5. the version memory of a long-running caller (t/lib/refresh-probe.c,
#      as the admin API server runs it): a revoked token's older record put
#      back is refused, never renewed; a one-shot run without memory renews
#      it (the limit SECURITY.md states)
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use IPC::Open2;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $JSON = JSON::PP->new->canonical;
my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice

sub admin { SaTest::admin($redis, { SA_ACTOR => 'alice', %{ shift() } }, @_) }
sub refresh { SaTest::admin($redis, 'key', 'refresh', @_) }
sub issue {
    my ($period, @args) = @_;
    my $r = admin({ SA_FRESH_PERIOD => $period }, 'token', 'issue', 'platform/ci',
                  '--scope', 'stacks:read', @args);
    die "token issue: $r->{err}" if $r->{code};
    chomp(my $token = $r->{out});
    return ($token, SaTest::tid($token));
}
sub record { $redis->cmd('GET', "sa:tok:$_[0]") }
sub payload { my ($json) = ($_[0] // '') =~ /^sa1\.[^.]+\.(.*)$/s; $json ? $JSON->decode($json) : undef }
sub without_fresh { my %p = %{ payload($_[0]) }; delete $p{fresh_until}; $JSON->encode(\%p) }

# 1. usage
my $r = refresh('--help');
is($r->{code}, 0, '--help: exit 0');
like($r->{out}, qr/^usage: sa-admin key refresh \[--period D\] \[--within D\] \[--lapsed\] \[--dry-run\]/, '--help: usage');
$r = refresh();
is($r->{code}, 1, 'no period, no SA_FRESH_PERIOD: exit 1');
like($r->{err}, qr/--period D is required \(or SA_FRESH_PERIOD\)/, 'and says so');
$r = refresh('--period', '1h', '--within', '2h');
is($r->{code}, 1, '--within longer than --period: exit 1');
like($r->{err}, qr/--within must be shorter than --period/, 'and says so');
$r = refresh('--period', 'soon');
is($r->{code}, 1, '--period soon: exit 1');
like($r->{err}, qr/invalid --period 'soon'/, 'and says so');
$r = refresh('--period', '1h', 'extra');
is($r->{code}, 1, 'an operand: exit 1');

# 2. a run
my ($ta, $a) = issue(undef);                      # no fresh_until
my ($tb, $b) = issue('1h');                       # due within 6 h
my ($tc, $c) = issue('12h');                      # beyond the window
my ($tx, $x) = issue('48h');                      # beyond the period
my ($td, $d) = issue(undef);
is(admin({}, 'token', 'revoke', $d)->{code}, 0, 'a revoked token');
my ($te, $e) = issue(undef, '--expires', '1s');
sleep 1.2;
my %before = map { $_ => record($_) } $a, $b, $c, $d, $e, $x;
my %ttl = map { $_ => $redis->cmd('TTL', "sa:tok:$_") } $a, $b, $c, $d, $e, $x;
my $audit = $redis->cmd('XLEN', 'sa:audit');

my $sub = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis->port) or die;
print $sub "SUBSCRIBE sa:invalidate\r\n";
<$sub> for 1 .. 6;

my $now = time;
$r = refresh('--period', '24h', '--within', '6h', '--json');
is($r->{code}, 0, 'key refresh --period 24h --within 6h: exit 0') or diag $r->{err};
my $j = $r->{json};
is_deeply([ @$j{qw(read renewed stamped lapsed ahead fresh skipped refused older changed gone)} ],
          [ 6, 3, 1, 0, 1, 1, 2, 0, 0, 0, 0 ],
          'read 6: renewed 3 (1 had none, 1 lay beyond the period), 1 fresh beyond the window, 2 revoked or expired left')
    or diag explain $j;

my $pa = payload(record($a));
cmp_ok($pa->{fresh_until}, '>', $now + 6 * 3600, 'a record without fresh_until: stamped beyond the window');
cmp_ok($pa->{fresh_until}, '<=', time + 24 * 3600, '... and at most a period ahead');
cmp_ok(abs(payload(record($b))->{fresh_until} - ($now + 24 * 3600)), '<=', 3,
       'a due record: fresh until now + 24 h');
cmp_ok(abs(payload(record($x))->{fresh_until} - ($now + 24 * 3600)), '<=', 3,
       'a record fresh for 48 h: brought back to now + 24 h');
for my $id ($a, $b, $x) {
    is(without_fresh(record($id)), without_fresh($before{$id}),
       "$id: every field but fresh_until as it was (version included)");
    cmp_ok(abs($redis->cmd('TTL', "sa:tok:$id") - $ttl{$id}), '<=', 2, "$id: its expiry kept");
}
is(record($c), $before{$c}, 'fresh beyond the window: left byte for byte');
is(record($d), $before{$d}, 'revoked: left byte for byte');
is(record($e), $before{$e}, 'expired: left byte for byte');
is($redis->cmd('XLEN', 'sa:audit'), $audit, 'no audit entry');

# no invalidation: the next message is the one published here
$redis->cmd('PUBLISH', 'sa:invalidate', 'marker');
my @msg = map { scalar <$sub> } 1 .. 7;
like($msg[6], qr/^marker/, 'nothing published on the invalidation channel') or diag explain \@msg;
close $sub;

# the text report
$r = refresh('--period', '24h', '--within', '6h');
is($r->{code}, 0, 'a second run: exit 0');
like($r->{out}, qr/^renewed 0 token records \(0 had no fresh_until, 0 had lapsed\); 4 fresh beyond the window, 2 revoked or expired left, 0 refused/,
     'renews nothing: everything is fresh now');

# SA_FRESH_PERIOD is the default period; --dry-run writes nothing
my %now = map { $_ => record($_) } $a, $b, $c, $x;
$r = SaTest::admin($redis, { SA_FRESH_PERIOD => '48h' }, 'key', 'refresh', '--within', '30h',
                   '--dry-run', '--json');
is($r->{code}, 0, '--dry-run with SA_FRESH_PERIOD=48h --within 30h: exit 0') or diag $r->{err};
is($r->{json}{renewed}, 4, 'would renew the 4 live records: all lapse within 30 h');
ok($r->{json}{dry_run}, 'says it was a dry run');
is_deeply({ map { $_ => record($_) } $a, $b, $c, $x }, \%now, 'and wrote nothing');

# 3. a record that does not verify with the signing key
my ($tf, $fid) = issue(undef);
my $forged_id = 'Fg' . substr($fid, 2);
$redis->cmd('SET', "sa:tok:$forged_id", 'sa1.' . ('A' x 86) . '.{"kind":"token"}');
$r = refresh('--period', '24h', '--within', '6h', '--json');
is($r->{code}, 2, 'a record that does not verify: exit 2');
like($r->{err}, qr/token \Q$forged_id\E is refused: it does not verify with the signing key/,
     'reported by id');
is($r->{json}{refused}, 1, 'counted as refused');
is($r->{json}{renewed}, 1, 'the other new token was still stamped');
is(record($forged_id), 'sa1.' . ('A' x 86) . '.{"kind":"token"}', 'the forgery left byte for byte');
$redis->cmd('DEL', "sa:tok:$forged_id");

# 3b. the script alone (key_refresh.lua as sa-admin sends it, taken from the
#     build): a record changed between the read and the write is left
my $c_src = SaTest::slurp(SaTest::build_dir() . '/admin/lua_scripts.c');
my ($body) = $c_src =~ /sa_script_t\s+sa_lua_key_refresh = \{\s*"key_refresh",\s*(.*?)\n\};/s;
my $lua = join '', map { s/\\n/\n/gr =~ s/\\t/\t/gr =~ s/\\"/"/gr =~ s/\\\\/\\/gr }
                   $body =~ /"((?:[^"\\]|\\.)*)"/g;
like($lua, qr/cur ~= ARGV\[i \+ 1\]/, 'the script, from the build');
$redis->cmd('SET', 'sa:tok:Aa00000000000000', 'current');
$redis->cmd('SET', 'sa:tok:Bb00000000000000', 'read');
my $got = $redis->cmd('EVAL', $lua, 0, 'sa:', 'alice', time, '', '',   # no proof (common.lua)
                      'Aa00000000000000', 'read', 'renewed-a',
                      'Bb00000000000000', 'read', 'renewed-b',
                      'Cc00000000000000', 'read', 'renewed-c');
is_deeply($got, [2, 1, 0], 'one call: changed meanwhile 2, renewed 1, gone 0');
is($redis->cmd('GET', 'sa:tok:Aa00000000000000'), 'current', 'the changed record is left as it is');
is($redis->cmd('GET', 'sa:tok:Bb00000000000000'), 'renewed-b', 'the unchanged one replaced');
ok(!$redis->cmd('EXISTS', 'sa:tok:Cc00000000000000'), 'a gone one is not brought back');
$redis->cmd('DEL', map { "sa:tok:$_" } qw(Aa00000000000000 Bb00000000000000));

# 4. through a gateway: a cached token renewed without an invalidation
my $nginx = SaTest::Nginx->start(redis => $redis, workers => 2, http => <<'CONF');
    sa_cache zone=sa:1m ttl=5m;
    sa_record_max_age 2h;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; root %%DIR%%/html; }
    }
CONF
SaTest::wait_for('subscribers', sub {
    scalar(() = $redis->cmd('CLIENT', 'LIST', 'TYPE', 'pubsub') =~ /^id=/mg) == 2;
});
sub status { $nginx->get('/index.html', Authorization => "Bearer $_[0]")->{status} }
my ($tg, $g) = issue('3s');
my $until = payload(record($g))->{fresh_until};
is(status($tg), 200, 'a token fresh for 3 s: 200, cached for 5 min');
is(status($tg), 200, 'and again');
$r = refresh('--period', '1h', '--within', '30m');
is($r->{code}, 0, 'key refresh --period 1h --within 30m') or diag $r->{err};
cmp_ok(payload(record($g))->{fresh_until}, '>=', time + 3500, 'its record renewed for an hour');
sleep 0.2 while time < $until + 1.1;
is(join(' ', map { status($tg) } 1 .. 6), '200 200 200 200 200 200',
   'past its old fresh_until: the cached copy is not used, Redis has the renewed record: 200');

# 5. the version memory of a long-running caller
my %env = (SA_REDIS => $redis->url, SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key');
local @ENV{ keys %env } = values %env;
my $probe_bin = SaTest::build_dir() . '/tests/refresh-probe';
my $pid = open2(my $from, my $to, $probe_bin) or die "refresh-probe: $!";
sub probe {
    my ($period, $within) = @_;
    print $to "$period $within\n";
    $to->flush;
    my $line = <$from>;
    return $JSON->decode($line // '{}');
}
my ($th, $h) = issue(undef);
my $p1 = probe(86400, 21600);
is($p1->{rc}, 0, 'probe: a run') or diag explain $p1;
cmp_ok($p1->{renewed}, '>=', 1, 'probe: stamps the new token');
cmp_ok($p1->{versions}, '>=', 8, 'probe: remembers a version of every token it read');
my $h1 = record($h);
is(payload($h1)->{version}, 1, 'the stamped record: version 1');
is(admin({}, 'token', 'revoke', $h)->{code}, 0, 'revoked by the CLI, another process');
my $p2 = probe(86400, 21600);
is($p2->{skipped}, 3, 'probe: the tombstone read (left), its version 2 remembered');
$redis->cmd('SET', "sa:tok:$h", $h1, 'KEEPTTL');          # the writer's replay
my $p3 = probe(172800, 86400);                            # everything is due
is($p3->{older}, 1, 'probe: the put-back version 1 is older than the version 2 it saw: refused');
is(record($h), $h1, 'and not renewed: left byte for byte, to lapse at its fresh_until');
cmp_ok($p3->{renewed}, '>=', 5, 'the other live records renewed in the same run');
close $to;
waitpid $pid, 0;
is($? >> 8, 0, 'probe: exit 0');

# the limit: a one-shot run has no memory and takes what Redis holds
$r = refresh('--period', '48h', '--within', '36h', '--json');
is($r->{code}, 0, 'key refresh (CLI, no memory) after the replay: exit 0');
is(payload(record($h))->{revoked}, JSON::PP::false, 'the put-back record is renewed, not revoked: the CLI cannot tell (SECURITY.md)');
cmp_ok(payload(record($h))->{fresh_until}, '>', payload($h1)->{fresh_until}, '... its fresh_until pushed on');

done_testing;
