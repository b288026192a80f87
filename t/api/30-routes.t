# sa-admin serve runs the operations of the registry (issue 22, items 2,
# 3, 5, 6): the answers are the CLI's --json objects, callers are proven
# (a person's sap_ token, a service account's sat_ token bounded by its
# scopes, the proxy header on a trusted listener only), a member without
# the permission gets 403 whatever she sends, reading a team needs
# membership, writes need JSON and the same origin, bad input is a 400,
# Redis down a 503 with nothing written.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};
my $email = "$aid\@platform.sa.invalid";
sub op { my $r = SaTest::operator($redis, @_); die "@_: $r->{err}" if $r->{code}; $r }
sub ptoken { chomp(my $t = op('user', 'token', 'issue', $_[0])->{out}); $t }

op(qw(team member add platform bob));                               # no permission
op(qw(team member add platform carol --perm service_accounts:create));
op('team', 'member', 'add', 'platform', $email, '--perm', 'service_accounts:create');
op(qw(team create other --owner dave));
my %tok = map { $_ => ptoken($_) } qw(alice bob carol dave);

my $proxy = SaTest::tmp_dir() . '/proxy.sock';
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--trusted-listen', "unix:$proxy", '--workers', 2 ]);

sub as {
    my ($who, $method, $path, %opt) = @_;
    my %h = %{ delete $opt{headers} // {} };
    $h{Authorization} = "Bearer " . ($tok{$who} // $who) if defined $who;
    return $api->req($method, $path, headers => \%h, %opt);
}
sub problem {
    my ($r, $status, $exit, $what) = @_;
    is($r->{status}, $status, "$what: $status") or diag $r->{raw};
    is($r->{headers}{'content-type'}, 'application/problem+json', "$what: problem+json");
    is($r->{json}{exit}, $exit, "$what: exit $exit");
    return $r;
}

# a team owner with only a personal token creates an account
my $r = as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'deployer', apps => ['api'] });
is($r->{status}, 201, 'alice (sap_) creates an account: 201') or diag $r->{raw};
my $dep = $r->{json};
is($dep->{team}, 'platform', 'its team');
is($dep->{name}, 'deployer', 'its name');
my $cli = op('account', 'show', $dep->{id}, '--json')->{json};
$r = as(alice => GET => "/v1/accounts/$dep->{id}");
is($r->{status}, 200, 'account show: 200');
is_deeply($r->{json}, $cli, "the API's body is the CLI's --json object");
$r = as(alice => GET => '/v1/teams/platform/accounts');
is_deeply($r->{json}, op(qw(account list platform --json))->{json}, 'account list: the same as the CLI');
$r = as(alice => GET => '/v1/accounts/platform%2Fdeployer');
is($r->{json}{id}, $dep->{id}, 'a path name decoded per segment: TEAM/NAME');

# a member without the permission: 403, exit 2, nothing but the denied entry
my $before = $redis->digest_but_audit;
$r = problem(as(bob => POST => '/v1/teams/platform/accounts', json => { name => 'x' }), 403, 2,
             'bob lacks service_accounts:create');
like($r->{json}{detail}, qr/'bob' lacks service_accounts:create in team 'platform'/, 'the CLI message');
$r = as(bob => POST => '/v1/teams/platform/accounts', json => { name => 'x' },
        headers => { 'X-Forwarded-User' => 'alice', 'X-Sa-Actor' => 'alice' });
is($r->{status}, 403, 'whatever header bob adds');
$r = $api->req(POST => '/v1/teams/platform/accounts?as=alice', json => { name => 'x', as => 'alice' },
               headers => { Authorization => "Bearer $tok{bob}" });
is($r->{status}, 400, 'or field (an unknown field is a 400)');
is($redis->digest_but_audit, $before, 'nothing written');
$r = as(carol => POST => '/v1/teams/platform/accounts', json => { name => 'by-carol' });
is($r->{status}, 201, 'carol holds service_accounts:create: 201') or diag $r->{raw};

# reading a team needs membership
is(as(bob => GET => '/v1/teams/platform/accounts')->{status}, 200, 'bob, a member, reads the team');
problem(as(dave => GET => '/v1/teams/platform/accounts'), 403, 2, 'dave, no member, cannot list it');
problem(as(dave => GET => "/v1/accounts/$dep->{id}"), 403, 2, 'nor show its account');
is(as(dave => GET => '/v1/teams/other/accounts')->{status}, 200, 'dave reads his own team');

