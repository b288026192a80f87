# A redirect into a stricter location is judged against its rules, even when
# a $sa_* variable was read before its access phase (set in its rewrite
# phase): reading a variable never stands for judging (from a review).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('ngx_http_sa_module.so', 'sa-admin');
my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(api));
as(qw(account create platform ci --app api));
my $weak = SaTest::issue_token($redis, 'platform/ci', 'docs:read');

my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'EOF2');
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        # plain: no variable before access
        location /docs/  { sa_auth api; sa_scope docs:read;   try_files /nonexistent /admin/secret.html; }
        location /admin/ { sa_auth api; sa_scope admin:write; }
        # same, but the stricter location copies $sa_account in its rewrite phase
        location /docs2/  { sa_auth api; sa_scope docs:read;  try_files /nonexistent /admin2/secret.html; }
        location /admin2/ { set $who $sa_account; sa_auth api; sa_scope admin:write; }
    }
EOF2
mkdir "$nginx->{dir}/html/$_" for qw(admin admin2);
SaTest::write_file("$nginx->{dir}/html/admin/secret.html", "ADMIN SECRET\n");
SaTest::write_file("$nginx->{dir}/html/admin2/secret.html", "ADMIN SECRET 2\n");

my $r = $nginx->get('/admin/secret.html', Authorization => "Bearer $weak");
is($r->{status}, 403, 'docs:read token directly on /admin/: 403');
$r = $nginx->get('/admin2/secret.html', Authorization => "Bearer $weak");
is($r->{status}, 403, 'docs:read token directly on /admin2/: 403');
$r = $nginx->get('/docs/x', Authorization => "Bearer $weak");
is($r->{status}, 403, 'control: /docs/ -> try_files -> /admin/: re-judged, 403');
$r = $nginx->get('/docs2/x', Authorization => "Bearer $weak");
is($r->{status}, 403, "/docs2/ -> /admin2/ (set \$who \$sa_account): must be 403, got $r->{status}: $r->{content}");

done_testing;
