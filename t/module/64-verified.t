# Without a cache, Redis is read on every request, but a worker verifies a
# record's signature once: it remembers the digest of the envelope that
# verified and the highest version it saw.  So the same bytes again pass
# without a signature check, any other bytes are checked in full, and an
# older genuine record replayed into Redis is refused by a worker that saw
# a newer one (the replay gap that only sa_cache used to close).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
my $token = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
my $id = substr($token, 4, 16);
sub gets { $redis->calls('get') }

my $nginx = SaTest::Nginx->start(redis => $redis, workers => 1, http => <<'CONF');
    log_format sa '$status $sa_status';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        location / { sa_auth api; sa_scope stacks:read; root %%DIR%%/html; }
        location = /metrics { sa_metrics; }
    }
CONF

my $requests = 0;
sub status { $requests++; $nginx->get('/index.html', Authorization => "Bearer $token")->{status} }
sub log_lines { split /\n/, SaTest::slurp($nginx->dir . '/sa.log') }
# the access log is written after the response: wait for this request's line
sub last_status {
    SaTest::wait_until(5, sub { log_lines() >= $requests });
    return (log_lines())[-1] // '';
}

is(status(), 200, 'first request: verified');
my $before = gets();
is(status(), 200, 'again') for 1 .. 5;
is(gets() - $before, 5, 'no cache: one GET per request, as before');

# the same bytes rewritten into Redis: still the same record
my $v1 = $redis->cmd('GET', "sa:tok:$id");
$redis->cmd('SET', "sa:tok:$id", $v1);
is(status(), 200, 'the same bytes written again: 200');

# one byte changed anywhere in the payload: checked in full, refused
(my $bad = $v1) =~ s/"stacks:read"/"stacks:reae"/;
$redis->cmd('SET', "sa:tok:$id", $bad);
is(status(), 401, 'a changed byte: the signature is checked, 401');
is(last_status(), '401 tampered', 'as tampered');
$redis->cmd('SET', "sa:tok:$id", $v1);
is(status(), 200, 'the genuine record back: 200');

# a newer version, then the older one replayed
is(as('token', 'scope', $id, '--scope', 'stacks:read', '--scope', 'x:y')->{code}, 0, 'rescoped: version 2');
is(status(), 200, 'version 2 seen');
$redis->cmd('SET', "sa:tok:$id", $v1);
is(status(), 401, 'version 1 replayed into Redis: refused without a cache');
is(last_status(), '401 tampered', 'as tampered');
like($nginx->error_log, qr/version 1 is older than one already seen/, 'logged as a replay');

# the revocation tombstone is newer still: never undone by a replay
is(as('token', 'revoke', $id)->{code}, 0, 'revoked');
is(status(), 401, 'revoked: 401');
is(last_status(), '401 revoked', 'as revoked');
$redis->cmd('SET', "sa:tok:$id", $v1);
is(status(), 401, 'the pre-revocation record replayed: still refused');
is(last_status(), '401 tampered', 'as a replay');

# many tokens: each record verified once, then remembered (sets of four
# slots chosen by a keyed hash; direct mapping lost ~5% of 1,000 tokens)
sub checks { $nginx->get('/metrics')->{content} =~ /^sa_signature_checks_total (\d+)$/m ? $1 : -1 }
my $many = as(qw(token issue platform/ci --scope stacks:read --count 1000));
my @many = split /\n/, $many->{out};
is(scalar @many, 1000, '1,000 more tokens');
# keep-alive, a new connection every 500 (keepalive_requests is 1000)
my ($conn, $sent);
sub code {
    $conn = SaTest::Conn->new($nginx->port) if !$conn || $sent++ % 500 == 0;
    return $conn->get('/index.html', Authorization => "Bearer $_[0]")->{status};
}
my $c0 = checks();
my @codes = map { code($_) } @many;
is(scalar(grep { $_ == 200 } @codes), 1000, 'each admitted');
is(checks() - $c0, 1000, 'each record verified once');
$c0 = checks();
@codes = map { code($_) } @many, @many;
is(scalar(grep { $_ == 200 } @codes), 2000, 'each admitted twice more');
is(checks() - $c0, 0, 'with no signature checked again');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert');
done_testing;
