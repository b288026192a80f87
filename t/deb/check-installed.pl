#!/usr/bin/perl
# make test-deb, inside the throwaway root that t/deb/run makes (never run
# it anywhere else: it installs and removes packages).  Installs
# libnginx-mod-http-sa and sa-admin with dpkg -i and checks what they did:
# the files, the nginx-abi dependency, the modules-enabled symlink that
# enables the module, nginx -t with the system configuration and with one
# that uses the module (and failing without the symlink), sa-admin
# --version against the package version, the man page, the units (shipped,
# not enabled), sa-admin-serve's user and key directory, and a clean purge
# (that keeps the keys).
use strict;
use warnings;
use Test::More;

-e '/.sa-test-deb-root'
    or BAIL_OUT('not in the throwaway root of t/deb/run: refusing to dpkg -i');

my $version = $ENV{SA_VERSION}   or BAIL_OUT('SA_VERSION is not set');
my $mod_deb = $ENV{SA_MODULE_DEB} or BAIL_OUT('SA_MODULE_DEB is not set');
my $adm_deb = $ENV{SA_ADMIN_DEB}  or BAIL_OUT('SA_ADMIN_DEB is not set');

my $available = '/usr/share/nginx/modules-available/mod-http-sa.conf';
my $enabled   = '/etc/nginx/modules-enabled/50-mod-http-sa.conf';
my $so        = '/usr/lib/nginx/modules/ngx_http_sa_module.so';
my $unit      = '/lib/systemd/system/sa-notify.service';
my $site      = '/etc/nginx/conf.d/sa-test.conf';

