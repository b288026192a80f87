# A token's allow_from (issue 25, item 4): a request from an address outside
# the token's networks is 403 with error="insufficient_scope" and $sa_status
# forbidden_source; the address is $remote_addr, so set_real_ip_from applies
# (and an X-Real-IP from a peer not trusted changes nothing); IPv4 and IPv6;
# a policy change reaches a cached token on its next request; an edited
# allow_from is tampered.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use IO::Socket::UNIX;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my ($t10, $id10) = $f->issue(qw(--scope a:b --allow-from 10.0.0.0/8 --allow-from 2001:db8::/32));
my ($tloc, $idloc) = $f->issue(qw(--scope a:b --allow-from 127.0.0.0/8));
my ($tany) = $f->issue(qw(--scope a:b));
my ($tmap, $idmap) = $f->issue(qw(--scope a:b --allow-from ::ffff:127.0.0.0/104));
my ($tten) = $f->issue(qw(--scope a:b --allow-from 10.0.0.0/8 --allow-from 2001:db8::/32));
my $dual = SaTest::free_port();

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    sa_cache zone=sa:1m ttl=5m negative_ttl=5m;
    log_format sa '\$arg_case \$status \$sa_status \$remote_addr';
    server {
        listen 127.0.0.1:%%PORT%%;
        listen [::]:$dual ipv6only=off;
        listen unix:%%DIR%%/gw.sock;
        access_log %%DIR%%/sa.log sa;
        root %%DIR%%/html;
        location /lb/ {
            # behind a load balancer at 127.0.0.1 that sets X-Real-IP
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Real-IP;
            sa_auth api;
            alias %%DIR%%/html/;
        }
        location /untrusted/ {
            # a balancer elsewhere: the header of this peer is not believed
            set_real_ip_from 192.0.2.1;
            real_ip_header X-Real-IP;
            sa_auth api;
            alias %%DIR%%/html/;
        }
        location /xff/ {
            # a balancer that appends to X-Forwarded-For
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Forwarded-For;
            real_ip_recursive on;
            sa_auth api;
            alias %%DIR%%/html/;
        }
        location /app/ { sa_auth api; sa_application api; alias %%DIR%%/html/; }
        location / { sa_auth api; }
    }
CONF

sub call {
    my ($case, $tok, $path, @h) = @_;
    return $nginx->get("$path?case=$case", Authorization => "Bearer $tok", @h);
}
sub logged {
    my ($case) = @_;
    return SaTest::wait_until(2, sub {
        SaTest::slurp($nginx->dir . '/sa.log') =~ /^\Q$case\E (\d+ \S+ \S+)$/m ? $1 : 0;
    }) || '(not logged)';
}

my $r = call('direct_local', $tloc, '/index.html');
is($r->{status}, 200, 'allowed 127.0.0.0/8, from 127.0.0.1: 200');
$r = call('direct_ten', $t10, '/index.html');
is($r->{status}, 403, 'allowed 10.0.0.0/8, from 127.0.0.1: 403');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="api", error="insufficient_scope"',
   'the challenge of a refused genuine token');
is(logged('direct_ten'), '403 forbidden_source 127.0.0.1', '$sa_status forbidden_source');
is(call('direct_any', $tany, '/index.html')->{status}, 200, 'no allow_from: from anywhere');

# a genuine token refused: reported to the account's notifications
is(call('app', $t10, '/app/index.html')->{status}, 403, 'in a location with sa_application: 403');
my $ev = SaTest::wait_until(3, sub {
    my ($e) = grep { $_->{token} eq $id10 } map { +{ @{ $_->[1] } } } @{ $redis->cmd('XRANGE', 'sa:events', '-', '+') };
    $e;
});
is($ev && $ev->{status}, 'forbidden_source', 'a token.denied entry with status forbidden_source');

# through the balancer: the client's address is X-Real-IP
is(call('lb_in', $t10, '/lb/index.html', 'X-Real-IP' => '10.200.3.4')->{status}, 200,
   'X-Real-IP 10.200.3.4 from the trusted balancer: 200');
is(logged('lb_in'), '200 ok 10.200.3.4', 'as $remote_addr says');
is(call('lb_out', $t10, '/lb/index.html', 'X-Real-IP' => '11.0.0.1')->{status}, 403,
   'X-Real-IP 11.0.0.1: 403');
is(logged('lb_out'), '403 forbidden_source 11.0.0.1', 'forbidden_source');
is(call('lb_v6', $t10, '/lb/index.html', 'X-Real-IP' => '2001:db8:5::1')->{status}, 200,
   'X-Real-IP 2001:db8:5::1: inside 2001:db8::/32');
is(call('lb_v6out', $t10, '/lb/index.html', 'X-Real-IP' => '2001:db9::1')->{status}, 403,
   'X-Real-IP 2001:db9::1: outside');
is(call('lb_loc', $tloc, '/lb/index.html', 'X-Real-IP' => '10.0.0.1')->{status}, 403,
   'the balancer itself is allowed, the client it names is not: 403');
is(call('untrusted', $t10, '/untrusted/index.html', 'X-Real-IP' => '10.0.0.1')->{status}, 403,
   'X-Real-IP from a peer not in set_real_ip_from: ignored, 403');
