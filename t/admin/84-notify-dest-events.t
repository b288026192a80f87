# notify set --slack-events / --webhook-events (issue 23, the console's
# Slack and webhook toggles per event): each destination gets only its own
# events, within --events; checked where the entry is queued and again
# where the sealed subscription decides at delivery; shown by notify list
# and over the API; bad combinations refused with nothing changed.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my %ENVN = SaTest::notify_env();
sub as { my $u = shift; SaTest::admin($redis, { %ENVN, SA_ACTOR => $u }, @_) }
my $receiver = SaTest::Receiver->start;
my $base = 'http://127.0.0.1:' . $receiver->port;
sub drain {
    my $r = as('worker', qw(notify run --once --allow-private));
    is($r->{code}, 0, 'worker --once exits 0') or diag $r->{err};
    return $r;
}
sub got { map { "$_->{path} " . ($_->{json}{type} // $_->{json}{text} // '?') } $receiver->received }

my $ci = SaTest::fixture($redis, apps => ['deploy'], env => \%ENVN)->account;   # platform/ci

my $r = as('alice', qw(notify set deploy platform/ci), '--slack', "$base/slack",
           '--webhook', "$base/hook", '--events', 'token.issued,token.revoked',
           qw(--slack-events token.issued --webhook-events token.revoked --json));
is($r->{code}, 0, 'set with an event list per destination') or diag $r->{err};
is_deeply($r->{json}{slack_events}, ['token.issued'], 'the answer: slack_events');
is_deeply($r->{json}{webhook_events}, ['token.revoked'], 'the answer: webhook_events');
$r = as('alice', qw(notify list deploy --json));
is_deeply([ $r->{json}[0]{slack_events}, $r->{json}[0]{webhook_events} ],
          [ ['token.issued'], ['token.revoked'] ], 'notify list shows them');

my $tok = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
drain();
my @got = $receiver->received;
is(scalar @got, 1, 'token.issued: one delivery');
is($got[0]{path}, '/slack', 'to Slack only');
as('alice', 'token', 'revoke', SaTest::tid($tok));
drain();
@got = $receiver->received;
is(scalar @got, 1, 'token.revoked: one delivery');
is($got[0]{path}, '/hook', 'to the webhook only');
is($got[0]{json}{type}, 'token.revoked', 'the revocation');

# a ping goes to both, whatever they take
as('alice', qw(notify test deploy platform/ci));
drain();
is_deeply([ sort map { $_->{path} } $receiver->received ], ['/hook', '/slack'], 'ping: both destinations');

# without the per-destination lists: both get every event, as before
as('alice', qw(notify set deploy platform/ci), '--slack', "$base/slack",
   '--webhook', "$base/hook", qw(--events token.issued));
SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
drain();
is_deeply([ sort map { $_->{path} } $receiver->received ], ['/hook', '/slack'],
          'no per-destination list: both');

# refused, nothing changed
my $before = $redis->cmd('HGET', 'sa:notify:deploy', $ci->{id});
for my $bad ([['--slack', "$base/s", qw(--events token.issued --slack-events token.revoked)],
              qr/slack event 'token.revoked' is not in events/],
             [['--slack', "$base/s", qw(--events token.issued --webhook-events token.issued)],
              qr/field 'webhook_events' needs 'webhook'/],
             [['--webhook', "$base/h", qw(--events * --webhook-events token.nope)],
              qr/unknown event 'token.nope'/]) {
    $r = as('alice', qw(notify set deploy platform/ci), @{ $bad->[0] });
    is($r->{code}, 1, "@{ $bad->[0] }: exit 1");
    like($r->{err}, $bad->[1], "and says $bad->[1]");
}
is($redis->cmd('HGET', 'sa:notify:deploy', $ci->{id}), $before, 'the subscription unchanged');
$r = as('alice', qw(notify set deploy platform/ci), '--webhook', "$base/h",
        qw(--events * --webhook-events token.denied));
is($r->{code}, 0, "events '*' takes any per-destination event");

# the sealed part decides: a public list widened behind sa-admin's back
# does not make the worker deliver
as('alice', qw(notify set deploy platform/ci), '--slack', "$base/slack",
   '--webhook', "$base/hook", '--events', 'token.issued,token.revoked',
   qw(--webhook-events token.revoked));
my $sub = JSON::PP->new->decode($redis->cmd('HGET', 'sa:notify:deploy', $ci->{id}));
delete $sub->{webhook_events};
$redis->cmd('HSET', 'sa:notify:deploy', $ci->{id}, JSON::PP->new->canonical->encode($sub));
SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
$r = drain();
is_deeply([ map { $_->{path} } $receiver->received ], ['/slack'],
          'queued for both, the webhook dropped by the sealed list');
like($r->{err}, qr/dropped: the subscription does not take this event/, 'and said');

done_testing;
