# GET /v1/openapi.json (issue 22, item 2): sa-admin serve answers the
# OpenAPI 3.1 document of schema/openapi.json, embedded at build time,
# without a credential; the document and the server's real routes agree
# both ways: every route of the ops registry (admin-tool/ops/registry.c)
# and every built-in route (admin-tool/serve/http.c) is in it with its
# method, path parameters and success status, and every path and method
# it documents is routed by the running server (neither 404 "no route"
# nor 405); an operation's documented inputs are the fields its C code
# accepts (sa_in_only()); errors are problem+json; the security schemes
# are the bearer tokens and the trusted proxy's user header.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use SaTest;

SaTest::require_build('sa-admin');

my $root = SaTest::root();
my $file = JSON::PP->new->decode(SaTest::slurp("$root/schema/openapi.json"));

my $redis = SaTest::Redis->start;
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--workers', 1 ]);

# served, without a credential, the document of the file
my $r = $api->req(GET => '/v1/openapi.json');
is($r->{status}, 200, 'GET /v1/openapi.json: 200 without a credential') or diag $r->{raw};
is($r->{headers}{'content-type'}, 'application/json', 'as JSON');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'with the security headers');
is_deeply($r->{json}, $file, 'the document served is schema/openapi.json');
my $doc = $r->{json} // {};
is($api->req(POST => '/v1/openapi.json', json => {})->{status}, 405,
   'read with GET only: 405');

