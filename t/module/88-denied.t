# token.denied: the gateway tells the notification worker when it refuses a
# genuine token (expired, revoked, insufficient_scope, forbidden_application)
# in a location that names its application: one stream entry, not awaited,
# at most once a minute per token and worker.  Random and unknown tokens
# cost Redis nothing new (one GET, no XADD).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => [qw(api)]);   # platform/ci, owner alice
sub as { $f->as(@_) }
my $weak = SaTest::issue_token($redis, 'platform/ci', 'other:read');
my $good = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
sub tid { SaTest::tid($_[0]) }
sub cmds { $redis->calls($_[0]) }

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/   { sa_auth api; sa_scope stacks:read; sa_application api;
                           alias %%DIR%%/html/; }
        location /other/ { sa_auth api; sa_application other; alias %%DIR%%/html/; }
        location /plain/ { sa_auth api; sa_scope stacks:read; alias %%DIR%%/html/; }
    }
CONF

sub status { $nginx->get("/$_[0]/index.html", Authorization => "Bearer $_[1]")->{status} }
sub entries {
    my $r = $redis->cmd('XRANGE', 'sa:events', '-', '+');
    return [ map { my %f = @{ $_->[1] }; \%f } @$r ];
}
sub wait_entries { my ($n) = @_; SaTest::wait_until(3, sub { @{ entries() } >= $n }); entries() }

is(status('api', $good), 200, 'a valid token: 200');
is(scalar @{ entries() }, 0, 'no event for an admitted request');

is(status('api', $weak), 403, 'a token lacking the scope: 403');
my $e = wait_entries(1);
is(scalar @$e, 1, 'one token.denied entry');
is_deeply($e->[0], { type => 'token.denied', token => tid($weak), app => 'api',
                     status => 'insufficient_scope', time => $e->[0]{time} },
          'its fields: type, token id, application, status');
ok(abs($e->[0]{time} - time) < 10, 'and the time');
unlike(join(' ', %{ $e->[0] }), qr/\Q$weak\E/, 'never the token itself');

is(status('api', $weak), 403, 'the same token again');
select(undef, undef, undef, 0.3);    # a negative check: time for a wrong XADD
is(scalar @{ entries() }, 1, 'no second entry within the minute');

is(status('other', $good), 403, 'an application not granted: 403');
$e = wait_entries(2);
is($e->[1]{status}, 'forbidden_application', 'reported as forbidden_application');
is($e->[1]{app}, 'other', 'for that application');

my $t4 = SaTest::issue_token($redis, 'platform/ci', 'stacks:read');
is(as('token', 'revoke', tid($t4))->{code}, 0, 'another token, revoked');
is(status('api', $t4), 401, 'revoked: 401');
$e = wait_entries(3);
is_deeply([ map { "$_->{token} $_->{status}" } @$e[2 .. $#$e] ], [tid($t4) . ' revoked'],
          'reported as revoked');

# a location without sa_application: nobody to tell
my $t3 = SaTest::issue_token($redis, 'platform/ci', 'other:read');
my $before = @{ entries() };
is(status('plain', $t3), 403, 'no sa_application: 403');
select(undef, undef, undef, 0.3);    # a negative check: time for a wrong XADD
is(scalar @{ entries() }, $before, 'no entry without an application');

# unknown and random tokens: one GET each, never an XADD
my $xadd = cmds('xadd');
my $gets = cmds('get');
(my $unknown = $t3) =~ s/^(sat_)(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;   # another id
is(status('api', $unknown), 401, 'an unknown (or malformed) token: 401');
is(status('api', 'sat_' . ('x' x 65)), 401, 'a random one: 401');
select(undef, undef, undef, 0.3);    # a negative check: time for a wrong XADD
is(cmds('xadd'), $xadd, 'no XADD for tokens Redis does not know');
ok(cmds('get') - $gets <= 1, 'at most one GET for the two');

unlike($nginx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert');
done_testing;
