# A serve worker's memory of the envelopes it verified (records.c,
# sa_verified): an authenticated read opens the account and team records,
# and the same bytes again skip the Ed25519 check (bench/README.md, the
# admin API).  It must never stand for other bytes: after the genuine
# records were read (and remembered) by the one worker, an edited payload
# under the genuine signature, or another signature, is refused every
# time; the genuine record back reads again.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $aid = $f->{account}{id};
chomp(my $sap = SaTest::operator($redis, qw(user token issue alice))->{out});
my $api = SaTest::Serve->start(redis => $redis, args => [ '--workers', 1 ]);
sub show { $api->req(GET => "/v1/accounts/$aid", headers => { Authorization => "Bearer $sap" }) }

my $r = show();
is($r->{status}, 200, 'alice reads her account') or diag $r->{raw};
is(show()->{status}, 200, 'again, the records remembered') for 1 .. 3;

for my $key ("sa:acct:$aid", 'sa:team:platform') {
    my $good = $redis->cmd('GET', $key);
    ok(defined $good, "$key is a record") or next;
    my ($head, $body) = $good =~ /^(sa1\.[^.]+\.)(.*)$/s;
    my %bad = (
        'payload edited' => $head . ($body =~ s/"version":(\d+)/'"version":' . ($1 + 1)/er),
        'signature changed' => ($head =~ s/^sa1\.(.)/'sa1.' . ($1 eq 'A' ? 'B' : 'A')/er) . $body,
        'a byte appended' => $good . ' ',
    );
    for my $k (sort keys %bad) {
        isnt($bad{$k}, $good, "$key, $k: other bytes");
        $redis->cmd('SET', $key, $bad{$k});
        for my $i (1 .. 2) {
            my $s = show()->{status};
            isnt($s, 200, "$key, $k: refused (read $i: $s)");
        }
    }
    $redis->cmd('SET', $key, $good);
    is(show()->{status}, 200, "$key: the genuine record back: read");
}

ok($api->stop, 'serve stops');
done_testing;
