# The attack review of the admin API (issue 22): what a caller holding
# little or nothing, or a Redis writer without the signing key, tries
# against sa-admin serve, each as it was found (docs/admin-api.md,
# "Attack review").
#
# - a token's permission scopes (service_accounts:create, :delete,
#   :tokens) are given only by one who may use that permission herself:
#   a token bounded to service_accounts:tokens cannot issue, rescope or
#   rotate its way to service_accounts:create, nor can a member holding
#   only service_accounts:tokens mint a token of an account that holds
#   more.
# - a Redis writer who puts back a token's record from before its
#   revocation (or rotation) is refused by every worker of serve: the
#   version memory is shared by the workers and outlives each (SIGHUP,
#   SIGKILL, recycling), and the worker that revoked remembers the version
#   it wrote, so the put-back works even before anyone presents the token.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;
use Time::HiRes qw(sleep time);
use IO::Select;
use POSIX ();

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};
my $email = "$aid\@platform.sa.invalid";
sub op { my $r = SaTest::operator($redis, @_); die "@_: $r->{err}" if $r->{code}; $r }
sub ptoken { chomp(my $t = op('user', 'token', 'issue', @_)->{out}); $t }

# the account may create and issue; its token is bounded to issuing
op('team', 'member', 'add', 'platform', $email, '--perm', 'service_accounts:tokens',
   '--perm', 'service_accounts:create');
op(qw(team member add platform bob --perm service_accounts:tokens));
my ($sat, $sid) = $f->issue('--scope', 'service_accounts:tokens');
my ($big, $bigid) = $f->issue('--scope', 'service_accounts:create');
my %tok = (sat => $sat, alice => ptoken('alice'), bob => ptoken('bob'));

my $api = SaTest::Serve->start(redis => $redis, args => ['--workers', 2]);

