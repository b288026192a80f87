# A flag that takes one value, given twice, is a usage error (exit 1, the
# message and the command's usage), never "the last one wins"; the flags
# that are lists (--scope, --app, --perm, --events, --old-verify-key) stay
# repeatable.  The same for the global options (--as, --redis, ...).
# Nothing is changed by a refused command.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
my $keys = SaTest::keys_dir();
sub admin { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }

is(admin(qw(team create plat --owner alice))->{code}, 0, 'team created');
SaTest::apps($redis, 'plat', qw(billing shop));
is(admin(qw(account create plat ci --app billing --app shop))->{code}, 0,
   '--app twice: a list, accepted');
my $r = admin(qw(token issue plat/ci --scope a:read --scope b:write));
is($r->{code}, 0, '--scope twice: a list, accepted') or diag $r->{err};
is(admin(qw(team member add plat bob --perm service_accounts:create
            --perm service_accounts:tokens))->{code}, 0, '--perm twice: accepted');

my @twice = (
    [qw(team create other --owner alice --owner bob)],
    [qw(team create other --owner=alice --owner=bob)],
    [qw(team create other --own alice --owner bob)],
    [qw(token issue plat/ci --expires 1d --expires 90d)],
    [qw(token issue plat/ci --count 2 --count 3)],
    [qw(token rotate 0123456789abcdef --overlap 1h --overlap 2h)],
    [qw(notify set billing plat/ci --webhook https://a.example/x
        --webhook https://b.example/y --events ping)],
    [qw(notify set billing plat/ci --slack https://a.example/x
        --slack https://b.example/y --events ping)],
    [qw(notify emit billing app.x --data {} --data {"a":1})],
    [qw(notify run --once --concurrency 2 --concurrency 3)],
    [qw(audit --team plat --team other)],
    [qw(audit --since 1d --since 2d)],
    [qw(key generate --out /nonexistent/a --out /nonexistent/b)],
    [qw(key resign --old-verify-key), "$keys/verify.key", qw(--team a --team b)],
);
for my $cmd (@twice) {
    $r = admin(@$cmd);
    is($r->{code}, 1, "twice: @$cmd: exit 1");
    like($r->{err}, qr/^sa-admin: option '--[a-z-]+' may be given only once\nusage: sa-admin /,
         "twice: @$cmd: says so, with the usage") or diag $r->{err};
}
ok(!-e '/nonexistent/a', 'nothing was made');
is($redis->cmd('EXISTS', 'sa:team:other'), 0, 'no team made');

for my $global (['--as', 'alice', '--as', 'bob'],
                ['--as=alice', '--as=bob'],
                ['--redis', $redis->url, '--redis', 'redis://127.0.0.1:1/0'],
                ['--signing-key', "$keys/signing.key", '--signing-key', "$keys/x"])
{
    $r = SaTest::admin($redis, { SA_ACTOR => undef }, @$global,
                       qw(team create g --owner alice));
    is($r->{code}, 1, "global twice: @$global: exit 1");
    like($r->{err}, qr/^sa-admin: option '--[a-z-]+' may be given only once$/m,
         "global twice: @$global: says so") or diag $r->{err};
}
is($redis->cmd('EXISTS', 'sa:team:g'), 0, 'no team made');

# a flag without a value, repeated: still the ordinary flags
$r = admin(qw(notify run --once --once --concurrency 1 --notify-key),
           "$keys/notify.key");
is($r->{code}, 0, 'a flag without a value may repeat (--once twice)')
    or diag $r->{err};

done_testing;
