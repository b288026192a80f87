# Access: a valid token reaches the upstream with its identity; every kind of
# refusal gets its exact 401 challenge and its $sa_status; header edge cases.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(billing)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
sub tid { SaTest::tid($_[0]) }

sub issue {
    my ($via, @args) = @_;
    my $r = $via->(qw(token issue platform/ci), @args);
    die "token issue failed: $r->{err}" if $r->{code};
    chomp(my $token = $r->{out});
    return $token;
}

my $account = $f->account;
my $token = issue(\&as, qw(--scope stacks:read --scope deploy:write));

# the backend echoes what it received; it listens on a unix socket, so the
# gateway's own port is the only one
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    log_format sa '$arg_case $status $sa_status';
    server {
        listen unix:%%DIR%%/backend.sock;
        access_log off;
        location / {
            return 200 "auth=$http_authorization\naccount=$http_x_sa_account\nname=$http_x_sa_name\nemail=$http_x_sa_email\nteam=$http_x_sa_team\ntoken=$http_x_sa_token\nscopes=$http_x_sa_scopes\n";
        }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        proxy_set_header X-Sa-Account $sa_account;
        proxy_set_header X-Sa-Name    $sa_account_name;
        proxy_set_header X-Sa-Email   $sa_account_email;
        proxy_set_header X-Sa-Team    $sa_team;
        proxy_set_header X-Sa-Token   $sa_token_id;
        proxy_set_header X-Sa-Scopes  $sa_scopes;
        location /api/ {
            sa_auth api;
            proxy_pass http://unix:%%DIR%%/backend.sock;
        }
        location /keep/ {
            sa_auth api;
            sa_hide_credentials off;
            proxy_pass http://unix:%%DIR%%/backend.sock;
        }
    }
CONF