sub as {
    my ($who, $method, $path, %opt) = @_;
    my %h = (Authorization => 'Bearer ' . ($tok{$who} // $who), %{ delete $opt{headers} // {} });
    $h{'Content-Type'} //= 'application/json' if $method eq 'DELETE';
    return $api->req($method, $path, headers => \%h, %opt);
}

# ---------------------------------------------------------------- scopes
{
    my $before = $redis->digest_but_audit;
    my $r = as(sat => POST => "/v1/accounts/$aid/tokens",
               json => { scopes => ['service_accounts:create', 'service_accounts:tokens'] });
    is($r->{status}, 403, 'a token bounded to service_accounts:tokens cannot issue one holding service_accounts:create')
        or diag $r->{raw};
    like($r->{json}{detail}, qr/scope service_accounts:create only by one who may use/, 'and says why');
    $r = as(sat => PUT => "/v1/tokens/$sid/scopes",
            json => { scopes => ['service_accounts:create', 'service_accounts:tokens'] });
    is($r->{status}, 403, 'nor widen itself to it');
    $r = as(bob => POST => "/v1/accounts/$aid/tokens", json => { scopes => ['service_accounts:create'] });
    is($r->{status}, 403, 'a member holding only service_accounts:tokens cannot mint the account a service_accounts:create token');
    $r = as(bob => POST => "/v1/tokens/$bigid/rotate", json => {});
    is($r->{status}, 403, 'nor rotate one that holds it (the new secret would be hers)');
    is($redis->digest_but_audit, $before, 'nothing written');
    my %denied = map { ($_->{actor} => $_->{target}) } grep { $_->{action} eq 'denied' }
                 @{ op(qw(audit --json))->{json} };
    is_deeply(\%denied, { $email => 'service_accounts:create', bob => 'service_accounts:create' },
              'the refusals audited as denied, naming the permission lacked (one entry a caller a while)');

    $r = as(sat => POST => "/v1/accounts/$aid/tokens", json => { scopes => ['service_accounts:tokens', 'api:read'] });
    is($r->{status}, 201, 'the token issues what it holds, and application scopes') or diag $r->{raw};
    $r = as(bob => PUT => "/v1/tokens/$bigid/scopes", json => { scopes => ['service_accounts:create', 'api:read'] });
    is($r->{status}, 200, 'bob rescopes a token keeping a permission scope it had') or diag $r->{raw};
    $r = as(bob => POST => "/v1/accounts/$aid/tokens", json => { scopes => ['service_accounts:tokens'] });
    is($r->{status}, 201, 'and issues the permission he holds');
    $r = as(alice => POST => "/v1/accounts/$aid/tokens", json => { scopes => ['service_accounts:create'] });
    is($r->{status}, 201, 'the owner gives any of them') or diag $r->{raw};
    $r = as(alice => POST => "/v1/tokens/$bigid/rotate", json => {});
    is($r->{status}, 201, 'and rotates any token');
}

# ---------------------------------------------------------------- HTTP
{
    my $me = sub { as(alice => GET => $_[0], %{ $_[1] // {} }) };
    my $r = $me->('/v1/accounts/%ff%fe');
    is($r->{status}, 400, 'a path segment of no UTF-8: 400') or diag $r->{raw};
    like($r->{json}{detail}, qr/malformed path/, 'a malformed path, not a missing field');
    $r = $me->('/v1/audit?team=%ff');
    is($r->{status}, 400, 'a query value of no UTF-8: 400 (not dropped)') or diag $r->{raw};
    $r = $me->('/v1/audit?%c3=platform');
    is($r->{status}, 400, 'a query name of no UTF-8: 400');
    is($me->("/v1/accounts/Ã©")->{status}, 404, 'UTF-8 in a segment: an ordinary name (no such account)');
    is($me->('/v1/accounts/a%00b')->{status}, 400, 'a NUL in a segment: 400');
    for my $p ('/v1/accounts/%2e%2e', '/v1/accounts/..%2f..%2fteams', '/v1/accounts/%01%1b[31m',
               '/v1/teams/' . ('a' x 10000) . '/accounts', '/v1/accounts/' . ('%41' x 3000)) {
        my $st = $me->($p)->{status};
        ok($st == 404 || $st == 400, 'a traversal, control bytes or a 10 kB name: ' . $st . ' ('
           . substr($p, 0, 30) . ')');
    }
    is($me->('//v1/me')->{status}, 404, 'a double slash: another path, 404');
    is($me->('http://sa-admin.test/v1/me')->{status}, 404, 'an absolute-form target: no route');

    $r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $tok{alice}",
                                                 authorization => 'Bearer ' . SaTest::forged_token() });
    is($r->{status}, 401, 'Authorization given twice: 401, whichever copy is good') or diag $r->{raw};
    is($r->{headers}{'www-authenticate'}, 'Bearer', 'with WWW-Authenticate');
    $r = $api->req(GET => '/v1/me', headers => { authorization => "Bearer $tok{alice}",
                                                 Authorization => "Bearer $tok{alice}" });
    is($r->{status}, 401, 'even twice the same');

    my $post = sub { as(alice => POST => '/v1/teams/platform/accounts', content => $_[0],
                        headers => { 'Content-Type' => 'application/json' }) };
    for my $b ('{"name":"a","name":"b"}', '{"name":' . ('[' x 5000) . (']' x 5000) . '}',
               '{"name":"x","count":1e400}', '{"name":12345678901234567890123}', '{"name":"x\u0000y"}',
               "{\"name\":\"\xff\"}", '[]', '{"name":"ok"} trailing', '{"name":["x"]}',
               '{"name":"' . ('a' x 10000) . '"}') {
        is($post->($b)->{status}, 400, 'a bad body: 400 (' . substr($b, 0, 24) . ')');
    }
    is($redis->cmd('SCARD', 'sa:team:platform:accounts'), 1, 'and no account made by any of them');

    # pipelining: each answered, in order
    my $s = $api->connect_to;
    SaTest::_write_all($s, join '', map { "GET /v1/$_ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok{alice}\r\n\r\n" }
                                   qw(me me nothing));
    my $got = '';
    my $deadline = time + 10;
    while (time < $deadline && (() = $got =~ m{HTTP/1\.1 \d+ }g) < 3) {
        last unless IO::Select->new($s)->can_read(1);
        last unless sysread($s, $got, 65536, length $got);
    }
    is(join(' ', $got =~ m{HTTP/1\.1 (\d+) }g), '200 200 404', 'three pipelined requests: answered in order');
    $r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $tok{alice}", 'X-Big' => 'a' x 100000 });
    is($r->{status}, 431, 'headers over the memory limit: 431, serve goes on');
    is($api->req(GET => '/healthz')->{status}, 200, 'serve answers');

    # a token where an id belongs is never echoed; names are escaped
    for my $which (qw(alice sat)) {
        my $r = as(alice => DELETE => "/v1/tokens/$tok{$which}");
        is($r->{status}, 400, "a token ($which) given for a token id: 400");
        unlike($r->{content}, qr/\Q@{[ substr($tok{$which}, 21) ]}\E/, 'its secret not echoed');
    }
    $r = as(alice => POST => '/v1/teams/platform/accounts', content => '{"name":"n","\u001b[2Jx":1}',
            headers => { 'Content-Type' => 'application/json' });
    is($r->{status}, 400, 'an unknown field with control bytes: 400');
    unlike($r->{json}{detail}, qr/\x1b/, 'its name escaped in the detail (no terminal control sequence)');

    # request smuggling
    my $raw = sub {
        my $c = $api->connect_to;
        SaTest::_write_all($c, $_[0]);
        my $got = '';
        my $deadline = time + 5;
        while (time < $deadline) {
            last unless IO::Select->new($c)->can_read(1);
            last unless sysread($c, $got, 65536, length $got);
        }
        return join ' ', $got =~ m{HTTP/1\.1 (\d+) }g;
    };
    my $head = "POST /v1/teams/platform/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok{alice}\r\n"
             . "Content-Type: application/json\r\n";
    is($raw->($head . "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
              . "GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n"), '400',
       'Content-Length with Transfer-Encoding: 400, and what follows is not read as a request');
    is($raw->($head . "Content-Length: 13\r\nContent-Length: 0\r\n\r\n{\"name\":\"s\"}\n"), '400',
       'Content-Length twice: 400');
    is($redis->cmd('SCARD', 'sa:team:platform:accounts'), 1, 'no account made');

    # SIGHUP with a request in flight: answered by the worker that holds it
    $redis->pause;
    my $pid = fork // die;
    if (!$pid) {
        my $res = as(alice => GET => '/v1/me', timeout => 20);
        POSIX::_exit($res->{status} == 200 ? 0 : 1);
    }
    sleep 0.5;
    kill 'HUP', $api->pid;
    sleep 0.5;
    $redis->resume;
    waitpid $pid, 0;
    is($? >> 8, 0, 'SIGHUP with a request in flight: it gets its 200');

    # no secret where it does not belong
    my $metrics = $api->req(GET => '/metrics')->{content};
    my $everything = $metrics . $api->err . join("\n", map { ref $_ ? "@$_" : $_ } map { ref $_ ? @$_ : $_ }
                                                 @{ $redis->cmd('XRANGE', 'sa:audit', '-', '+') // [] });
    my @leaked = grep { index($everything, substr($_, 21)) >= 0 } values %tok;
    ok(!@leaked, 'no secret in /metrics, the log or the audit stream');
}

# ---------------------------------------------------------------- replays
{
    my $one = SaTest::Serve->start(redis => $redis, args => ['--workers', 1]);
    my $with = sub {
        my ($token, $method, $path, %o) = @_;
        my %h = (Authorization => "Bearer $token", 'Content-Type' => 'application/json');
        return $one->req($method, $path, headers => \%h, %o)->{status};
    };
    my $new_worker = sub {
        my ($how) = @_;
        my ($w) = $one->workers;
        kill $how, $how eq 'HUP' ? $one->pid : $w;
        SaTest::wait_until(10, sub { my @n = $one->workers; @n == 1 && $n[0] != $w });
    };
    chomp(my $carl = op(qw(user token issue carl))->{out});
    my $cid = substr($carl, 4, 16);
    my ($t, $tid) = $f->issue('--scope', 'api:read');
    my ($r, $rid) = $f->issue('--scope', 'api:read');
    is($with->($carl, GET => '/v1/me'), 200, 'a personal token works');
    is($with->($t, GET => '/v1/me'), 200, "and a service account's");
    my %old = (ptok => $redis->cmd('GET', "sa:ptok:$cid"), tok => $redis->cmd('GET', "sa:tok:$tid"),
               rot => $redis->cmd('GET', "sa:tok:$rid"));
    is($with->($carl, DELETE => "/v1/user-tokens/$cid"), 200, 'carl revokes his personal token');
    is($with->($tok{alice}, DELETE => "/v1/tokens/$tid"), 200, "alice revokes the account's token");
    is($with->($tok{alice}, POST => "/v1/tokens/$rid/rotate", json => {}), 201, 'and rotates another');
    $redis->cmd('SET', "sa:ptok:$cid", $old{ptok});
    $redis->cmd('SET', "sa:tok:$tid", $old{tok});
    $redis->cmd('SET', "sa:tok:$rid", $old{rot});
    is($with->($carl, GET => '/v1/me'), 401, 'the personal token record from before its revocation, put back at once: refused');
    is($with->($t, GET => '/v1/me'), 401, "the account's token's: refused");
    is($with->($r, GET => '/v1/me'), 401, "the rotated token's from before the rotation: refused");
    for my $how ('HUP', 'KILL') {
        $new_worker->($how);
        is($with->($carl, GET => '/v1/me'), 401, "after a new worker ($how): the personal token still refused");
        is($with->($t, GET => '/v1/me'), 401, "after a new worker ($how): the account's token too");
        is($with->($r, GET => '/v1/me'), 401, "after a new worker ($how): the rotated one too");
    }
    like($one->err, qr/older than one already seen/, 'logged as a replay');
    unlike($one->err, qr/\Q@{[ substr($carl, 21) ]}\E|\Q@{[ substr($t, 21) ]}\E/, 'no secret in the log');
    $one->stop;
}

# ---------------------------------------------------------------- faults
{
    my $s = SaTest::Serve->start(redis => $redis, args => ['--workers', 1]);
    $redis->stop;
    for my $how (['no credential', GET => '/healthz', {}],
                 ['a forged token', GET => '/v1/me', { Authorization => 'Bearer ' . SaTest::forged_token() }],
                 ['a write', POST => '/v1/teams/platform/accounts', { Authorization => "Bearer $tok{alice}" }]) {
        my ($what, $m, $p, $h) = @$how;
        my $r = $s->req($m, $p, headers => $h, $m eq 'POST' ? (json => { name => 'q' }) : ());
        is($r->{status}, 503, "Redis down, $what: 503");
        is($r->{headers}{'retry-after'}, 1, "$what: Retry-After");
        unlike($r->{content}, qr/127\.0\.0\.1|redis:|refused/i, "$what: the answer names no Redis address or error")
            or diag $r->{content};
    }
    like($s->err, qr/503: Redis unavailable at redis:/, "the log says where Redis was");
    $redis->launch;
    $s->stop;
}

# Redis's connections killed in the middle of a write (a fresh Redis)
{
    my $g = SaTest::fixture($redis, apps => ['api']);
    my $gid = $g->account->{id};
    chomp(my $owner = op(qw(user token issue alice))->{out});
    my $s = SaTest::Serve->start(redis => $redis, args => ['--workers', 1]);
    my $answer = SaTest::tmp_dir() . '/kill-answer';
    # Redis kept busy: the batch of 1000 is spread out, not done in ~50 ms
    my $hog = $redis->hog(2);
    my $pid = fork // die;
    if (!$pid) {
        my $r = $s->req(POST => "/v1/accounts/$gid/tokens", timeout => 60,
                        headers => { Authorization => "Bearer $owner" },
                        json => { scopes => ['api:read'], count => 1000 });
        SaTest::write_file($answer, "$r->{status} " . ($r->{json}{detail} // ''));
        POSIX::_exit(0);
    }
    # a request issues at most 1000 (one batch): cut as the first is made
    SaTest::wait_until(20, sub { $redis->cmd('EXISTS', "sa:acct:$gid:tokens") });
    $hog->stop;
    for (1 .. 5) { $redis->cmd('CLIENT', 'KILL', 'TYPE', 'normal'); sleep 0.05 }
    waitpid $pid, 0;
    like(SaTest::slurp($answer), qr/^503 Redis is unavailable/, 'connections killed mid-issue: 503')
        or diag SaTest::slurp($answer);
    my $size = -1;
    SaTest::wait_until(10, sub { my $was = $size; $size = $redis->cmd('DBSIZE'); sleep 0.2; $size == $was });
    my @records = map { substr($_, 7) } grep { /^sa:tok:[^:]+$/ } @{ $redis->cmd('KEYS', 'sa:tok:*') };
    my %index = map { $_ => 1 } @{ $redis->cmd('SMEMBERS', "sa:acct:$gid:tokens") };
    my %audited = map { $_->{target} => 1 } grep { $_->{action} eq 'token.issue' }
                  @{ op(qw(audit --json))->{json} };
    ok(@records > 0 && @records < 1000, 'the issue was cut part-way (' . scalar(@records) . ' of 1000)');
    is_deeply([ grep { !$index{$_} || !$audited{$_} } @records ], [], 'every token made is indexed and audited');
    is(scalar(keys %audited), scalar(@records), 'and every audited one exists');
    $s->stop;
}

{
    my $r = SaTest::operator($redis, qw(serve --listen 127.0.0.1:0 --operator), "$aid\@platform.sa.invalid");
    is($r->{code}, 1, '--operator naming a service account: a usage error');
    like($r->{err}, qr/names a service account/, 'saying so');
}

done_testing;
