#!/usr/bin/perl
# Runs the C unit test build/tests/test_policy, which prints TAP itself.
use strict;
use warnings;
use FindBin;

my $bin = "$FindBin::Bin/../../build/tests/test_policy";
-x $bin or die "$bin is not built: run 'make' first\n";
exec $bin or die "cannot run $bin: $!\n";