# GET /api/?case=NAME with an optional Authorization header
sub call {
    my ($case, $auth, $path) = @_;
    return $nginx->get(($path // '/api/') . "?case=$case",
                       defined $auth ? (Authorization => $auth) : ());
}

# the $sa_status logged for ?case=NAME (the log line may trail the response)
sub logged_status {
    my ($case) = @_;
    my $line = SaTest::wait_until(2, sub {
        SaTest::slurp($nginx->dir . '/sa.log') =~ /^\Q$case\E (\d+ \S+)$/m ? $1 : 0;
    });
    return $line || '(not logged)';
}

sub echoed {
    my ($res) = @_;
    return { map { /^(\w+)=(.*)$/ ? ($1, $2) : () } split /\n/, $res->{content} };
}

my $realm    = 'Bearer realm="api"';
my $invalid  = 'Bearer realm="api", error="invalid_token"';

# expect_401(case, Authorization or undef, sa_status, challenge)
sub expect_401 {
    my ($case, $auth, $status, $challenge) = @_;
    my $res = call($case, $auth);
    is($res->{status}, 401, "$case: 401");
    is($res->{headers}{'www-authenticate'}, $challenge, "$case: WWW-Authenticate");
    is(logged_status($case), "401 $status", "$case: \$sa_status $status");
}

# ---- a valid token: 200, the identity upstream, the credential hidden
my $res = call('valid', "Bearer $token");
is($res->{status}, 200, 'valid token: 200') or diag explain $res;
my $got = echoed($res);
is($got->{account}, $account->{id}, '$sa_account upstream');
is($got->{name}, 'ci', '$sa_account_name upstream');
is($got->{email}, "$account->{id}\@platform.sa.invalid", '$sa_account_email upstream');
is($got->{team}, 'platform', '$sa_team upstream');
is($got->{token}, tid($token), '$sa_token_id upstream');
is(join(' ', sort split / /, $got->{scopes} // ''), 'deploy:write stacks:read',
   '$sa_scopes upstream, space-separated');
is($got->{auth}, '', 'Authorization removed before proxying by default');
is(logged_status('valid'), '200 ok', '$sa_status ok');

$res = call('keep', "Bearer $token", '/keep/');
is($res->{status}, 200, 'sa_hide_credentials off: 200');
is(echoed($res)->{auth}, "Bearer $token", 'sa_hide_credentials off: Authorization kept');

# ---- no bearer credential: 401 with the bare challenge
expect_401('none',  undef,                            'missing', $realm);
expect_401('basic', 'Basic YWxpY2U6c2VjcmV0',         'missing', $realm);
$res = $nginx->get("/api/?case=query2&access_token=$token");
is($res->{status}, 401, 'a token in the query string only: 401');
is($res->{headers}{'www-authenticate'}, $realm, 'a token in the query string only: bare challenge');
is(logged_status('query2'), '401 missing', 'a token in the query string only: missing');

# ---- malformed: refused without asking Redis
sub gets { $redis->calls('get') }
my $flip = sub { my ($t, $i) = @_; my $c = substr($t, $i, 1) eq 'A' ? 'B' : 'A'; substr($t, 0, $i) . $c . substr($t, $i + 1) };
my $gets = gets();
my %malformed = (
    short       => substr($token, 0, -1),
    long        => $token . 'A',
    prefix      => 'sak_' . substr($token, 4),
    alphabet    => substr($token, 0, 30) . '-' . substr($token, 31),
    crc         => $flip->($token, length($token) - 1),
    secret_typo => $flip->($token, 30),
    random      => 'sat_' . ('A' x 16) . '_' . ('B' x 49),
);
for my $case (sort keys %malformed) {
    expect_401("malformed_$case", "Bearer $malformed{$case}", 'malformed', $invalid);
}
expect_401('bearer_empty', 'Bearer',               'malformed', $invalid);
expect_401('two_creds',    "Bearer $token $token", 'malformed', $invalid);
is(gets(), $gets, 'no GET reached Redis for any malformed token');

# ---- header edge cases that are fine
for my $c (['lower',  "bearer $token"], ['upper', "BEARER $token"],
           ['spaces', "Bearer    $token   "], ['tab', "Bearer\t$token"]) {
    my ($case, $auth) = @$c;
    is(call($case, $auth)->{status}, 200, "$case: 200");
    is(logged_status($case), '200 ok', "$case: ok");
}

# ---- well-formed but refused
my $gone = issue(\&as, qw(--scope stacks:read));
$redis->cmd('DEL', 'sa:tok:' . tid($gone));
expect_401('unknown_deleted', "Bearer $gone", 'unknown', $invalid);

# a genuine token of the same account name, issued in another db
my $db1 = $redis->url =~ s{/0$}{/1}r;
sub as1 { SaTest::admin($db1, { SA_ACTOR => 'alice' }, @_) }
as1(qw(team create platform --owner alice));
SaTest::apps($db1, 'platform', qw(billing));
as1(qw(account create platform ci --app billing));
my $elsewhere = issue(\&as1, qw(--scope stacks:read));
expect_401('unknown_elsewhere', "Bearer $elsewhere", 'unknown', $invalid);

my $revoked = issue(\&as, qw(--scope stacks:read));
is(call('before_revoke', "Bearer $revoked")->{status}, 200, 'before revocation: 200');
is(as('token', 'revoke', tid($revoked))->{code}, 0, 'token revoke');
expect_401('revoked', "Bearer $revoked", 'revoked', $invalid);

my $expiring = issue(\&as, qw(--scope stacks:read --expires 1s));
sleep 2;    # time passing: the token's second runs out
expect_401('expired', "Bearer $expiring", 'expired', $invalid);

# ---- tampered: a widened record, and a record signed by another key
my $victim = issue(\&as, qw(--scope stacks:read));
my $key = 'sa:tok:' . tid($victim);
my $record = $redis->cmd('GET', $key);
(my $widened = $record) =~ s/"stacks:read"/"stacks:*   "/ or die "no scope in $record";
is(length $widened, length $record, 'the widened record has the same length');
$redis->cmd('SET', $key, $widened);
my $mark = length $nginx->error_log;
expect_401('tampered', "Bearer $victim", 'tampered', $invalid);
my $new_log = substr($nginx->error_log, $mark);
like($new_log, qr/\[error\].*\Q@{[ tid($victim) ]}\E/, 'tampered: an [error] line naming the token id');

my $other_keys = SaTest::new_dir('other-keys');
my $r = SaTest::run([SaTest::admin_path(), qw(key generate --out), $other_keys]);
is($r->{code}, 0, 'a second key pair') or diag $r->{err};
my $db2 = $redis->url =~ s{/0$}{/2}r;
sub as2 {
    SaTest::admin($db2, { SA_ACTOR => 'alice', SA_SIGNING_KEY => "$other_keys/signing.key" }, @_);
}
as2(qw(team create platform --owner alice));
SaTest::operator($db2, { SA_SIGNING_KEY => "$other_keys/signing.key" }, qw(app create billing --team platform));
as2(qw(account create platform ci --app billing));
my $forged = issue(\&as2, qw(--scope stacks:read));
$redis->cmd('SELECT', 2);
my $foreign = $redis->cmd('GET', 'sa:tok:' . tid($forged));
$redis->cmd('SELECT', 0);
ok(defined $foreign, 'the foreign record exists in db 2');
$redis->cmd('SET', 'sa:tok:' . tid($forged), $foreign);
$mark = length $nginx->error_log;
expect_401('foreign_key', "Bearer $forged", 'tampered', $invalid);
like(substr($nginx->error_log, $mark), qr/\[error\]/, 'foreign key: an [error] line');

# a genuine record copied under another token's id
my $host = issue(\&as, qw(--scope stacks:read));
$redis->cmd('SET', 'sa:tok:' . tid($host), $redis->cmd('GET', 'sa:tok:' . tid($token)));
expect_401('swapped', "Bearer $host", 'tampered', $invalid);

# the original token still works after all this
is(call('still', "Bearer $token")->{status}, 200, 'the valid token still works');
unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/, 'no alert, no crash');

done_testing;
