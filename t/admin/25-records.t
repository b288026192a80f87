# Team, member and application records (issue 20, items 5, 6 and 7):
# signed like accounts, verified before every permission check, every
# change needs the signing key; applications belong to a team and may be
# shared; only an owning or sharing team's accounts are granted one,
# subscribe to it or emit its events; a grant of '*' is the operator's.
#
#   1. team and member changes need the signing key
#   2. a Redis writer: HSET sa:team:plat:members carol ... gives carol
#      nothing; DEL + HSET sa:team:plat owner mallory gives mallory nothing
#      (and the team is refused until adopted); a member record copied to
#      another user is refused
#   3. team member remove
#   4. applications: create (operator), share/unshare (owner team's
#      owner), list, show; bob with only service_accounts:create in plat
#      creates team bobs but cannot grant it billing nor '*'; a gateway
#      location with sa_application billing answers 403 to bobs' token
#   5. a forged application record is refused
#   6. notify emit: who may; the audit names the team; notify set for an
#      account whose team does not own or share the application
#   7. migration: team adopt (an unsigned team), app adopt (applications
#      granted before they had records)
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $JSON = JSON::PP->new->canonical;

sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
sub op { SaTest::operator($redis, @_) }
sub rec {
    my ($v) = @_;
    return undef unless defined $v && $v =~ /^sa1\.[A-Za-z0-9_-]{86}\./;
    return eval { $JSON->decode(substr($v, 91)) };
}

# ------------------------------------------------ 1. the signing key
my $r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_SIGNING_KEY => undef },
                      qw(team create plat --owner alice));
is($r->{code}, 1, 'team create without the signing key: exit 1');
like($r->{err}, qr/no signing key/, 'naming the key');
is($redis->cmd('EXISTS', 'sa:team:plat'), 0, 'nothing written');

is(as('alice', qw(team create plat --owner alice))->{code}, 0, 'team create');
my $t = rec($redis->cmd('GET', 'sa:team:plat'));
is_deeply([@$t{qw(kind id owner version)}], [qw(team plat alice 1)], 'a signed team record');

$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_SIGNING_KEY => undef },
                   qw(team member add plat bob --perm service_accounts:create));
is($r->{code}, 1, 'member add without the signing key: exit 1');
is($redis->cmd('HLEN', 'sa:team:plat:members'), 0, 'nothing written');

is(as('alice', qw(team member add plat bob --perm service_accounts:create))->{code}, 0,
   'bob: service_accounts:create');
is(as('alice', qw(team member add plat carol))->{code}, 0, 'carol: read only');
my $m = rec($redis->cmd('HGET', 'sa:team:plat:members', 'bob'));
is_deeply([@$m{qw(kind id team user)}, $m->{perms}], ['member', 'plat/bob', 'plat', 'bob',
          ['service_accounts:create']], 'a signed member record');

is(op(qw(app create billing --team plat))->{code}, 0, 'the operator creates billing, owned by plat');
my $ci = as('alice', qw(account create plat ci --app billing --json))->{json}{id};
ok($ci, 'an account of plat granted billing');

# ------------------------------------------------ 2. a Redis writer
my $bob_rec = $redis->cmd('HGET', 'sa:team:plat:members', 'bob');
$redis->cmd('HSET', 'sa:team:plat:members', 'carol', 'service_accounts:tokens');
my $before = $redis->digest;
$r = as('carol', 'token', 'issue', 'plat/ci', '--scope', '*');
is($r->{code}, 2, "HSET members carol service_accounts:tokens: carol's token issue is refused");
like($r->{err}, qr/member record of 'carol' in team 'plat' is refused/, 'as a refused record');
unlike($r->{out}, qr/sat_/, 'no token printed');
is($redis->digest, $before, 'nothing written');

$redis->cmd('HSET', 'sa:team:plat:members', 'carol', $bob_rec);
$r = as('carol', qw(account create plat sneaky));
is($r->{code}, 2, "bob's genuine member record copied to carol's field is refused");

