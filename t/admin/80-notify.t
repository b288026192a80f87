# sa-admin notify: subscriptions per application, events written with the
# change they describe, delivered by the worker to a real HTTP receiver
# (t/lib/receiver) playing both Slack and a webhook: who gets what, the
# body, headers and signature of the contract, permissions, secrets never
# in Redis or logs, ungrant and delete stop deliveries, private
# destinations, tampered subscriptions and forged events.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my %ENVN = SaTest::notify_env();
sub as { my $u = shift; SaTest::admin($redis, { %ENVN, SA_ACTOR => $u }, @_) }

# the receiver
my $receiver = SaTest::Receiver->start;
my ($port, $rdir) = ($receiver->port, $receiver->dir);
my $base = "http://127.0.0.1:$port";
sub received { $receiver->received }    # since the last call, parsed

my @logs;
sub drain {
    my (@flags) = @_;
    my $r = as('worker', qw(notify run --once), @flags);
    is($r->{code}, 0, "worker --once @flags exits 0") or diag $r->{err};
    push @logs, $r->{err};
    return $r;
}
sub by_path { my ($p, @r) = @_; grep { $_->{path} eq $p } @r }

my $ci = SaTest::fixture($redis, apps => [qw(billing deploy)], env => \%ENVN)->account;   # platform/ci
SaTest::apps($redis, 'platform', qw(extra payroll));
as('alice', qw(team member add platform bob --perm service_accounts:tokens));
as('alice', qw(team member add platform carol --perm service_accounts:create));
my $other = as('alice', qw(account create platform other --app billing --json))->{json};
as('alice', qw(account create platform quiet --app billing));

# ---------------------------------------------------------------- set
my @token_events = qw(token.issued token.rescoped token.rotated token.revoked
                      token.expiring account.granted account.ungranted account.deleted);
my $r = as('carol', 'notify', 'set', 'billing', 'platform/ci', '--webhook', "$base/a?k=s3cr3t",
           '--events', join(',', @token_events), '--json');
is($r->{code}, 0, 'notify set (service_accounts:create)') or diag $r->{err};
my $secret_a = $r->{json}{secret};
like($secret_a, qr/^whsec_[0-9A-Za-z]{43}$/, 'the webhook secret is printed once');
is($r->{json}{webhook}, "$base/...", 'shown without path or query');

$r = as('alice', 'notify', 'set', 'deploy', 'platform/ci', '--slack',
        "$base/slack/T000/B000/XXXXSLACKSECRET", '--events', 'token.revoked');
is($r->{code}, 0, 'a Slack subscription');
is($r->{out}, "notifications of platform/ci for deploy go to $base/...\n",
   'Slack only: no secret printed');

$r = as('alice', 'notify', 'set', 'billing', 'platform/other', '--webhook', "$base/c",
        '--events', '*');
my ($secret_c) = $r->{out} =~ /^(whsec_\w+)\n\z/;
ok($secret_c, 'plain output: the secret alone on stdout');
like($r->{err}, qr/shown only this once/, 'and a note on stderr');

# refusals
my $before = $redis->digest_but_audit;
$r = as('bob', 'notify', 'set', 'billing', 'platform/quiet', '--webhook', "$base/x", '--events', '*');
is($r->{code}, 2, 'set needs service_accounts:create');
$r = as('alice', 'notify', 'set', 'payroll', 'platform/ci', '--webhook', "$base/x", '--events', '*');
is($r->{code}, 2, 'set needs a grant for the application');
like($r->{err}, qr/no grant for application 'payroll'/, 'and says so');
for my $bad (['--webhook', 'ftp://example.com/x', '--events', '*'],
             ['--webhook', 'file:///etc/passwd', '--events', '*'],
             ['--webhook', 'http://u:p@example.com/', '--events', '*'],
             ['--webhook', "$base/x", '--events', 'token.bogus'],
             ['--webhook', "$base/x"],
             ['--events', '*']) {
    $r = as('alice', 'notify', 'set', 'billing', 'platform/quiet', @$bad);
    is($r->{code}, 1, "usage error: @$bad");
}
$r = as('alice', qw(notify set billing platform/quiet --webhook), "$base/x", '--events', '*',
        '--notify-key', '/nonexistent');
is($r->{code}, 1, 'an unusable notify key');
is($redis->digest_but_audit, $before, 'refusals wrote nothing but their audit entry');

