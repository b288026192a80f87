#!/usr/bin/perl
# The C unit tests again, built with AddressSanitizer and UBSan ('make asan'):
# each must pass and the sanitizers must stay silent.
use strict;
use warnings;
use FindBin;
use Test::More;

my $dir = "$FindBin::Bin/../../build/asan/tests";
my @bins = sort glob("$dir/test_*");
plan skip_all => "no sanitizer build in $dir: run 'make asan'" unless @bins;

$ENV{ASAN_OPTIONS} = 'detect_leaks=1:abort_on_error=0';
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1';

for my $bin (@bins) {
    my $out = `$bin 2>&1`;
    my $code = $? >> 8;
    my ($name) = $bin =~ m{/(test_\w+)$};
    is($code, 0, "$name passes under ASan/UBSan") or diag $out;
    unlike($out, qr/ERROR: (Address|Leak)Sanitizer|runtime error:/, "$name: no sanitizer report")
        or diag $out;
    like($out, qr/^1\.\.\d+$/m, "$name ran its plan");
}

done_testing;
