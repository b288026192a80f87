# The end-of-file log check (SaTest::_log_check): a test script that
# started nginx ends with one more test, which fails on an unexpected
# [alert] or sanitizer report and passes when the script declared it.
# Each case runs t/harness/fixtures/log-check.pl as a child perl.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $fixture = SaTest::root() . '/t/harness/fixtures/log-check.pl';
my $name = qr/logs: no alert, emerg, crash or sanitizer report/;
# the fixtures' own output holds the planted lines
SaTest::expect_log(qr/planted/);

sub fixture {
    my ($what) = @_;
    my $r = SaTest::run([$^X, $fixture], env => { LOG_CHECK => $what }, timeout => 60);
    return ($r->{code}, $r->{out} . $r->{err});
}

my ($code, $out) = fixture('');
is($code, 0, 'a clean script passes') or diag $out;
like($out, qr/^ok 2 - $name$/m, 'and its check is a test of its own');
like($out, qr/^1\.\.2$/m, 'counted in the plan');

($code, $out) = fixture('alert');
isnt($code, 0, 'an unexpected [alert] fails the script');
like($out, qr/^not ok 2 - $name$/m, 'through the check');
like($out, qr/error\.log: .*\[alert\] 1#1: planted alert/, 'which names the log and the line');

($code, $out) = fixture('alert,expect');
is($code, 0, 'an [alert] the script declared with expect_log passes') or diag $out;

($code, $out) = fixture('asan');
isnt($code, 0, 'a sanitizer report on a command\'s stderr fails the script');
like($out, qr/sh stderr: .*runtime error: planted/, 'naming the command');

($code, $out) = fixture('alert,die');
isnt($code, 0, 'a script that dies fails');
like($out, qr/^not ok 2 - $name$/m, 'and still gets the check');

done_testing;
