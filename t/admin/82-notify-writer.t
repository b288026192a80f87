# sa-admin notify run against a Redis writer (a process with write access
# to Redis and no signing or notify key: what every gateway host has):
# unsigned entries of its making, control characters, forged status and
# time, duplicated and replayed entries, a signed event moved to another
# application, a subscription restored after an ungrant, an older
# subscription put back after notify set or remove; and an event
# whose Slack text must be cut inside non-ASCII text.  Real Redis, a real
# receiver (t/lib/receiver).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my %ENVN = SaTest::notify_env();
sub as { my $u = shift; SaTest::admin($redis, { %ENVN, SA_ACTOR => $u }, @_) }

my $receiver = SaTest::Receiver->start;
my ($port, $rdir) = ($receiver->port, $receiver->dir);
my $base = "http://127.0.0.1:$port";
sub received { $receiver->received }    # since the last call, parsed
sub drain {
    my $r = as('worker', qw(notify run --once --allow-private));
    is($r->{code}, 0, 'the worker exits 0') or diag $r->{err};
    return $r;
}
sub xadd { $redis->cmd('XADD', 'sa:events', '*', @_) }
sub failed { @{ as('alice', qw(notify failed --json))->{json} // [] } }

my $ci = SaTest::fixture($redis, apps => ['billing'], env => \%ENVN)->account;   # platform/ci
SaTest::apps($redis, 'platform', qw(payroll));
my $pay = as('alice', qw(account create platform pay --app payroll --json))->{json};
my $sl = as('alice', qw(account create platform sl --app billing --json))->{json};
as('alice', 'notify', 'set', 'billing', 'platform/ci', '--webhook', "$base/ci", '--events', '*');
as('alice', 'notify', 'set', 'payroll', 'platform/pay', '--webhook', "$base/pay", '--events', '*');
as('alice', 'notify', 'set', 'billing', 'platform/sl', '--slack', "$base/slack", '--events', 'app.note');
my $token = SaTest::issue_token($redis, 'platform/ci');
my $tid = substr($token, 4, 16);
drain();
received();
$redis->cmd('DEL', 'sa:delivery:failed');

# ------------------------------------------- 1. unsigned entries of a writer
xadd(app => 'billing', account => $ci->{id}, dest => 'webhook', type => 'account.deleted',
     token => $tid, status => 'deleted by the security team', time => 1);
my $r = drain();
is(scalar(received()), 0, 'an unsigned account.deleted is not sent');
like($r->{err}, qr/unsigned entry may only ask for token\.denied, token\.quota_warning, token\.quota_exhausted or token\.expiring/,
     'the worker says why');
my @f = failed();
is(scalar(@f), 1, 'it is kept as a dead letter');

# 13. a dead letter of no team: the operator's alone
ok(exists $f[0]{team} && !defined $f[0]{team}, 'notify failed --json: "team": null');
$r = as('mallory', 'notify', 'retry', $f[0]{id});
is($r->{code}, 2, 'notify retry of a delivery of no team by a user: refused');
like($r->{err}, qr/operator's decision/, 'an operator\'s decision');
$r = SaTest::admin($redis, { %ENVN, SA_ACTOR => undef }, 'notify', 'retry', $f[0]{id});
is($r->{code}, 0, 'the operator (the signing key, no --as) re-queues it') or diag $r->{err};
$r = drain();
like($r->{err}, qr/unsigned entry may only ask/, 'and it is refused again');

xadd(app => 'billing', account => $ci->{id}, dest => 'webhook',
     type => "token.revoked\r\nX-Injected: yes", token => $tid, status => 'revoked');
$r = drain();
my @got = received();
is(scalar(@got), 0, 'a type with CR LF is not sent');
unlike(join('', map { $_->{raw} } @got), qr/X-Injected/, 'no injected header');
unlike($r->{err}, qr/^X-Injected/m, 'and no forged log line');
like($r->{err}, qr/malformed entry/, 'a malformed entry');

xadd(app => 'billing', account => $ci->{id}, dest => 'webhook', type => 'token.denied',
     token => $tid, status => 'Your account is locked: log in at https://evil.example');
$r = drain();
is(scalar(received()), 0, 'token.denied with a free-text status is not sent');
like($r->{err}, qr/status is not one of/, 'the status is checked');

xadd(app => 'billing', account => $ci->{id}, dest => 'webhook', type => 'token.denied',
     token => $tid, status => 'revoked', time => 1);
drain();
@got = received();
is(scalar(@got), 1, 'a token.denied with a valid status is sent');
my ($when) = ($got[0]{json}{time} // '') =~ /^(\d{4})-/;
is($when, (gmtime)[5] + 1900, 'with the time of the stream entry, not its time field (1970)');

# the gateway's form (no destination): five within a minute, one delivery
xadd(type => 'token.denied', token => $tid, app => 'billing', status => 'expired',
     time => time + $_) for 1 .. 5;
drain();
@got = received();
is(scalar(@got), 0, 'a token.denied of the same token within the minute is limited');
$redis->cmd('DEL', $_) for @{ $redis->cmd('KEYS', 'sa:delivery:limit:*') },
                            @{ $redis->cmd('KEYS', 'sa:delivery:seen:*') };
xadd(type => 'token.denied', token => $tid, app => 'billing', status => 'expired',
     time => time + $_) for 1 .. 5;
drain();
@got = received();
is(scalar(@got), 1, 'five entries of the gateway form: one delivery');
is($got[0]{json}{data}{status}, 'expired', 'the status');

# ------------------------------------------- 2. non-ASCII text cut for Slack
my $m = ('a' x 191) . ("\x{e9}" x 30);
$r = as('alice', 'notify', 'emit', 'billing', 'app.note', '--data',
        JSON::PP->new->utf8->encode({ m => $m }));
is($r->{code}, 0, 'notify emit with non-ASCII data');
$r = drain();
like($r->{err}, qr/app\.note .*slack.*delivered/, 'the Slack copy is delivered') or diag $r->{err};
@got = received();
my ($slack) = grep { $_->{path} eq '/slack' } @got;
ok($slack && $slack->{json}, 'as valid JSON (UTF-8 cut between characters)');
like($slack->{json}{text} // '', qr/\x{e9}\.\.\., in application/, 'cut after a whole character');
ok((grep { $_->{path} eq '/ci' } @got), 'and the webhook copy too');

# ------------------------------------------- 3. a signed event moved or replayed
$redis->cmd('DEL', 'sa:delivery:failed');
as('alice', qw(notify emit billing app.deploy --data {"v":"1"}));
my $entries = $redis->cmd('XRANGE', 'sa:events', '-', '+');
my ($entry) = grep { my %f = @{ $_->[1] }; $f{dest} eq 'webhook' && $f{account} eq $ci->{id} } @$entries;
my %f = @{ $entry->[1] };
drain();
@got = grep { $_->{path} eq '/ci' } received();
is(scalar(@got), 1, 'app.deploy delivered once');
my $dlv = $got[0]{headers}{'x-sa-delivery'};

xadd(%f, app => 'payroll', account => $pay->{id});
$r = drain();
is(scalar(grep { $_->{path} eq '/pay' } received()), 0,
   "billing's signed event XADDed for a payroll subscriber is not sent");
like($r->{err}, qr/for another application/, 'the application is signed');

xadd(%f) for 1 .. 2;
$r = drain();
is(scalar(received()), 0, 'the same entry XADDed again twice: not delivered again');
like($r->{err}, qr/went to this destination already/, 'a duplicate');

# the delivery id is the event's and the subscription's
xadd(%f);
$redis->cmd('DEL', "sa:delivery:seen:$dlv");
drain();
@got = received();
is(scalar(@got), 1, 'once the dedupe key is gone (49 h), delivered again ...');
is($got[0]{headers}{'x-sa-delivery'}, $dlv, '... under the same X-SA-Delivery');

# ------------------------------------------- 4. a subscription restored after ungrant
my $sub = $redis->cmd('HGET', 'sa:notify:billing', $ci->{id});
as('alice', qw(account ungrant platform/ci --app billing));
drain();
received();
$redis->cmd('HSET', 'sa:notify:billing', $ci->{id}, $sub);
$redis->cmd('SADD', "sa:acct:$ci->{id}:notify", 'billing');
as('alice', qw(notify emit billing app.deploy --data {"v":"2"}));
$r = drain();
is(scalar(grep { $_->{path} eq '/ci' } received()), 0,
   'a subscription a writer restored after ungrant gets nothing');
like($r->{err}, qr/does not grant this application/, 'the signed grants are checked');

# ------------------------------------------- 5. an older subscription put back
# (SECURITY.md says so: a subscription names no version; the account
# still holds the grant, so the worker delivers as that one said)
my $old = $redis->cmd('HGET', 'sa:notify:billing', $sl->{id});
$r = as('alice', 'notify', 'set', 'billing', 'platform/sl', '--webhook', "$base/new",
        '--events', 'app.deploy');
is($r->{code}, 0, 'platform/sl: another destination, other events') or diag $r->{err};
$redis->cmd('HSET', 'sa:notify:billing', $sl->{id}, $old);
as('alice', qw(notify emit billing app.note --data {"v":"3"}));
drain();
@got = received();
ok((grep { $_->{path} eq '/slack' } @got),
   'the older subscription put back: its destination gets its events again');
ok(!(grep { $_->{path} eq '/new' } @got), 'the current one is not used');
is(as('alice', qw(notify remove billing platform/sl))->{code}, 0, 'notify remove');
$redis->cmd('HSET', 'sa:notify:billing', $sl->{id}, $old);
$redis->cmd('SADD', "sa:acct:$sl->{id}:notify", 'billing');
as('alice', qw(notify emit billing app.note --data {"v":"4"}));
drain();
ok((grep { $_->{path} eq '/slack' } received()),
   'put back after notify remove: delivered again (revoke it at the receiver)');

done_testing;
