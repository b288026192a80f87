# The scope catalogue (issue 23, item 3): scope define / list / remove,
# stored in the application's signed record (a record changed behind
# sa-admin's back is refused), who may change it, and token issue / token
# scope warning on a scope outside the catalogue, refusing it with
# --strict; the same over the admin API (PUT/DELETE
# /v1/apps/{app}/scopes/{scope}, GET /v1/scopes, "warnings").
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['stacks', 'billing']);   # platform/ci, alice
sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
SaTest::operator($redis, qw(team create other --owner olga));
SaTest::apps($redis, 'other', 'payroll');
as('alice', qw(team member add platform carol --perm service_accounts:create));
as('alice', qw(team member add platform bob --perm service_accounts:tokens));

# define, list
my $r = as('alice', qw(scope define stacks stacks:read --description), 'Read the stacks');
is($r->{code}, 0, 'the owner defines stacks:read') or diag $r->{err};
is($r->{out}, "application 'stacks': scope stacks:read defined\n", 'and says so');
$r = as('carol', qw(scope define stacks stacks:write --json));
is($r->{code}, 0, 'service_accounts:create defines one too') or diag $r->{err};
is_deeply($r->{json}, { application => 'stacks', scope => 'stacks:write', description => '' },
          'its JSON');
$r = as('alice', qw(scope define billing invoices:read --description), 'Invoices, <b>read</b> "only"');
is($r->{code}, 0, 'a description is any printable text');
$r = as('bob', qw(scope define stacks stacks:delete));
is($r->{code}, 2, 'service_accounts:tokens alone may not: exit 2');
like($r->{err}, qr/'bob' lacks service_accounts:create in team 'platform'/, 'and says why');
$r = as('olga', qw(scope define stacks stacks:delete));
is($r->{code}, 2, "another team's owner may not");

$r = as('bob', qw(scope list --json));
is($r->{code}, 0, 'anyone lists');
is_deeply($r->{json}, [
    { application => 'billing', scope => 'invoices:read', description => 'Invoices, <b>read</b> "only"' },
    { application => 'stacks', scope => 'stacks:read', description => 'Read the stacks' },
    { application => 'stacks', scope => 'stacks:write', description => '' },
], 'by application and scope');
$r = as('bob', qw(scope list stacks));
is($r->{out}, sprintf("%-24s  %-32s  %s\n", 'APPLICATION', 'SCOPE', 'DESCRIPTION')
            . sprintf("%-24s  %-32s  %s\n", 'stacks', 'stacks:read', 'Read the stacks')
            . sprintf("%-24s  %-32s  %s\n", 'stacks', 'stacks:write', ''), 'scope list APP: a table');

# bad input: exit 1, nothing changed
my $before = $redis->cmd('GET', 'sa:app:stacks');
for my $bad ([[qw(stacks Stacks:Read)], qr/invalid scope 'Stacks:Read'/],
             [[qw(stacks stacks:*)], qr/invalid scope 'stacks:\*'/],
             [[qw(stacks *)], qr/invalid scope '\*'/],
             [['stacks', '"><script>x</script>'], qr/invalid scope/],
             [['<img src=x onerror=alert(1)>', 'a:b'], qr/invalid application/],
             [[qw(stacks a:b --description), "two\nlines"], qr/control character/],
             [[qw(stacks a:b --description), 'x' x 201], qr/longer than 200 bytes/],
             # the console's attack review (issue 23): bytes JSON cannot
             # hold were dropped (exit 0, no description); C1 controls and
             # direction controls (which turn the text around them) passed
             [[qw(stacks a:b --description), "\xff\xfe"], qr/'--description' is not UTF-8/],
             [[qw(stacks a:b --description), "over\xc0\xaflong"], qr/'--description' is not UTF-8/],
             [[qw(stacks a:b --description), "surrogate \xed\xa0\x80"], qr/'--description' is not UTF-8/],
             [['stacks', "a:b\xff"], qr/operand 2 is not UTF-8/],
             [[qw(stacks a:b --description), "next\xc2\x85line"], qr/description holds a control character/],
             [[qw(stacks a:b --description), "line\xe2\x80\xa8sep"], qr/description holds a control character/],
             [[qw(stacks a:b --description), "Read only \xe2\x80\xae etirw"], qr/description holds a direction control/],
             [[qw(stacks a:b --description), "iso \xe2\x81\xa6late"], qr/description holds a direction control/]) {
    $r = as('alice', 'scope', 'define', @{ $bad->[0] });
    is($r->{code}, 1, "scope define @{ $bad->[0] }: exit 1");
    like($r->{err}, $bad->[1], "scope define: $bad->[1]");
}
$r = as('alice', qw(scope define nowhere a:b));
is($r->{code}, 2, 'no such application: exit 2');
like($r->{err}, qr/no application 'nowhere'/, 'and says so');
is($redis->cmd('GET', 'sa:app:stacks'), $before, 'nothing changed');

# the same description again changes nothing; a new one replaces it
as('alice', qw(scope define stacks stacks:read --description), 'Read the stacks');
is($redis->cmd('GET', 'sa:app:stacks'), $before, 'defining it again as it is: no change');
as('alice', qw(scope define stacks stacks:read --description), 'List and read stacks');
like($redis->cmd('GET', 'sa:app:stacks'), qr/List and read stacks/, 'a new description replaces it');

# stored signed: a catalogue written behind sa-admin's back is refused
my $good = $redis->cmd('GET', 'sa:app:stacks');
(my $forged = $good) =~ s/stacks:write/stacks:admin/;
$redis->cmd('SET', 'sa:app:stacks', $forged);
$r = as('bob', qw(scope list stacks --json));
isnt($r->{code}, 0, 'a forged catalogue is refused');
$r = as('bob', qw(scope list --json));
ok(!grep({ $_->{scope} eq 'stacks:admin' } @{ $r->{json} }), 'and never listed');
like($r->{err}, qr/record of application 'stacks' is refused/, 'said on stderr');
$redis->cmd('SET', 'sa:app:stacks', $good);

