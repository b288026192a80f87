# sa-admin --version: "sa-admin VERSION" and exit 0, as a global option
# anywhere on the line (no Redis needed), {"version": VERSION} with --json.
# VERSION is the first entry of debian/changelog, the version's one home:
# the packages of 'make deb' carry the same (make test-deb checks the
# installed ones).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

my $changelog = SaTest::root() . '/debian/changelog';
open my $fh, '<', $changelog or die "$changelog: $!";
my $first = <$fh>;
close $fh;
my ($source, $version) = $first =~ /^(\S+) \(([^)\s]+)\) /
    or BAIL_OUT("$changelog: no version on its first line");
is($source, 'sa-gateway', 'debian/changelog is the source package\'s');
like($version, qr/^[0-9][0-9.]*$/, "a native version ($version)");

SKIP: {
    skip 'dpkg-parsechangelog is not installed', 1
        unless grep { -x "$_/dpkg-parsechangelog" } split /:/, $ENV{PATH};
    my $r = SaTest::run(['dpkg-parsechangelog', '-l', $changelog, '-S', 'Version']);
    is($r->{out}, "$version\n", 'dpkg-parsechangelog reads the same version');
}

# no Redis behind this URL: --version must not need one
my %env = (SA_REDIS => 'redis://127.0.0.1:1/0');
sub sa { SaTest::run([SaTest::admin_path(), @_], env => \%env) }

for my $args (['--version'], [qw(team --version)],
              [qw(token issue platform/ci --scope a:b --version)],
              [qw(--as alice --version --redis redis://127.0.0.1:1/0)])
{
    my $r = sa(@$args);
    is($r->{code}, 0, "sa-admin @$args: exit 0") or diag $r->{err};
    is($r->{out}, "sa-admin $version\n", "sa-admin @$args: the version");
    is($r->{err}, '', "sa-admin @$args: nothing on stderr");
}

for my $args ([qw(--json --version)], [qw(--version --json)],
              [qw(account list platform --version --json)])
{
    my $r = sa(@$args);
    is($r->{code}, 0, "sa-admin @$args: exit 0");
    my $doc = eval { JSON::PP->new->decode($r->{out}) };
    is_deeply($doc, { version => $version }, "sa-admin @$args: {\"version\": \"$version\"}")
        or diag $r->{out};
}

# after "--" it is an operand, not the option
my $r = sa(qw(-- --version));
isnt($r->{code}, 0, 'sa-admin -- --version: not the option');
unlike($r->{out}, qr/\Q$version\E/, 'and no version printed');

$r = sa('--help');
like($r->{out}, qr/^  --version +print the version and exit$/m, '--help lists --version');

done_testing();
