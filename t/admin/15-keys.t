# sa-admin key generate and the signing key's file: the directory is made
# private when missing, the output is valid JSON whatever the path, and a
# signing key that others can read is refused (as ssh refuses such keys),
# with a message that says how to fix it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use POSIX ();
use SaTest;
SaTest::api_local("key generate and the key files themselves");

my $redis = SaTest::Redis->start;
my $base = SaTest::new_dir('keys-test');

sub keygen { SaTest::admin($redis, {}, 'key', 'generate', '--out', @_) }
sub mode   { (stat $_[0])[2] & 07777 }

# a missing directory is created, 0700
my $dir = "$base/new";
my $r = keygen($dir);
is($r->{code}, 0, 'key generate into a missing directory') or diag $r->{err};
is(mode($dir), 0700, 'the directory is created 0700');
is(mode("$dir/signing.key"), 0600, 'signing.key 0600');
is(mode("$dir/verify.key"), 0644, 'verify.key 0644');

# an existing directory keeps its mode; keys are never overwritten
mkdir "$base/shared", 0755;
chmod 0755, "$base/shared";
is(keygen("$base/shared")->{code}, 0, 'into an existing directory');
is(mode("$base/shared"), 0755, 'which keeps its mode');
$r = keygen("$base/shared");
is($r->{code}, 2, 'never over existing keys');
like($r->{err}, qr/exists/, 'and says so');

# missing parents are made as mkdir -p makes them, each 0700
$r = keygen("$base/no/such/keys");
is($r->{code}, 0, 'missing parents: created (mkdir -p)') or diag $r->{err};
is(mode("$base/no"), 0700, 'a missing parent is created 0700');
is(mode("$base/no/such"), 0700, 'and the next one');
is(mode("$base/no/such/keys"), 0700, 'and DIR itself');
ok(-f "$base/no/such/keys/signing.key", 'the keys are written there');

# a file where a directory should be: the reason, exit 2
SaTest::write_file("$base/plain", "x\n");
$r = keygen("$base/plain/keys");
is($r->{code}, 2, 'a file in the path: exit 2');
like($r->{err}, qr/cannot create .*Not a directory/, 'a file in the path: the reason');

# an existing directory others may write to is refused, sticky or not (as
# ssh refuses keys in such a directory): another user could replace the
# keys in it; nothing is written there
for my $m (0777, 01777, 0770, 0757) {
    my $d = sprintf("$base/open%04o", $m);
    mkdir $d;
    chmod $m, $d;
    $r = keygen($d);
    is($r->{code}, 2, sprintf('directory mode %04o: refused, exit 2', $m));
    like($r->{err}, qr/may be written by others .*chmod go-w/,
         sprintf('mode %04o: says why and how to fix it', $m));
    ok(!-e "$d/signing.key" && !-e "$d/verify.key" && !-e "$d/notify.key",
       sprintf('mode %04o: no key written', $m));
}

# a FIFO (or any non-regular file) as a key file is refused at once, never
# waited on
my $fifo = "$base/fifo";
POSIX::mkfifo($fifo, 0600) or die "mkfifo: $!";
$r = SaTest::run_admin(redis => $redis, timeout => 10,
                       env => { SA_ACTOR => 'alice', SA_SIGNING_KEY => $fifo },
                       args => [qw(account create fifo x)]);
is($r->{code}, 1, 'a FIFO as --signing-key: exit 1, without blocking');
like($r->{err}, qr/signing key "\Q$fifo\E" is not a regular file/, 'and says why');
$r = SaTest::run_admin(redis => $redis, timeout => 10,
                       args => ['notify', 'run', '--once', '--notify-key', $fifo]);
is($r->{code}, 1, 'a FIFO as --notify-key: exit 1, without blocking');
like($r->{err}, qr/notify key "\Q$fifo\E" is not a regular file/, 'and says why');
$r = SaTest::run_admin(redis => $redis, timeout => 10,
                       args => ['key', 'resign', '--old-verify-key', $fifo]);
is($r->{code}, 1, 'a FIFO as --old-verify-key: exit 1, without blocking');
like($r->{err}, qr/"\Q$fifo\E" is not a regular file/, 'and says why');
$r = SaTest::run_admin(redis => $redis, timeout => 10,
                       env => { SA_ACTOR => 'alice', SA_SIGNING_KEY => '/dev/null' },
                       args => [qw(account create devnull x)]);
is($r->{code}, 1, 'a device as --signing-key: exit 1');
like($r->{err}, qr/not a regular file/, 'and says why');

# JSON output is JSON, even for a path with quotes and backslashes
my $odd = "$base/q\"uo\\te";
$r = keygen($odd, '--json');
is($r->{code}, 0, 'a path with a quote and a backslash') or diag $r->{err};
my $doc = eval { JSON::PP->new->decode($r->{out}) };
ok($doc, '--json output parses') or diag $r->{out};
is($doc->{signing_key}, "$odd/signing.key", 'the signing key path, exactly');
is($doc->{verify_key}, "$odd/verify.key", 'the verify key path, exactly');

# a signing key readable by others is refused by every signing command
my $key = "$dir/signing.key";
sub as_with_key {
    SaTest::admin($redis, { SA_ACTOR => 'alice', SA_SIGNING_KEY => $key }, @_);
}
as_with_key(qw(team create platform --owner alice));
for my $m (0640, 0604, 0644) {
    chmod $m, $key;
    $r = as_with_key(qw(account create platform ci));
    is($r->{code}, 1, sprintf('signing key mode %04o: exit 1', $m));
    like($r->{err}, qr/accessible by others.*chmod 600/, sprintf('mode %04o: says how to fix it', $m));
}
is($redis->cmd('HLEN', 'sa:team:platform:names'), 0, 'and nothing was created');
chmod 0600, $key;
$r = as_with_key(qw(account create platform ci));
is($r->{code}, 0, 'mode 0600: accepted') or diag $r->{err};

# token list: scopes read as a list in the human form
my $t = as_with_key(qw(token issue platform/ci --scope stacks:read --scope deploy:write));
is($t->{code}, 0, 'token issued');
$r = as_with_key(qw(token list platform/ci));
like($r->{out}, qr/  stacks:read, deploy:write\n/, 'scopes as "a:b, c:d"') or diag $r->{out};
unlike($r->{out}, qr/\[/, 'not a JSON array');
as_with_key(qw(token issue platform/ci));
$r = as_with_key(qw(token list platform/ci));
like($r->{out}, qr/  -\n/, 'no scopes: "-"') or diag $r->{out};

# without a signing key, reading commands still work, but say what they show
$r = SaTest::admin($redis, { SA_SIGNING_KEY => undef }, qw(token list platform/ci));
is($r->{code}, 0, 'token list without a signing key');
like($r->{err}, qr/records are shown unverified/, 'says the records are unverified');

done_testing;