# list: never a secret or a full URL
$r = as('alice', qw(notify list billing --json));
is($r->{code}, 0, 'list');
is(scalar @{ $r->{json} }, 2, 'two subscriptions to billing');
my ($row) = grep { $_->{account}{id} eq $ci->{id} } @{ $r->{json} };
is_deeply($row->{events}, \@token_events, 'events');
is($row->{state}, 'active', 'active');
$r = as('alice', qw(notify list billing));
unlike($r->{out}, qr/s3cr3t|whsec_|\/a\?|XXXX/, 'no secret or path in the listing');
like($r->{out}, qr/platform\/ci .*webhook http:\/\/127\.0\.0\.1:\d+\/\.\.\./, 'a readable table');

# ---------------------------------------------------------------- events
my $tok = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
my $tid = substr($tok, 4, 16);
as('alice', 'token', 'scope', $tid, '--scope', 'stacks:write');
my $rot = as('alice', 'token', 'rotate', $tid, '--json')->{json};
as('alice', 'token', 'revoke', $rot->{id});
as('alice', qw(account grant platform/ci --app extra));
SaTest::issue_token($redis, 'platform/quiet');             # no subscription
$r = as('alice', qw(notify emit billing app.deployed --data), '{"version":"1.2"}', '--json');
is($r->{json}{queued}, 1, 'emit: queued for the one subscription that takes it');
$r = as('alice', qw(notify test deploy platform/ci));
like($r->{out}, qr/ping queued .* \(1 delivery\)/, 'test: a ping');
$r = as('alice', qw(notify test billing platform/quiet));
is($r->{code}, 2, 'test: no such subscription');

drain('--allow-private');
my @got = received();
my @a = by_path('/a?k=s3cr3t', @got);
is_deeply([map { $_->{headers}{'x-sa-event'} } @a],
          [qw(token.issued token.rescoped token.rotated token.revoked account.granted)],
          'the webhook got every event of its account, in order');
is_deeply([map { $_->{json}{type} } by_path('/slack/T000/B000/XXXXSLACKSECRET', @got)],
          [undef, undef], 'Slack: revoked and ping, as text') ;
my @s = by_path('/slack/T000/B000/XXXXSLACKSECRET', @got);
like($s[0]{json}{text}, qr/^Token `$rot->{id}` of service account \*platform\/ci\* was revoked, in application \*deploy\*$/,
     'Slack: one readable line (what, which account, which application)');
like($s[1]{json}{text}, qr/Test notification .*platform\/ci.*deploy/, 'Slack: the ping');
my @c = by_path('/c', @got);
is_deeply([map { $_->{json}{type} } @c], ['app.deployed'], 'the other account got only the application event');
is_deeply($c[0]{json}{data}, { version => '1.2' }, 'with its data');
is($c[0]{json}{account}{id}, $other->{id}, 'naming the subscriber');
is(scalar @got, 8, 'nothing else was delivered');

