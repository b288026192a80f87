# The integration-test harness: a real redis-server and Debian's nginx with
# our module, on free loopback ports in a temporary directory, torn down
# when the test ends (even when it dies).  Core Perl only.
#
#   use lib 't/lib';
#   use SaTest;
#   my $redis = SaTest::Redis->start;
#   my $keys  = SaTest::keys_dir();                  # signing + verify key
#   my $r     = SaTest::admin($redis, qw(team create platform --owner alice));
#   my $nginx = SaTest::Nginx->start(redis => $redis, http => '...');
#   my $res   = $nginx->get('/index.html', Authorization => "Bearer $token");

package SaTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use HTTP::Tiny;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use JSON::PP;

our $ROOT = abs_path(dirname(__FILE__) . '/../..');
our $NGINX = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our @PROCS;                    # every object with a live process

my $tmp;

sub root   { $ROOT }
sub build  { "$ROOT/build" }
sub module { "$ROOT/build/ngx_http_sa_module.so" }

# one temporary directory per test script, readable by nginx's workers
sub tmpdir {
    $tmp //= do {
        my $d = tempdir('sa-test-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        chmod 0755, $d;
        $d;
    };
    return $tmp;
}

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub wait_for {
    my ($what, $cond, $timeout) = @_;
    my $until = time + ($timeout // 5);
    while (time < $until) {
        return 1 if $cond->();
        sleep 0.05;
    }
    die "timed out waiting for $what\n";
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub spit {
    my ($path, $content) = @_;
    open my $fh, '>', $path or die "$path: $!\n";
    print $fh $content;
    close $fh;
}

# a key pair made by sa-admin, shared by the whole test script
my $keys;
sub keys_dir {
    return $keys if $keys;
    $keys = tmpdir() . '/keys';
    mkdir $keys;
    my $r = run_cmd([build() . '/sa-admin', 'key', 'generate', '--out', $keys]);
    die "key generate failed: $r->{err}" if $r->{code};
    return $keys;
}

# runs a command, returns {code, out, err}
sub run_cmd {
    my ($argv, %env) = @_;
    my $n = int(rand(1e9));
    my ($out, $err) = (tmpdir() . "/out.$n", tmpdir() . "/err.$n");
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        @ENV{keys %env} = values %env;
        open STDOUT, '>', $out or die;
        open STDERR, '>', $err or die;
        exec @$argv or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $r = { code => $? >> 8, out => slurp($out), err => slurp($err) };
    unlink $out, $err;
    return $r;
}

# sa-admin against a Redis; {code, out, err, json} (json when --json parses)
sub admin {
    my ($redis, @args) = @_;
    my %env = (SA_REDIS => $redis->url,
               SA_SIGNING_KEY => keys_dir() . '/signing.key');
    if (ref $args[0] eq 'HASH') {
        my $extra = shift @args;
        %env = (%env, %$extra);
    }
    delete $env{$_} for grep { !defined $env{$_} } keys %env;
    my $r = run_cmd([build() . '/sa-admin', @args], %env);
    $r->{json} = eval { JSON::PP->new->decode($r->{out}) }
        if grep { $_ eq '--json' } @args;
    return $r;
}

sub stop_all {
    $_->stop for grep { $_ && $_->pid } reverse @PROCS;
}

END { my $rc = $?; stop_all(); $? = $rc; }
$SIG{INT} = $SIG{TERM} = sub { stop_all(); exit 1 };


package SaTest::Redis;

use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

# start(unix => 1, password => 'p', conf => ["maxmemory 1mb", ...])
sub start {
    my ($class, %opt) = @_;
    my $self = bless { %opt }, $class;
    $self->{port} //= SaTest::free_port();
    $self->{dir} = SaTest::tmpdir() . "/redis-$self->{port}";
    mkdir $self->{dir};
    $self->{socket} = "$self->{dir}/redis.sock" if $opt{unix};
    push @SaTest::PROCS, $self;
    $self->launch;
    return $self;
}

sub launch {
    my ($self) = @_;
    my @args = ('--port', $self->{port}, '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--dir', $self->{dir},
                '--logfile', "$self->{dir}/redis.log",
                '--enable-debug-command', 'yes');
    push @args, '--unixsocket', $self->{socket}, '--unixsocketperm', '777'
        if $self->{socket};
    push @args, '--requirepass', $self->{password} if $self->{password};
    for my $line (@{ $self->{conf} || [] }) {
        my ($k, @v) = split ' ', $line;
        push @args, "--$k", @v;
    }
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        exec 'redis-server', @args or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    SaTest::wait_for("redis on $self->{port}",
                     sub { eval { $self->cmd('PING') } });
}

sub port   { $_[0]{port} }
sub pid    { $_[0]{pid} }
sub socket { $_[0]{socket} }

sub url {
    my ($self) = @_;
    my $auth = $self->{password} ? ":$self->{password}@" : '';
    return "redis://${auth}127.0.0.1:$self->{port}/0";
}

sub connect {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Timeout => 2)
        or die "redis: $!\n";
    if ($self->{password}) {
        $self->{sock} = $s;
        $self->roundtrip('AUTH', $self->{password});
    }
    return $s;
}

# one command; errors die with Redis's message
sub cmd {
    my ($self, @args) = @_;
    my $r = $self->cmd_err(@args);
    die "redis: $$r\n" if ref $r eq 'SaTest::RedisError';
    return $r;
}

# one command; an error comes back as a SaTest::RedisError (a string ref)
sub cmd_err {
    my ($self, @args) = @_;
    $self->{sock} = undef if $self->{sock} && !$self->{sock}->connected;
    $self->{sock} //= $self->connect;
    my $r = eval { $self->roundtrip(@args) };
    if ($@) {
        $self->{sock} = undef;
        die $@;
    }
    return $r;
}

sub roundtrip {
    my ($self, @args) = @_;
    my $s = $self->{sock};
    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    $s->print($req) or die "redis write: $!\n";
    return read_reply($s);
}

sub read_line {
    my ($s) = @_;
    my $line = <$s>;
    die "redis: connection closed\n" unless defined $line;
    $line =~ s/\r\n\z//;
    return $line;
}

sub read_reply {
    my ($s) = @_;
    my $line = read_line($s);
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+';
    return bless \$v, 'SaTest::RedisError' if $t eq '-';
    return 0 + $v if $t eq ':';
    if ($t eq '$') {
        return undef if $v < 0;
        my $buf = '';
        while (length($buf) < $v + 2) {
            my $n = read($s, $buf, $v + 2 - length($buf), length($buf));
            die "redis: connection closed\n" unless $n;
        }
        return substr($buf, 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [ map { read_reply($s) } 1 .. $v ];
    }
    die "redis: bad reply '$line'\n";
}

sub stop {
    my ($self, $sig) = @_;
    return unless $self->{pid};
    $self->{sock} = undef;
    kill $sig // 'TERM', $self->{pid};
    kill 'CONT', $self->{pid};
    my $until = time + 5;
    while (time < $until) {
        last if waitpid($self->{pid}, WNOHANG) == $self->{pid};
        sleep 0.02;
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid $self->{pid}, 0;
    }
    $self->{pid} = undef;
}

# a digest of the whole dataset: equal digests, nothing was written
sub digest  { $_[0]->cmd('DEBUG', 'DIGEST') }

sub kill9   { $_[0]->stop('KILL') }
sub restart { my ($self) = @_; $self->stop; $self->launch }
sub pause   { kill 'STOP', $_[0]{pid} }
sub resume  { kill 'CONT', $_[0]{pid} }


package SaTest::Nginx;

use strict;
use warnings;
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

# the nginx.conf around a test's own http-level lines
sub conf_text {
    my ($self) = @_;
    my $dir = $self->{dir};
    my $module = $self->{module} // 1;
    my $user = $> == 0 ? 'user root;' : '';
    my $load = $module ? 'load_module ' . SaTest::module() . ';' : '';
    my $sa = '';
    if ($self->{redis}) {
        my $keys = SaTest::keys_dir();
        $sa = 'sa_redis 127.0.0.1:' . $self->{redis}->port . ";\n"
            . "    sa_verify_key $keys/verify.key;";
    }
    my $http = $self->{http} // '';
    $http =~ s/%%PORT%%/$self->{port}/g;
    $http =~ s/%%DIR%%/$dir/g;
    my $main = $self->{main} // '';
    my $workers = $self->{workers} // 1;

    return <<CONF;
$load
$user
worker_processes $workers;
error_log $dir/error.log info;
pid $dir/nginx.pid;
$main
events { worker_connections 1024; }

http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    $sa

$http
}
CONF
}

sub prepare {
    my ($class, %opt) = @_;
    my $self = bless { %opt }, $class;
    $self->{port} //= SaTest::free_port();
    $self->{dir} = SaTest::tmpdir() . "/nginx-$self->{port}";
    mkdir $self->{dir};
    mkdir "$self->{dir}/html";
    chmod 0755, $self->{dir}, "$self->{dir}/html";
    SaTest::spit("$self->{dir}/html/index.html", "hello\n");
    SaTest::spit("$self->{dir}/nginx.conf", $self->conf_text);
    return $self;
}

sub args { my ($self) = @_; ('-p', $self->{dir}, '-c', "$self->{dir}/nginx.conf") }

# nginx -t only: (ok, output)
sub test_config {
    my ($class, %opt) = @_;
    my $self = $class->prepare(%opt);
    my $r = SaTest::run_cmd([$SaTest::NGINX, $self->args, '-t']);
    return ($r->{code} == 0, $r->{err});
}

sub start {
    my ($class, %opt) = @_;
    my $self = $class->prepare(%opt);
    my $r = SaTest::run_cmd([$SaTest::NGINX, $self->args, '-t']);
    die "nginx -t failed:\n$r->{err}" if $r->{code};

    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>>', "$self->{dir}/stderr.log";
        exec $SaTest::NGINX, $self->args, '-g', 'daemon off;'
            or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    push @SaTest::PROCS, $self;
    SaTest::wait_for("nginx on $self->{port}", sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $self->{port});
    });
    return $self;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }
