# notify set --keep slack,webhook (issue 23, item 4: the console saves a
# subscription's toggles without the URLs typed again; a Slack URL is a
# secret and never shown back): the stored URLs stay, the webhook keeps
# its signing secret (its deliveries still verify with the one printed
# first) and nothing is printed; the events change.  Refused, with
# nothing changed: keep with no subscription or no such destination, keep
# and the URL both, an unknown destination, a sealed value that does not
# unseal.  Runs over the API too (SA_TEST_API=1).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
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
}

my $f = SaTest::fixture($redis, apps => ['deploy'], env => \%ENVN);        # platform/ci
my $ci = $f->account;

my $r = as('alice', qw(notify set deploy platform/ci --keep webhook --events token.issued));
is($r->{code}, 1, 'keep without a subscription: exit 1');
like($r->{err}, qr/has no notifications for 'deploy' whose URL could be kept/, 'saying so');

$r = as('alice', qw(notify set deploy platform/ci), '--slack', "$base/slack/T000/SECRETPATH",
        '--webhook', "$base/hook", '--events', 'token.issued,token.revoked', '--json');
is($r->{code}, 0, 'set both') or diag $r->{err};
my $secret = $r->{json}{secret};
like($secret, qr/^whsec_/, 'the webhook secret, once');
my $stored = $redis->cmd('HGET', 'sa:notify:deploy', $ci->{id});

# refusals change nothing
for my $bad (
    [ [qw(--keep slack), '--slack', "$base/other"], qr/the Slack URL given and kept/ ],
    [ [qw(--keep webhook), '--webhook', "$base/other"], qr/the webhook URL given and kept/ ],
    [ [qw(--keep email)], qr/invalid keep 'email' \(expected slack or webhook\)/ ],
    [ [qw(--keep slack --webhook-events token.issued)], qr/field 'webhook_events' needs 'webhook'/ ],
) {
    $r = as('alice', qw(notify set deploy platform/ci --events token.issued), @{ $bad->[0] });
    is($r->{code}, 1, "@{ $bad->[0] }: exit 1");
    like($r->{err}, $bad->[1], "@{ $bad->[0] }: says why");
}
is($redis->cmd('HGET', 'sa:notify:deploy', $ci->{id}), $stored, 'nothing changed');

# the toggles change, the URLs and the secret stay
$r = as('alice', qw(notify set deploy platform/ci --keep), 'slack,webhook', '--events', 'token.issued,token.revoked',
        qw(--slack-events token.revoked --webhook-events token.issued));
is($r->{code}, 0, 'keep both, new events per destination') or diag $r->{err};
is($r->{out}, "notifications of platform/ci for deploy go to $base/... and $base/...\n",
   'no secret printed: the destinations, host only');
unlike("$r->{out}$r->{err}", qr/SECRETPATH|whsec_/, 'nor the Slack URL');
$r = as('alice', qw(notify list deploy --json));
is_deeply([ $r->{json}[0]{slack_events}, $r->{json}[0]{webhook_events} ],
          [ ['token.revoked'], ['token.issued'] ], 'the events changed');
is($r->{json}[0]{webhook}, "$base/...", 'the webhook shown as before');

SaTest::issue_token($redis, 'platform/ci');
drain();
my @got = $receiver->received;
my ($w) = grep { $_->{path} eq '/hook' } @got;
ok($w, 'token.issued went to the kept webhook URL') or diag explain [ map { $_->{path} } @got ];
ok(!grep({ $_->{path} =~ m{^/slack} } @got), 'and not to Slack (token.revoked only now)');
my ($t, $v1) = ($w->{headers}{'x-sa-signature'} // '') =~ /^t=(\d+),v1=([0-9a-f]{64})$/;
is($v1, hmac_sha256_hex("$t.$w->{body}", $secret), 'signed with the secret printed first: kept');

$r = as('alice', qw(notify set deploy platform/ci --keep slack --events token.revoked --json));
is($r->{code}, 0, 'keep Slack alone: the webhook goes') or diag $r->{err};
is($r->{json}{webhook}, undef, 'no webhook now');
is($r->{json}{secret}, undef, 'no secret');
my $tok = SaTest::issue_token($redis, 'platform/ci');
as('alice', 'token', 'revoke', SaTest::tid($tok));
drain();
@got = $receiver->received;
is_deeply([ map { $_->{path} } @got ], ['/slack/T000/SECRETPATH'], 'token.revoked to the kept Slack URL, whole');
$r = as('alice', qw(notify set deploy platform/ci --keep webhook --events token.revoked));
is($r->{code}, 1, 'keep a webhook no longer stored: exit 1');
like($r->{err}, qr/has no webhook URL for 'deploy' to keep/, 'saying so');

# a sealed value that does not unseal: refused, not re-sealed
my $sub = JSON::PP->new->decode($redis->cmd('HGET', 'sa:notify:deploy', $ci->{id}));
$sub->{sealed} =~ s/.$/$& eq 'A' ? 'B' : 'A'/e;
my $forged = JSON::PP->new->canonical->encode($sub);
$redis->cmd('HSET', 'sa:notify:deploy', $ci->{id}, $forged);
$r = as('alice', qw(notify set deploy platform/ci --keep slack --events token.revoked));
is($r->{code}, 1, 'keep from a tampered subscription: exit 1');
like($r->{err}, qr/cannot be unsealed \(tampered\?\): give the URLs again/, 'saying so');
is($redis->cmd('HGET', 'sa:notify:deploy', $ci->{id}), $forged, 'left as it was');

done_testing;
