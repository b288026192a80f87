#!/usr/bin/perl
# make test-browser (issue 23): the console in a real browser.  This script
# plays the operator and the front proxy's host: a real redis-server, a
# real `sa-admin serve` (a trusted listener: the browser test sets the user
# header, as oauth2-proxy would), the notification worker, a receiver for
# webhooks (t/lib/receiver) and a real nginx with our module as the
# gateway; then it runs the Node tests (console.test.mjs: playwright-core
# driving Debian's /usr/bin/chromium; then attacks.test.mjs, the attack
# review, which plants data in Redis) against them, and exits with their
# status.
use strict;
use warnings;
use lib 't/lib';
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $keys = SaTest::keys_dir();
my %env = (SA_NOTIFY_KEY => "$keys/notify.key", SA_NOTIFY_TIME_SCALE => '0.01');
sub op { my $r = SaTest::operator($redis, { %env }, @_);
         die "sa-admin @_: $r->{err}" if $r->{code}; $r }
sub as { my $u = shift; my $r = SaTest::admin($redis, { %env, SA_ACTOR => $u }, @_);
         die "sa-admin --as $u @_: $r->{err}" if $r->{code}; $r }

# the world: team platform (alice owns it, bob reads it), applications
# stacks (with a catalogue) and billing; markup planted where the API
# takes free text (scope descriptions), to be shown as text
my $xss_img = '<img src=x onerror="window.__xss=(window.__xss||0)+1">';
my $xss_script = '"><script>window.__xss=(window.__xss||0)+1</script>';
op(qw(team create platform --owner alice));
as('alice', qw(team member add platform bob));
SaTest::apps($redis, 'platform', qw(stacks billing));
as('alice', qw(scope define stacks stacks:read --description), "Read stacks $xss_img");
as('alice', qw(scope define stacks stacks:write --description), "Change stacks $xss_script");
as('alice', qw(scope define billing invoices:read --description), 'Read invoices');

my $receiver = SaTest::Receiver->start;

# the gateway: /api/ (a static file; not 'return', which runs before the
# access phase) needs stacks:read for application stacks
my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ {
            sa_auth api;
            sa_application stacks;
            sa_scope stacks:read;
            alias %%DIR%%/html/;
        }
    }
CONF

my $api = SaTest::Serve->start(redis => $redis, env => { %env }, args => [
    '--trusted-listen', '127.0.0.1:0', '--workers', 2,
    '--console', SaTest::root() . '/admin-tool/console' ]);

# the worker's clock sped up: a delivery failing gives up within seconds
# (24 h x 0.00003), for the failed deliveries' Retry
my $worker = SaTest::Process->start(
    cmd => [SaTest::admin_path(), qw(notify run --allow-private)],
    env => { %env, SA_NOTIFY_TIME_SCALE => '0.00003', SA_REDIS => $redis->url, SA_SIGNING_KEY => "$keys/signing.key",
             SA_ACTOR => undef });

my $shots = SaTest::build_dir() . '/screenshots';
system('mkdir', '-p', $shots) == 0 or die "mkdir $shots\n";

my $node = $ENV{NODE} || 'node';
local $ENV{CONSOLE_URL} = $api->url;
local $ENV{GATEWAY_URL} = $nginx->url('/api/index.html');
local $ENV{RECEIVER_DIR} = $receiver->dir;
local $ENV{RECEIVER_URL} = 'http://127.0.0.1:' . $receiver->port . '/hook';
local $ENV{SCREENSHOTS} = $shots;
local $ENV{REDIS_URL} = $redis->url;
my $rc = system($node, '--test', '--test-concurrency=1',
                SaTest::root() . '/t/browser/console.test.mjs');
# the attack review (attacks.test.mjs) after the flows, whatever they gave:
# it plants data
my $rc2 = system($node, '--test', '--test-concurrency=1',
                 SaTest::root() . '/t/browser/attacks.test.mjs');
$rc ||= $rc2;

# what the servers said, for a failure's diagnosis
if ($rc != 0) {
    print STDERR "--- sa-admin serve:\n", SaTest::tail($api->err);
    print STDERR "--- notify worker:\n", SaTest::tail($worker->err);
    print STDERR "--- nginx:\n", SaTest::tail($nginx->error_log);
}
$worker->stop;
$api->stop;
exit($rc == 0 ? 0 : 1);
