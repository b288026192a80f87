# sa-admin serve's workers end themselves after 10,000 requests (the
# operations were written for a process that ends: what they leak goes
# with it) and are replaced without a request lost: 10,001 requests
# pipelined on one keep-alive connection to one worker all get their 200.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Select;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $api = SaTest::Serve->start(redis => $redis, args => ['--workers', 1]);
my ($first) = $api->workers;

my $n = 10_001;
my $sock = $api->connect_to;
my $req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
my ($got, $sent, $answers) = ('', 0, 0);
my $sel = IO::Select->new($sock);
while ($answers < $n) {
    # a window of requests in flight, so neither side's buffers fill
    while ($sent < $n && $sent - $answers < 64) {
        SaTest::_write_all($sock, $req) or last;
        $sent++;
    }
    last unless $sel->can_read(20);
    last unless sysread($sock, $got, 1 << 20, length $got);
    # whole answers off the front; a partial one waits for the rest
    $answers++ while $got =~ s/^HTTP\/1\.1 200 OK\r\n.*?\r\n\r\n\{"status":"ok","redis":"ok"\}//s;
    last if $got =~ /^HTTP\/1\.1 (?!200)/;
}
is($answers, $n, "$n requests on one connection, each answered 200");
my @now = $api->workers;
is(scalar @now, 1, 'one worker');
isnt($now[0], $first, 'the first one ended after 10,000 requests and another took over');
like($api->req(GET => '/metrics')->{content}, qr/^sa_admin_requests_total\{route="healthz",status="200"\} $n$/m,
     'metrics: every one counted as a 200');
done_testing;
