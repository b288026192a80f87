# Token policies through the admin API (issue 25, item 1): the ops layer is
# the CLI's, so POST /v1/accounts/{id}/tokens and PUT /v1/tokens/{id}/scopes
# take rate, burst, quota and allow_from, the answers show them, and a bad
# value is a 400 with nothing written.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->account->{id};
chomp(my $tok = SaTest::operator($redis, qw(user token issue alice))->{out});

my $api = SaTest::Serve->start(redis => $redis, args => [ '--listen', '127.0.0.1:0' ]);
sub as {
    my ($method, $path, %opt) = @_;
    return $api->req($method, $path, headers => { Authorization => "Bearer $tok" }, %opt);
}

my $r = as(POST => '/v1/teams/platform/accounts',
           json => { name => 'metered', apps => ['api'], rate => '50/m', quota => '100/day' });
is($r->{status}, 201, 'an account with default policy: 201') or diag $r->{raw};
is($r->{json}{rate}, '50/m', 'its rate');
my $metered = $r->{json}{id};

$r = as(POST => "/v1/accounts/$metered/tokens",
        json => { scopes => ['a:b'], allow_from => ['10.0.0.0/8'] });
is($r->{status}, 201, 'a token: 201') or diag $r->{raw};
is($r->{json}{rate}, '50/m', 'the account\'s rate');
is($r->{json}{quota}, '100/day', 'the account\'s quota');
is_deeply($r->{json}{allow_from}, ['10.0.0.0/8'], 'its own networks');
my $tid = $r->{json}{id};

$r = as(PUT => "/v1/tokens/$tid/scopes", json => { rate => '5/s', burst => 2 });
is($r->{status}, 200, 'the policy alone changed: 200') or diag $r->{raw};
is($r->{json}{rate}, '5/s', 'the new rate');
is($r->{json}{burst}, 2, 'its burst');
is_deeply($r->{json}{scopes}, ['a:b'], 'the scopes kept');

$r = as(GET => "/v1/accounts/$metered/tokens");
is($r->{json}[0]{rate}, '5/s', 'the list shows it');

# the account's defaults change through POST /v1/accounts/{id}/apps, with
# or without applications to add
$r = as(POST => "/v1/accounts/$metered/apps", json => { rate => '7/s', burst => 3 });
is($r->{status}, 200, 'account.grant with a policy and no apps: 200') or diag $r->{raw};
is($r->{json}{rate}, '7/s', 'the new default rate');
is($r->{json}{burst}, 3, 'its burst');
is($r->{json}{quota}, '100/day', 'the quota kept');
is_deeply($r->{json}{apps}, ['api'], 'the applications kept');
$r = as(POST => "/v1/accounts/$metered/tokens", json => { scopes => ['a:b'] });
is($r->{json}{rate}, '7/s', 'a token issued after gets it');
$r = as(POST => "/v1/accounts/$metered/apps", json => { rate => 'none', quota => 'none' });
is($r->{status}, 200, 'none clears: 200') or diag $r->{raw};
ok(!exists $r->{json}{rate} && !exists $r->{json}{quota}, 'no rate, no quota left');
$r = as(POST => "/v1/accounts/$metered/apps", json => {});
is($r->{status}, 400, 'neither apps nor a policy: 400') or diag $r->{raw};

my $before = $redis->digest_but_audit;
for my $bad ({ rate => '5/d' }, { burst => 1 }, { quota => 'lots' },
             { allow_from => '10.0.0.0/8' }, { allow_from => ['10.0.0.1/8'] },
             { rate => 5 }) {
    for my $path ("/v1/accounts/$metered/tokens", "/v1/accounts/$metered/apps") {
        $r = as(POST => $path, json => $bad);
        is($r->{status}, 400, "bad policy at $path: 400 (" . join(',', %$bad) . ')') or diag $r->{raw};
    }
}
is($redis->digest_but_audit, $before, 'nothing written');

done_testing;
