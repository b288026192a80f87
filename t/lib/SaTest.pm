# SaTest: integration-test harness for ngx_http_sa_module and sa-admin.
#
# Starts real redis-server and nginx processes on free loopback ports inside
# one temp dir per test process, talks to them, and makes sure none of them
# outlives the test script (END block, INT/TERM/HUP handlers, and the kernel's
# parent-death signal if the script is SIGKILLed). Core Perl only.
#
#   use lib 't/lib';                         # tests run from the repo root
#   use Test::More; use SaTest;
#   SaTest::require_build();                 # skip when the module isn't built
#   my $redis = SaTest::Redis->start;
#   $redis->cmd(SET => 'k', 'v');
#   my $nginx = SaTest::Nginx->start(redis => $redis, http => <<'EOF');
#       server { listen 127.0.0.1:%%PORT%%; root %%DIR%%/html; }
#   EOF
#   my $res = $nginx->get('/', Authorization => 'Bearer x');
#   my $r = SaTest::admin($redis, qw(team create t --owner a --json));
#   # $r = {code, out, err, json}
#
# Environment: SA_TEST_KEEP=1 keeps the temp dir (its path is printed);
# SA_TEST_NGINX (or TEST_NGINX_BINARY), SA_TEST_REDIS, SA_TEST_ADMIN and
# SA_TEST_MODULE
# override binaries.
package SaTest;

use strict;
use warnings;
use Carp ();
use Cwd ();
use File::Basename ();
use Fcntl ();
use File::Spec ();
use File::Temp ();
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);

my $ROOT = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');

sub root        { $ROOT }
sub build_dir   { "$ROOT/build" }
# SA_TEST_MODULE: another build of the module (e.g. an older one, to see a
# regression test fail against it)
sub module_path { $ENV{SA_TEST_MODULE} || build_dir() . '/ngx_http_sa_module.so' }
# SA_TEST_ADMIN: another sa-admin build, e.g. the sanitizer one 'make test' uses
sub admin_path  { $ENV{SA_TEST_ADMIN} || build_dir() . '/sa-admin' }

# ---------------------------------------------------------------- helpers

# A port for a server (or for nothing to listen on), this process's alone
# until it exits.  Not the kernel's port 0: that hands out ports from the
# ephemeral range, the same that every outgoing connection's local port is
# taken from, so between free_port() and the server's bind() a client of
# another test file could hold it, and two files could be given the same
# one.  Ports come from 20000-32767 instead (less the ephemeral range, should
# it reach down there, and Sentinel's 26379-26381), drawn at random, each
# taken with a lock: flock on PORT_DIR/<port>, kept open until this process
# exits (the kernel lets go of it even on SIGKILL), so files run in parallel
# never share a port and one process never gets a port twice.  A port is
# given only if nothing has it bound (TCP or UDP, not even in TIME_WAIT).
my $PORT_DIR = File::Spec->tmpdir . '/sa-test-ports';
my (%PORT_LOCK, @PORT_RANGE);

sub _port_range {
    return @PORT_RANGE if @PORT_RANGE;
    my ($elo, $ehi) = split ' ', slurp('/proc/sys/net/ipv4/ip_local_port_range');
    ($elo, $ehi) = (32768, 60999) unless $ehi;
    my @r = grep { ($_ < $elo || $_ > $ehi) && ($_ < 26379 || $_ > 26381) } 20000 .. 32767;
    @r = grep { $_ < 26379 || $_ > 26381 } 20000 .. 32767 if @r < 2000;   # no choice
    return @PORT_RANGE = @r;
}

sub port_dir { $PORT_DIR }

sub free_port {
    my @range = _port_range();
    unless (-d $PORT_DIR) {
        mkdir $PORT_DIR;    # another process may win the race: fine
        chmod 01777, $PORT_DIR;
    }
    for (1 .. 500) {
        my $port = $range[int rand @range];
        next if $PORT_LOCK{$port};
        sysopen(my $lock, "$PORT_DIR/$port", Fcntl::O_RDWR() | Fcntl::O_CREAT(), 0666)
            or die "free_port: $PORT_DIR/$port: $!\n";
        if (!flock($lock, Fcntl::LOCK_EX() | Fcntl::LOCK_NB())) { close $lock; next }
        my @free = map {
            IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Proto => $_,
                                  $_ eq 'tcp' ? (Listen => 1) : ())
        } qw(tcp udp);
        if (grep { !$_ } @free) { close $lock; next }
        close $_ for @free;
        $PORT_LOCK{$port} = $lock;
        return $port;
    }
    die "free_port: no free port found in 500 tries\n";
}

sub port_open {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1,
    );
    return $sock ? 1 : 0;
}

# Open connections accepted on the local $port whose bytes the server has
# read (ESTABLISHED, nothing in the receive queue), from /proc/net/tcp: the
# requests sent on them have reached the server, and wait there.  (Not for
# clients that close at once: nginx may or may not have seen that yet.)
sub connections_read {
    my ($port) = @_;
    my $n = 0;
    for (split /\n/, slurp('/proc/net/tcp')) {
        my @w = split ' ';
        next unless @w > 4 && $w[1] =~ /:([0-9A-F]{4})$/ && hex($1) == $port;
        $n++ if $w[3] eq '01' && $w[4] =~ /:0+$/;
    }
    return $n;
}

# True when every connection to the local $port (a server's: Redis) has
# had all it was sent read by its client: nothing waits in the receive
# queue of the client's end (/proc/net/tcp).  After $redis->barrier, "every
# reply and message Redis wrote before has been read", e.g. by nginx's
# workers: a worker that read a reply acts on it before its next request.
sub replies_read {
    my ($port) = @_;
    for (split /\n/, slurp('/proc/net/tcp')) {
        my @w = split ' ';
        next unless @w > 4 && $w[2] =~ /:([0-9A-F]{4})$/ && hex($1) == $port;
        return 0 if $w[3] eq '01' && $w[4] !~ /:0+$/;
    }
    return 1;
}

# Polls $cond, first every 1 ms (a short sa-admin run should not cost a
# whole poll interval), backing off to 20 ms. Returns its first true value,
# or 0 after $secs.
sub wait_until {
    my ($secs, $cond) = @_;
    my ($deadline, $nap) = (time + $secs, 0.001);
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return 0 if time >= $deadline;
        sleep $nap;
        $nap *= 2 if $nap < 0.02;
    }
}

