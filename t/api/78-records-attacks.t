# Attack review of the records' replay window (issue 22 point 7 extended;
# t/admin/27-records-fresh.t and t/api/77-records-refresh.t test the
# feature): a Redis writer without the signing key (every gateway host is
# one) against the signed fresh_until, serve's refresher and its version
# memory.  F: fresh_until edited (huge, negative, not a number, twice,
# 10 kB): refused as a forgery, never renewed.  M: forged, garbage, 10 kB,
# unknown-kind, old-format and replayed messages on <prefix>records: only
# signed records are heard, so none makes the refresher refuse a current
# record.  L: a flood of both channels: the refresher lives on, its memory
# bounded.  R: older records put back after an ungrant, an unshare, an
# account deletion, a personal token's revocation, a tombstone's
# successor, across a SIGHUP: refused by the memory, then past fresh_until
# refused by the checks (the personal token: 401 at /v1/me).  K: the
# refresher killed -9 mid-run, again and again: nothing half-written.
# Z: Redis frozen during runs: the refresher resumes.  docs/admin-api.md,
# "Reviewed".
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep time);
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my %E = (SA_FRESH_PERIOD => '16s');
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u, %E }, @_) }
sub op { SaTest::operator($redis, { %E }, @_) }
sub ok0 { my ($r, $what) = @_; is($r->{code}, 0, $what) or diag $r->{err}; $r }
sub payload { my ($v) = @_; JSON::PP->new->decode((($v // '') =~ /^sa1\.[^.]+\.(.*)$/s)[0] // 'null') }
sub member { $redis->cmd('HGET', 'sa:team:plat:members', $_[0]) }
sub fu { payload($_[0])->{fresh_until} // 0 }

ok0(as('alice', qw(team create plat --owner alice)), 'team plat');
ok0(as('alice', qw(team create ops --owner olga)), 'team ops');
ok0(as('alice', qw(team member add plat bob --perm service_accounts:tokens)), 'bob');
ok0(as('alice', qw(team member add plat carol --perm service_accounts:tokens)), 'carol');
ok0(as('alice', qw(team member add plat dave --perm service_accounts:tokens)), 'dave');
ok0(op(qw(app create billing --team plat)), 'billing');
ok0(op(qw(app create ledger --team plat)), 'ledger');
my $ci = ok0(as('alice', qw(account create plat ci --app billing --app ledger --json)), 'plat/ci')->{json}{id};

# ------------------------------------------------ F: fresh_until edited
my $carol = member('carol');
my ($head, $body) = $carol =~ /^(sa1\.[^.]+\.)(.*)$/s;
my $fu = payload($carol)->{fresh_until};
my %tamper = (
    'later' => $body =~ s/"fresh_until":\d+/"fresh_until":@{[$fu + 86400]}/r,
    'huge' => $body =~ s/"fresh_until":\d+/"fresh_until":99999999999999999999999/r,
    'negative' => $body =~ s/"fresh_until":\d+/"fresh_until":-1/r,
    'not a number' => $body =~ s/"fresh_until":\d+/"fresh_until":"never"/r,
    'a float' => $body =~ s/"fresh_until":\d+/"fresh_until":1e30/r,
    'twice' => $body =~ s/"fresh_until":\d+/"fresh_until":$fu,"fresh_until":@{[$fu + 86400]}/r,
    'removed' => $body =~ s/,?"fresh_until":\d+//r,
    '10 kB' => $body =~ s/"fresh_until":\d+/'"fresh_until":' . ('9' x 10240)/er,
);
for my $k (sort keys %tamper) {
    isnt($tamper{$k}, $body, "F $k: the payload is edited");
    $redis->cmd('HSET', 'sa:team:plat:members', 'carol', $head . $tamper{$k});
    my $r = as('carol', qw(token issue plat/ci));
    is($r->{code}, 2, "F $k: refused (exit 2), not taken") or diag $r->{err};
    like($r->{err}, qr/the member record of 'carol' in team 'plat' is refused: .*written by something other than sa-admin/,
         "F $k: as a forgery");
    $r = op(qw(key refresh --period 16s --within 4s --lapsed --json));
    is($r->{code}, 2, "F $k: key refresh --lapsed refuses it (exit 2)");
    is(member('carol'), $head . $tamper{$k}, "F $k: and leaves it, unrenewed");
}
$redis->cmd('HSET', 'sa:team:plat:members', 'carol', $carol);
ok0(as('carol', qw(token issue plat/ci)), 'F: the genuine record back: carol issues');

# ------------------------------------------------ serve with its refresher
my $api = SaTest::Serve->start(redis => $redis, env => { %E },
                               args => ['--workers', 1, '--refresh-period', '1s']);
sub metric {
    my ($name) = @_;
    my $m = $api->req(GET => '/metrics')->{content} // '';
    return $m =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}
sub older { metric('sa_admin_refresh_records_refused_total{reason="older"}') // 0 }
sub unsigned { metric('sa_admin_refresh_messages_ignored_total{reason="unsigned"}') // 0 }
sub renewed_past { my ($get, $t) = @_; SaTest::wait_until(15, sub { fu($get->()) > $t }) }
ok(SaTest::wait_until(15, sub { (metric('sa_admin_refresh_subscribed') // 0) == 1 }),
   'the refresher hears its channels');
ok(SaTest::wait_until(15, sub { $api->err =~ /refresh: \{/ }), 'its first run is done');

# ------------------------------------------------ M: forged messages
my $u0 = unsigned();
my $o0 = older();
my $cfu = fu(member('carol'));
my $tampered = $carol =~ s/"version":1\b/"version":99/r;
isnt($tampered, $carol, 'M: a genuine record with its version edited');
my @forged = (
    'member:plat/carol 18446744073709551615',       # the old format, huge
    'member:plat/carol 99',
    'team:plat 99', 'application:billing 99', "account:$ci 99",
    'zzz:nothing 5',                                # an unknown kind
    'garbage', '', ' ', "\0\0\0",
    'x' x 10240,                                    # 10 kB
    'sa1.AAAA.{"kind":"member","id":"plat/carol","version":99}',
    $tampered,
);
$redis->cmd('PUBLISH', 'sa:records', $_) for @forged;
ok(SaTest::wait_until(10, sub { unsigned() >= $u0 + @forged }),
   'M: every forged message ignored, counted (sa_admin_refresh_messages_ignored_total{reason="unsigned"})')
    or diag unsigned() - $u0;
# a genuine record of an older version replayed on the channel: a hint only
$redis->cmd('PUBLISH', 'sa:records', $carol);
ok(renewed_past(sub { member('carol') }, $cfu),
   "M: carol's current record is still renewed (no forged version was kept)");
$cfu = fu(member('carol'));
ok(renewed_past(sub { member('carol') }, $cfu), 'M: and again at the next run');
is(older(), $o0, 'M: nothing refused as older');
ok0(as('carol', qw(token issue plat/ci)), 'M: carol issues');
is(metric('sa_admin_refresh_restarts_total'), 0, 'M: the refresher never restarted');

# ------------------------------------------------ L: a flood of both channels
my $tfu = fu($redis->cmd('GET', 'sa:team:plat'));
my $lua = q{
    for i = 1, tonumber(ARGV[1]) do
        redis.call('PUBLISH', 'sa:records', 'member:plat/carol ' .. (i * 1000))
        redis.call('PUBLISH', 'sa:invalidate', string.format('Fl%014d:%d', i, 7))
    end
    return 1
};
my $t = time;
$redis->cmd('EVAL', $lua, 0, 30000) for 1 .. 4;
diag sprintf('L: 240,000 messages published in %.1f s', time - $t);
ok(SaTest::wait_until(30, sub { (metric('sa_admin_refresh_subscribed') // 0) == 1 && unsigned() > $u0 + @forged }),
   'L: the refresher hears its channels after the flood (or subscribed again)');
ok(renewed_past(sub { $redis->cmd('GET', 'sa:team:plat') }, $tfu), 'L: and renews records on');
is(metric('sa_admin_refresh_restarts_total'), 0, 'L: never restarted (its memory kept)');
cmp_ok(metric('sa_admin_refresh_versions') // 0, '<=', (1 << 18) + 1000,
       'L: the memory bounded (made-up token ids beyond the bound not kept)');
$cfu = fu(member('carol'));
ok(renewed_past(sub { member('carol') }, $cfu), "L: carol's record still renewed");
is(older(), $o0, 'L: nothing refused as older');

# ------------------------------------------------ R: older records put back
sub put_back_refused {
    my ($what, $put, $log) = @_;
    my $o = older();
    $put->();
    ok(SaTest::wait_until(10, sub { older() > $o }), "R $what: refused by the refresher as older");
    like($api->err, $log, "R $what: logged");
}
# account ungrant
my $acct = $redis->cmd('GET', "sa:acct:$ci");
ok0(as('alice', qw(account ungrant plat/ci --app ledger)), 'R: ledger ungranted');
put_back_refused('ungrant', sub { $redis->cmd('SET', "sa:acct:$ci", $acct) },
                 qr/the account record '\Q$ci\E' is refused: version 1 is older than version 2/);
# application unshare
ok0(op(qw(app share billing --team ops)), 'R: billing shared with ops');
my $app = $redis->cmd('GET', 'sa:app:billing');
ok0(op(qw(app unshare billing --team ops)), 'R: and unshared');
my $av = payload($app)->{version};
put_back_refused('unshare', sub { $redis->cmd('SET', 'sa:app:billing', $app) },
                 qr/the app record 'billing' is refused: version $av is older than version ${\($av + 1)}/);
# account deletion: the signed marker heard
my $tmp = ok0(as('alice', qw(account create plat tmp --app billing --json)), 'R: plat/tmp')->{json}{id};
my $tmprec = $redis->cmd('GET', "sa:acct:$tmp");
ok0(as('alice', qw(account delete plat/tmp)), 'R: plat/tmp deleted');
put_back_refused('delete', sub { $redis->cmd('SET', "sa:acct:$tmp", $tmprec) },
                 qr/the account record '\Q$tmp\E' is refused: version 1 is older than version 2/);
my $marker = payload($tmprec);
# the personal token revoked: the old record back
my $pt = op(qw(user token issue bob));
chomp(my $ptok = $pt->{out});
my $ptid = substr($ptok, 4, 16);
my @ptkeys = grep { /\Q$ptid\E$/ } @{ $redis->cmd('KEYS', 'sa:ptok:*') };
is(scalar @ptkeys, 1, "R: bob's personal token record") or diag explain \@ptkeys;
my $ptrec = $redis->cmd('GET', $ptkeys[0]);
is($api->req(GET => '/v1/me', headers => { Authorization => "Bearer $ptok" })->{status}, 200,
   'R: bob logs in with it');
ok0(op('user', 'token', 'revoke', $ptid), 'R: revoked');
is($api->req(GET => '/v1/me', headers => { Authorization => "Bearer $ptok" })->{status}, 401,
   'R: refused once revoked');
put_back_refused('revoke', sub { $redis->cmd('SET', $ptkeys[0], $ptrec) },
                 qr/the ptoken record '\Q$ptid\E' is refused: version 1 is older than version 2/);
# a tombstone's successor, its tombstone deleted, across a SIGHUP
my $dave1 = member('dave');
ok0(as('alice', qw(team member remove plat dave)), 'R: dave removed (tombstone v2)');
ok0(as('alice', qw(team member add plat dave --perm service_accounts:tokens)), 'R: added again (v3)');
my $dave3 = member('dave');
is(payload($dave3)->{version}, 3, 'R: building on the tombstone');
ok0(as('alice', qw(team member remove plat dave)), 'R: removed again (tombstone v4)');
my $dt = op(qw(user token issue dave));
chomp(our $dtok = $dt->{out});
kill 'HUP', $api->pid;
ok(SaTest::wait_until(10, sub { $api->err =~ /refresh: SIGHUP/ }), 'R: serve reloaded (SIGHUP)');
$redis->cmd('HDEL', 'sa:team:plat:members', 'dave');
put_back_refused('after a removal, its tombstone deleted, across a SIGHUP',
                 sub { $redis->cmd('HSET', 'sa:team:plat:members', 'dave', $dave3) },
                 qr/the member record 'plat\/dave' is refused: version 3 is older than version 4/);
put_back_refused("the first record", sub { $redis->cmd('HSET', 'sa:team:plat:members', 'dave', $dave1) },
                 qr/the member record 'plat\/dave' is refused: version 1 is older than version 4/);
# past their fresh_until, every check refuses them
my $until = 0;
$until < $_ and $until = $_ for fu($acct), fu($app), fu($ptrec), fu($dave1);
sleep 0.2 while time < $until + 1.2;
is($redis->cmd('GET', "sa:acct:$ci"), $acct, 'R: the account record never renewed');
my $r = as('alice', qw(token issue plat/ci));
is($r->{code}, 3, 'R: the ungranted account record past its fresh_until: refused (exit 3)');
like($r->{err}, qr/account 'plat\/ci' is refused: its fresh_until has passed/, 'R: naming it');
$r = as('dave', qw(token issue plat/ci));
is($r->{code}, 3, "R: dave's first record past its fresh_until: refused (exit 3)") or diag $r->{err};
$r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $ptok" });
is($r->{status}, 401, "R: the revoked personal token's old record past its fresh_until: 401 at login")
    or diag $r->{content};
$r = op(qw(app share billing --team ops));
is($r->{code}, 3, 'R: the shared application record past its fresh_until: refused (exit 3)') or diag $r->{err};
unlike($r->{err}, qr/written by something other/, 'R: not as a forgery (app share said so, exit 2, before this review)');
$r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $main::dtok" });
is($r->{status}, 200, "R: dave's personal token (its own record current) logs in");
my $me = eval { JSON::PP->new->decode($r->{content}) } // {};
ok(!grep({ ($_->{team} // $_->{name} // $_) eq 'plat' } @{ $me->{teams} // [] }),
   "R: but /v1/me lists no team from his stale member record") or diag $r->{content};
$r = $api->req(POST => "/v1/accounts/$ci/tokens", headers => { Authorization => "Bearer $main::dtok" },
               json => {});
is($r->{status}, 503, 'R: and with it, a token issue through serve: 503 (the stale member record)')
    or diag $r->{content};
like($r->{content}, qr/stale-record/, 'R: the problem type stale-record') or diag $r->{content};
$redis->cmd('DEL', "sa:acct:$tmp");

# ------------------------------------------------ K: kill -9 mid-run, again and again
ok0(op(qw(key refresh --period 16s --within 4s --lapsed)), 'K: every record current again (the operator)');
ok0(as('alice', 'team', 'member', 'add', 'plat', "m$_", '--perm', 'service_accounts:tokens'), "K: member m$_")
    for 1 .. 40;
# every record fresh for the whole period first, and the kills over well
# within it: a refresher killed before each run renews nothing, so on a
# loaded machine the 40 adds and 8 kills outlasted a record's window and
# it lapsed (left alone, as a lapsed record is: not what K is about)
ok0(op(qw(key refresh --period 16s --within 15s --lapsed)), 'K: every record fresh for 15 s at least');
my $t0 = Time::HiRes::time();
my $restarts = metric('sa_admin_refresh_restarts_total');
for my $i (1 .. 8) {
    last if $i > 1 && Time::HiRes::time() - $t0 > 3;
    my ($pid) = $api->err =~ /.*refresh: every 1s, period 16s \(pid (\d+)\)/s;
    ok($pid && kill('KILL', $pid), "K $i: the refresher (pid $pid) killed -9");
    ok(SaTest::wait_until(10, sub { (metric('sa_admin_refresh_restarts_total') // 0) > $restarts }),
       "K $i: serve starts another");
    $restarts = metric('sa_admin_refresh_restarts_total');
    sleep 0.05 + rand(0.3);
}
my $runs_k = metric('sa_admin_refresh_runs_total') // 0;
ok(SaTest::wait_until(10, sub { (metric('sa_admin_refresh_runs_total') // 0) > $runs_k }),
   'K: the last refresher completes a run');
$r = op(qw(key refresh --period 16s --within 15s --dry-run --json));
is($r->{code}, 0, 'K: every record verifies (nothing half-written)') or diag $r->{err};
is($r->{json}{records}{refused}, 0, 'K: none refused') or diag explain $r->{json};
is($r->{json}{records}{lapsed}, 0, 'K: none lapsed');
cmp_ok($r->{json}{records}{read}, '>=', 45, 'K: all read');

# ------------------------------------------------ Z: Redis frozen during runs
my $runs = metric('sa_admin_refresh_runs_total') // 0;
$redis->pause;
sleep 3;
$redis->resume;
$tfu = fu($redis->cmd('GET', 'sa:team:plat'));
ok(renewed_past(sub { $redis->cmd('GET', 'sa:team:plat') }, $tfu), 'Z: after the freeze records are renewed on');
cmp_ok(metric('sa_admin_refresh_runs_total') // 0, '>', $runs, 'Z: runs go on');
ok0(as('carol', qw(token issue plat/ci)), 'Z: carol issues');

SaTest::expect_log(qr/refresher \(pid \d+\) ended/);
done_testing;
