# The documentation's shape: README.md stays short (its sections moved to
# docs/, bench/README.md, t/README, CHANGES and the man page; a merge can
# silently bring them back), every file under docs/ is reachable from it,
# and every relative link in README.md, SECURITY.md and docs/*.md names a
# file that exists.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $root = SaTest::root();
my $readme = SaTest::slurp("$root/README.md");
my $lines = () = $readme =~ /\n/g;
cmp_ok($lines, '<=', 250, "README.md is short ($lines lines)");
for my $gone ('nginx directives', 'The cache', 'How the gateway talks to Redis', 'Metrics',
              'Performance', 'Scale-out', 'Debian packages', 'Notifications and webhooks',
              'Rotating the signing key', 'Changelog', 'sa-admin') {
    unlike($readme, qr/^## \Q$gone\E$/m, "README.md has no section '$gone' (it moved)");
}

for my $doc (map { s{^\Q$root\E/}{}r } glob "$root/docs/*.md") {
    like($readme, qr/\]\(\Q$doc\E\)/, "README.md links $doc");
}
for my $f ('bench/README.md', 't/README', 'CHANGES', 'SECURITY.md', 'admin-tool/sa-admin.1') {
    like($readme, qr/\]\(\Q$f\E\)/, "README.md links $f");
}

for my $file ('README.md', 'SECURITY.md', map { s{^\Q$root\E/}{}r } glob "$root/docs/*.md") {
    my $text = SaTest::slurp("$root/$file");
    my $dir = $file =~ m{^(.*)/} ? "$1/" : '';
    while ($text =~ /\]\(([^)#\s]+)(?:#[^)]*)?\)/g) {
        my $link = $1;
        next if $link =~ m{^[a-z]+://};
        ok(-e "$root/$dir$link", "$file: link $link exists");
    }
}

done_testing;