sub pid  { $_[0]{pid} }
sub url  { my ($self, $path) = @_; "http://127.0.0.1:$self->{port}$path" }

sub error_log  { SaTest::slurp("$_[0]{dir}/error.log") }
sub access_log { SaTest::slurp("$_[0]{dir}/access.log") }

# {status, headers (lower-case keys), content}
sub request {
    my ($self, $method, $path, %headers) = @_;
    my $http = HTTP::Tiny->new(timeout => 10, max_redirect => 0);
    return $http->request($method, $self->url($path), { headers => \%headers });
}

sub get { my ($self, $path, %h) = @_; $self->request('GET', $path, %h) }

sub reload {
    my ($self, %opt) = @_;
    if (exists $opt{http}) {
        $self->{http} = $opt{http};
        SaTest::spit("$self->{dir}/nginx.conf", $self->conf_text);
    }
    my $before = () = $self->error_log =~ /start worker process/g;
    kill 'HUP', $self->{pid};
    my $workers = $self->{workers} // 1;
    SaTest::wait_for('new workers', sub {
        my $now = () = $self->error_log =~ /start worker process/g;
        $now >= $before + $workers;
    });
}

sub quit {
    my ($self) = @_;
    kill 'QUIT', $self->{pid};
    my $until = time + 10;
    while (time < $until) {
        if (waitpid($self->{pid}, WNOHANG) == $self->{pid}) {
            $self->{pid} = undef;
            return 1;
        }
        sleep 0.05;
    }
    return 0;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    my $until = time + 5;
    while (time < $until) {
        last if waitpid($self->{pid}, WNOHANG) == $self->{pid};
        sleep 0.02;
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', -$self->{pid}, $self->{pid};
        waitpid $self->{pid}, 0;
    }
    $self->{pid} = undef;
}

1;