$r = SaTest::admin($redis, 'team', 'member', 'list', 'plat', '--json');
is($r->{code}, 0, 'member list');
is_deeply([sort map { $_->{user} } @{ $r->{json} }], [qw(alice bob)],
          'carol\'s forged record is not listed');
like($r->{err}, qr/member record of 'carol' is refused/, 'and reported');

my $team_rec = $redis->cmd('GET', 'sa:team:plat');
$r = $redis->cmd_err('HSET', 'sa:team:plat', 'owner', 'mallory');
like($r // '', qr/WRONGTYPE/, 'HSET sa:team:plat owner mallory: refused by Redis (a string)');
$redis->cmd('DEL', 'sa:team:plat');
$redis->cmd('HSET', 'sa:team:plat', 'owner', 'mallory');
$before = $redis->digest;
$r = as('mallory', qw(team member add plat eve --perm service_accounts:tokens));
is($r->{code}, 2, 'DEL + HSET owner mallory: mallory cannot add members');
like($r->{err}, qr/team 'plat' is unsigned/, 'the team is unsigned now');
$r = as('mallory', qw(account create plat m));
is($r->{code}, 2, 'nor create accounts');
$r = as('alice', qw(account create plat a2));
is($r->{code}, 2, 'and the team is refused for everyone until an operator adopts it');
is($redis->digest, $before, 'nothing written');
$redis->cmd('DEL', 'sa:team:plat');
$redis->cmd('SET', 'sa:team:plat', $team_rec);
$redis->cmd('HDEL', 'sa:team:plat:members', 'carol');
is(as('alice', qw(team member add plat carol))->{code}, 0, 'carol back, read only');

# a team record copied under another team's key
as('olga', qw(team create other --owner olga));
my $other_rec = $redis->cmd('GET', 'sa:team:other');
$redis->cmd('SET', 'sa:team:other', $team_rec);
$r = as('alice', qw(team member add other x));
is($r->{code}, 2, "plat's genuine team record under other's key is refused");
$redis->cmd('SET', 'sa:team:other', $other_rec);

# ------------------------------------------------ 3. member remove
is(as('alice', qw(team member add plat dan --perm service_accounts:create))->{code}, 0, 'dan added');
is(as('dan', qw(account create plat dans))->{code}, 0, 'dan creates an account');
$r = as('bob', qw(team member remove plat dan));
is($r->{code}, 2, 'only the owner removes members');
$r = as('alice', qw(team member remove plat dan --json));
is($r->{code}, 0, 'member remove') or diag $r->{err};
is_deeply($r->{json}, { team => 'plat', user => 'dan', removed => JSON::PP::true }, 'its JSON');
is($redis->cmd('HEXISTS', 'sa:team:plat:members', 'dan'), 0, 'the field is gone');
$r = as('dan', qw(account create plat dans2));
is($r->{code}, 2, 'dan can no longer create accounts');
like($r->{err}, qr/'dan' lacks service_accounts:create in team 'plat'/, 'and is told why');
is(as('alice', qw(team member remove plat dan))->{code}, 2, 'removing a non-member: exit 2');

# ------------------------------------------------ 4. applications
$r = as('alice', qw(app create payroll --team plat));
is($r->{code}, 2, 'app create with --as: refused (an operator\'s decision)');
like($r->{err}, qr/operator/, 'saying so');
$r = op(qw(app create payroll --team nosuch));
is($r->{code}, 2, 'app create for a team that does not exist: exit 2');
is(op(qw(app create billing --team other))->{code}, 2, 'an application that exists: exit 2');
is(op(qw(app create), '*', qw(--team plat))->{code}, 1, "'*' is no application name: exit 1");
is(op(qw(app create billing))->{code}, 1, '--team is required: exit 1');
is(op(qw(app create billing --team plat --team other))->{code}, 1, '--team twice: exit 1');

$r = as('bob', qw(team create bobs --owner bob));
is($r->{code}, 0, 'bob (service_accounts:create in plat) creates team bobs');
$r = as('bob', qw(account create bobs side --app billing));
is($r->{code}, 2, 'account create bobs side --app billing: refused');
like($r->{err}, qr/application 'billing' belongs to team 'plat' and is not shared with team 'bobs'/,
     'billing is plat\'s');
is(as('bob', qw(account create bobs side))->{code}, 0, 'bobs/side without applications');
$r = as('bob', qw(account grant bobs/side --app billing));
is($r->{code}, 2, 'account grant bobs/side --app billing: refused');
$r = as('bob', 'account', 'grant', 'bobs/side', '--app', '*');
is($r->{code}, 2, "account grant --app '*' by bob: refused");
like($r->{err}, qr/operator's decision/, 'a grant of * is the operator\'s');
$r = as('alice', 'account', 'create', 'plat', 'all', '--app', '*');
is($r->{code}, 2, "not even plat's owner grants '*'");
$r = op('account', 'create', 'plat', 'all', '--app', '*', '--json');
is($r->{code}, 0, "the operator does") or diag $r->{err};
is($r->{json}{created_by}, '(operator)', 'recorded as (operator)');
is(op(qw(account create bobs nope --app nosuch))->{code}, 2, 'an application without a record: exit 2');

my $side = rec($redis->cmd('GET', 'sa:acct:' . $redis->cmd('HGET', 'sa:team:bobs:names', 'side')));
is_deeply($side->{apps}, [], 'bobs/side holds no application');
my $bobs_token = as('bob', qw(token issue bobs/side --scope *))->{out};
chomp $bobs_token;
like($bobs_token, qr/^sat_/, 'a * token for bobs/side');

SKIP: {
    skip 'module not built', 2 unless -e SaTest::module_path() && -x '/usr/sbin/nginx';
    my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen unix:%%DIR%%/backend.sock;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        location /billing/ {
            sa_auth gw;
            sa_application billing;
            sa_scope billing:write;
            proxy_pass http://unix:%%DIR%%/backend.sock;
        }
    }
CONF
    is($nginx->get('/billing/', Authorization => "Bearer $bobs_token")->{status}, 403,
       'the gateway: bobs/side\'s * token on sa_application billing: 403');
    my $plat_token = SaTest::issue_token($redis, 'plat/ci', 'billing:write');
    is($nginx->get('/billing/', Authorization => "Bearer $plat_token")->{status}, 200,
       'plat/ci\'s token: 200');
    $nginx->stop;
}

