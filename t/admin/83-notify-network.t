# sa-admin notify run and a hostile network: destinations in the IANA
# special-purpose ranges, the host's own addresses and IPv6 forms that
# embed 127.0.0.1 are refused without --allow-private; a 2xx with a body
# over 64 KiB is delivered; a receiver that never answers cannot hold
# back another destination with --concurrency 2.  Real Redis, real
# receivers (t/lib/receiver).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
use Time::HiRes qw(time);

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $keys = SaTest::keys_dir();
my %ENVN = SaTest::notify_env();
sub as { my $u = shift; SaTest::admin($redis, { %ENVN, SA_ACTOR => $u }, @_) }
sub worker {
    my (@flags) = @_;
    return SaTest::Process->start(
        cmd => [SaTest::admin_path(), qw(notify run), @flags],
        env => { SA_REDIS => $redis->url, SA_SIGNING_KEY => "$keys/signing.key", %ENVN });
}

as('alice', qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(ssrf bigapp slow fast));

# ------------------------------------------- 8. SSRF: the registries, this host, embedded IPv4
my $port = SaTest::free_port();
my @refused = ("192.0.2.2", "198.18.0.1", "198.51.100.1", "203.0.113.1", "192.0.0.1",
               "[2001:db8::1]", "[fec0::1]", "[64:ff9b::7f00:1]", "[::127.0.0.1]",
               "[::ffff:0:7f00:1]", "[2002:7f00:1::1]");
my $i = 0;
for my $host (@refused) {
    $i++;
    as('alice', qw(account create platform), "s$i", qw(--app ssrf));
    my $r = as('alice', 'notify', 'set', 'ssrf', "platform/s$i", '--webhook',
               "http://$host:$port/x", '--events', '*');
    is($r->{code}, 0, "a subscription to $host") or diag $r->{err};
}
as('alice', qw(notify emit ssrf app.probe));
my $r = as('worker', qw(notify run --once));
is($r->{code}, 0, 'the worker (no --allow-private) exits 0');
my %errors = map { ($_->{destination} => $_->{error}) }
             @{ as('alice', qw(notify failed ssrf --json))->{json} // [] };
for my $host (@refused) {
    like($errors{"http://$host:$port/..."} // '', qr/^refused: .* is a .* address/,
         "$host: refused at once, a dead letter");
}
like($errors{"http://192.0.2.2:$port/..."} // '', qr/documentation/, '192.0.2.2: a documentation address');
like($errors{"http://[64:ff9b::7f00:1]:$port/..."} // '', qr/loopback/,
     'NAT64 of 127.0.0.1: loopback');

# ------------------------------------------- 10. a 2xx with a big body
my $big = SaTest::Receiver->start;
SaTest::write_file($big->dir . '/plan', "200 100000\n");
as('alice', qw(account create platform big --app bigapp));
as('alice', 'notify', 'set', 'bigapp', 'platform/big', '--webhook',
   'http://127.0.0.1:' . $big->port . '/big', '--events', '*');
as('alice', qw(notify emit bigapp app.x));
$r = as('worker', qw(notify run --once --allow-private));
like($r->{err}, qr/delivered \(HTTP 200.*body over 64 KiB not read\)/,
     'a 200 with a 100,000-byte body is delivered') or diag $r->{err};
is(scalar @{ as('alice', qw(notify failed bigapp --json))->{json} }, 0, 'no dead letter');
is($redis->cmd('ZCARD', 'sa:delivery:due'), 0, 'no retry');

# ------------------------------------------- 11. one receiver that never answers
my $hang = SaTest::Receiver->start;
my $good = SaTest::Receiver->start;
SaTest::write_file($hang->dir . '/plan', "hang 6\nhang 6\n");
for my $n (1, 2) {
    as('alice', qw(account create platform), "slow$n", qw(--app slow));
    as('alice', 'notify', 'set', 'slow', "platform/slow$n", '--webhook',
       'http://127.0.0.1:' . $hang->port . "/slow$n", '--events', '*');
}
as('alice', qw(account create platform fast --app fast));
as('alice', 'notify', 'set', 'fast', 'platform/fast', '--webhook',
   'http://127.0.0.1:' . $good->port . '/fast', '--events', '*');
as('alice', qw(notify emit slow app.x));
as('alice', qw(notify emit fast app.x));
my $t0 = time;
my $w = worker(qw(--allow-private --concurrency 2));
ok(SaTest::wait_until(4, sub { $good->count >= 1 }),
   'with --concurrency 2, a healthy receiver is not held back by one that never answers');
my $took = time - $t0;
ok($took < 4, sprintf('delivered after %.1f s', $took));
like($w->err, qr/deferred: its destination has as many deliveries in flight/,
     'the second delivery to the silent one waits its turn');
$w->stop;
$hang->stop;

done_testing;
