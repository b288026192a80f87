# sa-admin serve --console (issue 23, item 7): the console's static files at
# /, each with its Content-Type and the console's security headers; nothing
# outside the directory, however the path is spelled (.., %2e%2e, %2f, a
# symlink out of it), no hidden file, no type not served; /v1 stays the
# API's; --console off and the default when nothing is installed.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $tmp = SaTest::tmp_dir();

# a console directory of our own, next to a secret it must never serve
my $dir = "$tmp/www/console";
system('mkdir', '-p', "$dir/sub", "$tmp/www/other") == 0 or die;
sub put { my ($p, $c) = @_; open my $fh, '>', $p or die "$p: $!"; print $fh $c; close $fh }
put("$dir/index.html", "<!doctype html><title>console</title>\n");
put("$dir/app.js", "export const x = 1;\n");
put("$dir/style.css", "body { margin: 0 }\n");
put("$dir/sub/page.html", "<p>sub</p>\n");
put("$dir/logo.png", "\x89PNG\r\n\x1a\n\0\0\0\0binary");
put("$dir/.hidden.html", "hidden\n");
put("$dir/notes.sh", "#!/bin/sh\n");
put("$tmp/www/secret.html", "SECRET-OUTSIDE\n");
put("$tmp/www/other/secret.js", "SECRET-OTHER\n");
symlink("$tmp/www/secret.html", "$dir/out.html") or die;
symlink("$tmp/www/other", "$dir/outdir") or die;
symlink("$dir/app.js", "$dir/in.js") or die;

my $csp = "default-src 'self'; script-src 'self'; object-src 'none'; "
        . "frame-ancestors 'none'; base-uri 'none'";
sub headers_ok {
    my ($r, $what) = @_;
    is($r->{headers}{'content-security-policy'}, $csp, "$what: the console's CSP");
    is($r->{headers}{'x-content-type-options'}, 'nosniff', "$what: nosniff");
    is($r->{headers}{'referrer-policy'}, 'no-referrer', "$what: no-referrer");
    is($r->{headers}{'x-frame-options'}, 'DENY', "$what: no framing");
    ok(!exists $r->{headers}{'access-control-allow-origin'}, "$what: no CORS");
}

