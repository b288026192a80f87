# sa-admin through Redis Sentinel (redis-sentinel:// URLs): the master from
# the sentinels, a failover, sentinels that are dead or wrong, and a change
# whose reply is lost; and the SaTest::Sentinels harness itself.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');
SaTest::api_local("the command line's own Redis Sentinel connection");

sub as_alice {
    my ($url, @args) = @_;
    my $env = ref $args[0] eq 'HASH' ? shift @args : {};
    return SaTest::admin($url, { SA_ACTOR => 'alice', %$env }, @args);
}

# ---------------------------------------------------------------- URLs
for my $case (['redis-sentinel://127.0.0.1:26379/0',         qr/missing #MASTER/],
              ['redis-sentinel://127.0.0.1:26379/0#',        qr/missing #MASTER/],
              ['redis-sentinel:///0#mymaster',               qr/missing or too long sentinel host/],
              ['redis-sentinel://#mymaster',                 qr/missing or too long sentinel host/],
              ['redis-sentinel://127.0.0.1:1,,127.0.0.1:2#m', qr/missing or too long sentinel host/],
              ['redis-sentinel://127.0.0.1:99999/0#m',       qr/invalid sentinel port/],
              ['redis-sentinel://127.0.0.1:0/0#m',           qr/invalid sentinel port/],
              ['redis-sentinel://127.0.0.1:x2/0#m',          qr/invalid sentinel port/],
              ['redis-sentinel://127.0.0.1:26379/x#m',       qr/invalid database number/],
              ['redis-sentinel://' . join(',', map { "h$_:1" } 1 .. 17) . '#m',
                                                             qr/more than 16 sentinels/],
              ['sentinel://127.0.0.1:26379#m',               qr/redis-sentinel:/]) {
    my ($url, $why) = @$case;
    my $r = as_alice($url, qw(team create nope --owner alice));
    is($r->{code}, 1, "usage status: $url");
    like($r->{err}, qr/\Asa-admin: invalid Redis URL: [^\n]*$why[^\n]*\n\z/, '  one line saying why');
}

# all sentinels dead: exit 3 once the (shortened) wait is over
{
    my ($p1, $p2) = (SaTest::free_port(), SaTest::free_port());
    my $r = as_alice("redis-sentinel://127.0.0.1:$p1,127.0.0.1:$p2/0#mymaster",
                     { SA_SENTINEL_TIMEOUT => 1 }, qw(team create nope --owner alice));
    is($r->{code}, 3, 'no sentinel answers: exit 3');
    like($r->{err}, qr/\Asa-admin: no master for mymaster from sentinels 127\.0\.0\.1:$p1,127\.0\.0\.1:$p2: sentinel 127\.0\.0\.1:$p2: [^\n]+\n\z/,
         '  one line naming the master, the sentinels and the last reason');
}

# ---------------------------------------------------------------- the harness
my $t0 = time;
my $s = SaTest::Sentinels->start(master => 'mymaster', replicas => 1, sentinels => 3,
                                 password => 'pw');
my ($primary, $replica) = $s->nodes;
ok(time - $t0 <= 4, 'harness: up within 4 s');
is($s->master_name, 'mymaster', 'harness: master name');
is(scalar(my @sn = $s->sentinels), 3, 'harness: three sentinels');
is($s->master, $primary, 'harness: the first node is the master');
my @sports = map { $_->port } $s->sentinels;
is($s->sentinel_addrs, join(' ', map { "127.0.0.1:$_" } @sports), 'harness: sentinel_addrs');
my $url = $s->url(db => 0);
is($url, 'redis-sentinel://:pw@' . join(',', map { "127.0.0.1:$_" } @sports) . '/0#mymaster',
   'harness: url');
like($replica->cmd('INFO', 'replication'), qr/^master_link_status:up/m, 'harness: replica in sync');

# ---------------------------------------------------------------- through the sentinels
my $r = as_alice($url, qw(team create blue --owner alice));
is($r->{code}, 0, 'team create through the sentinels') or diag $r->{err};
is($r->{err}, '', '  no warning: the replica acknowledged it');
ok($primary->cmd('EXISTS', 'sa:team:blue'), '  written on the primary');
my @changes = @{ $primary->cmd('KEYS', 'sa:change:*') };
is(scalar @changes, 1, '  with one change key');
is($primary->cmd('GET', $changes[0]), '[1]', '  holding the reply');
ok($primary->cmd('TTL', $changes[0]) > 86000, '  for a day');
ok($replica->cmd('EXISTS', 'sa:team:blue'), '  and on the replica');

$r = as_alice($url, qw(account create blue ci --json));
is($r->{code}, 0, 'account create') or diag $r->{err};
$r = as_alice($url, qw(token issue blue/ci --scope stacks:read --json));
is($r->{code}, 0, 'token issue') or diag $r->{err};
my $tok1 = ref $r->{json} eq "ARRAY" ? $r->{json}[0] : $r->{json};
ok($primary->cmd('EXISTS', "sa:tok:$tok1->{id}"), '  the token record on the primary');
$r = as_alice($url, qw(token list blue/ci));
like($r->{out}, qr/\Q$tok1->{id}\E/, 'token list');

# a bad password is refused at once, not waited on
$r = as_alice($s->url =~ s/:pw@/:wrong@/r, qw(account list blue));
is($r->{code}, 3, "wrong password: exit 3") or diag $r->{err};
like($r->{err}, qr/\Asa-admin: Redis unavailable at redis:\/\/127\.0\.0\.1:\d+\/0 \(master mymaster\): WRONGPASS[^\n]*\n\z/,
     '  one line, without the password');

# the first sentinel dead: the next one answers
my $dead = SaTest::free_port();
(my $url_dead = $url) =~ s{@}{\@127.0.0.1:$dead,};
$r = as_alice($url_dead, qw(team create green --owner alice));
is($r->{code}, 0, 'first sentinel dead: the next one answers') or diag $r->{err};
ok($primary->cmd('EXISTS', 'sa:team:green'), '  written on the primary');

# ---------------------------------------------------------------- failover
$primary->kill9;
my $new = $s->wait_failover(from => $primary, timeout => 20);
is($new, $replica, 'harness: after kill -9 of the primary, the replica is the master');
is($new->cmd('ROLE')->[0], 'master', 'harness: it says ROLE master');

$r = as_alice($url, qw(token list blue/ci));
is($r->{code}, 0, 'after the failover, the same URL works') or diag $r->{err};
like($r->{out}, qr/\Q$tok1->{id}\E/, '  the token issued before is there');
$r = as_alice($url, qw(team create red --owner alice));
is($r->{code}, 0, 'team create on the new master') or diag $r->{err};
like($r->{err}, qr/\Asa-admin: warning: no replica of redis:\/\/127\.0\.0\.1:${\ $new->port }\/0 \(master mymaster\) acknowledged the change within \d+ ms; a failover now could lose it\n\z/,
     '  warns: no replica has it');
ok($new->cmd('EXISTS', 'sa:team:red'), '  written there');
$r = as_alice($url, qw(account create red svc));
is($r->{code}, 0, 'account create on the new master') or diag $r->{err};
$r = as_alice($url, qw(token issue red/svc --json));
is($r->{code}, 0, 'token issue on the new master') or diag $r->{err};
my $tok2 = ref $r->{json} eq "ARRAY" ? $r->{json}[0] : $r->{json};
ok($new->cmd('EXISTS', "sa:tok:$tok2->{id}"), '  record there');
$r = as_alice($url, 'token', 'revoke', $tok1->{id});
is($r->{code}, 0, 'revoke of the token from before the failover') or diag $r->{err};
like($new->cmd('GET', "sa:tok:$tok1->{id}"), qr/"revoked":true/, '  a tombstone on the new master');

# the old primary back, as a replica of the new master
$s->rejoin($primary);
like($primary->cmd('INFO', 'replication'), qr/^role:slave/m, 'harness: rejoin makes a replica');

# ---------------------------------------------------------------- a wrong sentinel
# A stand-in sentinel naming whatever port its file holds.
my $fake_dir = SaTest::new_dir('fake-sentinel');
SaTest::write_file("$fake_dir/fake", <<'PERL');
use strict; use warnings; use IO::Socket::INET;
my ($port, $file) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                              Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $c = $l->accept) {
    while (defined(my $n = <$c>)) {
        my @a;
        for (1 .. ($n =~ /^\*(\d+)/)[0] // 0) {
            my ($len) = <$c> =~ /^\$(\d+)/;
            read($c, my $v, $len + 2);
            push @a, substr($v, 0, $len);
        }
        open my $fh, '<', $file; my $target = <$fh> // ''; chomp $target;
        if (lc($a[0] // '') eq 'sentinel' && $target) {
            print $c "*2\r\n\$9\r\n127.0.0.1\r\n\$" . length($target) . "\r\n$target\r\n";
        } else {
            print $c "\$-1\r\n";
        }
        $c->flush;
    }
}
PERL
my $fake_port = SaTest::free_port();
sub name_port { SaTest::write_file("$fake_dir/port", "$_[0]\n") }
name_port($primary->port);
my $fake = SaTest::Process->start(cmd => [$^X, "$fake_dir/fake", $fake_port, "$fake_dir/port"]);
SaTest::wait_for('the fake sentinel', sub { SaTest::port_open($fake_port) });
my $fake_url = "redis-sentinel://:pw\@127.0.0.1:$fake_port/0#mymaster";

my $before = $primary->digest;
$r = as_alice($fake_url, { SA_SENTINEL_TIMEOUT => 1 }, qw(team create pink --owner alice));
is($r->{code}, 3, 'a sentinel naming a replica: exit 3');
like($r->{err}, qr/\Asa-admin: no master for mymaster from sentinels 127\.0\.0\.1:$fake_port: 127\.0\.0\.1:${\ $primary->port } \(named by sentinel 127\.0\.0\.1:$fake_port\) is not a master: ROLE slave\n\z/,
     '  one line: the node is not a master');
is($primary->digest, $before, '  nothing written to the replica');
ok(!$new->cmd('EXISTS', 'sa:team:pink'), '  nor anywhere');

# ---------------------------------------------------------------- lost replies
# sa-admin in the background, its script held by CLIENT PAUSE WRITE until
# the test has arranged the loss.
sub admin_bg {
    my ($sa_url, @args) = @_;
    return SaTest::Process->start(cmd => [SaTest::admin_path(), @args],
        env => { SA_REDIS => $sa_url, SA_ACTOR => 'alice',
                 SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key' });
}
sub held_script {
    my ($node) = @_;
    return SaTest::wait_for('sa-admin to send its script', sub {
        my ($l) = grep { /cmd=evalsha/ } split /\n/, $node->cmd('CLIENT', 'LIST');
        $l && $l =~ /\bid=(\d+)/ && $1;
    });
}
sub finished {
    my ($p) = @_;
    SaTest::wait_for('sa-admin to finish', sub { !$p->running }, 15);
    return { code => $p->exit_code, out => $p->out, err => $p->err };
}

# not made: the connection is killed while the script waits
name_port($new->port);
$new->cmd('CLIENT', 'PAUSE', 10000, 'WRITE');
my $bg = admin_bg($fake_url, qw(team create orange --owner alice));
my $id = held_script($new);
$new->cmd('CLIENT', 'KILL', 'ID', $id);
ok(!$new->cmd('EXISTS', 'sa:team:orange'), 'lost before it ran: not made');
$new->cmd('CLIENT', 'UNPAUSE');
$r = finished($bg);
is($r->{code}, 0, '  sa-admin makes it on the master it finds') or diag $r->{err};
like($r->{err}, qr/^sa-admin: lost the reply to team_create from redis:\/\/127\.0\.0\.1:${\ $new->port }\/0 \(master mymaster\) \([^\n]*\); redis:\/\/127\.0\.0\.1:${\ $new->port }\/0 \(master mymaster\) shows the change was not made: making it there now$/m,
     '  and says it was not made, and made now');
like($r->{out}, qr/created team 'orange'/, '  printing what it prints');
ok($new->cmd('EXISTS', 'sa:team:orange'), '  made');
my $audit = grep { $_->[1][5] eq 'team.create' && $_->[1][7] eq 'orange' }
            @{ $new->cmd('XRANGE', 'sa:audit', '-', '+') };
is($audit, 1, '  once');

# made: the reply is swallowed by a proxy, then the connection cut
my $proxy = SaTest::Proxy->start(target => $new->port);
name_port($proxy->port);
my $tokens_before = scalar @{ $new->cmd('KEYS', 'sa:tok:*') };
my $changes_before = scalar @{ $new->cmd('KEYS', 'sa:change:*') };
$new->cmd('CLIENT', 'PAUSE', 10000, 'WRITE');
$bg = admin_bg($fake_url, qw(token issue red/svc --scope stacks:read));
held_script($new);
$proxy->set('all', 'down', 'drop');
name_port($new->port);            # the next connection goes straight there
$new->cmd('CLIENT', 'UNPAUSE');
SaTest::wait_for('the script to run', sub {
    @{ $new->cmd('KEYS', 'sa:change:*') } > $changes_before });
$proxy->cut('all');
$r = finished($bg);
is($r->{code}, 0, 'reply lost after the script ran: exit 0') or diag $r->{err};
like($r->{err}, qr/^sa-admin: lost the reply to token_issue from redis:\/\/127\.0\.0\.1:${\ $proxy->port }\/0 \(master mymaster\) \([^\n]*\); redis:\/\/127\.0\.0\.1:${\ $new->port }\/0 \(master mymaster\) shows the change was made$/m,
     '  says it was made');
my ($token) = $r->{out} =~ /\A(sat_\w+)\n\z/;
ok($token, '  and prints the token all the same');
my $tid = $token ? substr($token, 4, 16) : '-';
ok($new->cmd('EXISTS', "sa:tok:$tid"), '  which is the one in Redis');
is(scalar @{ $new->cmd('KEYS', 'sa:tok:*') }, $tokens_before + 1, '  issued once');

done_testing;