# the contract's body and headers, and the signature
my $w = $a[0];
is($w->{headers}{'content-type'}, 'application/json', 'Content-Type');
like($w->{headers}{'x-sa-delivery'}, qr/^dlv_[0-9a-f]{32}$/, 'X-SA-Delivery');
my ($t, $v1) = $w->{headers}{'x-sa-signature'} =~ /^t=(\d+),v1=([0-9a-f]{64})$/;
ok($t && abs($t - time) < 60, 'X-SA-Signature t= is now');
is($v1, hmac_sha256_hex("$t.$w->{body}", $secret_a), 'v1= verifies with the secret notify set printed');
isnt($v1, hmac_sha256_hex("$t.$w->{body}", $secret_c), 'and not with another');
like($w->{body}, qr/^\{"id":"evt_\w+","type":"token\.issued","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","team":"platform","application":"billing","account":\{"id":"$ci->{id}","name":"ci","email":"$ci->{id}\@platform\.sa\.invalid"\},"data":\{/,
     'body: id, type, time, team, application, account{id, name, email}, data');
is($w->{json}{data}{token}{id}, $tid, 'data names the token');
unlike(join('', map { $_->{raw} } @got), qr/\Q$tok\E|\Q@{[substr($tok, 21)]}\E/, 'never a token secret');
is($a[2]{json}{data}{rotated_from}, $tid, 'rotated: names the old token');
is_deeply($a[1]{json}{data}{previous_scopes}, ['stacks:read'], 'rescoped: the previous scopes');
my @hooks = grep { $_->{headers}{'x-sa-delivery'} } @got;
is(scalar(keys %{ { map { $_->{headers}{'x-sa-delivery'} => 1 } @hooks } }), scalar @hooks,
   'one delivery id per delivery');

# ---------------------------------------------------------------- expiring
$r = as('alice', qw(token issue platform/ci --expires 3d --json));
my $exp_id = $r->{json}{id};
my $score = $redis->cmd('ZSCORE', 'sa:expiring', $exp_id);
ok(abs($score - ($r->{json} && time + 2 * 86400)) < 60, 'the expiry index: the 1-day mark (the 7-day one is past)');
received() for drain('--allow-private');
$redis->cmd('ZADD', 'sa:expiring', time - 1, $exp_id);      # as if the day had come
drain('--allow-private');
@got = received();
is_deeply([map { $_->{json}{type} } @got], ['token.expiring'], 'token.expiring');
is($got[0]{json}{data}{token}{id}, $exp_id, 'for that token');
is($got[0]{json}{data}{days_left}, 3, 'days left');
is($redis->cmd('ZSCORE', 'sa:expiring', $exp_id), $r->{json} && $got[0]{json}{data}{token}{expires_at}
   && $score + 0, 'the next notice: the 1-day mark');
drain('--allow-private');
is(scalar(received()), 0, 'and not again before it');

# ---------------------------------------------------------------- token.denied (the gateway's entry)
$redis->cmd('XADD', 'sa:events', '*', 'type', 'token.denied', 'token', $exp_id,
            'app', 'billing', 'status', 'insufficient_scope', 'time', time);
drain('--allow-private');
is(scalar(received()), 0, 'token.denied: not delivered to a subscription that does not take it');
as('alice', 'notify', 'set', 'billing', 'platform/ci', '--webhook', "$base/a?k=s3cr3t",
   '--events', join(',', @token_events, 'token.denied'));
$redis->cmd('XADD', 'sa:events', '*', 'type', 'token.denied', 'token', $exp_id,
            'app', 'billing', 'status', 'insufficient_scope', 'time', time);
drain('--allow-private');
@got = received();
is(scalar @got, 1, 'token.denied: delivered once the subscription takes it');
is($got[0]{json}{data}{status}, 'insufficient_scope', 'with the status');

# ---------------------------------------------------------------- private destinations
as('alice', qw(token revoke), $exp_id);
$r = drain();
is(scalar(received()), 0, 'without --allow-private: nothing reaches 127.0.0.1');
like($r->{err}, qr/refused: 127\.0\.0\.1 is a loopback address/, 'logged');
is(scalar @{ as('alice', qw(notify failed --json))->{json} }, 2, 'both kept for notify failed');
$r = as('alice', qw(notify failed billing --json));
is(scalar @{ $r->{json} }, 1, 'notify failed APP: that application\'s');
like($r->{json}[0]{error}, qr/loopback/, 'with the reason');
my $dead_id = $r->{json}[0]{id};
$r = as('alice', 'notify', 'retry', $dead_id);
is($r->{code}, 0, 'notify retry');
as('alice', 'notify', 'retry', as('alice', qw(notify failed deploy --json))->{json}[0]{id});
is(as('alice', 'notify', 'retry', $dead_id)->{code}, 2, 'retry twice: not found');
drain('--allow-private');
@got = received();
is(scalar @got, 2, 'delivered after the retry');
is((grep { $_->{headers}{'x-sa-delivery'} } @got)[0]{headers}{'x-sa-delivery'}, $dead_id,
   'with the same delivery id');
$r = as('alice', qw(notify failed --json));
is(scalar @{ $r->{json} }, 0, 'no dead letter left') or diag explain $r->{json};

# ---------------------------------------------------------------- tampered, forged
my $sub = $redis->cmd('HGET', 'sa:notify:billing', $other->{id});
(my $bad = $sub) =~ s/("sealed":"sn1\.)(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;
$redis->cmd('HSET', 'sa:notify:billing', $other->{id}, $bad);
$r = as('alice', qw(notify list billing --json));
my ($t_row) = grep { $_->{account}{id} eq $other->{id} } @{ $r->{json} };
is($t_row->{state}, 'tampered', 'list with the notify key: tampered');
like($r->{err}, qr/cannot be unsealed/, 'and says so');
as('alice', qw(notify emit billing app.deployed));
$r = drain('--allow-private');
is(scalar(received()), 0, 'a tampered subscription is not delivered');
like($r->{err}, qr/cannot be unsealed/, 'reported in the log');
ok((grep { $_->{error} =~ /unsealed/ } @{ as('alice', qw(notify failed --json))->{json} }),
   'and in notify failed');
$redis->cmd('HSET', 'sa:notify:billing', $other->{id}, $sub);

# an event written into the stream by something other than sa-admin
my $ev = $redis->cmd('XADD', 'sa:events', '*', 'app', 'billing', 'account', $other->{id},
                     'dest', 'webhook', 'type', 'app.deployed', 'ev',
                     'sa1.' . ('A' x 86) . '.{"kind":"event","type":"app.deployed"}');
$r = drain('--allow-private');
is(scalar(received()), 0, 'a forged event is not delivered');
like($r->{err}, qr/signature does not verify/, 'reported');

# ---------------------------------------------------------------- ungrant, delete
as('alice', qw(token issue platform/ci));                   # queued for deploy? no: only revoked
my $t2 = SaTest::issue_token($redis, 'platform/ci');
as('alice', qw(account ungrant platform/ci --app deploy));
as('alice', 'token', 'revoke', substr($t2, 4, 16));          # after the ungrant
drain('--allow-private');
@got = received();
my @slack = by_path('/slack/T000/B000/XXXXSLACKSECRET', @got);
is(scalar @slack, 0, 'the ungranted application gets nothing (it did not take account.ungranted)');
is(scalar @{ as('alice', qw(notify list deploy --json))->{json} }, 0, 'its subscription is gone');
is_deeply([map { $_->{json}{type} } by_path('/a?k=s3cr3t', @got)],
          [qw(token.issued token.issued account.ungranted token.revoked)], 'billing still gets them');

# a subscription that takes account.ungranted gets it, last
as('alice', qw(account grant platform/ci --app deploy));
as('alice', 'notify', 'set', 'deploy', 'platform/ci', '--slack', "$base/slack2",
   '--events', 'token.issued,account.ungranted');
SaTest::issue_token($redis, 'platform/ci');                  # queued, not delivered yet
as('alice', qw(account ungrant platform/ci --app deploy));
SaTest::issue_token($redis, 'platform/ci');
drain('--allow-private');
@got = by_path('/slack2', received());
is(scalar @got, 1, 'ungrant: the event queued before it is dropped, the ungrant delivered, nothing after');
like($got[0]{json}{text}, qr/grants of service account \*platform\/ci\* changed/, 'account.ungranted');

as('alice', qw(account delete platform/other));
is($redis->cmd('HEXISTS', 'sa:notify:billing', $other->{id}), 0, 'delete removes the subscription');
is($redis->cmd('EXISTS', "sa:acct:$other->{id}:notify"), 0, 'and its index');
drain('--allow-private');
@got = received();
is_deeply([map { $_->{json}{type} } by_path('/c', @got)], ['account.deleted'],
          'account.deleted is its last delivery');
as('alice', qw(notify emit billing app.deployed));
drain('--allow-private');
is(scalar(by_path('/c', received())), 0, 'then nothing');

# remove
$r = as('bob', qw(notify remove billing platform/ci));
is($r->{code}, 2, 'remove needs service_accounts:create');
$r = as('alice', qw(notify remove billing platform/ci));
is($r->{code}, 0, 'remove');
SaTest::issue_token($redis, 'platform/ci');
drain('--allow-private');
is(scalar(received()), 0, 'removed: nothing delivered');
is(as('alice', qw(notify remove billing platform/ci))->{code}, 2, 'remove twice: not found');

# ---------------------------------------------------------------- secrets
my $dump = join "\n", map { my $k = $_; my $t = $redis->cmd('TYPE', $k);
    $t eq 'string' ? $redis->cmd('GET', $k)
    : $t eq 'hash' ? join(' ', @{ $redis->cmd('HGETALL', $k) })
    : $t eq 'stream' ? join(' ', map { @{ $_->[1] } } @{ $redis->cmd('XRANGE', $k, '-', '+') })
    : '' } @{ $redis->cmd('KEYS', '*') };
for my $s ($secret_a, $secret_c, 'XXXXSLACKSECRET', 's3cr3t') {
    unlike($dump, qr/\Q$s\E/, "Redis never holds '$s' in clear");
    unlike(join('', @logs), qr/\Q$s\E/, "nor the worker's log");
}
like(join('', @logs), qr/delivered \(HTTP 200/, 'the log has one line per outcome');

# help on every command
for my $c (qw(set list remove test emit run failed retry)) {
    $r = as('alice', 'notify', $c, '--help');
    is($r->{code}, 0, "notify $c --help");
    like($r->{out}, qr/^usage: sa-admin notify $c/, 'its usage');
}

done_testing;
