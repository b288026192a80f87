# sa-admin token usage / account usage (issue 25, item 5): the per-day
# hashes the gateways' sync writes (<prefix>usage:<YYYYMMDD>, fields
# <id>:<verdict>), read
# back as a table and --json, over --days N (1 to 90, default 30): days
# newest first, only those with requests, totals; account usage sums its
# tokens and gives each one's total and last day.  Written here directly,
# as the module does (t/module/57-quota.t counts real requests); a value
# that is not a count is read as 0 and said; unknown fields are ignored;
# a reader of another team is refused; bad --days is a usage error.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use POSIX qw(strftime);
use SaTest;

my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }

as(qw(team create platform --owner alice));
as(qw(team create other --owner bob));
SaTest::apps($redis, 'platform', qw(api));
as(qw(account create platform ci --app api));
my $t1 = SaTest::tid(SaTest::issue_token($redis, 'platform/ci', 'a:b'));
my $t2 = SaTest::tid(SaTest::issue_token($redis, 'platform/ci', 'a:b'));
my $t3 = SaTest::tid(SaTest::issue_token($redis, 'platform/ci', 'a:b'));

sub day { my ($ago, $fmt) = @_; strftime($fmt // '%Y%m%d', gmtime(time - $ago * 86400)) }
# a token's counts of a day, as the gateways write them
sub put {
    my ($id, $ago, %c) = @_;
    $redis->cmd('HSET', 'sa:usage:' . day($ago), map { ("$id:$_" => $c{$_}) } sort keys %c);
}

put($t1, 0, admitted => 120, rate_limited => 7, quota_exceeded => 3);
put($t1, 2, admitted => 5, insufficient_scope => 1);
put($t1, 40, admitted => 1000);
put($t2, 2, admitted => 2, forbidden_source => 4, bogus => 99);

my $r = as(qw(token usage), $t1, '--json');
is($r->{code}, 0, 'token usage --json') or diag $r->{err};
my $u = $r->{json};
is($u->{token}, $t1, 'the token');
is($u->{days}, 30, 'the last 30 days by default');
is_deeply([map { $_->{date} } @{ $u->{usage} }], [day(0, '%Y-%m-%d'), day(2, '%Y-%m-%d')],
          'the days with requests, newest first; 40 days ago is outside');
is("$u->{usage}[0]{admitted} $u->{usage}[0]{refused} $u->{usage}[0]{rate_limited} $u->{usage}[0]{quota_exceeded}",
   '120 10 7 3', 'today: admitted, refused and by reason');
is("$u->{total}{admitted} $u->{total}{refused} $u->{total}{insufficient_scope}", '125 11 1', 'the total');
is($u->{total}{forbidden_source}, 0, 'reasons not seen are 0');

$r = as(qw(token usage), $t1, qw(--days 60 --json));
is($r->{json}{total}{admitted}, 1125, '--days 60 reaches 40 days back');

$r = as(qw(token usage), $t1);
is($r->{code}, 0, 'the table');
like($r->{out}, qr/^DATE\s+ADMITTED\s+REFUSED\s+RATE_LIMITED\s+QUOTA_EXCEEDED\s+INSUFFICIENT_SCOPE\s*$/m,
     'columns: the refusals that happened');
like($r->{out}, qr/^\Q${\ day(0, '%Y-%m-%d')}\E\s+120\s+10\s+7\s+3\s+0$/m, 'a row per day');
like($r->{out}, qr/^total\s+125\s+11\s+7\s+3\s+1$/m, 'and the total');

$r = as(qw(token usage), $t3);
like($r->{out}, qr/no request counted in the last 30 days/, 'an unused token says so');

$r = as(qw(account usage platform/ci --json));
is($r->{code}, 0, 'account usage --json') or diag $r->{err};
$u = $r->{json};
is("$u->{total}{admitted} $u->{total}{refused}", '127 15', 'all its tokens together');
my %tok = map { $_->{id} => $_ } @{ $u->{tokens} };
is(scalar keys %tok, 3, 'each of its tokens');
is($tok{$t2}{last_day}, day(2, '%Y-%m-%d'), 'with its last day');
is($tok{$t3}{last_day}, undef, 'none for an unused one');
is($tok{$t2}{total}{forbidden_source}, 4, 'and its counts; an unknown field is ignored');
my ($two) = grep { $_->{date} eq day(2, '%Y-%m-%d') } @{ $u->{usage} };
is($two->{admitted}, 7, 'a day sums the tokens');
$r = as(qw(account usage platform/ci));
like($r->{out}, qr/^TOKEN\s+ADMITTED\s+REFUSED\s+LAST DAY$/m, 'the table has the tokens too');
like($r->{out}, qr/^$t3\s+0\s+0\s+-$/m, 'an unused token: -');

# hostile values: read as 0, said
put($t3, 0, admitted => 'lots', revoked => '-5', expired => '1e99', lapsed => 2, rate_limited => ' 7');
$r = as(qw(token usage), $t3, '--json');
is($r->{code}, 0, 'values that are not counts do not stop it');
is("$r->{json}{total}{admitted} $r->{json}{total}{revoked} $r->{json}{total}{rate_limited} $r->{json}{total}{lapsed}", '0 0 0 2', 'they are read as 0');
like($r->{err}, qr/'admitted' is not a count/, 'and said on stderr') unless SaTest::api_pass();
$redis->cmd('SET', 'sa:usage:' . day(1), 'a string');
$r = as(qw(token usage), $t3, '--json');
is($r->{code}, 0, 'a key of another type is no day');
is($r->{json}{total}{lapsed}, 2, 'and the other days are read');

# the day's counts of many tokens: one HMGET per day and 500 tokens, in one
# pipeline; each token's own counts, none lost between slices
my @many = map { sprintf 'M%015d', $_ } 1 .. 1200;
$redis->cmd('HSET', 'sa:usage:' . day(3), map { ("$many[$_]:admitted" => $_ + 1) } 0 .. $#many);
put($t2, 3, rate_limited => 5);
my $hm0 = $redis->calls('hmget');
$r = as(qw(token usage), $t2, qw(--days 5 --json));
is($redis->calls('hmget') - $hm0, 5, 'token usage --days 5: 5 HMGETs, one per day');
is($r->{json}{total}{rate_limited}, 5, 'the token\'s count, not another\'s in the same hash');
as(qw(account create platform big --app api));
my $out = as(qw(token issue platform/big --scope a:b --count 1001))->{out};
my @big = map { SaTest::tid($_) } grep { /^sat_/ } split /\n/, $out;
is(scalar @big, 1001, 'an account of 1001 tokens');
$redis->cmd('HSET', 'sa:usage:' . day(4), map { ("$big[$_]:admitted" => 1, "$big[$_]:revoked" => $_ % 2) } 0 .. $#big);
$hm0 = $redis->calls('hmget');
$r = as(qw(account usage platform/big --days 5 --json));
is($redis->calls('hmget') - $hm0, 15, 'account usage of 1001 tokens over 5 days: 15 HMGETs (3 slices of at most 500 a day)');
is("$r->{json}{total}{admitted} $r->{json}{total}{revoked}", '1001 500', 'every token counted once');
is(scalar(grep { $_->{total}{admitted} == 1 && $_->{last_day} eq day(4, '%Y-%m-%d') } @{ $r->{json}{tokens} }), 1001,
   'each with its own count and day');

# refusals
$r = SaTest::admin($redis, { SA_ACTOR => 'bob' }, qw(token usage), $t1);
if (SaTest::api_pass()) {
    is($r->{code}, 2, "over the API another team's owner is refused");
    like($r->{err}, qr/needs membership/, 'it needs membership');
} else {
    is($r->{code}, 0, 'locally reads are not checked (as token list)');
}
$r = as(qw(token usage), $t1, qw(--days 0));
is($r->{code}, 1, '--days 0 is a usage error');
like($r->{err}, qr/invalid days '0'/, 'named');
is(as(qw(token usage), $t1, qw(--days 91))->{code}, 1, '--days 91 too');
is(as(qw(token usage), $t1, qw(--days 3x))->{code}, 1, 'and 3x');
is(as(qw(token usage))->{code}, 1, 'no token id');
is(as(qw(token usage), "sat_$t1")->{code}, 1, 'the token itself is refused');
is(as(qw(token usage AAAAAAAAAAAAAAAA))->{code}, 2, 'an unknown token: not found');
is(as(qw(account usage platform/nope))->{code}, 2, 'an unknown account: not found');
like(as(qw(token usage --help))->{out}, qr/token usage TOKEN_ID \[--days N\]/, '--help');

done_testing;
