# The console's attack review (issue 23, item 7; issue 22, item 5), the
# server's side: what a page of another site, a client in front of a
# careless proxy, or a file in the console's directory can make serve do.
# Cross-site writes in every encoding a form or no-cors fetch can send,
# Origin null, Sec-Fetch-Site alone, method override headers, headers given
# twice (libmicrohttpd reads the first: the user header twice is a 401, a
# browser check twice a refusal), the security headers and no-store on
# every kind of answer, no CORS and no redirect, the user header on a
# listener not trusted, a FIFO among the console's files, the free text of
# scope descriptions.  The browser's side is t/browser/attacks.test.mjs;
# what was tried, found and fixed is in docs/decisions.md.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $tmp = SaTest::tmp_dir();
SaTest::operator($redis, qw(team create platform --owner alice));
SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(team member add platform bob));

# the shipped console, and a FIFO among its files
my $dir = "$tmp/console";
mkdir $dir or die "$dir: $!";
system('cp', glob(SaTest::root() . '/admin-tool/console/*'), $dir) == 0 or die;
system('mkfifo', "$dir/fifo.html") == 0 or die "mkfifo\n";

my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--trusted-listen', "unix:$tmp/proxy.sock",
    '--workers', 1, '--operator', 'root', '--console', $dir ]);
my ($trusted) = grep { /^unix:/ } $api->addrs;
my ($plain) = grep { !/^unix:/ } $api->addrs;

