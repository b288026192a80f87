# A token's last use when it authenticates at the admin API (issue 22,
# left open): a service account's token (sat_) writes tok:<id>:used as a
# gateway does (token list's "last used"), a personal token (sap_)
# ptok:<id>:used, expiring with its record (user token list's); the time
# alone, never the secret; at most once a minute per token for all the
# workers (a worker of after a SIGHUP too); a refused token writes none.
# serve runs under t/lib/timewarp.c to step its wall clock past the minute.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');
my $warp_so = SaTest::build_dir() . '/tests/timewarp.so';
plan skip_all => "$warp_so is not built: run 'make'" unless -e $warp_so;

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($sat, $tid) = $f->issue('--scope', 'api:read');
my ($gone, $gone_id) = $f->issue;
SaTest::admin($redis, { SA_ACTOR => 'alice' }, 'token', 'revoke', $gone_id);
chomp(my $sap = SaTest::operator($redis, qw(user token issue alice --expires 30d))->{out});
my $pid = SaTest::tid($sap);

my $warp = SaTest::new_dir('warp') . '/offsets';
SaTest::write_file($warp, pack('q<q<', 0, 0));
sub warp { my ($wall) = @_; open my $fh, '+<:raw', $warp or die; syswrite($fh, pack('q<q<', 0, $wall * 1000)) == 16 or die; close $fh }
# (the ASan build of make test: its runtime need not come first)
my $asan = join ':', grep { length } $ENV{ASAN_OPTIONS} // '', 'verify_asan_link_order=0';
my $api = SaTest::Serve->start(redis => $redis, env => { LD_PRELOAD => $warp_so, SA_TIMEWARP => $warp,
                                                         ASAN_OPTIONS => $asan },
                               args => [ '--listen', '127.0.0.1:0', '--workers', 2 ]);
sub me { $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $_[0]" }) }
sub used { $redis->cmd('GET', $_[0]) }

is(used("sa:tok:$tid:used"), undef, 'never used: no tok:<id>:used');
my $t0 = time;
my $r = me($sat);
is($r->{status}, 200, 'a service account token authenticates') or diag $r->{raw};
my $v = used("sa:tok:$tid:used");
like($v // '', qr/^\d+$/, 'tok:<id>:used written: a time alone');
cmp_ok(abs(($v // 0) - $t0), '<=', 2, 'now');
my $l = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(token list platform/ci --json));
my ($row) = grep { $_->{id} eq $tid } @{ $l->{json} // [] };
ok(defined $row->{last_used_at}, 'token list shows its last use') or diag explain $row;
$l = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(token list platform/ci));
like($l->{out}, qr/^\Q$tid\E\s+active\s+\S+\s+\S+\s+\d{4}-\d\d-\d\dT/m, 'in the LAST USED column');

# within the minute: not written again, by either worker
$redis->cmd('SET', "sa:tok:$tid:used", '1');
is(me($sat)->{status}, 200, 'used again') for 1 .. 6;
is(used("sa:tok:$tid:used"), '1', 'not written again within the minute (6 requests, 2 workers)');
my %old = map { $_ => 1 } $api->workers;
kill 'HUP', $api->pid;
ok(SaTest::wait_until(10, sub { my @w = $api->workers; @w == 2 && !grep { $old{$_} } @w }),
   'SIGHUP: two new workers');
is(me($sat)->{status}, 200, 'used again') for 1 .. 4;
is(used("sa:tok:$tid:used"), '1', 'nor by the workers after a SIGHUP (the memory is shared)');

# a minute later: written again
warp(61);
is(me($sat)->{status}, 200, 'a minute later');
$v = used("sa:tok:$tid:used");
cmp_ok(abs(($v // 0) - ($t0 + 61)), '<=', 3, 'written again, at the (warped) time');
warp(0);

# a personal token
is(used("sa:ptok:$pid:used"), undef, 'a personal token never used: none');
$r = me($sap);
is($r->{status}, 200, 'a personal token authenticates') or diag $r->{raw};
like(used("sa:ptok:$pid:used") // '', qr/^\d+$/, 'ptok:<id>:used written: a time alone');
my $exp = SaTest::operator($redis, qw(user token list alice --json))->{json};
my ($p) = grep { $_->{id} eq $pid } @$exp;
ok(defined $p->{last_used_at}, 'user token list --json: last_used_at') or diag explain $p;
my $ttl = $redis->cmd('TTL', "sa:ptok:$pid:used");
cmp_ok(abs($ttl - $redis->cmd('TTL', "sa:ptok:$pid")), '<=', 2, 'it expires with the record (a week after the token)');
like(SaTest::operator($redis, qw(user token list alice))->{out},
     qr/^\Q$pid\E\s+active\s+\S+\s+\S+\s+\d{4}-\d\d-\d\dT/m, 'and in the text');

# refused: nothing written
is(me($gone)->{status}, 401, 'a revoked token: 401');
is(used("sa:tok:$gone_id:used"), undef, 'no last use written');
my $wrong = SaTest::with_check(substr($sat, 0, 21) . ('A' x 43));
$redis->cmd('DEL', "sa:tok:$tid:used");
is(me($wrong)->{status}, 401, 'its id with a wrong secret: 401');
is(used("sa:tok:$tid:used"), undef, 'no last use written');

# never the secret
my ($secret) = $sat =~ /^sat_\w{16}_(\S{43})/;
my ($psecret) = $sap =~ /^sap_\w{16}_(\S{43})/;
my @hits = grep { my $t = $redis->cmd('TYPE', $_); $t eq 'string'
                  && (($redis->cmd('GET', $_) // '') =~ /\Q$secret\E|\Q$psecret\E/ || /\Q$secret\E|\Q$psecret\E/) }
           @{ $redis->cmd('KEYS', '*') };
is_deeply(\@hits, [], 'no key or string value holds either secret');

ok($api->stop, 'serve stops');
done_testing;
