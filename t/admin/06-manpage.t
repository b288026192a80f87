# sa-admin(1) (admin-tool/sa-admin.1, shipped by the sa-admin package) is
# checked against sa-admin's own --help output: every command's usage line
# appears in COMMANDS exactly as --help prints it, and COMMANDS has no other;
# every group has its subsection; every flag and environment variable that
# any --help names is documented; EXIT STATUS lists exactly the statuses the
# top-level --help names.  A new or changed command fails this test until
# the page says the same.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $page = SaTest::root() . '/admin-tool/sa-admin.1';
open my $fh, '<', $page or die "$page: $!";
my @troff = <$fh>;
close $fh;

# ------------------------------------------------ the page as plain lines
# (enough troff for this page: font and character escapes, the font macros)
sub plain {
    my ($s) = @_;
    $s =~ s/\\f(?:[BIRP]|\(..|\[[^]]*\])//g;
    $s =~ s/\\-/-/g;
    $s =~ s/\\\(aq/'/g;
    $s =~ s/\\\([lr]q/"/g;
    $s =~ s/\\[&%]//g;
    $s =~ s/\\e/\\/g;
    return $s;
}

my (%section, $sh);
for my $line (@troff) {
    chomp $line;
    next if $line =~ /^\.\\"/;
    if ($line =~ /^\.SH\s+"?([^"]+?)"?\s*$/) {
        $sh = $1;
        next;
    }
    next unless defined $sh;
    my $text;
    if ($line =~ /^\.(B|I)\s+(.*)$/) {
        $text = join ' ', map { defined $_->[0] ? $_->[0] : $_->[1] }
                          map { [$_ =~ /^"(.*)"$/ ? $1 : undef, $_] }
                          $2 =~ /("[^"]*"|\S+)/g;
    } elsif ($line =~ /^\.(?:[BIR][BIR])\s+(.*)$/) {
        $text = join '', map { /^"(.*)"$/ ? $1 : $_ } $1 =~ /("[^"]*"|\S+)/g;
    } elsif ($line =~ /^\.SS\s+(.*)$/) {
        $text = "SS $1";
    } elsif ($line =~ /^\./) {
        next;
    } else {
        $text = $line;
    }
    push @{ $section{$sh} }, plain($text);
}
my $all = join "\n", map { @$_ } values %section;

for my $s ('NAME', 'SYNOPSIS', 'DESCRIPTION', 'GLOBAL OPTIONS', 'COMMANDS',
           'EXIT STATUS', 'ENVIRONMENT', 'FILES')
{
    ok($section{$s}, "the page has $s");
}

# ------------------------------------------------ what --help says
# (its exit status is not this test's business)
sub help {
    my $r = SaTest::run([SaTest::admin_path(), @_, '--help']);
    like($r->{out}, qr/^usage:/, "sa-admin @_ --help prints a usage");
    return $r->{out};
}

my $top = help();
my ($groups) = $top =~ /^groups:\n((?:  \S.*\n)+)/m;
my @groups = ($groups // '') =~ /^  (\S+)/mg;
ok(@groups, 'sa-admin --help lists groups: ' . join(' ', @groups));

my (@usages, @helps);
push @helps, $top;

# walks a group's (or subgroup's) usage lines down to single commands
sub commands {
    my (@path) = @_;
    my $text = help(@path);
    my @found;
    for my $u ($text =~ /^(?:usage:)?\s*sa-admin (.*)$/mg) {
        my @words = split ' ', $u;
        my @cmd;
        push @cmd, shift @words while @words && $words[0] =~ /^[a-z][a-z-]*$/;
        if (@words && $words[0] =~ /^[a-z-]+(\|[a-z-]+)+$/) {
            push @found, commands(@cmd) unless "@cmd" eq "@path";
            next;
        }
        push @found, [@cmd];
    }
    return @found;
}

my %seen;
for my $g (@groups) {
    for my $cmd (commands($g)) {
        next if $seen{"@$cmd"}++;
        my $text = help(@$cmd);
        push @helps, $text;
        my ($usage) = $text =~ /^usage: (sa-admin .*)$/m;
        ok($usage, "sa-admin @$cmd --help has a usage line") or next;
        push @usages, $usage;
    }
}
cmp_ok(scalar @usages, '>=', scalar @groups, scalar(@usages) . ' commands');

# ------------------------------------------------ the comparisons
my %in_page = map { $_ => 1 } grep { /^sa-admin / } @{ $section{COMMANDS} };
for my $u (@usages) {
    ok(delete $in_page{$u}, "COMMANDS has: $u")
        or diag "add it to $page as --help prints it";
}
is_deeply([sort keys %in_page], [], 'COMMANDS names no command sa-admin lacks');

my %ss = map { /^SS (\S+)/ ? ($1 => 1) : () } @{ $section{COMMANDS} };
for my $g (@groups) {
    ok($ss{$g}, "COMMANDS has a subsection for '$g'");
}

my %flags = map { $_ => 1 } map { /(?<![\w-])(--[a-z][a-z-]*)/g } @helps;
for my $f (sort keys %flags) {
    like($all, qr/(?<![\w-])\Q$f\E(?![\w-])/, "the page documents $f");
}

my %env = map { $_ => 1 } map { /\b(SA_[A-Z_]+)\b/g } @helps;
my %env_page = map { $_ => 1 } grep { /^SA_[A-Z_]+$/ } @{ $section{ENVIRONMENT} };
ok(%env, 'the --help output names environment variables');
for my $v (sort keys %env) {
    ok($env_page{$v}, "ENVIRONMENT has $v");
}

my ($exits) = $top =~ /^exit status: (.*?)(?:\n\n|\n?\z)/ms;
my @codes = ($exits // '') =~ /(?:^|[,\s])(\d+) /g;
ok(@codes, 'sa-admin --help names exit statuses: ' . join(' ', @codes));
my @page_codes = grep { /^\d+$/ } @{ $section{'EXIT STATUS'} };
is_deeply([sort @page_codes], [sort @codes], 'EXIT STATUS lists exactly those');

SKIP: {
    skip 'groff is not installed', 1
        unless grep { -x "$_/groff" } split /:/, $ENV{PATH};
    my $r = SaTest::run(['groff', '-man', '-ww', '-z', '-Tutf8', $page]);
    is("$r->{code} $r->{err}", '0 ', 'groff formats it without a warning');
}

done_testing();
