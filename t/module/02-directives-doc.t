# docs/directives.md is checked against the module's own tables, as
# t/admin/06-manpage.t checks sa-admin(1) against --help: every directive in
# an ngx_command_t table of ngx_sa_module/*.c has a section there with
# Syntax, Default and Context lines, its Context names exactly the contexts
# the directive's flags allow, and a flag directive's Syntax says "on | off";
# the page documents no directive the module lacks; every variable of the
# module's ngx_http_variable_t tables is in the Variables table.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $root = SaTest::root();
my $doc = SaTest::slurp("$root/docs/directives.md");
ok(length $doc, 'docs/directives.md exists');

# ------------------------------------------------ what the module registers
my (%directive, %variable);
for my $file (glob "$root/ngx_sa_module/*.c") {
    my $src = SaTest::slurp($file);
    $src =~ s{/\*.*?\*/}{}gs;
    while ($src =~ /ngx_command_t\s+\w+\s*\[\]\s*=\s*\{(.*?)ngx_null_command/gs) {
        my $table = $1;
        while ($table =~ /\{\s*ngx_string\("(\w+)"\)\s*,\s*([^,]+),/g) {
            my ($name, $flags) = ($1, $2);
            $directive{$name} = { flags => $flags, file => $file };
        }
    }
    while ($src =~ /ngx_http_variable_t\s+\w+\s*\[\]\s*=\s*\{(.*?)ngx_http_null_variable/gs) {
        my $table = $1;
        $variable{$1} = 1 while $table =~ /\{\s*ngx_string\("(\w+)"\)/g;
    }
}
cmp_ok(scalar keys %directive, '>=', 10, 'the parser finds the directive tables')
    or diag join ' ', sort keys %directive;
cmp_ok(scalar keys %variable, '>=', 5, 'and the variable tables');

# nginx.org's order of contexts
my @CONTEXTS = (
    [qr/NGX_HTTP_MAIN_CONF\b/, 'http'],
    [qr/NGX_HTTP_SRV_CONF\b/,  'server'],
    [qr/NGX_HTTP_LOC_CONF\b/,  'location'],
    [qr/NGX_HTTP_LMT_CONF\b/,  'limit_except'],
);

# ------------------------------------------------ what the page documents
my %section;
while ($doc =~ /^### (\S+)\n\n((?: {4}.*\n)+)/mg) {
    my ($name, $block) = ($1, $2);
    my %f;
    $f{lc $1} = $2 while $block =~ /^ {4}(Syntax|Default|Context):\s+(.*?)\s*$/mg;
    $section{$name} = \%f;
}

for my $name (sort keys %directive) {
    my $d = $directive{$name};
    my $s = $section{$name};
    ok($s, "$name is documented") or next;
    like($s->{syntax} // '', qr/^\Q$name\E(?:\s|;)/, "$name: Syntax names it");
    like($s->{syntax} // '', qr/;$/, "$name: Syntax ends with ;");
    ok(defined $s->{default}, "$name: Default given");
    like($s->{default}, qr/^(?:—|\Q$name\E .*;)$/, "$name: Default is — or the directive as written")
        if defined $s->{default};
    my $want = join ', ', map { $_->[1] } grep { $d->{flags} =~ $_->[0] } @CONTEXTS;
    is($s->{context}, $want, "$name: Context is what its flags allow");
    like($s->{syntax}, qr/\bon \| off;$/, "$name: a flag takes on | off")
        if $d->{flags} =~ /NGX_CONF_FLAG/;
    like($s->{syntax}, qr/^\Q$name\E;$/, "$name: takes no arguments")
        if $d->{flags} =~ /NGX_CONF_NOARGS/;
}
for my $name (sort keys %section) {
    ok($directive{$name}, "documented directive $name exists in the module");
}

my ($vars) = $doc =~ /^## Variables\n(.*?)(?=^## |\z)/ms;
for my $name (sort keys %variable) {
    like($vars // '', qr/^\| `\$\Q$name\E` \|/m, "variable \$$name is documented");
}
for my $name ((($vars // '') =~ /^\| `\$(\w+)` \|/mg)) {
    ok($variable{$name}, "documented variable \$$name exists in the module");
}

# the README points here
like(SaTest::slurp("$root/README.md"), qr{\(docs/directives\.md\)}, 'README.md links the page');

done_testing;