# a service account's token: its scopes bound its team permissions
my $with = $f->token('service_accounts:create');
my $without = $f->token('stacks:read');
$r = as($with => POST => '/v1/teams/platform/accounts', json => { name => 'by-ci' });
is($r->{status}, 201, 'a token with the scope, its account holding the permission: 201') or diag $r->{raw};
$r = problem(as($without => POST => '/v1/teams/platform/accounts', json => { name => 'by-ci2' }),
             403, 2, 'a token without the scope');
like($r->{json}{detail}, qr/lacks the scope service_accounts:create/, 'says the scope is missing');
my $other_tok = do {
    op(qw(account create other bot));
    op('team', 'member', 'add', 'other', op(qw(account show other/bot --json))->{json}{id} . '@other.sa.invalid',
       '--perm', 'service_accounts:create');
    chomp(my $t = SaTest::operator($redis, qw(token issue other/bot --scope service_accounts:create))->{out});
    $t;
};
problem(as($other_tok => POST => '/v1/teams/platform/accounts', json => { name => 'intruder' }),
        403, 2, "a token of team other cannot change team platform");
problem(as($other_tok => GET => '/v1/teams/platform/accounts'), 403, 2, 'nor read it');

# the proxy header, trusted listener only
$r = $api->req(POST => '/v1/teams/platform/accounts', listener => "unix:$proxy",
               json => { name => 'by-proxy' }, headers => { 'X-Forwarded-User' => 'alice' });
is($r->{status}, 201, 'trusted listener: alice named by the proxy creates') or diag $r->{raw};
$r = $api->req(POST => '/v1/teams/platform/accounts', json => { name => 'by-header' },
               headers => { 'X-Forwarded-User' => 'alice' });
problem($r, 401, 2, 'the same header on the TCP listener: ignored, 401');

# browser safety
$r = as(alice => POST => '/v1/teams/platform/accounts', content => '{"name":"form"}',
        headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
problem($r, 415, 1, 'a form post');
$r = as(alice => POST => '/v1/teams/platform/accounts', content => '{"name":"form"}');
problem($r, 415, 1, 'no Content-Type');
$r = as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'xsite' },
        headers => { Origin => 'https://evil.example' });
problem($r, 403, 2, 'another Origin');
$r = as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'xsite' },
        headers => { 'Sec-Fetch-Site' => 'cross-site' });
problem($r, 403, 2, 'Sec-Fetch-Site cross-site');
$r = as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'same-origin' },
        headers => { Origin => 'http://sa-admin.test', 'Sec-Fetch-Site' => 'same-origin' });
is($r->{status}, 201, 'the same origin: 201') or diag $r->{raw};
is_deeply([ sort map { $_->{name} } @{ op(qw(account list platform --json))->{json} } ],
          [qw(by-carol by-ci by-proxy ci deployer same-origin)], 'none of the refused writes made an account');

# bad input
problem(as(alice => POST => '/v1/teams/platform/accounts', content => '{"name":',
           headers => { 'Content-Type' => 'application/json' }), 400, 1, 'malformed JSON');
problem(as(alice => POST => '/v1/teams/platform/accounts', json => ['x']), 400, 1, 'a JSON array');
problem(as(alice => POST => '/v1/teams/platform/accounts', content => '{"name":"a","name":"b"}',
           headers => { 'Content-Type' => 'application/json' }), 400, 1, 'a field twice in the body');
problem(as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'a', team => 'other' }),
        400, 1, 'a field in the path and the body');
$r = problem(as(alice => POST => '/v1/teams/platform/accounts', json => { name => 7 }), 400, 1, 'a wrong type');
like($r->{json}{detail}, qr/name/, 'naming the field');
problem(as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'Bad Name' }), 400, 1,
        'an invalid name');
for my $p ('/v1/teams/..%2F..%2Fetc/accounts', '/v1/accounts/%2e%2e', '/v1/accounts/..%2Fconfig',
           '/v1/teams/platform%00x/accounts') {
    $r = as(alice => GET => $p);
    ok($r->{status} == 400 || $r->{status} == 404 || $r->{status} == 403,
       "path traversal $p: $r->{status}, refused");
    is($r->{headers}{'content-type'}, 'application/problem+json', "$p: a problem");
}
$r = as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'big', pad => 'x' x (1024 * 1024) });
problem($r, 413, 1, 'a body over 1 MiB');

