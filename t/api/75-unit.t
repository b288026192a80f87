# debian/sa-admin.sa-admin-serve.service, the systemd unit of sa-admin serve
# (issue 22, item 8): the hardening it promises (a dedicated user, keys in
# /etc/sa-admin, ProtectSystem=strict, ...), accepted by systemd-analyze
# verify without a warning, and its command line run as systemd would run
# it (Environment=, the shipped /etc/default/sa-admin-serve, $SA_SERVE_ARGS
# split into words, /run/sa-admin as a temporary directory): it answers on
# its unix socket, ExecReload's SIGHUP keeps it answering, SIGTERM stops it
# with exit 0.  That the package installs the unit and creates the user is
# make test-deb's (t/deb/check-installed.pl).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $root = SaTest::root();
my $unit_file = "$root/debian/sa-admin.sa-admin-serve.service";
my $unit = SaTest::slurp($unit_file);
my $default = SaTest::slurp("$root/debian/default/sa-admin-serve");

# the [Service] section, KEY => [values]
my %svc;
{
    my $section = '';
    for (split /\n/, $unit) {
        next if /^\s*(#|$)/;
        if (/^\[(\w+)\]$/) { $section = $1; next }
        my ($k, $v) = /^(\w+)=(.*)$/ or do { fail("unit line '$_'"); next };
        push @{ $svc{$k} }, $v if $section eq 'Service';
    }
}
my %want = (
    User => 'sa-admin', Group => 'sa-admin',
    ProtectSystem => 'strict', ProtectHome => 'yes', NoNewPrivileges => 'yes',
    PrivateTmp => 'yes', RuntimeDirectory => 'sa-admin',
    ExecReload => '/bin/kill -HUP $MAINPID',
    EnvironmentFile => '-/etc/default/sa-admin-serve',
    ExecStart => '/usr/bin/sa-admin serve $SA_SERVE_ARGS',
);
for my $k (sort keys %want) {
    is_deeply($svc{$k}, [$want{$k}], "$k=$want{$k}");
}
ok(!exists $svc{DynamicUser}, 'not a DynamicUser (the keys are the user\'s files)');

my %env;
for (@{ $svc{Environment} // [] }) {
    my ($k, $v) = /^"?(\w+)=(.*?)"?$/ or next;
    $env{$k} = $v;
}
is($env{SA_SIGNING_KEY}, '/etc/sa-admin/signing.key', 'the signing key in /etc/sa-admin');
is($env{SA_NOTIFY_KEY}, '/etc/sa-admin/notify.key', 'the notify key in /etc/sa-admin');
like($env{SA_SERVE_ARGS} // '', qr{^--listen unix:/run/sa-admin/\S+$},
     'by default one listener, a unix socket in its RuntimeDirectory');

# systemd-analyze verify: exit 0 and nothing said (it warns, and still
# exits 0, on an unknown key or a bad value)
SKIP: {
    my ($sd) = grep { -x } map { "$_/systemd-analyze" } split /:/, $ENV{PATH};
    skip 'systemd-analyze is not installed (Debian: systemd)', 3 unless $sd;
    my $dir = SaTest::new_dir('unit');
    my $verify = sub {
        my ($text) = @_;
        # the binary as built here: verify checks that ExecStart= exists
        $text =~ s{/usr/bin/sa-admin}{SaTest::admin_path()}ge;
        SaTest::write_file("$dir/sa-admin-serve.service", $text);
        return SaTest::run([$sd, 'verify', '--man=no', "$dir/sa-admin-serve.service"]);
    };
    my $r = $verify->($unit);
    is($r->{code}, 0, 'systemd-analyze verify: exit 0') or diag $r->{err};
    is($r->{out} . $r->{err}, '', 'and not a warning');
    # the check can fail: a bad value is a warning
    $r = $verify->($unit =~ s/^ProtectSystem=strict$/ProtectSystem=stric/mr);
    like($r->{out} . $r->{err}, qr/protect system value/i,
         'a unit with a bad value is not (the check can fail)');
}

# the shipped settings file: systemd's VAR=value lines, commented out
my @set = grep { !/^\s*(#|$)/ } split /\n/, $default;
is_deeply(\@set, [], '/etc/default/sa-admin-serve sets nothing by default');
my @examples = $default =~ /^#(SA_SERVE_ARGS=.*)$/mg;
ok(@examples >= 2, 'it shows SA_SERVE_ARGS examples');
like($default, qr/^#SA_REDIS=redis:/m, 'and SA_REDIS');

# the command line, as systemd runs it
my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);
my $run = SaTest::new_dir('run-sa-admin');    # RuntimeDirectory=sa-admin
my $args_of = sub { [ map { s{^(unix:)/run/sa-admin/}{$1$run/}r } split ' ', $_[0] ] };

my $api = SaTest::Serve->start(redis => $redis, args => $args_of->($env{SA_SERVE_ARGS}));
is_deeply([$api->addrs], ["unix:$run/api.sock"], 'the default: listening on its socket');
my $r = $api->req(GET => '/healthz');
is($r->{status}, 200, '/healthz through the socket: 200') or diag $r->{raw};
my $token = $f->token('api:read');
my @before = $api->workers;
kill 'HUP', $api->pid;    # ExecReload
ok(SaTest::wait_until(10, sub {
    my @now = $api->workers;
    @now && !grep { my $p = $_; grep { $_ == $p } @before } @now;
}), 'ExecReload (SIGHUP): the workers replaced');
$r = $api->req(GET => '/v1/me', headers => { Authorization => "Bearer $token" });
is($r->{status}, 200, 'and a token still answered') or diag $r->{raw};
kill 'TERM', $api->pid;    # systemctl stop (KillSignal=SIGTERM)
ok(SaTest::wait_until(15, sub { !$api->running }), 'SIGTERM: it stops');
is($api->exit_code, 0, 'with exit 0 (Restart=on-failure does not restart it)');

# each example of the settings file starts as well
for my $ex (@examples) {
    my ($v) = $ex =~ /^SA_SERVE_ARGS=(.*)$/;
    my $a = SaTest::Serve->start(redis => $redis, args => $args_of->($v));
    ok(scalar $a->addrs, "SA_SERVE_ARGS=$v: listening (" . join(' ', $a->addrs) . ')');
    ok($a->stop, 'and stops');
}

done_testing();