# runs a shell command; returns (exit status, stdout and stderr)
sub sh {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

sub nginx_t {
    my ($rc, $out) = sh('nginx -t');
    return ($rc, $out);
}

# ------------------------------------------------------------ the .debs
my ($abi) = (slurp('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars')
             // '') =~ /^nginx:abi=(\S+)/m;
ok($abi, "nginx-dev names the ABI ($abi)");
for my $deb ($mod_deb, $adm_deb) {
    my ($rc, $v) = sh("dpkg-deb -f '$deb' Version");
    chomp $v;
    is($v, $version, "$deb: version $version (debian/changelog)");
}
my (undef, $dep) = sh("dpkg-deb -f '$mod_deb' Depends");
like($dep, qr/(^|,\s*)\Q$abi\E(,|$)/m, "the module depends on $abi");

# ------------------------------------------------------------ install
my ($rc, $out) = sh("dpkg -i '$mod_deb' '$adm_deb'");
is($rc, 0, 'dpkg -i of both packages') or diag $out;

for my $p (qw(libnginx-mod-http-sa sa-admin)) {
    ($rc, $out) = sh("dpkg-query -W -f='\${Status} \${Version}' $p");
    is($out, "install ok installed $version", "$p is installed, $version");
}

# ------------------------------------------------------------ the module
ok(-f $so, "$so");
is(slurp($available), "load_module modules/ngx_http_sa_module.so;\n",
   "$available loads it");
is(readlink($enabled), $available, "$enabled enables it");

($rc, $out) = nginx_t();
is($rc, 0, 'nginx -t with the system configuration and the module enabled')
    or diag $out;
like($out, qr/test is successful/, 'nginx says the test is successful');

# a configuration that uses the module, with a key from the packaged sa-admin
($rc, $out) = sh('sa-admin key generate --out /etc/sa');
is($rc, 0, 'sa-admin key generate --out /etc/sa') or diag $out;

sub write_site {
    my ($key) = @_;
    open my $fh, '>', $site or die "$site: $!";
    print $fh <<"CONF";
sa_redis       127.0.0.1:6379;
sa_verify_key  $key;
sa_cache       zone=sa:1m;

server {
    listen 127.0.0.1:8089;
    location /stacks/ {
        sa_auth   "stacks";
        sa_scope  stacks:read;
        root      /var/www/html;

        limit_except GET {
            sa_scope stacks:write;
        }
    }
}
CONF
    close $fh;
}

write_site('/etc/sa/verify.key');
($rc, $out) = nginx_t();
is($rc, 0, 'nginx -t with sa_redis, sa_verify_key, sa_cache, sa_auth, sa_scope')
    or diag $out;

write_site('/etc/sa/signing.key');
($rc, $out) = nginx_t();
isnt($rc, 0, 'nginx -t fails with the signing key as sa_verify_key');
like($out, qr/signing key/, "the module's own check says why") or diag $out;
write_site('/etc/sa/verify.key');

# without the modules-enabled symlink nginx does not know the directives:
# the symlink is what loads the module
rename $enabled, "$enabled.off" or die "$enabled: $!";
($rc, $out) = nginx_t();
isnt($rc, 0, 'nginx -t fails without the modules-enabled symlink');
like($out, qr/unknown directive "sa_/, 'on our directives') or diag $out;
rename "$enabled.off", $enabled or die "$enabled: $!";
($rc, $out) = nginx_t();
is($rc, 0, 'and passes again with it') or diag $out;

# ------------------------------------------------------------ sa-admin
($rc, $out) = sh(q{sh -c 'command -v sa-admin'});
is($out, "/usr/bin/sa-admin\n", 'sa-admin is /usr/bin/sa-admin');
($rc, $out) = sh('sa-admin --version');
is($rc, 0, 'sa-admin --version exits 0');
is($out, "sa-admin $version\n", "sa-admin --version says $version");
my (undef, $pkg_version) = sh(q{dpkg-query -W -f='${Version}' sa-admin});
is($out, "sa-admin $pkg_version\n", 'the same as the installed package');
($rc, $out) = sh('sa-admin --json --version');
is($out, qq({"version":"$version"}\n), 'sa-admin --json --version');
# the console, where serve looks for it by default (issue 23)
ok(-f '/usr/share/sa-admin/console/index.html',
   'the console in /usr/share/sa-admin/console');
ok(-f '/usr/share/sa-admin/console/app.js', 'with its module');

ok(-f '/usr/share/man/man1/sa-admin.1.gz', 'the man page sa-admin(1)');
SKIP: {
    skip 'no groff here', 1 unless -x '/usr/bin/groff';
    ($rc, $out) = sh('zcat /usr/share/man/man1/sa-admin.1.gz'
                     . ' | groff -man -ww -z -Tutf8');
    is("$rc $out", '0 ', 'it formats without a warning');
}

my $u = slurp($unit) // '';
like($u, qr{^ExecStart=/usr/bin/sa-admin notify run$}m,
     "$unit runs sa-admin notify run");
my @wants = glob('/etc/systemd/system/*.wants/sa-notify.service');
is(scalar @wants, 0, 'and is not enabled') or diag "@wants";
SKIP: {
    skip 'no systemd-analyze here', 1 unless -x '/usr/bin/systemd-analyze';
    ($rc, $out) = sh("systemd-analyze verify $unit");
    is($rc, 0, 'systemd-analyze verify accepts the unit') or diag $out;
}

# sa-admin-serve.service (issue 22): its user, its key directory, its
# settings file; shipped, not enabled
my $serve = '/lib/systemd/system/sa-admin-serve.service';
$u = slurp($serve) // '';
like($u, qr{^ExecStart=/usr/bin/sa-admin serve \$SA_SERVE_ARGS$}m,
     "$serve runs sa-admin serve");
like($u, qr{^User=sa-admin$}m, 'as the user sa-admin');
@wants = glob('/etc/systemd/system/*.wants/sa-admin-serve.service');
is(scalar @wants, 0, 'and is not enabled') or diag "@wants";
my @pw = getpwnam('sa-admin');
ok(@pw, 'postinst created the user sa-admin');
ok(@pw && $pw[2] < 1000, 'a system user (uid ' . ($pw[2] // '?') . ')');
is((getgrgid($pw[3] // 0))[0] // '', 'sa-admin', 'with its group sa-admin');
is($pw[8] // '', '/usr/sbin/nologin', 'and no login shell');
my @st = stat '/etc/sa-admin';
is(sprintf('%04o %s', ($st[2] // 0) & 07777, (getpwuid($st[4] // 0))[0] // '?'),
   '0700 sa-admin', '/etc/sa-admin: 0700, the user\'s alone');
ok(-f '/etc/default/sa-admin-serve', '/etc/default/sa-admin-serve');
($rc, $out) = sh(q{dpkg-query -W -f='${Conffiles}' sa-admin});
like($out, qr{^ /etc/default/sa-admin-serve [0-9a-f]{32}$}m, 'a conffile');
# the key generated as the user, readable by it alone, as the unit says
($rc, $out) = sh('runuser -u sa-admin -- sa-admin key generate --out /etc/sa-admin');
is($rc, 0, 'runuser -u sa-admin -- sa-admin key generate --out /etc/sa-admin')
    or diag $out;
@st = stat '/etc/sa-admin/signing.key';
is(sprintf('%04o %s', ($st[2] // 0) & 07777, (getpwuid($st[4] // 0))[0] // '?'),
   '0600 sa-admin', 'signing.key: 0600, the user\'s');
($rc, $out) = sh('runuser -u nobody -- cat /etc/sa-admin/signing.key');
isnt($rc, 0, 'another user cannot read it');
SKIP: {
    skip 'no systemd-analyze here', 1 unless -x '/usr/bin/systemd-analyze';
    ($rc, $out) = sh("systemd-analyze verify $serve");
    is("$rc $out", '0 ', 'systemd-analyze verify accepts it, without a warning');
}

# ------------------------------------------------------------ purge
unlink $site;
($rc, $out) = sh('dpkg --purge libnginx-mod-http-sa');
is($rc, 0, 'dpkg --purge libnginx-mod-http-sa') or diag $out;
ok(!-e $enabled && !-l $enabled && !-l "$enabled.removed",
   'the modules-enabled symlink is gone');
ok(!-e $so, 'the module is gone');
($rc, $out) = nginx_t();
is($rc, 0, 'nginx -t passes without it') or diag $out;

($rc, $out) = sh('dpkg --purge sa-admin');
is($rc, 0, 'dpkg --purge sa-admin') or diag $out;
ok(!-e '/usr/bin/sa-admin' && !-e $unit && !-e $serve,
   'sa-admin and its units are gone');
ok(!-e '/etc/default/sa-admin-serve', 'its settings file too');
ok(-f '/etc/sa-admin/signing.key', 'but not the keys in /etc/sa-admin');

done_testing();