$r = as('bob', qw(app share billing --team bobs));
is($r->{code}, 2, 'app share by a member of the owner team: refused');
like($r->{err}, qr/only the owner of team 'plat'/, 'the owner team\'s owner only');
$r = as('alice', qw(app share billing --team nosuch));
is($r->{code}, 2, 'sharing with a team that does not exist: exit 2');
$r = as('alice', qw(app share billing --team bobs --json));
is($r->{code}, 0, 'alice shares billing with bobs') or diag $r->{err};
is_deeply([@{ $r->{json} }{qw(name team)}, $r->{json}{shared}], ['billing', 'plat', ['bobs']], 'its JSON');
is(as('bob', qw(account grant bobs/side --app billing))->{code}, 0, 'now bobs/side may be granted billing');

$r = SaTest::admin($redis, qw(app list --json));
is($r->{code}, 0, 'app list');
is_deeply([map { "$_->{name}:$_->{team}:@{ $_->{shared} }" } @{ $r->{json} }], ['billing:plat:bobs'],
          'one application, its team and shares');
is_deeply([sort keys %{ $r->{json}[0] }], [qw(created_at created_by name shared team)], 'the fields');
is(scalar @{ SaTest::admin($redis, qw(app list --team bobs --json))->{json} }, 1, '--team bobs: shared with it');
is(scalar @{ SaTest::admin($redis, qw(app list --team other --json))->{json} }, 0, '--team other: none');
$r = SaTest::admin($redis, qw(app show billing));
like($r->{out}, qr/application 'billing': team plat, shared with bobs/, 'app show');
is(SaTest::admin($redis, qw(app show nosuch))->{code}, 2, 'app show of an unknown application: exit 2');