# a raw request: headers in this order, repeated as given
sub raw {
    my ($addr, $method, $path, $headers, $body) = @_;
    my $h = "$method $path HTTP/1.1\r\nHost: sa-admin.test\r\nConnection: close\r\n";
    for (my $i = 0; $i < @$headers; $i += 2) { $h .= "$headers->[$i]: $headers->[$i + 1]\r\n" }
    $h .= 'Content-Length: ' . length($body) . "\r\n" if defined $body;
    my $sock = $api->connect_to($addr);
    SaTest::_write_all($sock, "$h\r\n" . ($body // ''));
    my $got = '';
    my $deadline = Time::HiRes::time() + 10;
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        last unless IO::Select->new($sock)->can_read($left);
        last unless sysread($sock, $got, 65536, length $got);
    }
    close $sock;
    return SaTest::Serve::parse_response($got);
}
sub as_alice { ('X-Forwarded-User' => 'alice', @_) }
sub accounts {
    my $r = $api->req(GET => '/v1/teams/platform/accounts', listener => $trusted,
                      headers => { 'X-Forwarded-User' => 'alice' });
    return join ',', sort map { $_->{name} } @{ $r->{json} || [] };
}
my $body = '{"name":"sneaky"}';
my $create = '/v1/teams/platform/accounts';

# ---------------------------------------------------------------- the user header twice
for my $order (['root', 'bob'], ['bob', 'root']) {
    my $r = raw($trusted, GET => '/v1/me', ['X-Forwarded-User' => $order->[0],
                                            'X-Forwarded-User' => $order->[1]]);
    is($r->{status}, 401, "the user header twice ($order->[0], then $order->[1]): 401")
        or diag $r->{raw};
    like($r->{json}{detail} // '', qr/user header is given more than once/, 'and says why');
    is($r->{headers}{'www-authenticate'}, 'Bearer', 'WWW-Authenticate: Bearer');
}
my $r = raw($trusted, POST => '/v1/teams', ['X-Forwarded-User' => 'root', 'X-Forwarded-User' => 'alice',
                                            'Content-Type' => 'application/json'],
            '{"team":"stolen","owner":"alice"}');
is($r->{status}, 401, 'a write with the user header twice: 401');
is($redis->cmd('EXISTS', 'sa:team:stolen'), 0, 'and no team was created');
like($api->err, qr/401 from unix: X-Forwarded-User given more than once/, 'serve logs it');
$r = raw($trusted, GET => '/v1/me', ['x-forwarded-user' => 'bob']);
is($r->{json}{actor}, 'bob', 'the user header once, in any case: that user');
for my $h (['X-Forwarded-User' => 'alice, root'], ['X-Forwarded-User' => 'alice,root'],
           ['X-Forwarded-User' => 'root alice'], ['X-Forwarded-User' => 'root;alice']) {
    $r = raw($trusted, GET => '/v1/me', $h);
    is($r->{status}, 401, "the user header '$h->[1]': 401");
}
# a spelling a proxy does not replace (underscores) is another header
$r = raw($trusted, GET => '/v1/me', ['X_Forwarded_User' => 'root']);
is($r->{status}, 401, 'X_Forwarded_User is not the user header: 401');

# the user header on a listener not trusted: ignored, logged
$r = raw($plain, GET => '/v1/me', ['X-Forwarded-User' => 'root']);
is($r->{status}, 401, 'the user header on a plain listener: ignored, 401');
$r = raw($plain, POST => $create, [as_alice('Content-Type' => 'application/json')], $body);
is($r->{status}, 401, 'a write with it there: 401');
like($api->err, qr/X-Forwarded-User ignored \(not a trusted listener\)/, 'logged as ignored');

# ---------------------------------------------------------------- cross-site writes
# what a form of another site can send (enctype), what fetch(no-cors) can send
for my $ct ('text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded',
            'multipart/form-data; boundary=x', 'application/json-patch+json',
            'application/jsonx', 'text/plain; application/json', 'application/json, text/plain') {
    $r = raw($trusted, POST => $create, [as_alice('Content-Type' => $ct)], $body);
    is($r->{status}, 415, "Content-Type: $ct: 415") or diag $r->{raw};
}
$r = raw($trusted, POST => $create, [as_alice()], $body);
is($r->{status}, 415, 'no Content-Type: 415');
$r = raw($trusted, POST => $create, [as_alice('Content-Type' => 'application/json',
                                              'Content-Type' => 'text/plain')], $body);
is($r->{status}, 415, 'Content-Type twice: 415');

for my $case (['Origin' => 'null'], ['Origin' => 'https://evil.test'],
              ['Origin' => 'http://sa-admin.test.evil.test'], ['Origin' => 'http://sa-admin.test:81'],
              ['Origin' => 'http://evil.test/http://sa-admin.test'], ['Origin' => 'sa-admin.test'],
              ['Origin' => 'file://'], ['Sec-Fetch-Site' => 'cross-site'],
              ['Sec-Fetch-Site' => 'same-site'],
              ['Sec-Fetch-Site' => 'cross-site', 'Origin' => 'http://sa-admin.test'],
              ['Origin' => 'http://sa-admin.test', 'Origin' => 'https://evil.test'],
              ['Sec-Fetch-Site' => 'same-origin', 'Sec-Fetch-Site' => 'cross-site'],
              ['Origin' => 'http://evil.test', 'Host' => 'evil.test']) {
    $r = raw($trusted, POST => $create, [as_alice('Content-Type' => 'application/json', @$case)], $body);
    is($r->{status}, 403, "a write with @$case: 403") or diag $r->{raw};
    like($r->{json}{detail} // '', qr/^cross-site write refused/, 'as a cross-site write');
}
is(accounts(), '', 'none of them created an account');

# method override headers and a _method field change nothing
$r = raw($trusted, GET => $create, [as_alice('X-HTTP-Method-Override' => 'POST', 'X-Method-Override' => 'POST',
                                             'X-HTTP-Method' => 'POST', 'Content-Type' => 'application/json')],
         $body);
is($r->{status}, 200, 'GET with method override headers: still a read');
$r = raw($trusted, POST => "$create?_method=GET", [as_alice('Content-Type' => 'text/plain')], $body);
is($r->{status}, 415, '?_method=GET does not make a text/plain POST a read');
is(accounts(), '', 'still no account');

# the same write, same origin: what the console sends
$r = raw($trusted, POST => $create, [as_alice('Content-Type' => 'application/json',
                                              'Origin' => 'http://sa-admin.test',
                                              'Sec-Fetch-Site' => 'same-origin')], $body);
is($r->{status}, 201, 'the console\'s own write: 201') or diag $r->{raw};
my $acct = $r->{json}{id};
$r = raw($trusted, GET => "/v1/accounts/$acct", [as_alice('X-HTTP-Method-Override' => 'DELETE')]);
is($r->{status}, 200, 'GET with X-HTTP-Method-Override: DELETE: a read');
is(accounts(), 'sneaky', 'the account is still there');

# ---------------------------------------------------------------- headers on every answer
my $api_csp = "default-src 'none'; frame-ancestors 'none'";
my $console_csp = "default-src 'self'; script-src 'self'; object-src 'none'; "
                . "frame-ancestors 'none'; base-uri 'none'";
my $write = ['Content-Type' => 'application/json', 'Origin' => 'http://sa-admin.test'];
my @answers = (
    ['console /', 200, $console_csp, raw($trusted, GET => '/', [])],
    ['console app.js', 200, $console_csp, raw($trusted, GET => '/app.js', [])],
    ['console 404', 404, $console_csp, raw($trusted, GET => '/nope.html', [])],
    ['console traversal', 404, $console_csp, raw($trusted, GET => '/%2e%2e/%2e%2e/etc/passwd', [])],
    ['console 400', 400, $console_csp, raw($trusted, GET => '/%zz', [])],
    ['console 405', 405, $console_csp, raw($trusted, POST => '/', [@$write], '{}')],
    ['healthz', 200, $api_csp, raw($trusted, GET => '/healthz', [])],
    ['metrics', 200, $api_csp, raw($trusted, GET => '/metrics', [])],
    ['openapi', 200, $api_csp, raw($trusted, GET => '/v1/openapi.json', [])],
    ['API 200', 200, $api_csp, raw($trusted, GET => '/v1/me', [as_alice()])],
    ['API 400', 400, $api_csp, raw($trusted, POST => $create, [as_alice(@$write)], '{"name":')],
    ['API 401', 401, $api_csp, raw($plain, GET => '/v1/me', [])],
    ['API 403', 403, $api_csp, raw($trusted, POST => $create, [as_alice('Content-Type' => 'application/json',
                                                                         'Origin' => 'null')], $body)],
    ['API 404', 404, $api_csp, raw($trusted, GET => '/v1/nothing', [as_alice()])],
    ['API 405', 405, $api_csp, raw($trusted, PATCH => '/v1/me', [as_alice(@$write)], '{}')],
    ['API 413', 413, $api_csp, raw($trusted, POST => $create, [as_alice(@$write)], 'x' x (2 * 1024 * 1024))],
    ['API 415', 415, $api_csp, raw($trusted, POST => $create, [as_alice('Content-Type' => 'text/plain')], $body)],
);
for my $a (@answers) {
    my ($what, $status, $csp, $res) = @$a;
    is($res->{status}, $status, "$what: $status") or diag substr($res->{raw}, 0, 300);
    is($res->{headers}{'content-security-policy'}, $csp, "$what: its CSP");
    is($res->{headers}{'x-content-type-options'}, 'nosniff', "$what: nosniff");
    is($res->{headers}{'x-frame-options'}, 'DENY', "$what: X-Frame-Options DENY");
    is($res->{headers}{'referrer-policy'}, 'no-referrer', "$what: no-referrer");
    like($res->{headers}{'cache-control'} // '', qr/^no-(?:store|cache)$/, "$what: Cache-Control");
    # another site's <script src>, <img src>, no-cors fetch get nothing:
    # not even an opaque answer to measure (issue 23 attack review)
    is($res->{headers}{'cross-origin-resource-policy'}, 'same-origin', "$what: CORP same-origin");
    ok(!exists $res->{headers}{location}, "$what: no redirect");
    ok(!grep({ /^access-control-/ } keys %{ $res->{headers} }), "$what: no CORS header");
    like($res->{headers}{'content-type'} // '', qr/^(?:text\/html|text\/javascript|text\/plain|application\/(?:problem\+)?json)/,
         "$what: a Content-Type of its own");
}
# libmicrohttpd's own answers (a request it cannot parse or hold) go out
# before serve sees the request, without the headers above (left: no hook
# in libmicrohttpd 0.9.75): their bodies are fixed texts, with nothing of
# the request in them, so there is nothing to frame, sniff or run
my $probe = '<script>alert(1)</script>';
for my $m (["a header of 200 kB", "GET /$probe HTTP/1.1\r\nHost: x\r\nX-A: $probe" . ('a' x 200000) . "\r\n\r\n"],
           ["an URL of 100 kB", "GET /$probe" . ('a' x 100000) . " HTTP/1.1\r\nHost: x\r\n\r\n"],
           ["HTTP/2.0 in HTTP/1 form", "GET /$probe HTTP/2.0\r\nHost: x\r\n\r\n"],
           ["a malformed chunk", "POST /v1/teams HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                 . "Content-Type: application/json\r\n\r\nzz$probe\r\n"]) {
    my $sock = $api->connect_to($trusted);
    SaTest::_write_all($sock, $m->[1]);
    my $got = '';
    while (IO::Select->new($sock)->can_read(5)) { last unless sysread($sock, $got, 65536, length $got) }
    close $sock;
    my $res = SaTest::Serve::parse_response($got);
    like($res->{status}, qr/^(?:400|413|414|431|505)$/, "libmicrohttpd's answer to $m->[0]: $res->{status}");
    unlike($got, qr/script|alert/i, "$m->[0]: nothing of the request in it");
}
like($api->err, qr/Error processing request|Closing connection|too big|malformed/i, 'serve logs them');

# a preflight of another site gets no CORS
$r = raw($trusted, OPTIONS => $create, ['Origin' => 'https://evil.test',
                                        'Access-Control-Request-Method' => 'POST',
                                        'Access-Control-Request-Headers' => 'content-type']);
is($r->{status}, 405, 'a CORS preflight: 405');
ok(!grep({ /^access-control-/ } keys %{ $r->{headers} }), 'and no CORS header');

# an answer that carries a secret is never stored
my @secret = (
    ['POST', "/v1/accounts/$acct/tokens", '{}'],
    ['POST', '/v1/users/alice/tokens', '{}'],
);
for my $s (@secret) {
    $r = raw($trusted, $s->[0], $s->[1], [as_alice(@$write)], $s->[2]);
    is($r->{status}, 201, "$s->[0] $s->[1]: 201") or diag $r->{raw};
    like($r->{json}{token} // '', qr/^sa[tp]_/, 'the token, once');
    is($r->{headers}{'cache-control'}, 'no-store', "$s->[1]: Cache-Control: no-store");
}
my $tid = SaTest::tid(raw($trusted, POST => "/v1/accounts/$acct/tokens", [as_alice(@$write)], '{}')->{json}{token});
$r = raw($trusted, POST => "/v1/tokens/$tid/rotate", [as_alice(@$write)], '{}');
like($r->{json}{token} // '', qr/^sat_/, 'rotate: the new token');
is($r->{headers}{'cache-control'}, 'no-store', 'rotate: no-store');
$r = raw($trusted, GET => '/', []);
is($r->{headers}{'cache-control'}, 'no-cache', 'the console\'s files: revalidated (no-cache), they hold no secret');

# ---------------------------------------------------------------- the console's files
my $t0 = Time::HiRes::time();
$r = raw($trusted, GET => '/fifo.html', []);
is($r->{status}, 404, 'a FIFO among the console\'s files: 404');
ok(Time::HiRes::time() - $t0 < 5, 'at once (serve does not wait for a writer)');
is(raw($trusted, GET => '/', [])->{status}, 200, 'and serve goes on answering');
for my $p ('/index.html/', '/index.html/.', '/index.html%2f', '/%5c..%5cindex.html', '/index.html%00.js',
           '/index.html%20', '/INDEX.HTML', '/' . ('a/' x 600) . 'x.html', '/..;/index.html',
           "/\xc0\xae\xc0\xae/index.html", '/%c0%ae%c0%ae/index.html') {
    $r = raw($trusted, GET => $p, []);
    my $what = length $p > 60 ? substr($p, 0, 20) . "... (" . length($p) . " bytes)" : $p;
    ok($r->{status} == 404 || $r->{status} == 400, "GET $what: 404 or 400 ($r->{status})");
    is($r->{headers}{'content-security-policy'}, $console_csp, "GET $what: the console's CSP");
}

# ---------------------------------------------------------------- free text
# a scope's description is the one free text the console shows next to a
# check box: any script, but no control or direction control
SaTest::apps($redis, 'platform', 'stacks');
my $put = sub {
    my ($scope, $d) = @_;
    return raw($trusted, PUT => "/v1/apps/stacks/scopes/$scope", [as_alice(@$write)],
               JSON::PP->new->ascii->encode({ description => $d }));
};
$r = $put->('stacks:read', "Lire les piles \x{2014} \x{65e5}\x{672c} \x{5d0}\x{5d1} <b>x</b>");
is($r->{status}, 200, 'a description in any script: 200') or diag $r->{raw};
for my $bad (["\x{202e}", 'direction control'], ["\x{2067}", 'direction control'],
             ["\x{85}", 'control character'], ["\x{2029}", 'control character'],
             ["\x{1b}[31m", 'control character'], ["\x{7f}", 'control character']) {
    $r = $put->('stacks:write', "Read only $bad->[0] etirw");
    is($r->{status}, 400, sprintf('a description with U+%04X: 400', ord $bad->[0]));
    like($r->{json}{detail} // '', qr/description holds a \Q$bad->[1]\E/, "as a $bad->[1]");
}
$r = raw($trusted, GET => '/v1/scopes?app=stacks', [as_alice()]);
is(scalar @{ $r->{json} }, 1, 'none of them stored');

ok($api->stop, 'serve stops');
done_testing;
