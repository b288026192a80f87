# The admin API's own bounded replay window (issue 22, item 7): with
# SA_RECORD_MAX_AGE, a service account's token is refused at the admin API
# (t/lib/bearer-probe.c, the check `sa-admin serve` calls) when its record
# has no fresh_until, is past it, or lies more than the max age ahead, as a
# gateway with sa_record_max_age refuses it; off by default.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep time);
use SaTest;

my $probe = SaTest::probe('bearer-probe');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
# the account record a token's check reads carries a fresh_until too
# (t/admin/27-records-fresh.t): stamped, as SA_RECORD_MAX_AGE expects
my $st = SaTest::admin($redis, 'key', 'refresh', '--period', '1h');
die "key refresh: $st->{err}" if $st->{code};

sub issue {
    my ($period) = @_;
    my $r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_FRESH_PERIOD => $period },
                          'token', 'issue', 'platform/ci', '--scope', 'stacks:read');
    die "token issue: $r->{err}" if $r->{code};
    chomp(my $token = $r->{out});
    return ($token, SaTest::tid($token));
}
sub probe {
    my ($token, $max_age) = @_;
    my $r = SaTest::run([$probe], env => {
        SA_REDIS => $redis->url,
        SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
        SA_RECORD_MAX_AGE => $max_age,
        SA_AUTHORIZATION => "Bearer $token" });
    $r->{json} = eval { JSON::PP->new->decode($r->{out}) };
    return $r;
}
sub verdict { my $r = probe(@_); "$r->{code} " . ($r->{json}{why} // $r->{json}{status} // $r->{err}) }

my ($old) = issue(undef);
my ($fresh) = issue('30m');
my ($long) = issue('48h');
my ($short, $sid) = issue('2s');

is(verdict($old, undef), '0 ok', 'off by default: a record without fresh_until is a caller');
is(verdict($old, 'off'), '0 ok', 'SA_RECORD_MAX_AGE=off: the same');
is(verdict($fresh, '1h'), '0 ok', 'SA_RECORD_MAX_AGE=1h: a record fresh for 30 min is a caller');
like(verdict($old, '1h'), qr/^2 record refused: it has no fresh_until/, 'no fresh_until: refused (401)');
like(verdict($long, '1h'), qr/^2 record refused: its fresh_until lies more than SA_RECORD_MAX_AGE ahead/,
     'fresh for 48 h, max age 1 h: refused');
is(verdict($short, '1h'), '0 ok', 'fresh for 2 s: a caller');
my $until = JSON::PP->new->decode(($redis->cmd('GET', "sa:tok:$sid") =~ /^sa1\.[^.]+\.(.*)$/s)[0])->{fresh_until};
sleep 0.2 while time < $until + 1.1;
like(verdict($short, '1h'), qr/^2 record refused: its fresh_until has passed/, 'its fresh_until passed: refused');
is(verdict($short, undef), '0 ok', 'and without SA_RECORD_MAX_AGE still a caller');

my $r = probe($fresh, 'soon');
is($r->{code}, 1, 'SA_RECORD_MAX_AGE=soon: exit 1');
like($r->{err}, qr/SA_RECORD_MAX_AGE 'soon' is not a duration/, 'and says so');

done_testing;
