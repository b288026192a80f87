# sa-admin serve --max-connections N bounds the open connections of all
# listeners together (issue 22): N open on one listener, a connection to
# another is closed at once (counted in /metrics); once some close, others
# are accepted again.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use IO::Select;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--listen', '127.0.0.1:0', '--max-connections', 5,
    '--timeout', '20s', '--workers', 1 ]);
my ($a1, $a2) = $api->addrs;
sub conn { my ($h, $p) = $_[0] =~ /^(.*):(\d+)$/;
           IO::Socket::INET->new(PeerAddr => $h, PeerPort => $p, Proto => 'tcp', Timeout => 2) }
# closed by serve at once: EOF within a second
sub closed { my ($s) = @_; return 1 unless $s;
             return 0 unless IO::Select->new($s)->can_read(1);
             return !sysread($s, my $b, 1) }

my @held = map { conn($a1) } 1 .. 5;
is(scalar(grep { $_ } @held), 5, '5 connections open on the first listener');
ok(!closed($held[0]), 'kept open');
my $extra = conn($a2);
ok(closed($extra), 'a sixth, to the second listener: closed at once (the bound is global)');
close $_ for splice @held, 0, 2;
sleep 1;
my $m = $api->req(GET => '/metrics', listener => $a2);
is($m->{status}, 200, 'after two closed, a request on the second listener is answered');
like($m->{content}, qr/^sa_admin_connections_refused_total [1-9]\d*$/m,
     'the refused connections are counted');
close $_ for @held;
$api->stop;
is($api->exit_code, 0, 'serve stops cleanly');
done_testing();
