# sa-admin --api (issue 22, item 4): the command line as a client of
# sa-admin serve, without the signing key or Redis.  A team owner with only
# a personal token creates an account, issues a token (stdout alone, shown
# once), grants and ungrants (several apps at once), revokes; --json is the
# local --json; errors keep their exit codes (1 input with the usage line,
# 2 not found / forbidden / bad token, 3 server unreachable or Redis down).
# The token comes from SA_TOKEN or --token-file (a regular file only its
# owner reads), never argv; --as and the commands that need the keys are
# usage errors.  https is verified with the system's CAs (an unknown CA: exit 3).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api', 'web']);
my $m = SaTest::admin($redis, { SA_ACTOR => 'alice' }, qw(team member add platform tim));
die "member add: $m->{err}" if $m->{code};
my $dir = SaTest::tmp_dir();
my $sock = "$dir/api.sock";
my $api = SaTest::Serve->start(redis => $redis, args => [
    '--listen', "unix:$sock", '--listen', '127.0.0.1:0', '--workers', 2 ]);

sub ptoken {
    my ($user) = @_;
    my $r = SaTest::operator($redis, 'user', 'token', 'issue', $user);
    die "user token issue $user: $r->{err}" if $r->{code};
    chomp(my $t = $r->{out});
    return $t;
}
my $alice = ptoken('alice');
my $tim = ptoken('tim');

# a client: no signing key, no Redis (SA_REDIS points nowhere)
my %client = (SA_SIGNING_KEY => undef, SA_REDIS => 'redis://127.0.0.1:1/0',
              SA_ACTOR => undef);
sub cli {
    my ($env, @args) = @_;
    return SaTest::run_admin(env => { %client, SA_API => "unix:$sock", %$env },
                             args => \@args);
}
sub as_alice { cli({ SA_TOKEN => $alice }, @_) }

# the flow of a team owner
my $r = as_alice(qw(account create platform deployer --app api --json));
is($r->{code}, 0, 'account create over --api') or diag $r->{err};
my $acct = $r->{json};
is($acct->{created_by}, 'alice', 'by alice, as her token says');
$r = as_alice('token', 'issue', $acct->{id}, '--scope', 'stacks:read');
is($r->{code}, 0, 'token issue') or diag $r->{err};
like($r->{out}, qr/^sat_\w{16}_\S+\n\z/, 'the token alone on stdout');
like($r->{err}, qr/shown only this once/, 'the same words on stderr');
my ($tid) = $r->{out} =~ /^sat_(\w{16})_/;
like($redis->cmd('GET', "sa:tok:$tid") // '', qr/"scopes":\["stacks:read"\]/,
     'the token exists in Redis');
$r = as_alice('account', 'grant', $acct->{id}, '--app', 'web');
is($r->{code}, 0, 'grant') or diag $r->{err};
$r = as_alice('account', 'ungrant', $acct->{id}, '--app', 'api', '--app', 'web', '--json');
is($r->{code}, 0, 'ungrant of two apps') or diag $r->{err};
is_deeply($r->{json}{apps}, [], 'both gone');
# several applications are one request, all or none: a refusal on the
# second changes nothing (it used to leave the first ungranted)
$r = as_alice('account', 'grant', $acct->{id}, '--app', 'api', '--app', 'web');
is($r->{code}, 0, 'granted both again') or diag $r->{err};
my $before = $redis->cmd('GET', "sa:acct:$acct->{id}");
$r = as_alice('account', 'ungrant', $acct->{id}, '--app', 'api', '--app', 'no such/app');
is($r->{code}, 1, 'ungrant of a valid then an invalid application: exit 1') or diag $r->{err};
like($r->{err}, qr/invalid application 'no such\/app'/, 'naming the second');
is($redis->cmd('GET', "sa:acct:$acct->{id}"), $before, 'the account record is unchanged');
is_deeply(as_alice('account', 'show', $acct->{id}, '--json')->{json}{apps}, [qw(api web)],
          'both still granted');
