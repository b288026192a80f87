# Who reads applications over the API (issue 22, left open by the attack
# review): GET /v1/apps, /v1/apps/{app}, /v1/scopes (?app=) show a person
# or a service account only the applications a team she reads (owner, or
# member) owns, shares or holds a grant of; operators every one.  One 403
# for an application hidden, absent or whose record is refused, so that
# no name can be probed; a token without scopes reads as its account's
# membership says (scopes bound no read).  GET /v1/audit/verify is the
# operators'.  sa-admin --api app list / app show / scope list show the same.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);   # platform/ci, alice; api owned by platform
sub op { my $r = SaTest::operator($redis, @_); die "@_: $r->{err}" if $r->{code}; $r }
sub as_alice { my $r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_); die "@_: $r->{err}" if $r->{code}; $r }
sub ptoken { chomp(my $t = op('user', 'token', 'issue', $_[0])->{out}); $t }

op(qw(team create other --owner dave));
SaTest::apps($redis, 'other', qw(secret shared legacy));
op(qw(app share shared --team platform));
op(qw(app share legacy --team platform));
op(qw(account grant platform/ci --app legacy));
op(qw(app unshare legacy --team platform));        # the grant stays
as_alice(qw(scope define api api:read));
op(qw(scope define secret secret:read));
op(qw(scope define shared shared:read));
# platform/ci a member of its team; platform/bot of none
my $ci = $f->account;
as_alice('team', 'member', 'add', 'platform', "$ci->{id}\@platform.sa.invalid");
my $bot = as_alice(qw(account create platform bot --json))->{json};
my $ci_tok = $f->token;                            # no scopes
my ($bot_tok) = do { chomp(my $t = as_alice('token', 'issue', $bot->{id})->{out}); $t };
as_alice(qw(team member add platform tim));
my %tok = (alice => ptoken('alice'), dave => ptoken('dave'), tim => ptoken('tim'),
           root => ptoken('root'), ci => $ci_tok, bot => $bot_tok);

my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--operator', 'root', '--workers', 1 ]);
sub as {
    my ($who, $path) = @_;
    return $api->req(GET => $path, headers => { Authorization => "Bearer $tok{$who}" });
}
sub names { [ map { $_->{name} } @{ $_[0]{json} } ] }
sub scopes { [ map { "$_->{application} $_->{scope}" } @{ $_[0]{json} } ] }

# the lists
my $r = as(root => '/v1/apps');
is($r->{status}, 200, 'operator: GET /v1/apps') or diag $r->{raw};
is_deeply(names($r), [qw(api legacy secret shared)], 'operator: every application');
is_deeply(names(as(alice => '/v1/apps')), [qw(api legacy shared)],
          "alice (platform's owner): its own, the one shared with it, the one its account holds; not other's private one");
is_deeply(names(as(tim => '/v1/apps')), [qw(api legacy shared)], 'tim, a member: the same');
is_deeply(names(as(dave => '/v1/apps')), [qw(legacy secret shared)], "dave: other's three, not platform's");
is_deeply(names(as(ci => '/v1/apps')), [qw(api legacy shared)],
          "platform/ci's token, without scopes, a member of platform: platform's");
$r = as(bot => '/v1/apps');
is($r->{status}, 200, 'a token of an account of no team: 200');
is_deeply(names($r), [], 'and nothing');
is_deeply(names(as(alice => '/v1/apps?team=other')), [qw(legacy shared)],
          "alice's ?team=other: only what she reads of it");
is_deeply(names(as(root => '/v1/apps?team=other')), [qw(legacy secret shared)], "root's: all three");

is_deeply(scopes(as(root => '/v1/scopes')), ['api api:read', 'secret secret:read', 'shared shared:read'],
          'operator: every catalogue');
is_deeply(scopes(as(alice => '/v1/scopes')), ['api api:read', 'shared shared:read'], 'alice: not secret');
is_deeply(scopes(as(ci => '/v1/scopes')), ['api api:read', 'shared shared:read'], 'ci: not secret');
is_deeply(scopes(as(bot => '/v1/scopes')), [], 'bot: none');
is_deeply(scopes(as(dave => '/v1/scopes')), ['secret secret:read', 'shared shared:read'], "dave: not api's");