# Like wait_until, but dies naming $what (default 5 s).
sub wait_for {
    my ($what, $cond, $secs) = @_;
    return wait_until($secs // 5, $cond) || die "timed out waiting for $what\n";
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>:raw', $path or die "write $path: $!\n";
    print {$fh} $text;
    close $fh or die "write $path: $!\n";
}

sub tail {
    my ($text, $lines) = @_;
    my @l = split /\n/, $text;
    splice @l, 0, @l - ($lines // 20) if @l > ($lines // 20);
    return join '', map { "    $_\n" } @l;
}

# ---------------------------------------------------------------- temp dirs

my ($TMP, $TMP_OWNER, $SEQ) = (undef, undef, 0);

# One dir per test process. 0755, not File::Temp's 0700: nginx workers that
# run as another user must be able to read the files we serve from it.
sub tmp_dir {
    return $TMP if defined $TMP;
    $TMP = File::Temp::tempdir('sa-test-XXXXXX', TMPDIR => 1,
                               CLEANUP => !$ENV{SA_TEST_KEEP});
    $TMP_OWNER = $$;
    chmod 0755, $TMP or die "chmod $TMP: $!\n";
    return $TMP;
}

sub new_dir {
    my ($name) = @_;
    my $dir = tmp_dir() . "/$name-" . ++$SEQ;
    mkdir $dir or die "mkdir $dir: $!\n";
    chmod 0755, $dir;
    return $dir;
}

# ---------------------------------------------------------------- TLS

# tls_files() -> {ca, cert, key, expired, other_ca, client_cert, client_key,
# other_client_cert, other_client_key}: paths of a throw-away CA made with
# openssl (P-256, valid 2 days) and of what it signed, made once a test
# process: a server certificate for DNS:localhost and IP:127.0.0.1, the
# same key with a certificate that expired yesterday, a client
# certificate; and a second CA, unknown to the servers, with a client
# certificate of its own.
my $TLS;
sub tls_files {
    return $TLS if $TLS;
    my $d = new_dir('tls');
    my $ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    my $ssl = sub {
        my $r = run(['openssl', @_]);
        die "openssl @_: $r->{err}" if $r->{code};
    };
    write_file("$d/server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    write_file("$d/client.ext", "extendedKeyUsage=clientAuth\n");
    for my $ca (qw(ca other_ca)) {
        $ssl->('req', '-x509', @$ec, '-keyout', "$d/$ca.key", '-out', "$d/$ca.crt",
               '-days', 2, '-subj', "/CN=sa test $ca");
    }
    my $sign = sub {
        my ($name, $ca, $ext, $days, $cn, $key) = @_;
        $key //= $name;
        $ssl->('req', @$ec, '-keyout', "$d/$key.key", '-out', "$d/$name.csr",
               '-subj', "/CN=$cn") unless -e "$d/$key.key";
        $ssl->('req', '-new', '-key', "$d/$key.key", '-out', "$d/$name.csr",
               '-subj', "/CN=$cn") if -e "$d/$key.key" && !-e "$d/$name.csr";
        $ssl->('x509', '-req', '-in', "$d/$name.csr", '-CA', "$d/$ca.crt",
               '-CAkey', "$d/$ca.key", '-set_serial', int(rand(1e9)),
               '-days', $days, '-extfile', "$d/$ext", '-out', "$d/$name.crt");
    };
    $sign->('server', 'ca', 'server.ext', 2, 'localhost');
    $sign->('expired', 'ca', 'server.ext', -1, 'localhost', 'server');
    $sign->('client', 'ca', 'client.ext', 2, 'sa-gateway');
    $sign->('other_client', 'other_ca', 'client.ext', 2, 'sa-gateway');
    chmod 0644, glob "$d/*";
    $TLS = { dir => $d, ca => "$d/ca.crt", other_ca => "$d/other_ca.crt",
             cert => "$d/server.crt", key => "$d/server.key",
             expired => "$d/expired.crt",
             client_cert => "$d/client.crt", client_key => "$d/client.key",
             other_client_cert => "$d/other_client.crt",
             other_client_key => "$d/other_client.key" };
    return $TLS;
}

# tls_cert($name, san => 'DNS:redis.test,IP:127.0.0.2', ca => 'ca' |
# 'other_ca' | 'self', days => N, not_before => 'YYYYMMDDHHMMSSZ') -> [cert,
# key]: one more server certificate (a new P-256 key) for the attack reviews
# of TLS: signed by tls_files()' CA (default), by the other CA, or by its own
# key (self); valid N days (default 2) from now, or from not_before (a date
# to come: not yet valid), made with 'openssl ca'.
sub tls_cert {
    my ($name, %o) = @_;
    my $t = tls_files();
    my $d = $t->{dir};
    my $san = $o{san} // 'DNS:localhost,IP:127.0.0.1';
    my $ca = $o{ca} // 'ca';
    my $days = $o{days} // 2;
    my $ssl = sub {
        my $r = run(['openssl', @_]);
        die "openssl @_: $r->{err}" if $r->{code};
    };
    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
    write_file("$d/$name.ext", "subjectAltName=$san\n");
    if ($ca eq 'self') {
        $ssl->('req', '-x509', @ec, '-keyout', "$d/$name.key", '-out', "$d/$name.crt",
               '-days', $days, '-subj', '/CN=localhost', '-addext', "subjectAltName=$san");
    } elsif ($o{not_before}) {
        # openssl x509 cannot date a certificate ahead; openssl ca can
        my $cd = "$d/ca-$name";
        mkdir $cd;
        write_file("$cd/index.txt", '');
        write_file("$cd/serial", sprintf("%08X\n", int rand 1e9));
        write_file("$cd/ca.cnf", join "\n", '[ca]', 'default_ca = sa', '[sa]',
            "dir = $cd", "database = $cd/index.txt", "serial = $cd/serial",
            "new_certs_dir = $cd", 'default_md = sha256', 'policy = any',
            'copy_extensions = none', 'x509_extensions = ext', '[any]',
            'commonName = supplied', '[ext]', "subjectAltName = $san", '');
        $ssl->('req', @ec, '-keyout', "$d/$name.key", '-out', "$d/$name.csr", '-subj', '/CN=localhost');
        my $end = $o{not_before} =~ s/^(\d{4})/$1 + 1/er;
        $ssl->('ca', '-batch', '-config', "$cd/ca.cnf", '-cert', "$d/$ca.crt", '-keyfile', "$d/$ca.key",
               '-startdate', $o{not_before}, '-enddate', $end, '-in', "$d/$name.csr",
               '-out', "$d/$name.crt", '-notext');
    } else {
        $ssl->('req', @ec, '-keyout', "$d/$name.key", '-out', "$d/$name.csr", '-subj', '/CN=localhost');
        $ssl->('x509', '-req', '-in', "$d/$name.csr", '-CA', "$d/$ca.crt", '-CAkey', "$d/$ca.key",
               '-set_serial', int(rand(1e9)), '-days', $days, '-extfile', "$d/$name.ext",
               '-out', "$d/$name.crt");
    }
    chmod 0644, "$d/$name.crt", "$d/$name.key";
    return ["$d/$name.crt", "$d/$name.key"];
}

# ---------------------------------------------------------------- processes

my $SYS_prctl = eval { package main; require 'syscall.ph'; main::SYS_prctl() };
use constant PR_SET_PDEATHSIG => 1;

# fork + exec with redirections; env is the child's whole environment.
# The child leaves only through exec or POSIX::_exit, so it never runs our
# END blocks (which would stop the servers).
sub fork_exec {
    my ($cmd, %io) = @_;
    my $parent = $$;
    my $pid = fork // die "fork: $!\n";
    if ($pid) {
        POSIX::setpgid($pid, $pid) if $io{group};   # both sides: no race
        return $pid;
    }
    eval {
        $SIG{PIPE} = 'DEFAULT';            # an ignored signal survives exec
        POSIX::setpgid(0, 0) if $io{group};
        _die_with_parent($parent);
        %ENV = %{ $io{env} } if $io{env};
        _redirect(\*STDIN,  '<',  $io{stdin}  // '/dev/null');
        _redirect(\*STDOUT, '>>', $io{stdout} // '/dev/null');
        _redirect(\*STDERR, '>>', $io{stderr} // '/dev/null');
        exec { $cmd->[0] } @$cmd or die "exec $cmd->[0]: $!\n";
    };
    print STDERR $@;
    POSIX::_exit(127);
}

sub _redirect {
    my ($fh, $mode, $path) = @_;
    open $fh, $mode, $path or die "open $path: $!\n";
}

# If the test script is SIGKILLed, the kernel sends SIGTERM to the child
# (nginx's master then takes its workers down with it).
sub _die_with_parent {
    my ($parent) = @_;
    syscall($SYS_prctl, PR_SET_PDEATHSIG, POSIX::SIGTERM(), 0, 0, 0) if $SYS_prctl;
    POSIX::_exit(1) if getppid() != $parent;    # parent died before prctl
}

# %ENV with changes applied; an undef value removes the variable.
sub env_with {
    my ($changes) = @_;
    my %env = %ENV;
    while (my ($k, $v) = each %{ $changes // {} }) {
        if (defined $v) { $env{$k} = $v } else { delete $env{$k} }
    }
    return \%env;
}

# Exit status as a shell reports it: a crash is never "exit code 0".
sub exit_code {
    my ($status) = @_;
    return POSIX::WIFEXITED($status) ? POSIX::WEXITSTATUS($status)
                                     : 128 + POSIX::WTERMSIG($status);
}

# run(\@argv, env => {changes}, stdin => $text, timeout => $secs)
#   -> {code, out, err}. Output goes to temp files rather than pipes, so a
# chatty command can never deadlock us; a hung one is killed after timeout
# (default 90 s: sa-admin over thousands of records with sanitizers, on a
# 2-core machine running the suite in parallel, can take over 30 s).
sub run {
    my ($cmd, %opt) = @_;
    my ($in, $out, $err) = map { File::Temp->new(DIR => tmp_dir()) } 1 .. 3;
    print {$in} $opt{stdin} // '';
    close $in;
    my $pid = fork_exec($cmd, env => env_with($opt{env}),
                        stdin => "$in", stdout => "$out", stderr => "$err");
    my $secs = $opt{timeout} // 90;
    # waitpid sets $?, and a $? of -1 left behind makes a later top-level
    # die report "exited with -1": leave the caller's $? alone.
    local $?;
    my $status;
    my $done = wait_until($secs, sub {
        waitpid($pid, POSIX::WNOHANG()) == $pid and ($status = $?, 1);
    });
    unless ($done) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        Carp::croak("@$cmd: still running after ${secs}s, killed");
    }
    my %r = (code => exit_code($status), out => slurp("$out"), err => slurp("$err"));
    _track_output($cmd, $r{err});
    return \%r;
}

# run_cmd(\@argv, NAME => value, ...): run() with environment changes only.
sub run_cmd {
    my ($cmd, %env) = @_;
    return run($cmd, env => \%env);
}

# ---------------------------------------------------------------- HTTP

# One fresh connection per request (keep_alive 0), no redirects followed,
# and no proxy from the environment. Returns HTTP::Tiny's hash: status,
# reason, headers (lowercase keys), content; status 599 = connection error.
sub http {
    my %opt = @_;
    my $ua = HTTP::Tiny->new(
        timeout => $opt{timeout} // 5, keep_alive => 0, max_redirect => 0,
        proxy => undef, http_proxy => undef, https_proxy => undef,
    );
    my %req = (headers => $opt{headers} // {});
    $req{content} = $opt{content} if defined $opt{content};
    return $ua->request($opt{method} // 'GET', $opt{url}, \%req);
}

# Sends $bytes as they are and returns whatever comes back until the server
# closes or `timeout` (default 5 s) passes. half_close => 1 shuts down our
# write side after sending. Write errors are ignored: the server may answer
# and close before reading everything, and that answer is what we want.
sub raw_http {
    my ($port, $bytes, %opt) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 2,
    ) or Carp::croak("raw_http: connect to port $port: $!");
    _write_all($sock, $bytes);
    shutdown($sock, 1) if $opt{half_close};
    my $deadline = time + ($opt{timeout} // 5);
    my $got = '';
    while ((my $left = $deadline - time) > 0) {
        last unless IO::Select->new($sock)->can_read($left);
        last unless sysread($sock, $got, 65536, length $got);   # EOF or reset
    }
    return $got;
}

sub _write_all {
    my ($sock, $bytes) = @_;
    while (length $bytes) {
        my $n = syswrite($sock, $bytes) or return 0;
        substr($bytes, 0, $n, '');
    }
    return 1;
}

# ---------------------------------------------------------------- sa-admin

# A key pair made by sa-admin, shared by the whole test script.
my $KEYS;
sub keys_dir {
    return $KEYS if $KEYS;
    my $dir = new_dir('keys');
    my $r = run([admin_path(), 'key', 'generate', '--out', $dir]);
    die "sa-admin key generate failed: $r->{err}" if $r->{code};
    return $KEYS = $dir;
}

# admin($redis_or_url, [\%env_changes], @args) -> {code, out, err, json}
sub admin {
    my ($redis, @args) = @_;
    my $env = ref $args[0] eq 'HASH' ? shift @args : {};
    return run_admin(redis => $redis, env => $env, args => \@args);
}

sub sa_admin { goto &admin }

# run_admin(redis => $redis_or_url, args => [...], env => {changes},
#           stdin => $text, timeout => $secs, bin => $path)
# Sets SA_REDIS and SA_SIGNING_KEY (keys_dir) unless env names them; an
# undef in env removes a variable. json: the decoded stdout when --json.
sub run_admin {
    my %opt = @_;
    my $bin = $opt{bin} // admin_path();
    -x $bin or Carp::croak("$bin is not built: run 'make' first");
    my %env = %{ $opt{env} // {} };
    if (defined $opt{redis} && !exists $env{SA_REDIS}) {
        $env{SA_REDIS} = ref $opt{redis} ? $opt{redis}->url : $opt{redis};
    }
    $env{SA_SIGNING_KEY} = keys_dir() . '/signing.key' unless exists $env{SA_SIGNING_KEY};
    my @args = @{ $opt{args} // [] };
    my $api = !$opt{bin} && _api_client(\%env, \@args);
    my $r = $api ? _api_run($api, $bin, %opt)
                 : run([$bin, @args], env => \%env, stdin => $opt{stdin},
                       timeout => $opt{timeout});
    $r->{json} = eval { JSON::PP->new->decode($r->{out}) } if grep { $_ eq '--json' } @args;
    return $r;
}

# ------------------------------------------------- the API pass (SA_TEST_API)

# SA_TEST_API=1 (make test-api): every sa-admin command a test runs as a
# user (--as USER, SA_ACTOR) goes to a real 'sa-admin serve' instead: one
# per test file (per Redis, keys and SA_* environment), on a unix socket,
# '--operator root'; the user holds a personal token issued locally by the
# operator, and the command runs as 'sa-admin --token-file F' with SA_API
# and without the signing key or Redis (SA_REDIS points nowhere).  The
# operator's commands (no acting user: the holder of the key), the commands
# that need the keys (key, notify run, the adopts, serve) and those that
# set up the CLI's own Redis or keys with flags run locally, as before.
# Reads across teams (audit without --team, notify list, notify failed)
# are the operators' over the API: they go as root.
# A file that tests only local things says so, and is skipped in this pass:
#   SaTest::api_local('why');
sub api_pass { $ENV{SA_TEST_API} ? 1 : 0 }

sub api_local {
    my ($why) = @_;
    Test::More::plan(skip_all => "local only, not over the API: $why") if api_pass();
}

my %API_SERVES;    # key of the environment => {serve, sock, env, tokens}
my $API_N = 0;
my $API_PID = $$;    # the test file, not a helper it forked

# the rewritten command (args, env, serve), or undef: it runs locally
sub _api_client {
    my ($env, $args) = @_;
    return undef unless api_pass();
    my (@rest, $actor, $n_as);
    for (my $i = 0; $i < @$args; $i++) {
        my $a = $args->[$i];
        return undef if $a eq '--' || $a =~ /^-(?:h|-help)$/;
        return undef if $a =~ /^--(?:redis|redis-ca|redis-cert|redis-key|redis-insecure|signing-key|notify-key|verify-key|api|token-file|version)(?:=|$)/;
        if ($a eq '--as') {
            return undef if $i + 1 >= @$args;
            $actor = $args->[++$i];
            $n_as++;
            next;
        }
        if ($a =~ /^--as=(.*)$/s) { $actor = $1; $n_as++; next }
        push @rest, $a;
    }
    return undef if ($n_as // 0) > 1;
    $actor //= exists $env->{SA_ACTOR} ? $env->{SA_ACTOR} : $ENV{SA_ACTOR};
    return undef unless defined $actor && length $actor;
    my @words = grep { !/^-/ } @rest;
    my ($g, $c) = @words;
    return undef unless defined $g;
    return undef if $g =~ /^(?:key|serve|help)$/;
    return undef if defined $c && "$g $c" =~ /^(?:notify run|team adopt|app adopt)$/;
    # over the API only operators create teams; locally a user may
    return undef if defined $c && "$g $c" eq 'team create';
    # reads across teams (audit without --team, notify list and failed)
    # are the operators' over the API, everyone's locally: as root
    $actor = 'root' if ($g eq 'audit' && !grep { /^--team(?:=|$)/ } @rest)
                       || (defined $c && "$g $c" =~ /^notify (?:list|failed)$/);
    return undef unless defined $env->{SA_SIGNING_KEY} && -r $env->{SA_SIGNING_KEY};
    my %senv = map { $_ => $env->{$_} }
               grep { /^SA_/ && !/^SA_(?:ACTOR|API|TOKEN|TEST_.*)$/ } keys %$env;
    return undef unless defined $senv{SA_REDIS};
    # a helper this file forked uses the file's serve, never starts one
    return undef if $$ != $API_PID && !_api_serve(\%senv, 1);
    return { args => \@rest, actor => $actor, senv => \%senv, env => $env };
}

my %API_TOKENS;     # the data (Redis, prefix, key) => {user => token file}

sub _api_serve {
    my ($senv, $existing) = @_;
    my $key = join "\0", map { "$_=" . ($senv->{$_} // '(unset)') } sort keys %$senv;
    my $s = $API_SERVES{$key};
    # a helper this file forked uses its parent's (not its child: no waitpid)
    return $s if $s && ($s->{serve}{owner} == $$ ? $s->{serve}->running
                                                 : kill(0, $s->{serve}->pid // 0));
    return undef if $existing;
    # the same data under other credentials: the same tokens
    (my $data = $senv->{SA_REDIS}) =~ s{//[^@/]*\@}{//};
    $data = join "\0", $data, $senv->{SA_PREFIX} // $ENV{SA_PREFIX} // 'sa:',
                 $senv->{SA_SIGNING_KEY} // '';
    my $sock = tmp_dir() . '/api-' . $$ . '-' . ++$API_N . '.sock';
    my $serve = SaTest::Serve->start(env => { %$senv }, args => [
        '--listen', "unix:$sock", '--operator', 'root', '--workers', 2 ]);
    $s = $API_SERVES{$key} = { serve => $serve, sock => $sock, senv => $senv,
                               tokens => ($API_TOKENS{$data} //= {}) };
    # every user the test file names, at once: a token issued in the middle
    # would show in a test's snapshot of the keys
    _api_token($s, $_) for _api_users();
    return $s;
}

my @API_USERS;
sub _api_users {
    return @API_USERS if @API_USERS;
    my %u = (alice => 1, root => 1);
    my $src = slurp($0) // '';
    $u{$1} = 1 while $src =~ /(?:--as['"]?\s*(?:,|=>|=)\s*|SA_ACTOR\s*=>\s*|\bas\(\s*)['"]([A-Za-z0-9][\w.+-]*)['"]/g;
    return @API_USERS = sort keys %u;
}

# the user's personal token, in a file only we read, issued by the operator
sub _api_token {
    my ($s, $user, $fresh) = @_;
    delete $s->{tokens}{$user} if $fresh;
    return $s->{tokens}{$user} if $s->{tokens}{$user};
    my $r = run([admin_path(), 'user', 'token', 'issue', $user],
                env => { %{ $s->{senv} }, SA_ACTOR => undef });
    return undef if $r->{code};
    chomp(my $tok = $r->{out});
    my $file = tmp_dir() . "/api-token-$$-" . ++$API_N;
    sysopen(my $fh, $file, Fcntl::O_WRONLY() | Fcntl::O_CREAT() | Fcntl::O_EXCL(), 0600)
        or die "$file: $!";
    print {$fh} "$tok\n";
    close $fh;
    return $s->{tokens}{$user} = $file;
}

sub _api_run {
    my ($api, $bin, %opt) = @_;
    my $s = _api_serve($api->{senv});
    my $r;
    for my $try (0, 1) {
        my $file = _api_token($s, $api->{actor}, $try)
            // return run([$bin, @{ $opt{args} }], env => $api->{env},
                          stdin => $opt{stdin}, timeout => $opt{timeout});
        my %env = (%{ $api->{env} }, SA_ACTOR => undef, SA_SIGNING_KEY => undef,
                   SA_REDIS => 'redis://127.0.0.1:1/0', SA_TOKEN => undef,
                   SA_API => "unix:$s->{sock}");
        $r = run([$bin, '--token-file', $file, @{ $api->{args} }], env => \%env,
                 stdin => $opt{stdin}, timeout => $opt{timeout});
        # the token went with the data (a test emptied Redis): a new one
        last unless $r->{code} == 2 && $r->{err} =~ /a valid bearer token is needed/;
    }
    return $r;
}

# operator($redis, @args): sa-admin as the operator (the signing key, no
# acting user), e.g. for 'app create'.
sub operator {
    my ($redis, @args) = @_;
    my $env = ref $args[0] eq 'HASH' ? shift @args : {};
    return admin($redis, { SA_ACTOR => undef, %$env }, @args);
}

# apps($redis, $team, @apps): the operator creates each application, owned
# by $team (every --app of an account must name one its team owns or
# shares); dies when sa-admin fails.
sub apps {
    my ($redis, $team, @apps) = @_;
    for my $app (@apps) {
        my $r = operator($redis, 'app', 'create', $app, '--team', $team);
        die "app create $app: $r->{err}" if $r->{code};
    }
}

# The environment of sa-admin notify in the tests: the notify key of
# keys_dir(), and its delays scaled down to a hundredth.
sub notify_env { (SA_NOTIFY_KEY => keys_dir() . '/notify.key', SA_NOTIFY_TIME_SCALE => '0.01') }

# issue_token($redis, $account, @scopes) -> the token, issued by alice (the
# usual team owner of the tests); dies when sa-admin fails.
sub issue_token {
    my ($redis, $account, @scopes) = @_;
    my $r = admin($redis, { SA_ACTOR => 'alice' }, 'token', 'issue', $account,
                  map { ('--scope', $_) } @scopes);
    die "token issue failed: $r->{err}" if $r->{code};
    chomp(my $token = $r->{out});
    return $token;
}

# The prologue most tests share: team "platform" owned by alice and its
# account platform/ci, granted the applications in apps (or app).
#   my $f = SaTest::fixture($redis, apps => ['api']);
#   $f->as(@args)        sa-admin as alice: {code, out, err, json}
#   $f->issue(@args)     token issue platform/ci @args: the token, and in
#                        list context (token, id); dies when sa-admin fails
#   $f->token(@scopes)   issue(map { ('--scope', $_) } @scopes), the token
#   $f->account          the account (account create --json)
# Options: team, owner, account (the name), apps/app, env (more sa-admin
# environment, e.g. a notify key). Dies when a step fails.
sub fixture {
    my ($redis, %opt) = @_;
    my $f = bless { redis => $redis, team => $opt{team} // 'platform',
                    owner => $opt{owner} // 'alice', name => $opt{account} // 'ci',
                    env => $opt{env} // {} }, 'SaTest::Fixture';
    my @apps = @{ $opt{apps} // [ defined $opt{app} ? $opt{app} : () ] };
    $f->_must('team', 'create', $f->{team}, '--owner', $f->{owner});
    SaTest::apps($redis, $f->{team}, grep { $_ ne '*' } @apps);
    $f->{account} = $f->_must('account', 'create', $f->{team}, $f->{name},
                              (map { ('--app', $_) } @apps), '--json')->{json};
    return $f;
}

# probe($name) -> the path of a test program of build/tests (the ASan
# build's when sa-admin under test is), or the file bails out
sub probe {
    my ($name) = @_;
    my $path = build_dir() . (($ENV{SA_TEST_ADMIN} // '') =~ m{/asan/} ? '/asan' : '')
             . "/tests/$name";
    -x $path or Test::More::BAIL_OUT("$path is not built: run 'make' first");
    return $path;
}

# A token's id: the 16 characters after "sat_".
sub tid { substr($_[0], 4, 16) }

# forged_token() -> a random well-formed token (its check digits right),
# of no record: what an unauthenticated flood sends.
my @CRC = map { my $c = $_; $c = $c & 1 ? 0xEDB88320 ^ ($c >> 1) : $c >> 1 for 1 .. 8; $c } 0 .. 255;
my @B62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');
sub forged_token {
    my $head = 'sat_' . join('', map { $B62[rand 62] } 1 .. 16) . '_'
             . join('', map { $B62[rand 62] } 1 .. 43);
    return with_check($head);
}

# with_check($head) -> $head (the 64 characters before the check digits)
# followed by its right check digits: a well-formed token of any prefix.
sub with_check {
    my ($head) = @_;
    my $crc = 0xFFFFFFFF;
    $crc = $CRC[($crc ^ ord) & 0xFF] ^ ($crc >> 8) for split //, $head;
    $crc ^= 0xFFFFFFFF;
    my $check = '';
    for (1 .. 6) { $check = $B62[$crc % 62] . $check; $crc = int($crc / 62) }
    return $head . $check;
}

# flood($port, $n, $path) -> how many of $n requests, each with a new
# forged token, were answered; pipelined, 200 a connection, two at a time.
sub flood {
    my ($port, $n, $path) = @_;
    $path //= '/index.html';
    my ($answered, @kids) = (0);
    for my $share (int($n / 2), $n - int($n / 2)) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            srand($$ ^ int(Time::HiRes::time() * 1000));
            my $got = 0;
            for (my $left = $share; $left > 0; $left -= 200) {
                my $k = $left < 200 ? $left : 200;
                my $req = join '', map {
                    "GET $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    . forged_token() . "\r\n" . ($_ == $k ? "Connection: close\r\n" : '')
                    . "\r\n" } 1 .. $k;
                $got += () = raw_http($port, $req, timeout => 20) =~ m{^HTTP/1\.1 \d+}mg;
            }
            print $w "$got\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    for (@kids) {
        my ($pid, $r) = @$_;
        my $got = <$r>;
        $answered += $got // 0;
        waitpid $pid, 0;
    }
    return $answered;
}

# ---------------------------------------------------------------- skipping

# Skips the test file when a build product is missing (developer
# convenience). Under CI (CI set) a missing build is an error, not a skip.
sub require_build {
    my @files = @_ ? @_ : ('ngx_http_sa_module.so');
    my %path = ('ngx_http_sa_module.so' => module_path(), 'sa-admin' => admin_path());
    my @missing = grep { !-e ($path{$_} // build_dir() . "/$_") } @files;
    return 1 unless @missing;
    my $msg = "not built: build/@missing (run 'make' first)";
    die "$msg\n" if $ENV{CI};
    require Test::More;
    Test::More::plan(skip_all => $msg);
}

# ---------------------------------------------------------------- cleanup

# Perl's default action for these signals skips END blocks: turn them into
# exit() so the servers get stopped. SIGPIPE is ignored so that writing to a
# socket the server closed is an error return, not a silent death.
for my $sig (qw(INT TERM HUP)) {
    my $num = POSIX->can("SIG$sig")->();
    $SIG{$sig} = sub {
        print STDERR "# SaTest: caught SIG$sig, stopping servers\n";
        exit 128 + $num;
    };
}
$SIG{PIPE} = 'IGNORE';

sub stop_all { SaTest::Process::stop_all() }

# ---------------------------------------------------------------- log check

# Like Test::Nginx's end-of-file check: when a file that started nginx (or
# ran a command through the harness) calls done_testing, the servers are
# stopped and one more test asserts that no nginx error log holds an
# [alert], an [emerg], a crash ("exited on signal", a "signal" line other
# than nginx's "signal N (SIGx) received"), a worker that exited with a
# non-zero code, or a sanitizer report, and that no command's stderr holds a
# sanitizer report. A file that causes such a line on purpose declares it:
#   SaTest::expect_log(qr/worker process \d+ exited on signal 9/);
# (see t/README). A script that ends without done_testing (it died) gets
# the check from the END block below.
my @NGINX_LOGS;          # [label, path]: error logs of every nginx started
my @CMD_REPORTS;         # "label: line" sanitizer lines from commands run
my @EXPECTED;            # regexes from expect_log
my $MAIN_PID = $$;
my ($ARMED, $CHECKED) = (0, 0);

my $SANITIZER = qr/runtime error:|ERROR: \w*Sanitizer|SUMMARY: \w*Sanitizer|\w+Sanitizer:DEADLYSIGNAL/;
my $NGINX_BAD = qr/\[alert\]|\[emerg\]|exited on signal|exited with (?:fatal )?code [1-9]|\bsignal\b|$SANITIZER/;
my $NGINX_OK  = qr/\bsignal \d+ \(SIG\w+\) received|signal process started/;
# a word every line $NGINX_BAD or $SANITIZER matches has: a cheap test first
# (a flood test's error log has 10^5 lines; the full patterns, a second)
my $MAYBE_BAD = qr/alert\]|emerg\]|exited|signal|runtime error|Sanitizer/;
my $MAYBE_SAN = qr/runtime error|Sanitizer/;

sub expect_log { push @EXPECTED, @_ }

# Lines a log check would report, each as "where: line".
sub unexpected_log_lines {
    my @bad;
    for my $log (@NGINX_LOGS) {
        my ($label, $path) = @$log;
        for my $line (split /\n/, slurp($path)) {
            next unless $line =~ $MAYBE_BAD && $line =~ $NGINX_BAD;
            next if $line =~ $NGINX_OK && $line !~ /\[alert\]|\[emerg\]|$SANITIZER/;
            push @bad, "$label: $line";
        }
    }
    push @bad, @CMD_REPORTS;
    my @left;
    for my $entry (@bad) {
        my ($line) = $entry =~ /^[^:]*: (.*)$/s;
        push @left, $entry unless grep { $line =~ $_ } @EXPECTED;
    }
    return @left;
}

sub _track_nginx {
    my ($dir) = @_;
    push @NGINX_LOGS, map { ["$dir/$_", "$dir/$_"] } qw(error.log stdout.log);
    _arm_log_check();
}

sub _track_output {
    my ($cmd, $err) = @_;
    my $name = File::Basename::basename($cmd->[0] // '?');
    push @CMD_REPORTS, map { "$name stderr: $_" } grep { /$MAYBE_SAN/ && /$SANITIZER/ }
                       split /\n/, $err // '';
    _arm_log_check();
}

# Only in a test script (Test::More loaded) and its own process, never in a
# helper it forked.
sub _arm_log_check {
    return if $ARMED || $$ != $MAIN_PID || !$INC{'Test2/API.pm'};
    $ARMED = 1;
    Test2::API::test2_add_callback_testing_done(sub { _log_check() });
}

sub _log_check {
    return if $CHECKED || !$ARMED || $$ != $MAIN_PID;
    return if (Test2::API::test2_stack()->top->plan // '') eq 'SKIP';
    $CHECKED = 1;
    {
        local $?;
        stop_all();    # shutdown is checked too: logs are read afterwards
    }
    for my $d (SaTest::Process::command_dirs()) {
        push @CMD_REPORTS, map { "$d/stderr: $_" } grep { /$MAYBE_SAN/ && /$SANITIZER/ }
                           split /\n/, slurp("$d/stderr");
    }
    my @bad = unexpected_log_lines();
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!@bad, 'logs: no alert, emerg, crash or sanitizer report')
        or Test::More::diag(join "\n", 'unexpected (declare with SaTest::expect_log):',
                            @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
}

END {
    local $?;    # stopping children runs waitpid, which would clobber it
    _log_check();
    stop_all();
    print STDERR "# SaTest: kept $TMP\n"
        if $ENV{SA_TEST_KEEP} && defined $TMP && $TMP_OWNER == $$;
}

# Earlier names of this harness, still used by tests.
{
    no warnings 'once';
    *build  = \&build_dir;
    *module = \&module_path;
    *tmpdir = \&tmp_dir;
    *spit   = \&write_file;
}

# ======================================================================
# SaTest::Fixture: what SaTest::fixture() made (see there).
# ======================================================================
package SaTest::Fixture;

use strict;
use warnings;

sub as {
    my ($self, @args) = @_;
    return SaTest::admin($self->{redis}, { %{ $self->{env} }, SA_ACTOR => $self->{owner} }, @args);
}

sub _must {
    my ($self, @args) = @_;
    my $r = $self->as(@args);
    die "fixture: sa-admin @args failed: $r->{err}" if $r->{code};
    return $r;
}

sub account  { $_[0]{account} }
sub redis    { $_[0]{redis} }

sub issue {
    my ($self, @args) = @_;
    chomp(my $token = $self->_must('token', 'issue', "$self->{team}/$self->{name}", @args)->{out});
    return wantarray ? ($token, SaTest::tid($token)) : $token;
}

sub token {
    my ($self, @scopes) = @_;
    return scalar $self->issue(map { ('--scope', $_) } @scopes);
}

# ======================================================================
# SaTest::Process: a child process we own (base class of Redis and Nginx).
# Usable directly for background commands:
#   my $p = SaTest::Process->start(cmd => [...], env => {changes}, stdin => $text);
#   $p->out; $p->err; $p->stop; $p->exit_code;
# ======================================================================
package SaTest::Process;

use strict;
use warnings;
use POSIX ();
use Scalar::Util qw(refaddr weaken);

my %LIVE;    # refaddr => weak ref: every object that may own a process
my @COMMAND_DIRS;    # of every start()ed command: their stderr is checked

sub command_dirs { @COMMAND_DIRS }

sub start {
    my ($class, %opt) = @_;
    my $d = SaTest::new_dir('proc');
    my $self = bless { dir => $d }, $class;
    SaTest::write_file("$d/stdin", $opt{stdin} // '');
    $self->_spawn({ env => SaTest::env_with($opt{env}), stdin => "$d/stdin",
                    stdout => "$d/stdout", stderr => "$d/stderr" }, @{ $opt{cmd} });
    push @COMMAND_DIRS, $d;
    SaTest::_arm_log_check();
    return $self;
}

sub pid { $_[0]{pid} }
sub dir { $_[0]{dir} }
sub out { SaTest::slurp("$_[0]{dir}/stdout") }
sub err { SaTest::slurp("$_[0]{dir}/stderr") }

# Exit status of the last run (shell style), undef while running.
sub exit_code { defined $_[0]{status} ? SaTest::exit_code($_[0]{status}) : undef }

# Own process group, so the final SIGKILL also reaches nginx's workers and a
# Ctrl-C in the terminal reaches only the test script, which stops us in order.
sub _spawn {
    my ($self, $io, @cmd) = @_;
    my $log = "$self->{dir}/stdout.log";
    $self->{pid} = SaTest::fork_exec(\@cmd, stdout => $log, stderr => $log,
                                     %$io, group => 1);
    $self->{owner} = $$;
    delete $self->{status};
    weaken($LIVE{ refaddr $self } = $self);
}

# Reaps the child if it has exited; true while it runs.
sub running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    local $?;    # see SaTest::run()
    return 1 if waitpid($self->{pid}, POSIX::WNOHANG()) == 0;
    $self->{status} = $?;
    delete $self->{pid};
    return 0;
}

# Waits up to $secs for $ready->() while the process lives; on failure the
# process is killed. Returns true when ready.
sub _wait_ready {
    my ($self, $secs, $ready) = @_;
    my $ok = SaTest::wait_until($secs, sub { $ready->() || (!$self->running && 'exited') });
    return 1 if $ok && $ok ne 'exited';
    $self->kill9;
    return 0;
}

# Sends $sig, waits up to $grace s, then SIGKILLs the whole group.
# Returns 1 if it exited on $sig in time, 0 if it had to be killed.
sub _terminate {
    my ($self, $sig, $grace) = @_;
    return 1 unless $self->running;
    kill $sig, $self->{pid};
    kill 'CONT', $self->{pid};    # a paused process would never act on $sig
    return 1 if SaTest::wait_until($grace, sub { !$self->running });
    $self->kill9;
    return 0;
}

sub stop   { $_[0]->_terminate($_[1] // 'TERM', 5) }
sub pause  { kill 'STOP', $_[0]{pid} if $_[0]->running }
sub resume { kill 'CONT', $_[0]{pid} if $_[0]->running }

# Group kill before reaping: the unreaped leader keeps the group id ours.
sub kill9 {
    my ($self) = @_;
    return unless $self->running;
    kill '-KILL', $self->{pid};
    kill 'KILL', $self->{pid};
    local $?;    # see SaTest::run()
    waitpid $self->{pid}, 0;
    $self->{status} = $?;
    delete $self->{pid};
}

# Only the process that started a server stops it: a test that forks a
# helper must not lose its servers when the helper exits.
sub _owned { $_[0]{pid} && $_[0]{owner} == $$ }

sub stop_all {
    $_->stop for grep { $_ && $_->_owned } values %LIVE;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    delete $LIVE{ refaddr $self };
    $self->stop if $self->_owned;
}

# ======================================================================
# SaTest::RedisError: an error reply (-ERR ...), returned by cmd_err and
# found inside arrays (e.g. EXEC results). A blessed ref to the message:
# $$err, $err->message and "$err" all give it.
# ======================================================================
package SaTest::RedisError;

use overload '""' => sub { ${ $_[0] } }, fallback => 1;

sub new     { my ($class, $msg) = @_; bless \$msg, $class }
sub message { ${ $_[0] } }

# ======================================================================
# SaTest::Resp: a minimal RESP2 client over one socket.
# $conn = { sock => IO::Socket, buf => '', deadline => epoch secs }
# ======================================================================
package SaTest::Resp;

use strict;
use warnings;
use IO::Select;
use Time::HiRes qw(time);

sub encode {
    my @args = map {
        my $s = "$_";
        utf8::encode($s) if utf8::is_utf8($s);    # Redis counts bytes
        $s;
    } @_;
    return join '', '*' . @args . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @args;
}

sub call {
    my ($conn, $args, $timeout) = @_;
    $conn->{deadline} = time + $timeout;
    SaTest::_write_all($conn->{sock}, encode(@$args)) or die "write: $!\n";
    return read_reply($conn);
}

# Nil is returned as `return undef`, not `return`: inside an array reply's
# map a bare return would drop the element.
sub read_reply {
    my ($conn) = @_;
    my $line = _line($conn);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest                           if $type eq '+';
    return SaTest::RedisError->new($rest)  if $type eq '-';
    return 0 + $rest                       if $type eq ':';
    if ($type eq '$') {
        return undef if $rest < 0;
        return substr(_bytes($conn, $rest + 2), 0, $rest);
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [ map { read_reply($conn) } 1 .. $rest ];
    }
    die "protocol error: unexpected reply line '$line'\n";
}

sub _line {
    my ($conn) = @_;
    my $i;
    _fill($conn) while ($i = index($conn->{buf}, "\r\n")) < 0;
    my $line = substr($conn->{buf}, 0, $i);
    substr($conn->{buf}, 0, $i + 2, '');
    return $line;
}

sub _bytes {
    my ($conn, $n) = @_;
    _fill($conn) while length($conn->{buf}) < $n;
    return substr($conn->{buf}, 0, $n, '');
}

sub _fill {
    my ($conn) = @_;
    my $left = $conn->{deadline} - time;
    die "timeout waiting for reply\n"
        if $left <= 0 || !IO::Select->new($conn->{sock})->can_read($left);
    my $n = sysread($conn->{sock}, $conn->{buf}, 65536, length $conn->{buf});
    die "read: $!\n" unless defined $n;
    die "connection closed by server\n" unless $n;
}

# ======================================================================
# SaTest::Redis: a real redis-server on a free loopback port.
#   start(unix => 1, password => 'x', conf => "lines" or [lines],
#         port => N, timeout => 5, tls => 'no'|'optional'|'yes',
#         host => '127.0.0.2')   (bound there instead of 127.0.0.1)
# tls => ...: a TLS port too (tls_port, tls_url), with SaTest::tls_files()'s
# server certificate and tls-auth-clients set to the value; the harness
# itself keeps talking to the plain port.  SA_TEST_REDIS_TLS=1: every Redis
# has one (tls => 'no' unless given), url is its rediss:// URL, and sa-admin
# runs with SA_REDIS_CA set to the test CA (t/admin/97-redis-tls.t runs
# admin tests so).
# Nothing is persisted (save "", appendonly no) unless conf says otherwise,
# so restart() comes back empty; the dir is kept, so an AOF survives.
# ======================================================================
package SaTest::Redis;

use strict;
use warnings;
use Carp ();
use IO::Socket::INET;
use Scalar::Util qw(blessed);
our @ISA = ('SaTest::Process');

my $REDIS_BIN = $ENV{SA_TEST_REDIS} || 'redis-server';

sub start {
    my ($class, %opt) = @_;
    my $self = bless { timeout => 5, %opt, dir => SaTest::new_dir('redis') }, $class;
    if ($ENV{SA_TEST_REDIS_TLS}) {
        $self->{tls} //= 'no';
        # every sa-admin started from here (serve, the worker) trusts it
        $ENV{SA_REDIS_CA} //= SaTest::tls_files()->{ca};
    }
    $self->{socket} = "$self->{dir}/redis.sock" if $opt{unix};
    for (1 .. ($opt{port} ? 1 : 3)) {
        $self->{port} = $opt{port} || SaTest::free_port();
        $self->{tls_port} = SaTest::free_port() if $self->{tls};
        return $self if $self->_boot;
        last unless $self->log =~ /Address already in use/;   # lost a race
    }
    die "redis-server did not start; its log:\n" . SaTest::tail($self->log);
}

sub port     { $_[0]{port} }
sub tls_port { $_[0]{tls_port} }
sub tls_url  { "rediss://localhost:$_[0]{tls_port}/" . ($_[1] // 0) }
sub socket   { $_[0]{socket} }
sub password { $_[0]{password} }
sub log      { join '', map { SaTest::slurp("$_[0]{dir}/$_") } qw(stdout.log redis.log) }

# Seconds to wait for a reply (and for connect); a paused server times out.
sub timeout {
    my ($self, $secs) = @_;
    $self->{timeout} = $secs if defined $secs;
    return $self->{timeout};
}

sub url {
    my ($self) = @_;
    my $auth = defined $self->{password} ? ":$self->{password}@" : '';
    return "rediss://${auth}localhost:$self->{tls_port}/0"
        if $ENV{SA_TEST_REDIS_TLS} && $self->{tls_port};
    return "redis://${auth}" . ($self->{host} // '127.0.0.1') . ":$self->{port}/0";
}

# Starts it again, same port, conf and dir (after stop or kill9).
sub launch {
    my ($self) = @_;
    $self->_boot or die "redis-server did not restart:\n" . SaTest::tail($self->log);
    return $self;
}

sub restart { $_[0]->stop; $_[0]->launch }

sub stop  { my $self = shift; delete $self->{conn}; $self->SUPER::stop(@_) }
sub kill9 { my $self = shift; delete $self->{conn}; $self->SUPER::kill9(@_) }

# A fingerprint of the whole data set: equal digests, equal data.  The
# last uses of personal tokens (<prefix>ptok:<id>:used) are left out:
# sa-admin serve writes one when a personal token authenticates (at most
# once a minute), which in the API pass is the pass's own credential, not
# the command under test.  They are put aside for the DEBUG DIGEST and
# restored (DUMP / RESTORE, their expiry kept).
sub _ptok_used { grep { /ptok:[^:]+:used$/ } @{ $_[0]->cmd('KEYS', '*ptok:*:used') } }

sub digest {
    my ($self) = @_;
    my @used = $self->_ptok_used;
    return $self->cmd('DEBUG', 'DIGEST') unless @used;
    my @aside = map { [ $_, $self->cmd('DUMP', $_), $self->cmd('PTTL', $_) ] } @used;
    $self->cmd('DEL', @used);
    my $d = $self->cmd('DEBUG', 'DIGEST');
    for (@aside) {
        my ($k, $v, $ttl) = @$_;
        $self->cmd('RESTORE', $k, $ttl > 0 ? $ttl : 0, $v, 'REPLACE') if defined $v;
    }
    return $d;
}

# The same without the audit log and its keys (<prefix>audit*) and the
# tokens' last uses (<prefix>tok:<id>:used, ptok:<id>:used): a refused
# change writes nothing but its 'denied' audit entry, and the last use of
# the token that authenticated it (sa-admin serve).
sub digest_but_audit {
    my ($self) = @_;
    my @keys = sort grep { !/^[^:]*:audit/ && !/tok:[^:]+:used$/ } @{ $self->cmd('KEYS', '*') };
    return '' unless @keys;
    return join ',', @{ $self->cmd('DEBUG', 'DIGEST-VALUE', @keys) }, @keys;
}

# How many times $command (lowercase: 'get') ran here, from INFO commandstats.
sub calls {
    my ($self, $command) = @_;
    return $self->cmd('INFO', 'commandstats') =~ /^cmdstat_\Q$command\E:calls=(\d+)/m ? $1 : 0;
}

# One round trip (PING): every reply and Pub/Sub message Redis wrote before
# it, to any client, is on that client's socket now.  Redis answers the
# publisher of a PUBLISH (or the caller of a script that publishes) first
# and the subscribers a moment later, in the same pass over its clients; a
# Redis the machine's load holds up between the two can let a test's next
# request reach nginx before the invalidation does.  A worker that has a
# message on its socket reads it before a request that comes after it.
sub barrier { $_[0]->cmd('PING') }

# Clients subscribed here (with sa_cache, one per gateway worker).
sub subscribers {
    my ($self) = @_;
    return scalar(() = $self->cmd('CLIENT', 'LIST', 'TYPE', 'pubsub') =~ /^id=/mg);
}

# Waits until exactly $n clients are subscribed (default: 1), so that a
# cached answer is possible and an invalidation is heard.
sub wait_subscribed {
    my ($self, $n) = @_;
    $n //= 1;
    SaTest::wait_for("$n subscribers", sub { $self->subscribers == $n });
}

# The reply as a Perl value; an error reply dies with its message.
sub cmd {
    my ($self, @args) = @_;
    my $reply = $self->cmd_err(@args);
    Carp::croak("redis $args[0]: $reply") if blessed $reply && $reply->isa('SaTest::RedisError');
    return $reply;
}

# Like cmd, but an error reply is returned as a SaTest::RedisError.
# Connection problems (server down, timeout) still die.
sub cmd_err {
    my ($self, @args) = @_;
    my $reply;
    return $reply if eval {
        $self->{conn} //= $self->_connect;
        $reply = SaTest::Resp::call($self->{conn}, \@args, $self->{timeout});
        1;
    };
    delete $self->{conn};    # a half-read reply would desync the next command
    Carp::croak("redis 127.0.0.1:$self->{port} $args[0]: $@");
}

# hog($ms) -> a child that keeps this Redis busy with Lua loops of $ms
# milliseconds, one after the other, until ->stop: a long pipeline of
# another client is then spread over many of them, for the tests that cut
# a change in the middle (a batch of 1000 tokens takes Redis ~50 ms alone)
sub hog {
    my ($self, $ms) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        delete $self->{conn};
        my $lua = 'local t0 = redis.call("TIME") repeat local t = redis.call("TIME") '
                . 'until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1]) return 1';
        eval { $self->cmd('EVAL', $lua, 0, $ms * 1000) while 1 };
        POSIX::_exit(0);
    }
    return bless { pid => $pid }, 'SaTest::Hog';
}

sub _connect {
    my ($self) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $self->{host} // '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp',
        Timeout => $self->{timeout},
    ) or die "connect: $!\n";
    my $conn = { sock => $sock, buf => '' };
    if (defined $self->{password}) {
        my $r = SaTest::Resp::call($conn, ['AUTH', $self->{password}], $self->{timeout});
        die "AUTH: $r\n" if ref $r;
    }
    return $conn;
}

sub _boot {
    my ($self) = @_;
    SaTest::write_file("$self->{dir}/redis.conf", $self->_conf_text);
    $self->_spawn({}, $REDIS_BIN, "$self->{dir}/redis.conf");
    return $self->_wait_ready(5, sub {
        my $r = eval { $self->cmd_err('PING') };
        defined $r && $r eq 'PONG';
    });
}

# enable-debug-command: Redis 7 refuses DEBUG (used by digest) by default.
sub _conf_text {
    my ($self) = @_;
    my $d = $self->{dir};
    my $extra = $self->{conf} // '';
    return join "\n",
        '# generated by t/lib/SaTest.pm',
        'bind ' . ($self->{host} // '127.0.0.1'), "port $self->{port}",
        'save ""', 'appendonly no', 'daemonize no',
        "dir $d", "logfile $d/redis.log", 'enable-debug-command local',
        ($self->{socket} ? ("unixsocket $self->{socket}", 'unixsocketperm 777') : ()),
        (defined $self->{password} ? 'requirepass ' . _quote($self->{password}) : ()),
        $self->_tls_lines,
        (ref $extra ? @$extra : $extra), '';
}

sub _tls_lines {
    my ($self) = @_;
    return () unless $self->{tls};
    my $t = SaTest::tls_files();
    return ("tls-port $self->{tls_port}", "tls-cert-file $t->{cert}",
            "tls-key-file $t->{key}", "tls-ca-cert-file $t->{ca}",
            "tls-auth-clients $self->{tls}");
}

sub _quote { '"' . ($_[0] =~ s/(["\\])/\\$1/gr) . '"' }

# ======================================================================
# SaTest::Nginx: Debian's nginx as a child (daemon off), own dir and conf.
#   start(http => "...", main => "...", module => 1, workers => 1,
#         redis => $redis, port => N, env => {changes})
# env: changes to nginx's environment (not `nginx -t`'s), e.g. LD_PRELOAD.
# Placeholders in http/main: %%PORT%% (our listen port), %%DIR%% (our dir).
# redis => $redis adds sa_redis and sa_verify_key (keys_dir) to http { }.
# ======================================================================
package SaTest::Nginx;

use strict;
use warnings;
use Carp ();
use Time::HiRes qw(sleep time);
our @ISA = ('SaTest::Process');

my $NGINX_BIN = $ENV{SA_TEST_NGINX} || $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

my $DEFAULT_HTTP = "server { listen 127.0.0.1:%%PORT%%; root %%DIR%%/html; }";

sub start {
    my ($class, %opt) = @_;
    my $self = $class->_prepare(%opt);
    SaTest::_track_nginx($self->{dir});
    my $tries = $opt{port} ? 1 : 3;
    for my $try (1 .. $tries) {
        my ($ok, $out) = $self->_config_test;
        Carp::croak("nginx -t failed:\n$out") unless $ok;
        return $self if $self->_boot;
        last unless $self->error_log =~ /Address already in use/;   # lost a race
        last if $try == $tries;
        # the harness's [emerg], not the test's: out of the log check's way
        rename "$self->{dir}/$_", "$self->{dir}/$_.lost-race" for qw(error.log stdout.log);
        $self->{port} = SaTest::free_port();
    }
    die "nginx did not start; its error log:\n" . SaTest::tail($self->error_log);
}

# Only `nginx -t`: returns (ok, output), for tests of configuration errors.
sub test_config {
    my ($class, %opt) = @_;
    return $class->_prepare(%opt)->_config_test;
}

sub port       { $_[0]{port} }
sub url        { "http://127.0.0.1:$_[0]{port}" . ($_[1] // '/') }
# stdout.log (nginx's stderr: the start's warnings, a crash's last words)
# first: it stays put while error.log grows, so a length taken before a
# request marks where that request's lines begin
sub error_log  { SaTest::slurp("$_[0]{dir}/stdout.log") . SaTest::slurp("$_[0]{dir}/error.log") }
sub access_log { SaTest::slurp("$_[0]{dir}/access.log") }
sub conf       { SaTest::slurp("$_[0]{dir}/nginx.conf") }

sub get {
    my ($self, $path, %headers) = @_;
    return $self->request('GET', $path, %headers);
}

sub request {
    my ($self, $method, $path, %headers) = @_;
    return SaTest::http(method => $method, url => $self->url($path), headers => \%headers);
}

sub post {
    my ($self, $path, $content, %headers) = @_;
    return SaTest::http(method => 'POST', url => $self->url($path),
                        headers => \%headers, content => $content);
}

# Graceful shutdown; true if it finished within $secs (a module that leaves
# non-cancelable timers makes this false). Killed afterwards either way.
sub quit {
    my ($self, $secs) = @_;
    return $self->_terminate('QUIT', $secs // 10);
}

# Rewrites the conf with any changed options (http, main, module, workers,
# redis), sends HUP and waits until only new workers accept. Returns 1 on
# success, 0 if nginx rejected the new conf (it keeps the old, logs [emerg]).
sub reload {
    my ($self, %changes) = @_;
    @$self{ keys %changes } = values %changes;
    $self->_write_conf;
    my %old = map { $_ => 1 } $self->worker_pids;
    my $mark = length $self->error_log;
    kill 'HUP', $self->{pid};
    if ($ENV{SA_TEST_NGINX_WRAPPER}) {
        sleep 5;    # under a wrapper /proc shows no workers to wait for
        return substr($self->error_log, $mark) =~ /\[emerg\]/ ? 0 : 1;
    }
    my $deadline = time + 10;
    while (time < $deadline) {
        die "nginx master exited during reload\n" unless $self->running;
        return 0 if substr($self->error_log, $mark) =~ /\[emerg\]/;
        my @now = $self->worker_pids;
        return 1 if @now >= $self->{workers} && !grep { $old{$_} } @now;
        sleep 0.02;
    }
    die "nginx reload: new workers not up after 10 s\n" . SaTest::tail($self->error_log);
}

# Pids of the master's workers that accept connections (one that is
# "shutting down" after a reload or quit has closed its listen sockets).
sub worker_pids {
    my ($self) = @_;
    my @pids;
    return @pids unless $self->running;    # () would be undef in scalar context
    for my $stat (glob '/proc/[0-9]*/stat') {
        my ($pid) = $stat =~ m{/proc/(\d+)/};
        next unless _ppid($pid) == $self->{pid};
        push @pids, $pid if SaTest::slurp("/proc/$pid/cmdline") =~ /worker process\0*$/;
    }
    return @pids;
}

# The 4th field of /proc/PID/stat; the 2nd (comm) may contain spaces.
sub _ppid {
    my ($pid) = @_;
    my $stat = SaTest::slurp("/proc/$pid/stat") // "";    # undef: it just exited
    return -1 unless $stat =~ /\)\s+\S+\s+(\d+)/;
    return $1;
}

sub _prepare {
    my ($class, %opt) = @_;
    my $self = bless { module => 1, workers => 1, %opt,
                       dir => SaTest::new_dir('nginx'),
                       port => $opt{port} || SaTest::free_port() }, $class;
    mkdir "$self->{dir}/$_" for qw(html tmp);
    SaTest::write_file("$self->{dir}/html/index.html", "hello\n");
    return $self;
}

# -e: Debian's nginx logs to stderr until the conf is read; keep it in DIR.
# SA_TEST_NGINX_WRAPPER: a command put in front, e.g. valgrind ('make
# test-valgrind')
sub _argv {
    my $d = $_[0]{dir};
    my @wrapper = split ' ', $ENV{SA_TEST_NGINX_WRAPPER} // '';
    return (@wrapper, $NGINX_BIN, '-p', "$d/", '-e', "$d/error.log", '-c', "$d/nginx.conf",
            '-g', 'daemon off;');
}

sub _config_test {
    my ($self) = @_;
    $self->_write_conf;
    my $r = SaTest::run([$self->_argv, '-t']);
    return ($r->{code} == 0, $r->{out} . $r->{err});
}

# Ready when the port accepts and all workers exist (the master listens
# before it forks them; connections queue until a worker accepts).
sub _boot {
    my ($self) = @_;
    $self->_spawn($self->{env} ? { env => SaTest::env_with($self->{env}) } : {},
                  $self->_argv);
    # under a wrapper (valgrind) /proc shows no "worker process" titles
    my $wrapped = $ENV{SA_TEST_NGINX_WRAPPER};
    return $self->_wait_ready($wrapped ? 60 : 10, sub {
        SaTest::port_open($self->{port})
            && ($wrapped || $self->worker_pids >= $self->{workers});
    });
}

sub _write_conf {
    my ($self) = @_;
    SaTest::write_file("$self->{dir}/nginx.conf", $self->_conf_text);
}

sub _conf_text {
    my ($self) = @_;
    my $d = $self->{dir};
    my $text = join "\n",
        '# generated by t/lib/SaTest.pm',
        ($self->{module} ? 'load_module ' . SaTest::module_path() . ';' : ()),
        # as root, workers default to nobody, who can't read a 0700 dir
        ($> == 0 ? 'user root;' : ()),
        "worker_processes $self->{workers};",
        "error_log $d/error.log info;",
        "pid $d/nginx.pid;",
        "lock_file $d/nginx.lock;",
        $self->{main} // '',
        'events { worker_connections 1024; }',
        'http {',
        "    access_log $d/access.log;",
        (map { "    ${_}_temp_path $d/tmp/$_;" } qw(client_body proxy fastcgi uwsgi scgi)),
        $self->_sa_lines,
        $self->{http} // $DEFAULT_HTTP,
        '}', '';
    $text =~ s/%%PORT%%/$self->{port}/g;
    $text =~ s/%%DIR%%/$d/g;
    return $text;
}

sub _sa_lines {
    my ($self) = @_;
    my $redis = $self->{redis} or return ();
    my $pass = defined $redis->password ? ' password=' . $redis->password : '';
    return ('    sa_redis 127.0.0.1:' . $redis->port . "$pass;",
            '    sa_verify_key ' . SaTest::keys_dir() . '/verify.key;');
}

# ======================================================================
# SaTest::Proxy: t/lib/fault-proxy in front of a port (see that file for
# the modes): a network that delays, freezes or swallows traffic per
# direction and per connection, stops accepting, or drops SYNs.
#   my $p = SaTest::Proxy->start(target => $redis->port);
#   $p->set('pubsub', 'both', 'freeze'); $p->set(3, 'down', 'delay', 500);
#   $p->accept(0); $p->blackhole(1); $p->cut('all'); $p->conns;
# ======================================================================
package SaTest::Proxy;

use strict;
use warnings;
use Carp ();
use IO::Socket::INET;
our @ISA = ('SaTest::Process');

sub start {
    my ($class, %opt) = @_;
    my $self = bless { dir => SaTest::new_dir('proxy'), port => $opt{port} || SaTest::free_port(),
                       control => SaTest::free_port() }, $class;
    $self->_spawn({}, $^X, SaTest::root() . '/t/lib/fault-proxy',
                  $self->{port}, $opt{target}, $self->{control});
    $self->_wait_ready(5, sub { SaTest::port_open($self->{control}) })
        or die "fault-proxy did not start:\n" . SaTest::tail(SaTest::slurp("$self->{dir}/stdout.log"));
    return $self;
}

sub port { $_[0]{port} }

# One control command; dies on an error answer. Returns the answer.
sub ctl {
    my ($self, $line) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{control},
                                  Proto => 'tcp', Timeout => 5)
        or Carp::croak("fault-proxy control: $!");
    print {$s} "$line\n";
    my $reply = '';
    while (defined(my $l = <$s>)) {
        $reply .= $l;
        last if $l =~ /^(ok|\.|error.*)\n/;
    }
    close $s;
    Carp::croak("fault-proxy '$line': $reply") if $reply =~ /^error/m || $reply eq '';
    return $reply;
}

sub set       { my ($self, @w) = @_; $self->ctl("set @w") }
sub accept    { $_[0]->ctl('accept ' . ($_[1] ? 'on' : 'off')) }
sub blackhole { $_[0]->ctl('blackhole ' . ($_[1] ? 'on' : 'off')) }
sub cut       { $_[0]->ctl('cut ' . ($_[1] // 'all')) }
sub target    { $_[0]->ctl("target $_[1]") }

# The connections as [{id, kind, port (the client's), up, down}, ...]
sub conns {
    my ($self) = @_;
    my @c;
    for (split /\n/, $self->ctl('list')) {
        my ($id, $kind, $port, $up, $down) = split ' ' or next;
        next if $id eq '.';
        push @c, { id => $id, kind => $kind, port => $port, up => $up, down => $down };
    }
    return @c;
}

# ======================================================================
# SaTest::TlsProxy: build/tests/tls-proxy (t/lib/tls-proxy.c), a TLS server
# in front of a plain one that misbehaves at the TLS layer on command.
#   my $p = SaTest::TlsProxy->start(target => PORT, ip => '127.0.0.1',
#               cert => [crt, key] (default tls_files()' server), mode => M,
#               tls12 => 1);
#   $p->mode('stall');        # for the connections to come (see tls-proxy.c)
#   $p->cert([crt, key]);     # likewise, a server of its own (its own
#                             # session tickets); undef: back to the default
#   $p->cert([crt, key], shared => 1);  # in the proxy's context: sessions
#                             # of the other connections are resumed
#   $p->cut;                  # ends every connection it serves (no
#                             # close_notify: the TCP connection closes)
#   $p->accepted; $p->log;    # connections so far; its event lines
# ======================================================================
package SaTest::TlsProxy;
use strict;
use warnings;
our @ISA = ('SaTest::Process');

sub start {
    my ($class, %opt) = @_;
    my $t = SaTest::tls_files();
    my $self = bless { dir => SaTest::new_dir('tls-proxy'), port => $opt{port} || SaTest::free_port(),
                       ip => $opt{ip} // '127.0.0.1' }, $class;
    my ($crt, $key) = @{ $opt{cert} // [$t->{cert}, $t->{key}] };
    $self->mode($opt{mode}) if $opt{mode};
    SaTest::write_file("$self->{dir}/tls12", '') if $opt{tls12};
    my $bin = SaTest::build_dir() . '/tests/tls-proxy';
    -x $bin or Test::More::BAIL_OUT("$bin is not built: run 'make' first");
    $self->_spawn({}, $bin, $self->{ip}, $self->{port}, $opt{target}, $crt, $key, $self->{dir});
    my $probe_ip = $self->{ip} eq '0.0.0.0' ? '127.0.0.1' : $self->{ip};
    $self->_wait_ready(5, sub {
        IO::Socket::INET->new(PeerAddr => $probe_ip, PeerPort => $self->{port}, Proto => 'tcp', Timeout => 1) })
        or die "tls-proxy did not start:\n" . SaTest::tail(SaTest::slurp("$self->{dir}/stdout.log"));
    # the probe was a connection too: counted from here
    SaTest::wait_until(2, sub { ($self->accepted // 0) >= 1 });
    $self->{base} = $self->accepted;
    return $self;
}

sub port { $_[0]{port} }
sub log  { SaTest::slurp("$_[0]{dir}/log") }
sub accepted { my $n = SaTest::slurp("$_[0]{dir}/accepted"); ($n =~ /(\d+)/ ? $1 : 0) - ($_[0]{base} // 0) }

sub mode {
    my ($self, $mode) = @_;
    SaTest::write_file("$self->{dir}/mode.tmp", $mode);
    rename "$self->{dir}/mode.tmp", "$self->{dir}/mode" or die "rename: $!";
}

sub cert {
    my ($self, $pair, %o) = @_;
    unlink "$self->{dir}/cert", "$self->{dir}/key", "$self->{dir}/shared";
    return unless $pair;
    SaTest::write_file("$self->{dir}/shared", '') if $o{shared};
    SaTest::write_file("$self->{dir}/key.tmp", SaTest::slurp($pair->[1]));
    SaTest::write_file("$self->{dir}/cert.tmp", SaTest::slurp($pair->[0]));
    rename "$self->{dir}/key.tmp", "$self->{dir}/key";
    rename "$self->{dir}/cert.tmp", "$self->{dir}/cert";
}

sub cut {
    my ($self) = @_;
    my %pids = map { $_ => 1 } $self->log =~ /^(\d+) accepted/mg;
    kill 'KILL', keys %pids;
}

# ======================================================================
# SaTest::Sentinels: a primary, its replicas and Redis Sentinels watching
# them (Debian's redis-server in sentinel mode), all on free loopback ports.
#   my $s = SaTest::Sentinels->start(master => 'mymaster', replicas => 1,
#               sentinels => 3, down_after => 1000, failover_timeout => 3000,
#               password => undef);
#   $s->nodes;            # SaTest::Redis data nodes: [0] the first primary
#   $s->sentinels;        # the sentinels (SaTest::Redis-like: cmd, kill9...)
#   $s->sentinel_addrs;   # "127.0.0.1:P1 127.0.0.1:P2 ..."
#   $s->url(db => 0);     # redis-sentinel://[:pass@]h:p,h:p/0#mymaster
#   $s->master;           # the node the sentinels name, which says ROLE master
#   my $new = $s->wait_failover(from => $old, timeout => 20);
#   $s->wait_replicas_synced;
#   $s->rejoin($old);     # a stopped node back, as a replica of the master
# start returns once the replicas are in sync and every sentinel knows the
# replicas and the other sentinels, so a failover can begin at once.
# ======================================================================
package SaTest::Sentinels;

use strict;
use warnings;
use Carp ();
use Scalar::Util qw(blessed);

sub start {
    my ($class, %opt) = @_;
    my $self = bless { master => 'mymaster', replicas => 1, sentinels => 3,
                       down_after => 1000, failover_timeout => 3000,
                       quorum => 2, %opt }, $class;
    my $pw = $self->{password};
    # no 5 s wait for more replicas before a full sync
    my @auth = ('repl-diskless-sync-delay 0',
                defined $pw ? ('masterauth ' . SaTest::Redis::_quote($pw)) : ());
    my @pwopt = defined $pw ? (password => $pw) : ();
    my $primary = SaTest::Redis->start(@pwopt, conf => [@auth]);
    $self->{nodes} = [ $primary ];
    for (1 .. $self->{replicas}) {
        push @{ $self->{nodes} }, SaTest::Redis->start(@pwopt,
            conf => [@auth, 'replicaof 127.0.0.1 ' . $primary->port]);
    }
    $self->_wait_synced($primary, 10);
    for (1 .. $self->{sentinels}) {
        push @{ $self->{sentinel_list} }, SaTest::Sentinels::Sentinel->start(
            master => $self->{master}, master_port => $primary->port,
            quorum => $self->{quorum}, down_after => $self->{down_after},
            failover_timeout => $self->{failover_timeout}, auth_pass => $pw);
    }
    $self->_wait_discovered(10);
    return $self;
}

sub master_name { $_[0]{master} }
sub nodes       { @{ $_[0]{nodes} } }
sub sentinels   { @{ $_[0]{sentinel_list} } }

sub sentinel_addrs {
    my ($self) = @_;
    return join ' ', map { '127.0.0.1:' . $_->port } $self->sentinels;
}

sub url {
    my ($self, %opt) = @_;
    my $auth = defined $self->{password} ? ":$self->{password}@" : '';
    my $hosts = join ',', map { '127.0.0.1:' . $_->port } $self->sentinels;
    return "redis-sentinel://$auth$hosts/" . ($opt{db} // 0) . "#$self->{master}";
}

# The data node listening on $port, or undef.
sub node_by_port {
    my ($self, $port) = @_;
    my ($n) = grep { $_->port == $port } $self->nodes;
    return $n;
}

# ROLE's first word ('master', 'slave'), or undef when it does not answer.
sub role {
    my ($node) = @_;
    return undef unless $node->running;
    my $r = eval { $node->cmd_err('ROLE') };
    return ref $r eq 'ARRAY' ? $r->[0] : undef;
}

# The port each live sentinel names for the master (undef: no answer).
sub named_ports {
    my ($self) = @_;
    my @ports;
    for my $s (grep { $_->running } $self->sentinels) {
        my $r = eval {
            local $s->{timeout} = 1;
            $s->cmd_err('SENTINEL', 'get-master-addr-by-name', $self->{master});
        };
        push @ports, ref $r eq 'ARRAY' ? $r->[1] : undef;
    }
    return @ports;
}

# The node every live sentinel names, if they agree and it says ROLE master.
sub _agreed_master {
    my ($self, $not) = @_;
    my @ports = $self->named_ports;
    return undef if !@ports || grep { !defined $_ || $_ != $ports[0] } @ports;
    my $node = $self->node_by_port($ports[0]) or return undef;
    return undef if $not && $node == $not;
    return (role($node) // '') eq 'master' ? $node : undef;
}

sub master {
    my ($self, %opt) = @_;
    return SaTest::wait_until($opt{timeout} // 5, sub { $self->_agreed_master })
        || Carp::croak('sentinels name no master that says ROLE master (they name: '
                       . join(',', map { $_ // '-' } $self->named_ports) . ')');
}

sub wait_failover {
    my ($self, %opt) = @_;
    my $from = $opt{from} // Carp::croak('wait_failover: from => $node');
    my $secs = $opt{timeout} // 20;
    return SaTest::wait_until($secs, sub { $self->_agreed_master($from) })
        || Carp::croak("no failover from port " . $from->port . " within ${secs}s "
                       . '(sentinels name: ' . join(',', map { $_ // '-' } $self->named_ports) . ')');
}

sub wait_replicas_synced {
    my ($self, %opt) = @_;
    $self->_wait_synced($self->master, $opt{timeout} // 10);
}

# Relaunches a stopped data node as a replica of the current master (a
# plain launch comes back as it was configured first, and the sentinels
# take up to ~10 s to turn a returning old primary into a replica).
sub rejoin {
    my ($self, $node) = @_;
    my $master = $self->master;
    my @keep = grep { !/^replicaof / } @{ $node->{conf} };
    $node->{conf} = [ @keep, 'replicaof 127.0.0.1 ' . $master->port ];
    $node->launch;
    $self->_wait_synced($master, 10);
    return $node;
}

# Every live node other than $master replicates it with the link up.
sub _wait_synced {
    my ($self, $master, $secs) = @_;
    my @rest = grep { $_ != $master && $_->running } $self->nodes;
    SaTest::wait_for('replicas in sync with port ' . $master->port, sub {
        !grep {
            my $i = eval { $_->cmd('INFO', 'replication') } // '';
            !($i =~ /^master_port:(\d+)/m && $1 == $master->port
              && $i =~ /^master_link_status:up/m);
        } @rest;
    }, $secs);
}

# Each sentinel knows every replica (and has heard from it) and the others.
sub _wait_discovered {
    my ($self, $secs) = @_;
    my $want_replicas = $self->{replicas};
    my $want_peers = $self->{sentinels} - 1;
    SaTest::wait_for('sentinels to discover the replicas and each other', sub {
        !grep {
            my $s = $_;
            my $reps = eval { $s->cmd('SENTINEL', 'replicas', $self->{master}) } || [];
            my $peers = eval { $s->cmd('SENTINEL', 'sentinels', $self->{master}) } || [];
            my $ok_reps = grep {
                my %h = @$_;
                ($h{flags} // '') eq 'slave' && ($h{'master-link-status'} // '') eq 'ok';
            } @$reps;
            $ok_reps < $want_replicas || @$peers < $want_peers;
        } $self->sentinels;
    }, $secs);
}

# ----------------------------------------------------------------------
# One sentinel: redis-server --sentinel with its own (rewritable) conf.
# The conf is written once: a relaunch keeps what the sentinel learned.
package SaTest::Sentinels::Sentinel;

use strict;
use warnings;
our @ISA = ('SaTest::Redis');

sub _boot {
    my ($self) = @_;
    my $conf = "$self->{dir}/sentinel.conf";
    if (!-e $conf || ($self->{conf_port} // 0) != $self->{port}) {
        SaTest::write_file($conf, $self->_conf_text);
        $self->{conf_port} = $self->{port};
    }
    $self->_spawn({}, $REDIS_BIN, $conf, '--sentinel');
    return $self->_wait_ready(5, sub {
        my $r = eval { $self->cmd_err('PING') };
        defined $r && $r eq 'PONG';
    });
}

sub password { undef }

sub _conf_text {
    my ($self) = @_;
    my ($d, $m) = ($self->{dir}, $self->{master});
    return join "\n",
        '# generated by t/lib/SaTest.pm (SaTest::Sentinels)',
        'bind 127.0.0.1', "port $self->{port}", 'daemonize no',
        "dir $d", "logfile $d/redis.log",
        "sentinel monitor $m 127.0.0.1 $self->{master_port} $self->{quorum}",
        "sentinel down-after-milliseconds $m $self->{down_after}",
        "sentinel failover-timeout $m $self->{failover_timeout}",
        "sentinel parallel-syncs $m 1",
        (defined $self->{auth_pass}
            ? "sentinel auth-pass $m " . SaTest::Redis::_quote($self->{auth_pass}) : ()),
        '';
}

# ======================================================================
# SaTest::Recorder: t/lib/recorder, an upstream (HTTP, FastCGI, uwsgi,
# SCGI) that keeps every request it gets, byte for byte.
#   my $up = SaTest::Recorder->start;  ... $up->port; $up->count;
#   my ($bytes, $proto) = $up->request($n);   # $n from 1; default: the last
# ======================================================================
package SaTest::Recorder;

use strict;
use warnings;
our @ISA = ('SaTest::Process');

# the program in t/lib, and the name of its dir
sub program { 'recorder' }

sub start {
    my ($class) = @_;
    my $name = $class->program;
    my $self = bless { dir => SaTest::new_dir($name), port => SaTest::free_port() }, $class;
    $self->_spawn({}, $^X, SaTest::root() . "/t/lib/$name", $self->{port}, $self->{dir});
    $self->_wait_ready(5, sub { SaTest::port_open($self->{port}) })
        or die "$name did not start\n";
    # port_open's probe connection counts as nothing: it sends no byte
    return $self;
}

sub port  { $_[0]{port} }
sub count { 0 + (SaTest::slurp("$_[0]{dir}/count") || 0) }

sub request {
    my ($self, $n) = @_;
    $n //= $self->count;
    for my $proto (qw(http fastcgi uwsgi scgi)) {
        my $f = "$self->{dir}/$n.$proto";
        return (SaTest::slurp($f), $proto) if -e $f;
    }
    return;
}

# ======================================================================
# SaTest::Receiver: t/lib/receiver, an HTTP endpoint playing Slack and
# webhooks for the notification tests (told what to answer by DIR/plan).
#   my $r = SaTest::Receiver->start;  $r->port; $r->dir; $r->count;
#   $r->raw($n); my @new = $r->received;
# ======================================================================
package SaTest::Receiver;

use strict;
use warnings;
our @ISA = ('SaTest::Recorder');

sub program { 'receiver' }

# The $n-th request received (from 1), as it arrived.
sub raw { (SaTest::Recorder::request(@_))[0] // '' }

# The requests received since the last call, parsed: path (of the POST),
# headers (lowercase keys), body, raw, json (the body decoded, or undef).
sub received {
    my ($self) = @_;
    my @out;
    my $count = $self->count;
    for my $i (($self->{seen} // 0) + 1 .. $count) {
        my $raw = $self->raw($i);
        my ($head, $body) = split /\r\n\r\n/, $raw, 2;
        my ($line, @h) = split /\r\n/, $head;
        my %h = map { my ($k, $v) = split /:\s*/, $_, 2; (lc $k => $v) } @h;
        my ($path) = $line =~ m{^POST (\S+) HTTP/1\.1$};
        push @out, { path => $path // "bad request line: $line", headers => \%h,
                     body => $body, raw => $raw,
                     json => eval { JSON::PP->new->utf8->decode($body) } };
    }
    $self->{seen} = $count;
    return @out;
}

# ======================================================================
# SaTest::Conn: one keep-alive HTTP/1.1 connection, for sending requests
# through one chosen nginx worker (a connection stays with the worker that
# accepted it) and for raw header orders.
#   my $c = SaTest::Conn->new($port);
#   my $res = $c->request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
#   # {status, headers (lowercase keys), body}; undef when the server closed
# ======================================================================
package SaTest::Conn;

use strict;
use warnings;
use Carp ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

sub new {
    my ($class, $port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => 5)
        or Carp::croak("connect $port: $!");
    return bless { sock => $sock, buf => '' }, $class;
}

sub send_raw { SaTest::_write_all($_[0]{sock}, $_[1]) }

sub request {
    my ($self, $raw, $timeout) = @_;
    $self->send_raw($raw);
    return $self->response($timeout);
}

# GET path with headers (a list of pairs, sent in that order)
sub get {
    my ($self, $path, @h) = @_;
    my $raw = "GET $path HTTP/1.1\r\n";
    $raw .= "Host: localhost\r\n" unless grep { lc $_ eq 'host' } @h[ grep { !($_ % 2) } 0 .. $#h ];
    while (my ($k, $v) = splice @h, 0, 2) { $raw .= "$k: $v\r\n" }
    return $self->request("$raw\r\n");
}

sub response {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    my $end;
    until (($end = index($self->{buf}, "\r\n\r\n")) >= 0) {
        $self->_fill($deadline) or return;
    }
    my $head = substr($self->{buf}, 0, $end + 4, '');
    my ($status) = $head =~ m{^HTTP/1\.\d (\d{3})} or Carp::croak("bad response: $head");
    my %h;
    $h{ lc $1 } = $2 while $head =~ /^([^:\r\n]+):\s*(.*?)\r$/mg;
    my $len = $h{'content-length'} // 0;
    while (length $self->{buf} < $len) { $self->_fill($deadline) or last }
    my $body = substr($self->{buf}, 0, $len, '');
    return { status => $status, headers => \%h, body => $body };
}

sub _fill {
    my ($self, $deadline) = @_;
    my $left = $deadline - time;
    return 0 if $left <= 0 || !IO::Select->new($self->{sock})->can_read($left);
    return sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
}

sub close { close $_[0]{sock} }

package SaTest::Hog;
sub stop { my ($self) = @_; kill 'KILL', $self->{pid} if $self->{pid}; waitpid $self->{pid}, 0 if $self->{pid}; $self->{pid} = 0 }
sub DESTROY { $_[0]->stop }

# ======================================================================
# SaTest::Serve: a real `sa-admin serve` (the admin API).
#   my $api = SaTest::Serve->start(redis => $redis, args => [...], env => {})
# Listens on 127.0.0.1:0 unless args name a listener; waits for its
# 'listening on ADDR' lines. SA_SIGNING_KEY is keys_dir()'s, SA_ACTOR unset.
#   $api->addrs              the addresses, in the order printed
#   $api->url                http://<the first TCP listener>
#   $api->req(METHOD, PATH, headers => {...}, json => $data | content => $s,
#             listener => $addr)  -> {status, headers (lowercase), content,
#                                     json (decoded when it is JSON)}
# One connection per request; a unix:/path listener is spoken to directly.
# ======================================================================
package SaTest::Serve;

use strict;
use warnings;
use Carp ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP ();
our @ISA = ('SaTest::Process');

sub start {
    my ($class, %opt) = @_;
    my @args = @{ $opt{args} // [] };
    my $n = grep { /^--(?:trusted-)?listen$/ } @args;
    unless ($n) {
        push @args, '--listen', '127.0.0.1:0';
        $n = 1;
    }
    my %env = (SA_SIGNING_KEY => SaTest::keys_dir() . '/signing.key',
               SA_ACTOR => undef, %{ $opt{env} // {} });
    $env{SA_REDIS} //= ref $opt{redis} ? $opt{redis}->url : $opt{redis}
        if defined $opt{redis};
    my $self = SaTest::Process::start($class, cmd => [SaTest::admin_path(), 'serve', @args],
                                      env => \%env);
    my $ok = $self->_wait_ready($opt{timeout} // 30, sub {
        my @l = $self->err =~ /^listening on (\S+)$/mg;
        @l >= $n;
    });
    Carp::croak("sa-admin serve did not start:\n" . $self->err) unless $ok;
    $self->{addrs} = [ $self->err =~ /^listening on (\S+)$/mg ];
    return $self;
}

sub addrs { @{ $_[0]{addrs} } }
sub url   { my ($a) = grep { !/^unix:/ } $_[0]->addrs; "http://$a" }
sub port  { my ($a) = grep { !/^unix:/ } $_[0]->addrs; ($a =~ /:(\d+)$/)[0] }

# the worker processes (children of serve)
sub workers {
    my ($self) = @_;
    my $c = SaTest::slurp("/proc/$self->{pid}/task/$self->{pid}/children");
    return sort { $a <=> $b } split ' ', $c;
}

sub connect_to {
    my ($self, $addr) = @_;
    $addr //= ($self->addrs)[0];
    if ($addr =~ /^unix:(.*)$/) {
        return IO::Socket::UNIX->new(Peer => $1, Type => Socket::SOCK_STREAM())
            // Carp::croak("connect $addr: $!");
    }
    my ($h, $p) = $addr =~ /^\[?(.*?)\]?:(\d+)$/;
    return IO::Socket::INET->new(PeerAddr => $h, PeerPort => $p, Proto => 'tcp',
                                 Timeout => 5) // Carp::croak("connect $addr: $!");
}

sub req {
    my ($self, $method, $path, %opt) = @_;
    my %h = (Host => 'sa-admin.test', Connection => 'close', %{ $opt{headers} // {} });
    my $body = $opt{content};
    if (exists $opt{json}) {
        $body = JSON::PP->new->canonical->encode($opt{json});
        $h{'Content-Type'} //= 'application/json';
    }
    $h{'Content-Length'} //= length $body if defined $body;
    delete $h{$_} for grep { !defined $h{$_} } keys %h;
    my $raw = "$method $path HTTP/1.1\r\n"
            . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n" . ($body // '');
    my $sock = $self->connect_to($opt{listener});
    SaTest::_write_all($sock, $raw);
    my $got = '';
    my $deadline = Time::HiRes::time() + ($opt{timeout} // 30);
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        last unless IO::Select->new($sock)->can_read($left);
        last unless sysread($sock, $got, 65536, length $got);
    }
    close $sock;
    return parse_response($got);
}

sub parse_response {
    my ($got) = @_;
    my %r = (status => 599, headers => {}, content => '', raw => $got);
    my ($head, $content) = split /\r\n\r\n/, $got, 2;
    return \%r unless defined $head && $head =~ m{^HTTP/1\.[01] (\d{3})};
    $r{status} = $1;
    for my $line (split /\r\n/, $head) {
        next unless $line =~ /^([^:\s]+):\s*(.*)$/;
        my $k = lc $1;
        $r{headers}{$k} = exists $r{headers}{$k} ? "$r{headers}{$k}, $2" : $2;
    }
    $r{content} = $content // '';
    $r{json} = eval { JSON::PP->new->decode($r{content}) }
        if ($r{headers}{'content-type'} // '') =~ /json/;
    return \%r;
}

# ======================================================================
# Which process holds the local end of a loopback TCP connection from
# $port: for telling which nginx worker owns a connection the proxy sees.
# ======================================================================
package SaTest;

sub socket_owner {
    my ($port, @pids) = @_;
    my %inode;
    for my $f (glob('/proc/net/tcp'), glob('/proc/net/tcp6')) {
        for (split /\n/, slurp($f)) {
            my @w = split ' ';
            next unless @w > 9 && $w[1] =~ /:([0-9A-F]{4})$/;
            $inode{ $w[9] } = 1 if hex($1) == $port;
        }
    }
    for my $pid (@pids) {
        for my $fd (glob "/proc/$pid/fd/*") {
            my $l = readlink($fd) // next;
            return $pid if $l =~ /^socket:\[(\d+)\]$/ && $inode{$1};
        }
    }
    return;
}

1;
