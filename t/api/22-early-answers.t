# Answers serve decides from the headers alone (404, 405, 415, a cross-site
# write's 403, a bad user header's 401) wait for the body, read and
# dropped, so the connection goes on: pipelined requests after one are
# answered, in order (issue 22, left open by the attack review: they
# closed it).  What must close still does: 413 (a Content-Length over the
# limit) and Content-Length given twice; and an early answer to a chunked
# body (its size unknown) still closes.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Select;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
chomp(my $alice = SaTest::operator($redis, qw(user token issue alice))->{out});
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--trusted-listen', '127.0.0.1:0', '--workers', 1 ]);
my $trusted = ($api->addrs)[1];

sub request {
    my ($method, $path, $body, %h) = @_;
    my $head = "$method $path HTTP/1.1\r\nHost: sa-admin.test\r\nAuthorization: Bearer $alice\r\n";
    $head .= "$_: $h{$_}\r\n" for sort keys %h;
    return $head . (defined $body && !exists $h{'Transfer-Encoding'}
                    ? 'Content-Length: ' . length($body) . "\r\n" : '') . "\r\n" . ($body // '');
}

# sends the requests at once on one connection; the statuses answered,
# in order, and whether the connection was still open after the last
sub pipeline {
    my ($addr, @reqs) = @_;
    my $s = $api->connect_to($addr);
    SaTest::_write_all($s, join '', @reqs);
    my ($got, $eof) = ('', 0);
    my $deadline = time + 10;
    while (time < $deadline && (() = $got =~ m{HTTP/1\.1 \d{3} }g) < @reqs) {
        last unless IO::Select->new($s)->can_read(2);
        my $n = sysread($s, $got, 65536, length $got);
        if (!$n) { $eof = 1; last }
    }
    unless ($eof) {
        # still open: one more request is answered
        SaTest::_write_all($s, request(GET => '/healthz'));
        my $more = '';
        while (IO::Select->new($s)->can_read(2)) {
            last unless sysread($s, $more, 65536, length $more);
            last if $more =~ m{HTTP/1\.1 \d{3} .*?\r\n\r\n.*\}}s;
        }
        $eof = $more !~ m{^HTTP/1\.1 200 };
    }
    close $s;
    return (join(' ', $got =~ m{HTTP/1\.1 (\d{3}) }g), !$eof);
}

my $json = { 'Content-Type' => 'application/json' };
my ($st, $open) = pipeline(undef,
    request(POST => '/v1/nosuch', '{"a":1}', %$json),
    request(PUT => '/v1/me', '{"a":1}', %$json),
    request(POST => '/v1/teams/platform/accounts', '{"name":"x"}', 'Content-Type' => 'text/plain'),
    request(POST => '/v1/teams/platform/accounts', '{"name":"y"}', %$json, Origin => 'https://evil.example'),
    request(GET => '/v1/me'));
is($st, '404 405 415 403 200', 'a body after 404, 405, 415 and a cross-site 403: each answered, the next ones too');
ok($open, 'and the connection stays open');
is($redis->cmd('SCARD', 'sa:team:platform:accounts'), 1, 'no account made by the refused writes');

# a body larger than what one read brings
($st, $open) = pipeline(undef,
    request(POST => '/v1/nosuch', '{"a":"' . ('x' x 300_000) . '"}', %$json),
    request(GET => '/healthz'));
is($st, '404 200', 'a 300 kB body after a 404: read, dropped, the next answered');
ok($open, 'still open');

# on the trusted listener: the user header given twice (401)
($st, $open) = pipeline($trusted,
    "GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: alice\r\nX-Forwarded-User: bob\r\n\r\n",
    "POST /v1/nosuch HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: alice\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: alice\r\n\r\n");
is($st, '401 404 200', 'trusted listener: 401, 404, 200 in order');
ok($open, 'still open');

# what must close still does
($st, $open) = pipeline(undef,
    "POST /v1/nosuch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{}",
    request(GET => '/healthz'));
is($st, '413', 'Content-Length over 1 MiB: 413 at once');
ok(!$open, 'and the connection closed (the body is never read)');
# a chunked body (its size unknown: libmicrohttpd 0.9.75 cannot answer in
# the middle of one): the answer at once, and the connection closed
($st, $open) = pipeline(undef,
    request(POST => '/v1/nosuch', "7\r\n{\"a\":1}\r\n0\r\n\r\n", %$json, 'Transfer-Encoding' => 'chunked'),
    request(GET => '/healthz'));
is($st, '404', 'a chunked body to no route: 404 at once');
ok(!$open, 'and closed (documented)');
($st, $open) = pipeline(undef,
    "POST /v1/nosuch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    request(GET => '/healthz'));
is($st, '400', 'Content-Length twice: 400');
ok(!$open, 'closed (where the body ends is in doubt)');

is($api->req(GET => '/healthz')->{status}, 200, 'serve answers');
ok($api->stop, 'serve stops');
done_testing;