$r = as('alice', qw(app unshare billing --team bobs));
is($r->{code}, 0, 'unshare');
like($r->{err}, qr{account bobs/side .* still holds a grant for 'billing'}, 'the grants that stay are listed');
is(as('bob', qw(account create bobs side2 --app billing))->{code}, 2, 'no new grant after unshare');

# ------------------------------------------------ 5. a forged application record
my $app_rec = $redis->cmd('GET', 'sa:app:billing');
(my $forged = $app_rec) =~ s/"shared":\[\]/"shared":["bobs"]/;
isnt($forged, $app_rec, 'the forgery differs');
$redis->cmd('SET', 'sa:app:billing', $forged);
$r = as('bob', qw(account create bobs side3 --app billing));
is($r->{code}, 2, 'a forged application record (shared with bobs): refused');
like($r->{err}, qr/record of application 'billing' is refused/, 'as such');
$redis->cmd('SET', 'sa:app:billing', $app_rec);

# ------------------------------------------------ 6. notify emit and set
my %ENVN = (SA_NOTIFY_KEY => SaTest::keys_dir() . '/notify.key');
sub asn { my $u = shift; SaTest::admin($redis, { %ENVN, SA_ACTOR => $u }, @_) }
$r = asn('mallory', qw(notify emit billing app.urgent --data), '{"msg":"rotate now at https://evil.example"}');
is($r->{code}, 2, 'mallory, in no team, cannot emit billing\'s events');
like($r->{err}, qr/'mallory' may not act for application 'billing'/, 'and is told why');
is(asn('carol', qw(notify emit billing app.deploy))->{code}, 2, 'nor carol, read-only in plat');
$r = asn('bob', qw(notify emit billing app.deploy --json));
is($r->{code}, 0, 'bob (service_accounts:create in plat) emits') or diag $r->{err};
is($r->{json}{team}, 'plat', 'the team the permission was proven in');
my $audit = SaTest::admin($redis, qw(audit --json))->{json};
my ($e) = grep { $_->{action} eq 'notify.emit' } @$audit;
is($e->{team}, 'plat', 'the audit entry names the real team, not the application');
is($e->{actor}, 'bob', 'and the actor');
ok(!grep({ $_->{actor} eq 'mallory' && $_->{action} ne 'denied' } @$audit),
   'mallory\'s refused attempt changed nothing');
ok(grep({ $_->{actor} eq 'mallory' && $_->{action} eq 'denied'
          && $_->{team} eq 'plat' } @$audit),
   'and left its audit entry, denied in the owner team');