# the audit log
$r = as('alice', qw(audit --team platform --json));
my @acts = map { "$_->{action} $_->{target}" } grep { $_->{action} =~ /^scope\./ } @{ $r->{json} };
ok(grep({ $_ eq 'scope.define stacks stacks:read' } @acts), 'scope.define audited with app and scope')
    or diag explain \@acts;

# token issue / token scope against the catalogue
my $acct = $f->account->{id};
$r = as('alice', qw(token issue platform/ci --scope stacks:read --scope stacks:*));
is($r->{code}, 0, 'scopes in the catalogue (and a wildcard over them): issued');
is($r->{err}, "issued 1 token; shown only this once: store it now\n", 'no warning');
chomp(my $tok = $r->{out});
$r = as('alice', qw(token issue platform/ci --scope stack:read));
is($r->{code}, 0, 'a typo: still issued (a warning)');
like($r->{err}, qr/^sa-admin: warning: scope 'stack:read' is in no catalogue of the account's applications/m,
     'warned');
$r = as('alice', qw(token issue platform/ci --scope stack:read --strict));
is($r->{code}, 1, '--strict: refused, exit 1');
like($r->{err}, qr/scope 'stack:read' is in no catalogue.*--strict refuses it/, 'and says why');
is($r->{out}, '', 'no token printed');
$r = as('alice', qw(token issue platform/ci --scope invoices:read --strict));
is($r->{code}, 0, "billing's catalogue counts: the account holds billing");
$r = as('alice', qw(token scope), SaTest::tid($tok), qw(--scope stacks:wirte));
is($r->{code}, 0, 'token scope with a typo: changed');
like($r->{err}, qr/warning: scope 'stacks:wirte' is in no catalogue/, 'warned');
my $n = () = $r->{err} =~ /warning/g;
is($n, 1, 'once');
$r = as('alice', qw(token scope), SaTest::tid($tok), qw(--scope stacks:nope --strict));
is($r->{code}, 1, 'token scope --strict: refused');
$r = as('alice', qw(token list platform/ci --json));
my ($t) = grep { $_->{id} eq SaTest::tid($tok) } @{ $r->{json} };
is_deeply($t->{scopes}, ['stacks:wirte'], 'the refused change left the scopes as they were');

# an account of applications without a catalogue: no warning; --strict refuses
my $r2 = SaTest::operator($redis, qw(account create other payer --app payroll));
$r = as('olga', qw(token issue other/payer --scope pay:read));
is($r->{code}, 0, 'no catalogue for payroll: issued');
unlike($r->{err}, qr/warning/, 'no warning without a catalogue');
$r = as('olga', qw(token issue other/payer --scope pay:read --strict));
is($r->{code}, 1, '--strict without a catalogue: refused');

# remove
$r = as('bob', qw(scope remove stacks stacks:write));
is($r->{code}, 2, 'bob may not remove');
$r = as('carol', qw(scope remove stacks stacks:write));
is($r->{code}, 0, 'carol removes') or diag $r->{err};
is($r->{out}, "application 'stacks': scope stacks:write removed from the catalogue\n", 'and says so');
$r = as('carol', qw(scope remove stacks stacks:write));
is($r->{code}, 2, 'removing it again: exit 2');
like($r->{err}, qr/has no scope 'stacks:write'/, 'not there');

# over the admin API
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', '127.0.0.1:0', '--trusted-listen', '127.0.0.1:0', '--workers', 1 ]);
my $trusted = ($api->addrs)[1];
sub call { my ($user, $m, $p, %o) = @_;
           $api->req($m, $p, listener => $trusted, headers => { 'X-Forwarded-User' => $user }, %o) }
$r = call('carol', PUT => '/v1/apps/stacks/scopes/stacks:deploy', json => { description => 'Deploy' });
is($r->{status}, 200, 'PUT /v1/apps/{app}/scopes/{scope}: 200') or diag $r->{raw};
is_deeply($r->{json}, { application => 'stacks', scope => 'stacks:deploy', description => 'Deploy' }, 'its body');
$r = call('bob', PUT => '/v1/apps/stacks/scopes/stacks:x', json => {});
is($r->{status}, 403, 'bob: 403');
$r = call('carol', PUT => '/v1/apps/stacks/scopes/%3Cimg%20src%3Dx%3E', json => {});
is($r->{status}, 400, 'a scope name with markup: 400');
$r = call('bob', GET => '/v1/scopes?app=stacks');
is($r->{status}, 200, 'GET /v1/scopes?app=stacks');
is_deeply([ map { $_->{scope} } @{ $r->{json} } ], ['stacks:deploy', 'stacks:read'], 'the catalogue');
$r = call('bob', POST => "/v1/accounts/$acct/tokens", json => { scopes => ['stack:read'] });
is($r->{status}, 201, 'issue with a typo over the API: 201');
is_deeply($r->{json}{warnings}, ["scope 'stack:read' is in no catalogue of the account's applications (sa-admin scope list)"],
          'the warning in the answer');
$r = call('bob', POST => "/v1/accounts/$acct/tokens", json => { scopes => ['stack:read'], strict => JSON::PP::true() });
is($r->{status}, 400, 'strict over the API: 400');
$r = call('carol', DELETE => '/v1/apps/stacks/scopes/stacks:deploy', json => {});
is($r->{status}, 200, 'DELETE: 200');
ok($r->{json}{removed}, 'removed');
ok($api->stop, 'serve stops');

done_testing;
