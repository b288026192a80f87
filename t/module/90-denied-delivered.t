# token.denied end to end: a real nginx refuses a genuine token for lack of
# a scope; the gateway writes the event; `sa-admin notify run --once`
# delivers it to the account's subscription for that application, signed,
# with the contract's body; a random token delivers nothing.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Digest::SHA qw(hmac_sha256_hex);
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $keys = SaTest::keys_dir();
my %envn = SaTest::notify_env();
my $f = SaTest::fixture($redis, apps => [qw(api)], env => \%envn);   # platform/ci, alice
sub as { $f->as(@_) }

my $receiver = SaTest::Receiver->start;
my ($port, $rdir) = ($receiver->port, $receiver->dir);
sub count { 0 + (SaTest::slurp("$rdir/count") || 0) }

my $acct = $f->account;
my $set = as('notify', 'set', 'api', 'platform/ci', '--webhook', "http://127.0.0.1:$port/hook",
             '--events', 'token.denied');
is($set->{code}, 0, 'subscribed to token.denied for api') or diag $set->{err};
chomp(my $secret = $set->{out});
my $weak = SaTest::issue_token($redis, 'platform/ci', 'other:read');

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { sa_auth api; sa_scope stacks:read; sa_application api;
                     root %%DIR%%/html; }
    }
CONF
is($nginx->get('/index.html', Authorization => "Bearer $weak")->{status}, 403,
   'the gateway refuses the token: 403');
is($nginx->get('/index.html', Authorization => 'Bearer sat_' . ('q' x 65))->{status}, 401,
   'and a random one: 401');
SaTest::wait_until(3, sub { $redis->cmd('XLEN', 'sa:events') >= 1 });

my $r = SaTest::run([SaTest::admin_path(), qw(notify run --once --allow-private)],
                    env => { SA_REDIS => $redis->url, SA_SIGNING_KEY => "$keys/signing.key", %envn },
                    timeout => 30);
is($r->{code}, 0, 'the worker drains and exits') or diag $r->{err};
is(count(), 1, 'one delivery: the refusal, nothing for the random token');

my $raw = SaTest::slurp("$rdir/1.http");
my ($head, $body) = split /\r\n\r\n/, $raw, 2;
like($head, qr/^X-SA-Event: token\.denied\r$/m, 'X-SA-Event: token.denied');
my ($t, $v1) = $head =~ /^X-SA-Signature: t=(\d+),v1=([0-9a-f]{64})\r$/m;
is($v1, hmac_sha256_hex("$t.$body", $secret), 'signed with the secret notify set printed');
my $event = JSON::PP->new->decode($body);
is($event->{type}, 'token.denied', 'type');
is($event->{application}, 'api', 'application');
is($event->{account}{id}, $acct->{id}, 'the account the token belongs to');
is($event->{data}{status}, 'insufficient_scope', 'why it was refused');
is($event->{data}{token}{id}, substr($weak, 4, 16), 'which token (its id)');
unlike($raw, qr/\Q$weak\E/, 'never the token itself');

done_testing;