# one application: hidden, absent and refused alike
$r = as(alice => '/v1/apps/secret');
is($r->{status}, 403, "alice: GET /v1/apps/secret (other's, private): 403") or diag $r->{raw};
my $hidden = $r->{json}{detail};
like($hidden, qr/'alice' reads no application 'secret'/, 'saying she reads no such application');
unlike($hidden, qr/other/, 'never naming its team');
$r = as(alice => '/v1/apps/nosuch');
is($r->{status}, 403, 'alice: an application that does not exist: the same 403');
(my $absent = $r->{json}{detail}) =~ s/nosuch/secret/g;
is($absent, $hidden, 'with the same words');
$r = as(alice => '/v1/scopes?app=secret');
is($r->{status}, 403, "alice: GET /v1/scopes?app=secret: 403");
is($r->{json}{detail}, $hidden, 'the same');
is(as(alice => '/v1/scopes?app=nosuch')->{status}, 403, 'and of one that does not exist');
is(as(ci => '/v1/apps/secret')->{status}, 403, "ci's token: 403 for secret");
is(as(bot => '/v1/apps/api')->{status}, 403, "bot's token: 403 even for its team's own");
is(as(dave => '/v1/apps/api')->{status}, 403, "dave: 403 for platform's");

$r = as(alice => '/v1/apps/legacy');
is($r->{status}, 200, 'alice: legacy (unshared, held by her account): 200') or diag $r->{raw};
is($r->{json}{team}, 'other', 'its owner team');
is(as(tim => '/v1/apps/shared')->{status}, 200, 'tim: shared: 200');
is(as(ci => '/v1/scopes?app=api')->{status}, 200, "ci: api's catalogue: 200");
is(as(root => '/v1/apps/secret')->{status}, 200, 'root: secret: 200');
$r = as(root => '/v1/apps/nosuch');
is($r->{status}, 404, 'root: one that does not exist: 404, as before');

# a refused record: the same 403 for those who do not read every one
my $good = $redis->cmd('GET', 'sa:app:secret');
$redis->cmd('SET', 'sa:app:secret', $good =~ s/secret:read/secret:admin/r);
$r = as(alice => '/v1/apps/secret');
is($r->{status}, 403, 'a forged record of secret: 403 for alice');
is($r->{json}{detail}, $hidden, 'the same words');
is(as(root => '/v1/apps/secret')->{status}, 404, 'root: 404, the record refused');
$redis->cmd('SET', 'sa:app:secret', $good);

# the audit chain's counts
$r = as(alice => '/v1/audit/verify');
is($r->{status}, 403, 'GET /v1/audit/verify: 403 for a team owner') or diag $r->{raw};
like($r->{json}{detail}, qr/verifying the audit chain is for operators/, 'says why');
is(as(ci => '/v1/audit/verify')->{status}, 403, 'and for a token');
$r = as(root => '/v1/audit/verify');
is($r->{status}, 200, 'an operator verifies it') or diag $r->{raw};
ok($r->{json}{intact}, 'intact');

# the command line over the API shows the same
my %client = (SA_SIGNING_KEY => undef, SA_REDIS => 'redis://127.0.0.1:1/0', SA_ACTOR => undef,
              SA_API => 'http://' . ($api->addrs)[0]);
sub cli { my ($who, @args) = @_; SaTest::run_admin(env => { %client, SA_TOKEN => $tok{$who} }, args => \@args) }
$r = cli(alice => qw(app list --json));
is($r->{code}, 0, 'sa-admin --api app list') or diag $r->{err};
is_deeply([ map { $_->{name} } @{ $r->{json} } ], [qw(api legacy shared)], 'the same applications');
$r = cli(alice => qw(app list));
unlike($r->{out}, qr/secret/, 'the text neither names secret');
$r = cli(alice => qw(app show secret));
is($r->{code}, 2, 'app show secret: exit 2');
like($r->{err}, qr/^sa-admin: 'alice' reads no application 'secret'/, 'the 403 detail');
is(cli(alice => qw(app show nosuch))->{code}, 2, 'app show nosuch: exit 2 too');
$r = cli(alice => qw(scope list --json));
is_deeply([ map { $_->{application} } @{ $r->{json} } ], [qw(api shared)], 'scope list: the same');
is(cli(alice => qw(scope list secret))->{code}, 2, 'scope list secret: exit 2');
$r = cli(root => qw(app list --json));
is(scalar @{ $r->{json} }, 4, 'root: all four');
$r = cli(alice => qw(audit --verify));
is($r->{code}, 2, 'audit --verify over --api as alice: exit 2');
like($r->{err}, qr/for operators/, 'says why');
is(cli(root => qw(audit --verify))->{code}, 0, 'as root: 0');

# locally (the key holder, --as): as before, everything
$r = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(app list --json));
is(scalar @{ $r->{json} // [] }, 4, 'locally alice lists all four, as before') unless SaTest::api_pass();

ok($api->stop, 'serve stops');
done_testing;