is(logged('untrusted'), '403 forbidden_source 127.0.0.1', 'judged by the peer\'s address');

# a policy change reaches the cached token at once
is(call('cached', $t10, '/index.html')->{status}, 403, 'cached: still 403');
my $c = $f->as('token', 'scope', $id10, '--allow-from', '127.0.0.1');
is($c->{code}, 0, 'token scope --allow-from 127.0.0.1') or diag $c->{err};
my $st = SaTest::wait_until(2, sub { my $s = call('changed', $t10, '/index.html')->{status}; $s == 200 ? $s : 0 });
is($st, 200, 'the next request: 200');
$c = $f->as('token', 'scope', $id10, '--allow-from', '10.0.0.0/8');
$st = SaTest::wait_until(2, sub { my $s = call('back', $t10, '/index.html')->{status}; $s == 403 ? $s : 0 });
is($st, 403, 'and narrowed again: 403');
$c = $f->as('token', 'scope', $id10, '--allow-from', 'none');
$st = SaTest::wait_until(2, sub { my $s = call('none', $t10, '/index.html')->{status}; $s == 200 ? $s : 0 });
is($st, 200, '--allow-from none: from anywhere');

# the attack review (issue 25): mapped addresses, unix sockets, X-Forwarded-For
sub raw {
    my ($sock, $case, $tok, @h) = @_;
    print $sock "GET /index.html?case=$case HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer $tok\r\n"
        . join('', map { "$_\r\n" } @h) . "\r\n";
    my $all = do { local $/; <$sock> } // '';
    close $sock;
    return $all =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0;
}
sub dual4 { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $dual) or die "dual: $!" }
is(raw(dual4(), 'dual_loc', $tloc), 200, 'a dual-stack listener: 127.0.0.1 as ::ffff:127.0.0.1 is in 127.0.0.0/8');
is(logged('dual_loc'), '200 ok ::ffff:127.0.0.1', '(so $remote_addr says)');
is(raw(dual4(), 'dual_ten', $tten), 403, 'and not in 10.0.0.0/8 or 2001:db8::/32');
my ($jmap) = grep { $_->{id} eq $idmap } @{ $f->as('token', 'list', 'platform/ci', '--json')->{json} };
is_deeply($jmap && $jmap->{allow_from}, ['127.0.0.0/8'], '--allow-from ::ffff:127.0.0.0/104 is kept as 127.0.0.0/8');
is(call('mapped', $tmap, '/index.html')->{status}, 200, 'and admits 127.0.0.1 (as IPv6 it matched no one)');
is(raw(dual4(), 'dual_map', $tmap), 200, 'and ::ffff:127.0.0.1');
SKIP: {
    my $s6 = eval { require IO::Socket::IP; IO::Socket::IP->new(PeerHost => '::1', PeerPort => $dual) };
    skip 'no IPv6 loopback', 2 unless $s6;
    is(raw($s6, 'v6_loc', $tloc), 403, '::1 is not in 127.0.0.0/8');
    is(logged('v6_loc'), '403 forbidden_source ::1', 'forbidden_source ::1');
}
sub unix_sock { IO::Socket::UNIX->new(Peer => $nginx->dir . '/gw.sock') or die "unix: $!" }
is(raw(unix_sock(), 'unix_loc', $tloc), 403, 'a unix-socket client: no address, refused by any allow_from');
is(logged('unix_loc'), '403 forbidden_source unix:', 'forbidden_source');
is(raw(unix_sock(), 'unix_any', $tany), 200, 'a token without allow_from: admitted there');
is(call('xff_in', $tten, '/xff/index.html', 'X-Forwarded-For' => '10.0.0.1')->{status}, 200,
   'X-Forwarded-For 10.0.0.1 appended by the trusted balancer: 200');
is(call('xff_spoof', $tten, '/xff/index.html', 'X-Forwarded-For' => '10.0.0.1, 11.0.0.1')->{status}, 403,
   'a client\'s own 10.0.0.1 before the balancer\'s 11.0.0.1: the last untrusted one counts, 403');
is(logged('xff_spoof'), '403 forbidden_source 11.0.0.1', 'judged by 11.0.0.1');
is(call('xff_none', $tten, '/index.html', 'X-Forwarded-For' => '10.0.0.1')->{status}, 403,
   'X-Forwarded-For without set_real_ip_from: ignored, 403');

# tampering: a Redis writer widening the networks
my $rec = $redis->cmd('GET', "sa:tok:$idloc");
(my $forged = $rec) =~ s{"127.0.0.0/8"}{"0.0.0.0/0"  } or die;
$redis->cmd('SET', "sa:tok:$idloc", $forged);
$redis->cmd('PUBLISH', 'sa:invalidate', $idloc);
SaTest::expect_log(qr/sa: token "\Q$idloc\E": (?:tampered|signature)/, qr/signature does not verify/);
$st = SaTest::wait_until(2, sub { my $s = call('tampered', $tloc, '/index.html')->{status}; $s == 401 ? $s : 0 });
is($st, 401, 'an edited allow_from: 401');
is(logged('tampered'), '401 tampered 127.0.0.1', 'tampered');

done_testing;
