# sa-admin's Redis connection: URL forms, credentials, failures.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start(unix => 1);
sub with_url {
    my ($url, @args) = @_;
    return SaTest::admin($redis, { SA_REDIS => $url, SA_ACTOR => 'alice' }, @args);
}

my $port = $redis->port;
my $r = with_url("redis://127.0.0.1:$port/3", qw(team create dbthree --owner alice));
is($r->{code}, 0, 'TCP URL with a db') or diag $r->{err};
$redis->cmd('SELECT', 3);
ok($redis->cmd('EXISTS', 'sa:team:dbthree'), 'written to db 3');
$redis->cmd('SELECT', 0);
ok(!$redis->cmd('EXISTS', 'sa:team:dbthree'), 'not to db 0');

$r = with_url('unix://' . $redis->socket . '?db=0', qw(team create sock --owner alice));
is($r->{code}, 0, 'unix socket URL') or diag $r->{err};
ok($redis->cmd('EXISTS', 'sa:team:sock'), 'written');

$r = SaTest::admin($redis, { SA_REDIS => undef, SA_ACTOR => 'alice' },
                   '--redis', "redis://127.0.0.1:$port/0", qw(team create flag --owner alice));
is($r->{code}, 0, '--redis overrides the environment');

$redis->cmd('ACL', 'SETUSER', 'gw', 'on', '>s3cret', '~*', '&*', '+@all');
$r = with_url("redis://gw:s3cret\@127.0.0.1:$port/0", qw(team create acl --owner alice));
is($r->{code}, 0, 'ACL user and password') or diag $r->{err};
$r = with_url("redis://gw:wrong\@127.0.0.1:$port/0", qw(team create acl2 --owner alice));
is($r->{code}, 3, 'a refused AUTH is exit 3');
like($r->{err}, qr/^sa-admin: Redis unavailable at redis:\/\/127\.0\.0\.1:$port\/0: WRONGPASS/,
     'one clear line');
unlike($r->{err}, qr/wrong/, 'without the password');

my $locked = SaTest::Redis->start(password => 'pw');
$r = SaTest::admin($locked, { SA_ACTOR => 'alice' }, qw(team create p --owner alice));
is($r->{code}, 0, 'requirepass with redis://:pw@host') or diag $r->{err};
$r = SaTest::admin($locked, { SA_ACTOR => 'alice',
                              SA_REDIS => 'redis://127.0.0.1:' . $locked->port . '/0' },
                   qw(account list p));
is($r->{code}, 3, 'no password: exit 3');
like($r->{err}, qr/NOAUTH|Authentication required/, 'says authentication is needed');

my $dead = SaTest::free_port();
$r = with_url("redis://127.0.0.1:$dead/0", qw(account list x));
is($r->{code}, 3, 'Redis down: exit 3');
like($r->{err}, qr/^sa-admin: Redis unavailable at redis:\/\/127\.0\.0\.1:$dead\/0: Connection refused\n\z/,
     'one line naming the address');

for my $url ('http://x', 'redis://host:port/0', 'redis://h:99999/0', 'redis://h:1/x',
             'unix://relative/path') {
    $r = with_url($url, qw(account list x));
    is($r->{code}, 1, "bad URL $url: exit 1");
    like($r->{err}, qr/^sa-admin: invalid Redis URL: /, 'says so');
}

# memory full: a change is refused whole
my $before = $redis->digest;
$redis->cmd('CONFIG', 'SET', 'maxmemory', 1);
$r = with_url("redis://127.0.0.1:$port/0", qw(team create full --owner alice));
is($r->{code}, 3, 'OOM: exit 3');
like($r->{err}, qr/OOM/, 'names the cause');
$redis->cmd('CONFIG', 'SET', 'maxmemory', 0);
is($redis->digest, $before, 'nothing written');

# listings never use KEYS
$redis->cmd('CONFIG', 'RESETSTAT');
with_url("redis://127.0.0.1:$port/0", qw(account list sock));
my $stats = $redis->cmd('INFO', 'commandstats');
unlike($stats, qr/cmdstat_keys:/, 'account list does not use KEYS');
like($stats, qr/cmdstat_smembers:/, 'it reads the index set');

# a SCAN that fails is never the end of the keys: account delete, which
# must find every token of the account, stops and changes nothing
with_url("redis://127.0.0.1:$port/0", qw(account create acl bot));
with_url("redis://127.0.0.1:$port/0", qw(token issue acl/bot));
$redis->cmd('ACL', 'SETUSER', 'noscan', 'on', '>s3cret', '~*', '&*', '+@all', '-scan');
$before = $redis->digest;
$r = with_url("redis://noscan:s3cret\@127.0.0.1:$port/0", qw(account delete acl/bot));
is($r->{code}, 3, 'SCAN refused: account delete exits 3') or diag $r->{err};
like($r->{err}, qr/SCAN refused: NOPERM/, 'and says why');
is($redis->digest, $before, 'nothing written');
is(with_url("redis://127.0.0.1:$port/0", qw(account show acl/bot))->{code}, 0, 'the account is still there');

# a reply larger than any sa-admin asks for (a Redis writer's 70 MB token
# record) is refused before it takes the memory, with a clear error
{
    my $big = with_url("redis://127.0.0.1:$port/0", qw(token issue acl/bot --json));
    my $tid = $big->{json}{id};
    $redis->cmd('SET', "sa:tok:$tid", 'x' x (70 << 20));
    $r = with_url("redis://127.0.0.1:$port/0", 'token', 'revoke', $tid);
    is($r->{code}, 3, 'a 70 MB reply: exit 3') or diag $r->{err};
    like($r->{err}, qr/a reply of over 64 MiB, refused/, 'and says why');
    unlike($r->{err}, qr/x{100}/, 'none of it printed');
    $redis->cmd('DEL', "sa:tok:$tid");
}

done_testing;
