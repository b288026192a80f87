# sa-admin through Redis Sentinel (redis-sentinel:// URLs), and the
# SaTest::Sentinels harness the module's Sentinel tests use.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

# ---------------------------------------------------------------- harness
{
    my $s = SaTest::Sentinels->start(master => 'hx', replicas => 1, sentinels => 3);
    my ($p, $r) = $s->nodes;
    is($s->master_name, 'hx', 'harness: master name');
    is(scalar $s->sentinels, 3, 'harness: three sentinels');
    is($s->master, $p, 'harness: the first node is the master');
    my @ports = map { $_->port } $s->sentinels;
    is($s->sentinel_addrs, join(' ', map { "127.0.0.1:$_" } @ports), 'harness: sentinel_addrs');
    is($s->url(db => 2), 'redis-sentinel://' . join(',', map { "127.0.0.1:$_" } @ports) . '/2#hx',
       'harness: url');
    like($r->cmd('INFO', 'replication'), qr/^master_link_status:up/m, 'harness: replica in sync');
    $p->cmd(SET => 'before', 1);
    is($p->cmd('WAIT', 1, 2000), 1, 'harness: the write reached the replica');
    $p->kill9;
    my $new = $s->wait_failover(from => $p, timeout => 20);
    is($new, $r, 'harness: after kill -9 of the primary, the replica is the master');
    is($new->cmd(ROLE => ())->[0], 'master', 'harness: it says ROLE master');
    is($new->cmd(GET => 'before'), 1, 'harness: with the replicated data');
}

done_testing;
