# The attack review of usage and source networks in sa-admin (issue 25,
# items 4 and 5): token usage / account usage with bad input (--days of
# every wrong shape, an unknown token, the token itself), malformed usage
# in Redis (10 kB, negative, over 2^52, a string or a list for a day's
# hash, counts whose sum would overflow: fixed, they are added saturating,
# they overflowed a signed 64-bit sum), over the admin API as well (400,
# 404, 403 for another team's token); --allow-from with IPv6, IPv4-mapped
# IPv6, /0 and bad networks (a usage error, exit 1, nothing written).
# Runs locally and with SA_TEST_API=1 through serve.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use POSIX qw(strftime);
use SaTest;

my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
sub as_bob { SaTest::admin($redis, { SA_ACTOR => 'bob' }, @_) }

as(qw(team create platform --owner alice));
as(qw(team create other --owner bob));
SaTest::apps($redis, 'platform', qw(api));
SaTest::apps($redis, 'other', qw(api2));
as(qw(account create platform ci --app api));
SaTest::admin($redis, { SA_ACTOR => 'bob' }, qw(account create other svc --app api2));
my @ids = map { SaTest::tid(SaTest::issue_token($redis, 'platform/ci', 'a:b')) } 1 .. 3;
my $bobr = as_bob(qw(token issue other/svc --scope a:b));
chomp(my $bobt = $bobr->{out});
my $bobs = SaTest::tid($bobt);

# the layout of a day's usage, in one place: one hash a day for all
# tokens, fields <id>:<verdict>
sub day { strftime('%Y%m%d', gmtime(time - $_[0] * 86400)) }
sub usage_key { my ($ago) = @_; 'sa:usage:' . day($ago) }
sub put_usage { my ($id, $ago, @c) = @_; my %c = @c; $redis->cmd('HSET', usage_key($ago), map { ("$id:$_" => $c{$_}) } sort keys %c) }

# --days of every wrong shape: a usage error, exit 1
for my $bad ('0', '-1', '91', '+5', ' 5', '5 ', '1e1', '0x10', '', 'ten',
             '99999999999999999999', "5\n", '५') {
    my $r = as(qw(token usage), $ids[0], '--days', $bad);
    is($r->{code}, 1, "token usage --days '" . ($bad =~ s/\n/\\n/r) . "': a usage error");
    is(as(qw(account usage platform/ci --days), $bad)->{code}, 1, "account usage too");
}
is(as(qw(token usage), $ids[0], qw(--days 90))->{code}, 0, '--days 90 is the most');
is(as(qw(token usage), $ids[0], qw(--days 1))->{code}, 0, '--days 1 the least');
my $r;
for my $bad ('AAAAAAAAAAAAAAAA', 'a' x 15, 'a' x 17, '../../etc/passwd', '*', 'sa:tok:*', 'x' x 10240) {
    $r = as(qw(token usage), $bad);
    ok($r->{code} == 1 || $r->{code} == 2, 'token usage ' . substr($bad, 0, 20) . ": refused ($r->{code})");
    unlike($r->{err}, qr/^$/, 'with a message');
}
$r = as(qw(account usage), 'x' x 10240);
ok($r->{code} == 1 || $r->{code} == 2, "account usage of a 10 kB name: refused ($r->{code})");
like($r->{err}, qr/^sa-admin: /, 'said');

# malformed usage in Redis: read as 0 and said, never a crash
put_usage($ids[0], 0, 'admitted', 'x' x 10240, 'revoked', -3,
          'expired', '4503599627370497', 'lapsed', '9' x 30, 'rate_limited', 4);
$redis->cmd('RPUSH', usage_key(1), 'a', 'b');
$redis->cmd('SET', usage_key(2), 'x' x 10240);
put_usage($ids[0], 3, 'admitted', 5);
$redis->cmd('HSET', usage_key(3), 'f' x 10240, 7, "$ids[0]:" . ('f' x 10240), 7);
$r = as(qw(token usage), $ids[0], '--json');
is($r->{code}, 0, 'malformed usage: answered') or diag $r->{err};
is(join(' ', map { $r->{json}{total}{$_} } qw(admitted rate_limited revoked expired lapsed)), '5 4 0 0 0',
   'the counts that are counts, the rest as 0');

# counts that add up past 2^63 (a writer's 2^52 everywhere): saturating
my @fields = qw(admitted rate_limited quota_exceeded forbidden_source insufficient_scope
                forbidden_application expired revoked lapsed);