is($doc->{openapi}, '3.1.0', 'OpenAPI 3.1');
ok(length($doc->{info}{title} // '') && length($doc->{info}{version} // ''),
   'info: a title and a version');
my $sec = $doc->{components}{securitySchemes} // {};
is_deeply([ sort keys %$sec ], [qw(bearer proxyUser)], 'two security schemes');
is("$sec->{bearer}{type} $sec->{bearer}{scheme}", 'http bearer', 'bearer: HTTP bearer');
like($sec->{bearer}{description} // '', qr/sat_.*sap_/, 'bearer: sat_ and sap_ tokens');
is("$sec->{proxyUser}{type} $sec->{proxyUser}{in} $sec->{proxyUser}{name}",
   'apiKey header X-Forwarded-User', 'proxyUser: the user header');
like($sec->{proxyUser}{description} // '', qr/--trusted-listen/, 'proxyUser: on a trusted listener only');
is_deeply([ sort map { keys %$_ } @{ $doc->{security} // [] } ], [qw(bearer proxyUser)],
          'by default an operation takes either');

# the real routes: the registry, then the built-ins
my $reg = SaTest::slurp("$root/admin-tool/ops/registry.c");
my (%route, @local);
while ($reg =~ /\{\s*"([a-z.]+)",\s*(sa_op_\w+),\s*(NULL|"(\w+)"),\s*(NULL|"([^"]+)"),\s*(\d+),/g) {
    my ($name, $fn, $method, $path, $status) = ($1, $2, $4, $6, $7);
    if (!defined $method) { push @local, $name; next }
    $route{$name} = { fn => $fn, method => $method, path => $path, status => $status, authn => 1 };
}
cmp_ok(scalar keys %route, '>=', 30, 'the registry read: ' . scalar(keys %route) . ' routed operations');
ok(scalar @local, 'and local ones: ' . join(' ', @local));
my $http = SaTest::slurp("$root/admin-tool/serve/http.c");
my ($builtins) = $http =~ /sa_builtin_routes\[\] = \{(.*?)\n\};/s;
my $nb = 0;
while (($builtins // '') =~ /\{\s*"(\w+)",\s*"(\w+)",\s*"([^"]+)",\s*(\d+),\s*\w+,\s*\w+,\s*(\d)/g) {
    $route{$1} = { method => $2, path => $3, status => $4, authn => $5, builtin => 1 };
    $nb++;
}
is($nb, 4, 'the built-in routes read: /healthz, /metrics, /v1/me, /v1/openapi.json');

# every route is documented, with its method, path parameters, status
my (%documented, %by_id);
for my $path (keys %{ $doc->{paths} // {} }) {
    for my $m (keys %{ $doc->{paths}{$path} }) {
        my $op = $doc->{paths}{$path}{$m};
        $documented{uc($m) . " $path"} = $op->{operationId};
        $by_id{ $op->{operationId} // '' } = { %$op, _method => uc $m, _path => $path };
    }
}
is(scalar keys %by_id, scalar keys %documented, 'each operationId once');
for my $name (sort keys %route) {
    my $rt = $route{$name};
    my $op = $doc->{paths}{ $rt->{path} }{ lc $rt->{method} };
    ok($op, "$name: $rt->{method} $rt->{path} documented") or next;
    is($op->{operationId}, $name, "$name: its operationId");
    my $ok = $op->{responses}{ $rt->{status} };
    ok($ok && $ok->{content}, "$name: its success $rt->{status}, with its content");
    is($ok->{headers}{'Sa-Admin-Message'}{'$ref'}, '#/components/headers/SaAdminMessage',
       "$name: its Sa-Admin-Message header") unless $rt->{builtin};
    my @names = $rt->{path} =~ /\{(\w+)\}/g;
    my @pp = grep { $_->{in} eq 'path' } @{ $op->{parameters} // [] };
    is_deeply([ sort map { $_->{name} } @pp ], [ sort @names ], "$name: its path parameters");
    ok(!grep({ !$_->{required} } @pp), "$name: each required");
    is_deeply([ grep { /^2/ } keys %{ $op->{responses} } ], [ $rt->{status} ], "$name: no other success")
        unless $rt->{builtin};
    my $public = ref $op->{security} eq 'ARRAY' && !@{ $op->{security} };
    is($public ? 0 : 1, $rt->{authn}, "$name: " . ($rt->{authn} ? 'needs a caller' : 'public'));
    if ($rt->{authn}) {
        my $e401 = $op->{responses}{401} // {};
        is($e401->{'$ref'}, '#/components/responses/401', "$name: 401 documented");
    }
}
ok(!grep({ $by_id{$_} } @local), 'no local operation (no route) is documented');
is_deeply([ sort keys %documented ],
          [ sort map { "$route{$_}{method} $route{$_}{path}" } keys %route ],
          'nothing documented that is not a route');

# errors: problem+json, each $ref resolves
my $problems = $doc->{components}{responses} // {};
for my $st (sort keys %$problems) {
    ok(exists $problems->{$st}{content}{'application/problem+json'}, "the $st answer: problem+json");
}
my $pschema = $doc->{components}{schemas}{Problem} // {};
is_deeply([ sort @{ $pschema->{required} // [] } ], [qw(detail exit status title type)],
          'a problem: type, title, status, detail, exit');
my @refs = JSON::PP->new->canonical->encode($doc) =~ /"\$ref":"([^"]+)"/g;
my @bad = grep { my $p = $_; $p =~ s{^#/}{}; my $n = $doc;
                 $n = ref $n eq 'HASH' ? $n->{$_} : undef for split m{/}, $p; !defined $n } @refs;
ok(@refs > 100 && !@bad, scalar(@refs) . ' $refs, each resolves') or diag "@bad";
for my $id (sort grep { !$route{$_}{builtin} } keys %route) {
    my $op = $by_id{$id} or next;
    my @err = grep { !/^2/ } keys %{ $op->{responses} };
    my @nonref = grep { ($op->{responses}{$_}{'$ref'} // '') !~ m{^#/components/responses/} } @err;
    ok(@err >= 5 && !@nonref, "$id: its errors are the problem answers") or diag "@nonref";
}

# the running server routes every documented path and method: without a
# credential an operation is a 401 (found, then refused), a public route
# its success; a path it does not have is a 404, for contrast
sub probe {
    my ($m, $path) = @_;
    (my $p = $path) =~ s/\{(\w+)\}/x$1/g;
    return $api->req($m, $p, $m eq 'GET' ? () : (json => {}));
}
$r = probe(GET => '/v1/nowhere/{x}');
is($r->{status}, 404, 'an undocumented path: 404');
like($r->{json}{detail} // '', qr/^no route/, '... "no route"');
$r = probe(PATCH => '/v1/tokens/{id}');
is($r->{status}, 405, 'an undocumented method: 405');
for my $key (sort keys %documented) {
    my ($m, $path) = split / /, $key;
    my $rt = $route{ $documented{$key} // '' } // {};
    $r = probe($m, $path);
    my $routed = $r->{status} != 405 && !($r->{status} == 404 && ($r->{json}{detail} // '') =~ /^no route/);
    ok($routed, "$key: routed") or diag $r->{raw};
    is($r->{status}, $rt->{authn} ? 401 : $rt->{status},
       "$key: " . ($rt->{authn} ? '401 without a credential' : "$rt->{status}")) or diag $r->{raw};
}

# inputs: the fields each operation accepts (sa_in_only() in its function
# and the static helpers of its file it calls) are those documented
my %exempt = (
    # the command line's --app...: over the API the path's {app}, which
    # excludes it
    'account.ungrant' => { apps => 1 },
    # the same operation with the list in the body; a single 'app' is the
    # other route's
    'account.ungrant.apps' => { app => 1 },
    # its helper, shared with scope.define, takes it for define only
    'scope.remove' => { description => 1 },
);
my %funcs;
for my $c (glob "$root/admin-tool/ops/*.c") {
    my $text = SaTest::slurp($c);
    $funcs{$c}{$1} = $2 while $text =~ /^(\w+)\([^)]*\)\s*\n\{\n(.*?)^\}/msg;
}
my ($policy) = SaTest::slurp("$root/admin-tool/ops/ops.h") =~ /#define SA_POLICY_FIELDS\s+(.*)/;
ok(defined $policy, 'SA_POLICY_FIELDS read');
sub accepted {
    my ($fs, $fn, $seen) = @_;
    return () if $seen->{$fn}++ || !defined $fs->{$fn};
    my $body = $fs->{$fn};
    my %f;
    while ($body =~ /sa_in_only\(in,\s*(.*?)\);/sg) {
        (my $args = $1) =~ s/SA_POLICY_FIELDS/$policy/g;
        $f{$_} = 1 for $args =~ /"(\w+)"/g;
    }
    for my $callee ($body =~ /\b(\w+)\(/g) {
        next if $callee eq $fn || $callee =~ /^sa_op_/;
        $f{$_} = 1 for accepted($fs, $callee, $seen);
    }
    return keys %f;
}
for my $id (sort grep { $route{$_}{fn} } keys %route) {
    my $op = $by_id{$id} or next;
    my ($fs) = grep { exists $_->{ $route{$id}{fn} } } values %funcs;
    ok($fs, "$id: $route{$id}{fn} found") or next;
    my %acc = map { $_ => 1 } accepted($fs, $route{$id}{fn}, {});
    my $body = $op->{requestBody}{content}{'application/json'}{schema} // {};
    my @doc = ((map { $_->{name} } @{ $op->{parameters} // [] }), keys %{ $body->{properties} // {} });
    is_deeply([ sort @doc ], [ sort grep { !$exempt{$id}{$_} } keys %acc ],
              "$id: documents the fields it accepts") or diag "accepted: @{[sort keys %acc]}";
    my %d = map { $_ => 1 } @doc;
    ok(!grep({ !$d{$_} } @{ $body->{required} // [] }), "$id: its required fields are documented");
    ok(!%$body || ($route{$id}{method} ne 'GET' && JSON::PP::is_bool($body->{additionalProperties})
                   && !$body->{additionalProperties}),
       "$id: a body only for a write, no field beyond those");
}

$api->stop;
is($api->exit_code, 0, 'serve stops cleanly');
done_testing;