$r = cli({ SA_TOKEN => $alice }, 'account', 'ungrant', $acct->{id},
         '--app', 'api', '--app', 'web', '--json');
is_deeply($r->{json}{apps}, [], 'a valid list: both gone at once');
$r = as_alice('token', 'revoke', $tid);
is($r->{code}, 0, 'revoke') or diag $r->{err};
like($redis->cmd('GET', "sa:tok:$tid") // '', qr/"revoked":true/, 'revoked in Redis');

# --json and the text are the local ones
for my $cmd (['account', 'show', 'platform/deployer'], ['account', 'list', 'platform'],
             ['team', 'member', 'list', 'platform'], ['token', 'list', 'platform/deployer']) {
    my $local = SaTest::admin($redis, { SA_ACTOR => 'alice' }, @$cmd);
    my $remote = as_alice(@$cmd);
    is($remote->{out}, $local->{out}, "@$cmd: the local text") or diag $remote->{err};
    $local = SaTest::admin($redis, { SA_ACTOR => 'alice' }, @$cmd, '--json');
    $remote = as_alice(@$cmd, '--json');
    is_deeply($remote->{json}, $local->{json}, "@$cmd --json: the local JSON");
}

# what the operation says on stderr comes along (Sa-Admin-Message)
my $victim = as_alice(qw(account create platform victim --json))->{json};
my ($good) = as_alice('token', 'issue', $victim->{id})->{out} =~ /^sat_(\w{16})_/;
my ($bad) = as_alice('token', 'issue', $victim->{id})->{out} =~ /^sat_(\w{16})_/;
$redis->cmd('SET', "sa:tok:$bad", $redis->cmd('GET', "sa:tok:$good"));
$r = as_alice('account', 'delete', $victim->{id});
is($r->{code}, 0, 'an account with a tampered token deleted over --api') or diag $r->{err};
like($r->{err}, qr/^sa-admin: token $bad: its record fails verification; replaced by a revocation$/m,
     'the operation\'s message, as locally');
like($api->err, qr/token $bad: its record fails verification/, "and in serve's log");

# over TCP as well, and the token from a file
my $tf = "$dir/alice.token";
SaTest::write_file($tf, "$alice\n");
chmod 0600, $tf;
$r = cli({ SA_API => $api->url }, '--token-file', $tf, qw(account list platform));
is($r->{code}, 0, 'http:// and --token-file') or diag $r->{err};
like($r->{out}, qr/deployer/, 'the list');

# exit codes and messages as locally
$r = as_alice(qw(account show platform/nope));
is($r->{code}, 2, 'not found: 2');
is($r->{err}, "sa-admin: no account 'platform/nope'\n", 'the local message');
$r = as_alice('account', 'create', 'platform', 'bad name');
is($r->{code}, 1, 'bad input: 1');
like($r->{err}, qr/^sa-admin: invalid account name 'bad name'\nusage: sa-admin account create /,
     'the message and the usage line');
$r = cli({ SA_TOKEN => $tim }, qw(token issue platform/deployer));
is($r->{code}, 2, 'a member without service_accounts:tokens: 2');
like($r->{err}, qr/tim/, 'the refusal names her');
$r = cli({ SA_TOKEN => $tim }, qw(account list platform));
is($r->{code}, 0, 'but she reads') or diag $r->{err};
$r = cli({ SA_TOKEN => SaTest::with_check('sap_' . ('A' x 16) . '_' . ('b' x 43)) },
         qw(account list platform));
is($r->{code}, 2, 'an unknown token: 2');
like($r->{err}, qr/bearer token/, 'the server says why');

# the token never from argv, files only their owner reads
$r = cli({}, qw(--token), $alice, qw(account list platform));
is($r->{code}, 1, 'there is no --token flag');
unlike($r->{err} . $r->{out}, qr/\Q$alice\E/, 'and the token is not echoed');
$r = cli({}, qw(account list platform));
is($r->{code}, 1, 'no token: usage error');
like($r->{err}, qr/SA_TOKEN or --token-file/, 'saying where it comes from');
$r = cli({}, qw(account list --help));
is($r->{code}, 0, '--help needs none');
like($r->{out}, qr/^usage: sa-admin account list/, 'the help');
chmod 0644, $tf;
$r = cli({}, '--token-file', $tf, qw(account list platform));
is($r->{code}, 1, 'a token file others read: refused');
like($r->{err}, qr/accessible by others/, 'saying so');
$r = cli({}, '--token-file', $dir, qw(account list platform));
is($r->{code}, 1, 'a directory: refused');
like($r->{err}, qr/not a regular file/, 'saying so');
$r = as_alice(qw(--as alice account list platform));
is($r->{code}, 1, '--as with --api: usage error');
like($r->{err}, qr/the server decides who you are/, 'saying why');
$r = as_alice(qw(account list platform), '--api', 'ftp://x');
is($r->{code}, 1, 'not an http, https or unix URL: usage error');

# the commands that need the keys stay local
for my $cmd (['key', 'generate', '--out', "$dir/k"], ['notify', 'run', '--once'],
             ['team', 'adopt', 'platform'], ['app', 'adopt']) {
    $r = as_alice(@$cmd);
    is($r->{code}, 1, "@$cmd over --api: usage error");
    like($r->{err}, qr/only locally, without --api/, 'it runs only locally');
}
ok(!-e "$dir/k", 'no key written');

# the server gone, Redis gone
$r = cli({ SA_TOKEN => $alice, SA_API => "unix:$dir/none.sock" }, qw(account list platform));
is($r->{code}, 3, 'no server: 3');
like($r->{err}, qr/^sa-admin: cannot reach the admin API at unix:\S+none.sock: /, 'a clear message');
my $port = SaTest::free_port();
$r = cli({ SA_TOKEN => $alice, SA_API => "http://127.0.0.1:$port" }, qw(account list platform));
is($r->{code}, 3, 'connection refused: 3');
$api->pause;
my $t0 = time;
$r = cli({ SA_TOKEN => $alice, SA_API => "unix:$sock", SA_API_TIMEOUT => 1 },
         qw(account list platform));
$api->resume;
is($r->{code}, 3, 'a server that does not answer: 3 after SA_API_TIMEOUT');
like($r->{err}, qr/^sa-admin: cannot reach the admin API at unix:\S+: Timeout/, 'saying so');
cmp_ok(time - $t0, '<', 10, 'in about a second');
$r = cli({ SA_TOKEN => $alice, SA_API_TIMEOUT => 'x' }, qw(account list platform));
is($r->{code}, 1, 'a bad SA_API_TIMEOUT: usage error');
# https is verified against the system's CAs: a server whose CA is not one
# of them is refused, exit 3, with the reason
my $tls = SaTest::tls_files();
my $tport = SaTest::free_port();
my $https = SaTest::Process::start('SaTest::Process', cmd => ['openssl', 's_server',
    '-accept', "127.0.0.1:$tport", '-cert', $tls->{cert}, '-key', $tls->{key}, '-www', '-quiet']);
SaTest::wait_until(10, sub { SaTest::port_open($tport) }) or BAIL_OUT('openssl s_server did not start');
$r = cli({ SA_TOKEN => $alice, SA_API => "https://localhost:$tport" }, qw(account list platform));
is($r->{code}, 3, 'https: a certificate of an unknown CA is refused: 3');
like($r->{err}, qr/^sa-admin: cannot reach the admin API at https:\S+: .*certificate/i,
     'saying why');
unlike($r->{out}, qr/HTTP|s_server/, 'nothing of its answer printed');
$https->stop;

$redis->stop;
$r = as_alice(qw(account list platform));
is($r->{code}, 3, 'Redis down behind the server: 3') or diag $r->{err};

done_testing;