op(qw(account create bobs star --app *));
$r = asn('bob', qw(notify set billing bobs/star --webhook https://hooks.example/x --events *));
is($r->{code}, 2, "notify set billing for an account of bobs (granted '*'): refused");
like($r->{err}, qr/not shared with team 'bobs'/, 'bobs neither owns nor shares billing');
$r = asn('alice', qw(notify set billing plat/ci --webhook https://hooks.example/x --events *));
is($r->{code}, 0, 'notify set billing for plat/ci') or diag $r->{err};

# ------------------------------------------------ 7. migration
# a team as written before team records were signed
$redis->cmd('SADD', 'sa:teams', 'legacy');
$redis->cmd('HSET', 'sa:team:legacy', 'owner', 'lee', 'created_at', 1700000000, 'created_by', 'lee');
$redis->cmd('HSET', 'sa:team:legacy:members', 'kim', 'service_accounts:tokens,service_accounts:create');
$r = as('lee', qw(team member add legacy x));
is($r->{code}, 2, 'an unsigned team is refused');
like($r->{err}, qr/team adopt legacy/, 'naming the way out');
$r = as('lee', qw(team adopt legacy));
is($r->{code}, 2, 'team adopt with --as: an operator\'s decision');
$r = op(qw(team adopt legacy));
is($r->{code}, 0, 'the operator adopts it') or diag $r->{err};
like($r->{out}, qr/team 'legacy': owner lee\n  member kim: service_accounts:tokens, service_accounts:create/,
     'printing what it signs');
is(rec($redis->cmd('GET', 'sa:team:legacy'))->{owner}, 'lee', 'a signed team record');
is_deeply(rec($redis->cmd('HGET', 'sa:team:legacy:members', 'kim'))->{perms},
          [qw(service_accounts:tokens service_accounts:create)], 'kim keeps her permissions, signed');
is(as('kim', qw(account create legacy k1))->{code}, 0, 'kim acts in the adopted team');
is(op(qw(team adopt legacy))->{code}, 2, 'adopting it again: exit 2');

# applications granted before they had records
op(qw(app create oldapp --team plat));
as('alice', qw(account create plat o1 --app oldapp));
op(qw(app share oldapp --team legacy));
as('kim', qw(account create legacy o2 --app oldapp));
$redis->cmd('DEL', 'sa:app:oldapp');
$redis->cmd('SREM', 'sa:apps', 'oldapp');
$r = op(qw(app adopt --json));
is($r->{code}, 0, 'app adopt lists') or diag $r->{err};
is_deeply([map { "$_->{name}:" . join(',', sort @{ $_->{teams} }) } @{ $r->{json} }],
          ['oldapp:legacy,plat'], 'the application without a record, with the teams holding it');
is(as('alice', qw(app adopt oldapp --team plat))->{code}, 2, 'app adopt with --as: refused');
$r = op(qw(app adopt oldapp --team plat --json));
is($r->{code}, 0, 'app adopt oldapp --team plat') or diag $r->{err};
is_deeply([$r->{json}{team}, $r->{json}{shared}], ['plat', ['legacy']],
          'owned by plat, shared with the other team holding it');
is_deeply(op(qw(app adopt --json))->{json}, [], 'nothing left to adopt');
is(op(qw(app adopt oldapp))->{code}, 1, 'APP without --team: exit 1');

# ------------------------------------------------ 8. key resign re-signs them all
my $new = SaTest::new_dir('newkey') . '/k';
SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $new]);
$r = SaTest::admin($redis, { SA_ACTOR => undef, SA_SIGNING_KEY => "$new/signing.key" },
                   'key', 'resign', '--old-verify-key', SaTest::keys_dir() . '/verify.key', '--json');
is($r->{code}, 0, 'key resign with a new key') or diag $r->{err};
is($r->{json}{teams}, scalar @{ $redis->cmd('SMEMBERS', 'sa:teams') }, 'every team record re-signed');
is($r->{json}{members}, 3, 'every member record (bob and carol in plat, kim in legacy)');
is($r->{json}{apps}, 2, 'both application records');
is(rec($redis->cmd('HGET', 'sa:team:plat:members', 'bob'))->{version}, 2, 'a member record: version + 1');
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_SIGNING_KEY => "$new/signing.key" },
                   qw(team member add plat erin));
is($r->{code}, 0, 'with the new key: the re-signed team and member records verify') or diag $r->{err};
$r = SaTest::admin($redis, { SA_ACTOR => 'bob', SA_SIGNING_KEY => "$new/signing.key" },
                   qw(account create plat after --app billing));
is($r->{code}, 0, 'and bob\'s member record and the application record too') or diag $r->{err};
$r = as('alice', qw(team member add plat fred));
is($r->{code}, 2, 'the old key no longer verifies the team record');

done_testing();
