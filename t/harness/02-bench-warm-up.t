# bench/wrk.sh's warm_up (the warm-up of make bench's 100,000-token part):
# on a server too slow for one run to reach every token, it takes more wrk
# runs, each going on where the last stopped, until every token was seen;
# with a cap, it stops with a message saying how far it got.  The server is
# nginx without our module, held to 4,000 requests/s by limit_req, logging
# each request's Authorization header; "seen" counts distinct 200s there.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

plan skip_all => 'wrk is not installed' unless grep { -x "$_/wrk" } split /:/, $ENV{PATH};

my $nginx = SaTest::Nginx->start(module => 0, http => <<'CONF');
    log_format tok '$status $http_authorization';
    limit_req_zone $server_port zone=slow:1m rate=4000r/s;
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/tokens.log tok;
        limit_req zone=slow burst=100000;
        root %%DIR%%/html;
    }
CONF

my $N = 10_000;
my $file = SaTest::new_dir('warm') . '/tokens.txt';
SaTest::write_file($file, join '', map { "t$_\n" } 1 .. $N);
my $log = $nginx->dir . '/tokens.log';

my $SCRIPT = <<'SH';
bench=$1/bench
progress() { printf '.. %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
. "$bench/wrk.sh"
log=$5
seen() { grep '^200 Bearer ' "$log" | sort -u | wc -l; }
warm_up "$2" "$3" "$4" 1 "$6" "$7" seen
echo "runs=$warm_runs reqs=$warm_reqs"
SH

sub warm_up {
    my ($max) = @_;
    return SaTest::run(['bash', '-c', $SCRIPT, 'warm', SaTest::root(), $nginx->url('/index.html'),
                        $file, $N, $log, $max, SaTest::new_dir('out') . '/warm.out'],
                       timeout => 120);
}

my %seen;
sub seen {
    %seen = ();
    my $text = SaTest::slurp($log);
    $seen{$1} = 1 while $text =~ /^200 Bearer (\S+)$/mg;
    return scalar keys %seen;
}

# one 1 s run cannot get through 10,000 tokens at 4,000/s
my $r = warm_up(1);
is($r->{code}, 1, 'capped at one run: it gives up') or diag $r->{err};
like($r->{err}, qr/^bench: warm-up: [1-9]\d* of $N tokens seen after 1 wrk runs of 1 s \(\d+ requests answered\): too slow or too busy a machine; BENCH_WARM_RUNS=N allows more runs/m,
     'saying how far it got and what to do');
my $first = seen();
cmp_ok($first, '<', $N, "one run saw $first tokens");

# a fresh log for the second case
unlink $log;
kill 'USR1', $nginx->pid;
SaTest::wait_for('the reopened log', sub { -e $log });
$r = warm_up(30);
is($r->{code}, 0, 'with room for more runs it finishes') or diag "$r->{err}\n$r->{out}";
my ($runs, $reqs) = $r->{out} =~ /runs=(\d+) reqs=(\d+)/;
cmp_ok($runs // 0, '>=', 2, 'in ' . ($runs // '?') . ' runs');
is(seen(), $N, 'every token was seen');
ok(!grep({ !$seen{"t$_"} } 1 .. $N), 'each of the file, by name');
cmp_ok($reqs // 0, '<', 1.5 * $N, ($reqs // '?') . ' requests: each run went on where the last stopped');
like($r->{err}, qr/^\.\. warm-up: \d+ of $N tokens seen, wrk run 2 of at most 30$/m, 'progress per run');

done_testing;