my $big = '4503599627370496';     # 2^52, the most a gateway writes
$redis->cmd('DEL', usage_key($_)) for 0 .. 89;
for my $id (@ids) {
    put_usage($id, $_, map { ($_ => $big) } @fields) for 0 .. 89;
}
$r = as(qw(account usage platform/ci --days 90 --json));
is($r->{code}, 0, 'account usage of 3 tokens x 90 days x 2^52 everywhere: answered') or diag $r->{err};
my $refused = $r->{json}{total}{refused} // -1;
ok($refused > 0, "the refused total does not wrap ($refused)");
is($r->{json}{total}{refused}, '9223372036854775807', 'it stops at 2^63 - 1');
ok((!grep { $_ < 0 } map { values %{ $_->{total} } } @{ $r->{json}{tokens} }), 'no token\'s count is negative');
$r = as(qw(account usage platform/ci --days 90));
is($r->{code}, 0, 'the table too');
unlike($r->{out}, qr/(?:^|\s)-\d/m, 'no negative number in it');

# another team's token: refused over the API; unknown ones 404
if (SaTest::api_pass()) {
    $r = as_bob(qw(token usage), $ids[1]);
    is($r->{code}, 2, "over the API another team's token is refused");
} else {
    my $serve = SaTest::Serve->start(redis => $redis, args => ['--listen', '127.0.0.1:0']);
    chomp(my $tok = SaTest::operator($redis, qw(user token issue bob))->{out});
    my $api = sub { $serve->req(GET => $_[0], headers => { Authorization => "Bearer $tok" }) };
    is($api->("/v1/tokens/$bobs/usage")->{status}, 200, 'API: bob reads his own token\'s usage');
    is($api->("/v1/tokens/$ids[1]/usage")->{status}, 403, 'API: another team\'s token: 403');
    is($api->('/v1/accounts/platform%2Fci/usage')->{status}, 403, 'API: another team\'s account: 403');
    is($api->('/v1/tokens/AAAAAAAAAAAAAAAA/usage')->{status}, 404, 'API: an unknown token: 404');
    for my $bad ('0', '91', '-1', 'x', '1e1', '%205', '99999999999999999999') {
        is($api->("/v1/tokens/$bobs/usage?days=$bad")->{status}, 400, "API: days=$bad: 400");
    }
    my $x = $api->("/v1/tokens/$bobs/usage?days=5&days=6");
    ok($x->{status} == 400 || $x->{status} == 200, "API: days given twice: $x->{status}, never a crash");
    is($api->("/v1/tokens/$bobs/usage?nope=1")->{status}, 400, 'API: an unknown parameter: 400');
}

# --allow-from: IPv6, IPv4-mapped, /0; bad networks are usage errors
my %good = ('::ffff:192.0.2.7' => '192.0.2.7/32', '::ffff:10.0.0.0/104' => '10.0.0.0/8',
            '::/0' => '::/0', '0.0.0.0/0' => '0.0.0.0/0', '2001:DB8:0:0::/64' => '2001:db8::/64',
            '::1' => '::1/128', '::ffff:0.0.0.0/96' => '0.0.0.0/0');
for my $net (sort keys %good) {
    $r = as(qw(token issue platform/ci --scope a:b --json --allow-from), $net);
    is($r->{code}, 0, "--allow-from $net") or diag $r->{err};
    is_deeply($r->{json}{allow_from}, [$good{$net}], "kept as $good{$net}");
}
my $before = $redis->digest_but_audit;
for my $bad ('1.2.3.4/', '/8', '1.2.3.0/33', '::/129', '1.2.3.0/-1', '1.2.3.0/08', '1.2.3.4/ 32',
             '::ffff:1.2.3.0/95', '1.2.3', '1.2.3.4.5', '256.0.0.0/8', 'fe80::1%eth0', '[::1]',
             '::1/128/1', '1:2:3:4:5:6:7:8:9', '0x7f000001', '', ' ', 'x' x 10240, "10.0.0.0/8\n",
             '10.0.0.0/8,10.1.0.0/16') {
    $r = as(qw(token issue platform/ci --scope a:b --allow-from), $bad);
    is($r->{code}, 1, "--allow-from '" . substr($bad =~ s/\n/\\n/r, 0, 24) . "': a usage error, exit 1");
}
is($redis->digest_but_audit, $before, 'nothing written by any of them');

done_testing;
