# A person's personal token (sap_, for the admin API only) is never
# accepted by a gateway: 401 at an sa_auth location, even when its genuine
# record is copied to the service-account key sa:tok:<id>, and with the
# prefix swapped for sat_ (check digits made right) too (issue 22, item 3).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);
my $sat = $f->token('stacks:read');

my $r = SaTest::operator($redis, qw(user token issue alice));
is($r->{code}, 0, 'a personal token for alice') or diag $r->{err};
chomp(my $sap = $r->{out});
my $id = substr($sap, 4, 16);

for my $cached (0, 1) {
    my $nginx = SaTest::Nginx->start(redis => $redis, http => <<"CONF");
    log_format sa '\$arg_case \$status \$sa_status';
    @{[ $cached ? 'sa_cache zone=sa:1m;' : '' ]}
    server {
        listen unix:%%DIR%%/backend.sock;
        access_log off;
        location / { return 200 "ok\\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        location /api/ {
            sa_auth api;
            proxy_pass http://unix:%%DIR%%/backend.sock;
        }
    }
CONF
    my $how = $cached ? 'with a cache' : 'without a cache';
    my $n = 0;
    my $call = sub {
        my ($token) = @_;
        my $case = "c" . $n++;
        my $res = $nginx->get("/api/?case=$case", Authorization => "Bearer $token");
        my $line = SaTest::wait_until(2, sub {
            SaTest::slurp($nginx->dir . '/sa.log') =~ /^\Q$case\E (\d+ \S+)$/m ? $1 : 0;
        });
        return ($res->{status}, $line);
    };
    my $gets = sub { $redis->cmd('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/ ? $1 : 0 };

    my ($st, $log) = $call->($sat);
    is($st, 200, "$how: a service account's token passes");
    is($log, '200 ok', "$how: \$sa_status ok");

    my $before = $gets->();
    ($st, $log) = $call->($sap);
    is($st, 401, "$how: a personal token is 401");
    is($log, '401 malformed', "$how: malformed: the gateway knows only sat_");
    is($gets->(), $before, "$how: not even a GET for it");

    $redis->cmd('SET', "sa:tok:$id", $redis->cmd('GET', "sa:ptok:$id"));
    ($st, $log) = $call->($sap);
    is($st, 401, "$how: its record copied to sa:tok:<id>: still 401");
    is($log, '401 malformed', "$how: still malformed");

    (my $swapped = $sap) =~ s/^sap_/sat_/;
    $swapped = SaTest::with_check(substr($swapped, 0, 64));
    ($st, $log) = $call->($swapped);
    is($st, 401, "$how: the same id and secret as sat_, the record copied: 401");
    is($log, '401 tampered', "$how: a personal token's record is no token record");
    $redis->cmd('DEL', "sa:tok:$id");
    $nginx->stop;
}

done_testing;