# grant, ungrant, delete
SaTest::apps($redis, 'platform', 'billing');
$r = as(alice => POST => "/v1/accounts/$dep->{id}/apps", json => { apps => ['billing'] });
is($r->{status}, 200, 'grant: 200') or diag $r->{raw};
$r = as(alice => DELETE => "/v1/accounts/$dep->{id}/apps/billing", headers => { 'Content-Type' => 'application/json' });
is($r->{status}, 200, 'ungrant: 200') or diag $r->{raw};
$r = as(alice => DELETE => "/v1/accounts/$dep->{id}", headers => { 'Content-Type' => 'application/json' });
is($r->{status}, 200, 'delete: 200') or diag $r->{raw};
problem(as(alice => GET => "/v1/accounts/$dep->{id}"), 404, 2, 'a deleted account');

# personal tokens over the API: alice issues one for herself, and uses it
$r = as(alice => POST => '/v1/users/alice/tokens', json => {});
is($r->{status}, 201, 'alice issues herself a personal token: 201') or diag $r->{raw};
like($r->{json}{token} // '', qr/^sap_/, 'the token, once');
is(as($r->{json}{token} => GET => '/v1/me')->{json}{actor}, 'alice', 'and it works');
problem(as(bob => POST => '/v1/users/alice/tokens', json => {}), 403, 2, 'bob cannot issue one for alice');

# only operators create teams over the API
$before = $redis->digest_but_audit;
problem(as(alice => POST => '/v1/teams', json => { team => 'mine', owner => 'alice' }), 403, 2,
        'a team owner cannot create a team');
problem(as($with => POST => '/v1/teams', json => { team => 'mine', owner => 'alice' }), 403, 2,
        "nor a service account's token");
problem($api->req(POST => '/v1/teams', listener => "unix:$proxy", json => { team => 'mine', owner => 'alice' },
                  headers => { 'X-Forwarded-User' => 'alice' }), 403, 2, 'nor alice named by the proxy');
is($redis->digest_but_audit, $before, 'no team made');

# the audit records the proven actor, the proof and the channel
my %by = map { ($_->{action} eq 'account.create' ? $_->{target} : "$_->{action} $_->{actor}") => $_ }
         @{ op(qw(audit --json))->{json} };
my %made = map { ($_->{name} => $_->{id}) } @{ op(qw(account list platform --json))->{json} };
is_deeply([ @{ $by{$dep->{id}} }{qw(actor proof channel)} ], ['alice', 'token:' . SaTest::tid($tok{alice}), 'api'],
          "audit: alice's account, by her personal token, over the API");
is_deeply([ @{ $by{$made{'by-ci'}} }{qw(actor proof channel)} ], [$email, 'token:' . SaTest::tid($with), 'api'],
          "audit: the service account's, by its token");
is_deeply([ @{ $by{$made{'by-proxy'}} }{qw(actor proof channel)} ], ['alice', 'proxy', 'api'],
          'audit: the one the proxy named alice for');
is_deeply([ @{ $by{'denied bob'} }{qw(proof channel)} ], ['token:' . SaTest::tid($tok{bob}), 'api'],
          "audit: bob's refused attempt too");
is_deeply([ @{ $by{$made{ci}} }{qw(actor proof channel)} ], ['alice', 'local', 'cli'],
          'audit: the fixture, on the command line');
$r = SaTest::operator($redis, qw(audit --verify --json));
is($r->{code}, 0, 'audit --verify: the chain and its signatures hold, proofs included') or diag $r->{err};

# Redis down: 503, nothing written
$redis->stop;
$r = problem(as(alice => POST => '/v1/teams/platform/accounts', json => { name => 'while-down' }),
             503, 3, 'Redis down: a write');
is($r->{headers}{'retry-after'}, '1', 'Retry-After');
$redis->launch;
ok(SaTest::wait_until(10, sub { $api->req(GET => '/healthz')->{status} == 200 }), 'Redis back');

$api->stop;
is($api->exit_code, 0, 'serve stops cleanly');
done_testing;