my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--workers', 1, '--console', $dir ]);
like($api->err, qr/the console from \Q$dir\E at \//, 'serve says where the console comes from');

my %types = ('/' => 'text/html; charset=utf-8', '/index.html' => 'text/html; charset=utf-8',
             '/app.js' => 'text/javascript; charset=utf-8', '/style.css' => 'text/css; charset=utf-8',
             '/sub/page.html' => 'text/html; charset=utf-8', '/logo.png' => 'image/png',
             '/in.js' => 'text/javascript; charset=utf-8', '/%61pp.js' => 'text/javascript; charset=utf-8');
for my $p (sort keys %types) {
    my $r = $api->req(GET => $p);
    is($r->{status}, 200, "GET $p: 200") or diag $r->{raw};
    is($r->{headers}{'content-type'}, $types{$p}, "GET $p: $types{$p}");
    headers_ok($r, "GET $p");
}
is($api->req(GET => '/')->{content}, "<!doctype html><title>console</title>\n", '/ is index.html');
is($api->req(GET => '/logo.png')->{content}, "\x89PNG\r\n\x1a\n\0\0\0\0binary", 'a binary file whole');
is($api->req(GET => '/index.html?x=1')->{status}, 200, 'a query string is no part of the path');
my $r = $api->req(HEAD => '/app.js');
is($r->{status}, 200, 'HEAD: 200');
is($r->{content}, '', 'HEAD: no body');

# nothing outside the directory, however it is spelled
for my $p ('/../secret.html', '/sub/../../secret.html', '/%2e%2e/secret.html',
           '/%2E%2E/secret.html', '/%2e%2e%2fsecret.html', '/sub/..%2f..%2fsecret.html',
           '/..%5csecret.html', '/sub%2f..%2f..%2fsecret.html', '/./index.html',
           '/sub/./page.html', '//index.html', '/out.html', '/outdir/secret.js',
           '/.hidden.html', '/%2ehidden.html', '/notes.sh', '/sub', '/sub/',
           '/missing.html', '/' . ('a' x 2000) . '.html') {
    $r = $api->req(GET => $p);
    is($r->{status}, 404, "GET $p: 404") or diag $r->{raw};
    unlike($r->{content}, qr/SECRET|hidden|#!/, "GET $p: nothing of the file");
    headers_ok($r, "GET $p") if length $p < 100;
}
for my $p ('/index.html%00', '/%zz', '/index.html%') {
    $r = $api->req(GET => $p);
    is($r->{status}, 400, "GET $p: 400 malformed") or diag $r->{raw};
}
$r = $api->req(POST => '/', json => {});
is($r->{status}, 405, 'POST /: 405');
is($r->{headers}{allow}, 'GET, HEAD', '405: Allow GET, HEAD');

# the API is the API's
$r = $api->req(GET => '/v1/nothing');
is($r->{status}, 404, '/v1/nothing: the API 404');
is($r->{headers}{'content-security-policy'}, "default-src 'none'; frame-ancestors 'none'",
   '/v1: the API CSP');
is($api->req(GET => '/v1')->{headers}{'content-security-policy'},
   "default-src 'none'; frame-ancestors 'none'", '/v1 alone: not the console');
is($api->req(GET => '/healthz')->{status}, 200, '/healthz answers');
like($api->req(GET => '/metrics')->{content},
     qr/^sa_admin_requests_total\{route="console",status="200"\} \d+$/m,
     'metrics: the console as a route');
ok($api->stop, 'serve stops');

# --console off: no console
$api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--workers', 1, '--console', 'off' ]);
$r = $api->req(GET => '/');
is($r->{status}, 404, '--console off: / is 404');
is($r->{headers}{'content-security-policy'}, "default-src 'none'; frame-ancestors 'none'",
   '--console off: the API answers');
unlike($api->err, qr/the console from/, '--console off: no console');
ok($api->stop, 'serve stops');

# the shipped console, as the package installs it (admin-tool/console/)
$api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--workers', 1, '--console', SaTest::root() . '/admin-tool/console' ]);
$r = $api->req(GET => '/');
is($r->{status}, 200, 'the shipped console: 200');
like($r->{content}, qr/<script type="module" src="app.js"><\/script>/, 'it loads its module');
headers_ok($r, 'the shipped console');
ok($api->stop, 'serve stops');

# /v1/me: the caller's teams, the console's first page
SaTest::operator($redis, qw(team create platform --owner alice));
SaTest::operator($redis, qw(team create other --owner olga));
SaTest::operator($redis, qw(team create empty --owner erin));
SaTest::admin($redis, { SA_ACTOR => 'olga' }, qw(team member add other alice --perm service_accounts:tokens));
$api = SaTest::Serve->start(redis => $redis, args => [
    '--trusted-listen', '127.0.0.1:0', '--workers', 1, '--operator', 'root', '--console', 'off' ]);
sub me { $api->req(GET => '/v1/me', headers => { 'X-Forwarded-User' => $_[0] })->{json} }
is_deeply(me('alice')->{teams}, [
    { team => 'other', owner => JSON::PP::false(), perms => ['service_accounts:tokens'] },
    { team => 'platform', owner => JSON::PP::true(),
      perms => [qw(service_accounts:create service_accounts:delete service_accounts:tokens)] },
], '/v1/me: the teams alice owns or belongs to, by name, with her permissions');
is_deeply(me('nobody')->{teams}, [], 'a person of no team: none');
is_deeply([ map { $_->{team} } @{ me('root')->{teams} } ], [qw(empty other platform)],
          'an operator: every team');
ok($api->stop, 'serve stops');

# the shipped console puts API values in the page as text only: no HTML
# sinks, no inline script, style or handler (the CSP would refuse them)
my $cdir = SaTest::root() . '/admin-tool/console';
for my $js (glob "$cdir/*.js") {
    my $src = SaTest::slurp($js);
    my $name = $js =~ s{.*/}{}r;
    unlike($src, qr/\b(?:innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval|Function)\s*[(=]|\.innerHTML\b/,
           "$name: no HTML sink, no eval");
    unlike($src, qr/setAttribute\(\s*['"](?:style|on\w+|href|src)['"]|\.style\./,
           "$name: no style attribute, handler, href or src from a value");
    unlike($src, qr/localStorage\.setItem|sessionStorage\.setItem|document\.cookie/,
           "$name: nothing kept in the browser");
}
for my $html (glob "$cdir/*.html") {
    my $src = SaTest::slurp($html);
    unlike($src, qr/<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=|<style/i,
           ($html =~ s{.*/}{}r) . ': no inline script, style or handler');
}

# a directory that is not there
my $res = SaTest::operator($redis, 'serve', '--listen', '127.0.0.1:0', '--console', "$tmp/none");
is($res->{code}, 1, '--console DIR missing: exit 1');
like($res->{err}, qr/--console '\Q$tmp\E\/none': No such file/, 'and says why');
unlike($res->{err}, qr/listening on/, 'and never listens');

# the package installs the console where serve looks by default
like(SaTest::slurp(SaTest::root() . '/debian/sa-admin.install'),
     qr{^admin-tool/console/\S* usr/share/sa-admin/console/?$}m,
     'debian/sa-admin.install: the console in /usr/share/sa-admin/console');

done_testing;
