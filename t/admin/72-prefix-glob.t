# A key prefix with glob characters (SA_PREFIX='p[1]:') must not disable
# the SCAN safety nets: the MATCH patterns escape the prefix, so
#   - a token removed from its account's index is still revoked by
#     account delete,
#   - app adopt finds the grants of the accounts under that prefix,
#   - key resign re-signs the records under that prefix (and only those);
# and key resign that finds no record at all while teams exist fails
# loudly (exit 2) instead of reporting "re-signed 0" with exit 0.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use MIME::Base64 ();
use SaTest;

my $redis = SaTest::Redis->start;
my $P = 'p[1]:';
my $old = SaTest::keys_dir();
my $new = SaTest::new_dir('glob-newkey') . '/k';
is(SaTest::run([SaTest::admin_path(), 'key', 'generate', '--out', $new])->{code}, 0,
   'a second key pair');

sub as {
    my ($env, @args) = @_;
    return SaTest::admin($redis, { SA_ACTOR => 'alice', SA_PREFIX => $P, %$env }, @args);
}

sub payload {
    my ($v) = @_;
    return undef unless defined $v && $v =~ /^sa1\.[A-Za-z0-9_-]{86}\.(.*)$/s;
    return JSON::PP->new->decode($1);
}

is(as({}, qw(team create plat --owner alice))->{code}, 0, 'team under p[1]:');
is(SaTest::operator($redis, { SA_PREFIX => $P }, qw(app create api --team plat))->{code},
   0, 'application under p[1]:');
my %aid;
my %tok;
for my $name (qw(d e)) {
    my $r = as({}, qw(account create plat), $name, qw(--app api --json));
    is($r->{code}, 0, "account $name") or diag $r->{err};
    $aid{$name} = JSON::PP->new->decode($r->{out})->{id};
    for (1 .. 2) {
        $r = as({}, 'token', 'issue', "plat/$name", qw(--scope api:read --json));
        is($r->{code}, 0, "a token of $name") or diag $r->{err};
        push @{ $tok{$name} }, JSON::PP->new->decode($r->{out})->{id};
    }
}

# 1. account delete: a token removed from the index is revoked all the same
$redis->cmd('SREM', "${P}acct:$aid{e}:tokens", $tok{e}[0]);
my $r = as({}, qw(account delete plat/e));
is($r->{code}, 0, 'account delete: exit 0') or diag $r->{err};
for my $t (@{ $tok{e} }) {
    my $p = payload($redis->cmd('GET', "${P}tok:$t")) // {};
    ok($p->{revoked}, "token $t is revoked, listed or not");
}

# 1b. app adopt: its SCAN of the account records finds those under p[1]:
$redis->cmd('DEL', "${P}app:api");
$redis->cmd('SREM', "${P}apps", 'api');
$r = SaTest::operator($redis, { SA_PREFIX => $P }, qw(app adopt --json));
is($r->{code}, 0, 'app adopt under p[1]:') or diag $r->{err};
my $list = eval { JSON::PP->new->decode($r->{out}) } // [];
is_deeply([map { $_->{name} } @$list], ['api'],
          'lists the application that account d holds, without a record');
$r = SaTest::operator($redis, { SA_PREFIX => $P }, qw(app adopt api --team plat));
is($r->{code}, 0, 'and adopts it') or diag $r->{err};

# a decoy that the unescaped pattern "p[1]:tok:*" matches ("p1:tok:...")
# and the escaped one does not
$redis->cmd('SET', 'p1:tok:AAAAAAAAAAAAAAAA', 'not ours');

# 2. key resign with the new key: every record under p[1]: is re-signed
$r = as({ SA_SIGNING_KEY => "$new/signing.key" },
        'key', 'resign', '--old-verify-key', "$old/verify.key", '--json');
is($r->{code}, 0, 'key resign under p[1]:: exit 0') or diag $r->{err};
my $doc = eval { JSON::PP->new->decode($r->{out}) } // {};
is($doc->{tokens}, 4, 'the four token records re-signed') or diag $r->{out};
is($doc->{accounts}, 1, 'the account re-signed');
is($redis->cmd('GET', 'p1:tok:AAAAAAAAAAAAAAAA'), 'not ours', 'the decoy left alone');
my $p = payload($redis->cmd('GET', "${P}tok:$tok{d}[0]")) // {};
is($p->{version}, 2, 'a token record of d: its version bumped');

# 3. no record found while teams exist: a loud failure, not "0 re-signed"
my $empty = 'q[x]:';
$redis->cmd('SADD', "${empty}teams", 'ghost');
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_PREFIX => $empty },
                   'key', 'resign', '--old-verify-key', "$old/verify.key");
is($r->{code}, 2, 'nothing found while a team exists: exit 2');
like($r->{err}, qr/found no record under prefix 'q\[x\]:' although 1 team exists.*do not remove the old verify key/,
     'and says what not to do') or diag $r->{err};

# an empty store is fine
$r = SaTest::admin($redis, { SA_ACTOR => 'alice', SA_PREFIX => 'empty:' },
                   'key', 'resign', '--old-verify-key', "$old/verify.key");
is($r->{code}, 0, 'an empty store: exit 0') or diag $r->{err};

# a prefix longer than the gateway's limit (100 bytes) is refused
$r = SaTest::admin($redis, { SA_PREFIX => 'x' x 101 }, qw(team member list plat));
is($r->{code}, 1, 'SA_PREFIX over 100 bytes: exit 1');
like($r->{err}, qr/SA_PREFIX is longer than 100 bytes/, 'and says so');

done_testing;
