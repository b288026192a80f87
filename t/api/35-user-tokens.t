# Personal tokens through the admin API (issue 22, item 3): a person who
# holds only a personal token issues herself another (shown once, 201),
# lists and revokes it (at once); never for someone else (403), never with
# a service account's token (403); an operator (--operator) for anyone.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $proxy = SaTest::tmp_dir() . '/proxy.sock';
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--trusted-listen', "unix:$proxy",
    '--operator', 'root-person', '--workers', 2 ]);

my $r = SaTest::operator($redis, qw(user token issue alice --expires 1d));
is($r->{code}, 0, 'the operator issues alice a personal token (locally)') or diag $r->{err};
chomp(my $alice = $r->{out});
my @secrets = (substr($alice, 21));

sub as_tok {
    my ($tok, $method, $path, $json) = @_;
    return $api->req($method, $path, headers => { Authorization => "Bearer $tok" },
                     defined $json ? (json => $json) : ());
}

$r = as_tok($alice, GET => '/v1/me');
is($r->{status}, 200, 'me with a personal token') or diag $r->{content};
is($r->{json}{actor}, 'alice', 'me: alice');
is($r->{json}{kind}, 'person', 'me: a person');

# issue herself one: 201, the token once, capped at her own token's expiry
$r = as_tok($alice, POST => '/v1/users/alice/tokens', { expires => '30d' });
is($r->{status}, 201, 'POST /v1/users/alice/tokens: 201') or diag $r->{content};
my $new = $r->{json};
like($new->{token} // '', qr/^sap_\Q$new->{id}\E_/, 'the token, once');
push @secrets, substr($new->{token}, 21);
is($new->{user}, 'alice', 'for alice');
is($new->{created_by}, 'alice', 'by alice');
my $alice_exp = as_tok($alice, GET => '/v1/me')->{json}{expires_at};
my $new_rec = $redis->cmd('GET', "sa:ptok:$new->{id}");
my ($new_exp) = $new_rec =~ /"expires_at":(\d+)/;
is($new_exp, $alice_exp, 'it expires with the token that issued it, not in 30 days');
is(as_tok($new->{token}, GET => '/v1/me')->{json}{actor}, 'alice', 'and it works');

# list: no secret
$r = as_tok($alice, GET => '/v1/users/alice/tokens');
is($r->{status}, 200, 'GET /v1/users/alice/tokens: 200') or diag $r->{content};
is(scalar @{ $r->{json} // [] }, 2, 'two tokens');
unlike($r->{content}, qr/sap_/, 'no token text in the listing');

# someone else's: 403; a service account's token: 403; bad input: 400
$r = as_tok($alice, POST => '/v1/users/bob/tokens', {});
is($r->{status}, 403, 'alice for bob: 403') or diag $r->{content};
is($r->{json}{type}, 'urn:sa-admin:forbidden', 'forbidden');
is(as_tok($alice, GET => '/v1/users/bob/tokens')->{status}, 403, "bob's list: 403");
my ($sat) = $f->issue('--scope', 'service_accounts:tokens');
$r = as_tok($sat, POST => '/v1/users/alice/tokens', {});
is($r->{status}, 403, "a service account's token: 403");
$r = as_tok($alice, POST => '/v1/users/alice/tokens', { expires => '30d', bogus => 1 });
is($r->{status}, 400, 'an unknown field: 400');
$r = as_tok($alice, POST => '/v1/users/alice/tokens', { expires => 'soon' });
is($r->{status}, 400, 'a bad duration: 400');

# an operator named by the trusted proxy issues bob one
$r = $api->req(POST => '/v1/users/bob/tokens', listener => "unix:$proxy",
               headers => { 'X-Forwarded-User' => 'root-person' }, json => {});
is($r->{status}, 201, 'an --operator issues bob one') or diag $r->{content};
push @secrets, substr($r->{json}{token} // 'x' x 30, 21);

# revoke: at once
$r = as_tok($alice, DELETE => "/v1/user-tokens/$new->{id}", {});
is($r->{status}, 200, 'DELETE /v1/user-tokens/{id}: 200') or diag $r->{content};
is($r->{json}{status}, 'revoked', 'revoked');
is(as_tok($new->{token}, GET => '/v1/me')->{status}, 401, 'the revoked token is 401 at once');
$r = as_tok($alice, DELETE => "/v1/user-tokens/$new->{id}", {});
is($r->{status}, 404, 'revoked again: 404');

# the audit names the proven actor; no secret anywhere in Redis
$r = SaTest::admin($redis, qw(audit --json));
ok((grep { $_->{action} eq 'user.token.issue' && $_->{actor} eq 'alice' } @{ $r->{json} }),
   'audit: alice issued it');
my @all = map { $redis->cmd('DUMP', $_) // '' } @{ $redis->cmd('KEYS', '*') };
my $serve_log = $api->err;
for my $s (@secrets) {
    ok(!grep({ index($_, $s) >= 0 } @all), 'no key holds a secret');
    ok(index($serve_log, $s) < 0, "serve's log holds none");
}

done_testing;
