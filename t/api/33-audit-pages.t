# GET /v1/audit filtered and paged on the server (issue 23, item 5): the
# console's audit page is "a team's audit log, newest first, filterable
# by account and by actor, paged".  With a few hundred entries of two
# accounts, two actors and another team: account= and actor= keep exactly
# the entries the whole log has of them; order=newest&limit=N pages with
# before=<the last id> go through the log without a gap or a repeat, and
# entries written between two pages shift no page (after=<the first id>
# is the page newer); a bad parameter is a 400 problem+json naming it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $f = SaTest::fixture($redis, apps => ['api']);            # platform/ci, alice
sub op { my $r = SaTest::operator($redis, @_); die "@_: $r->{err}" if $r->{code}; $r }
sub as { my $u = shift; my $r = SaTest::admin($redis, { SA_ACTOR => $u }, @_);
         die "$u @_: $r->{err}" if $r->{code}; $r }
sub ptoken { chomp(my $t = op('user', 'token', 'issue', $_[0])->{out}); $t }

my $ci = $f->{account}{id};
my $cd = as('alice', qw(account create platform cd --app api --json))->{json}{id};
as('alice', qw(team member add platform tim --perm service_accounts:tokens));
as('alice', 'token', 'issue', $ci, '--count', 90);
as('tim', 'token', 'issue', $cd, '--count', 60);
as('alice', 'token', 'issue', $cd, '--count', 30);
as('tim', 'token', 'issue', $ci, '--count', 20);
op(qw(team create other --owner dave));
as('dave', qw(account create other bot));
as('dave', 'token', 'issue', 'other/bot', '--count', 25);

my $api = SaTest::Serve->start(redis => $redis,
                               args => [ '--listen', '127.0.0.1:0', '--workers', 2 ]);
my %tok = map { $_ => ptoken($_) } qw(alice dave);
sub get {
    my ($who, $q) = @_;
    return $api->req(GET => "/v1/audit?$q", headers => { Authorization => "Bearer $tok{$who}" });
}
sub ok_get {
    my $r = get(@_);
    is($r->{status}, 200, "GET /v1/audit?$_[1]: 200") or diag $r->{raw};
    return $r->{json} // [];
}
sub ids { [ map { $_->{id} } @{ $_[0] } ] }

# the whole of platform's log, oldest first, as before
my $all = ok_get(alice => 'team=platform');
cmp_ok(scalar @$all, '>', 200, scalar(@$all) . ' entries of platform');
ok(!grep({ ($_->{id} // '') !~ /^\d+-\d+\z/ } @$all), 'each with its id');
my @sorted = sort { my @x = split /-/, $a; my @y = split /-/, $b; $x[0] <=> $y[0] || $x[1] <=> $y[1] }
             @{ ids($all) };
is_deeply(ids($all), \@sorted, 'oldest first: ids growing');
ok(!grep({ $_->{team} ne 'platform' } @$all), "no other team's");

# filters: exactly what the whole log has of them
my %cdtok = map { $_->{id} => 1 } @{ as('alice', 'token', 'list', $cd, '--json')->{json} };
is(scalar keys %cdtok, 90, "cd's 90 tokens");
my @want = grep { $_->{target} eq $cd || $cdtok{ $_->{target} } } @$all;
is(scalar @want, 91, "cd's entries in the log: its creation and 90 tokens");
is_deeply(ok_get(alice => "team=platform&account=$cd"), \@want, 'account=<id>: exactly those');
is_deeply(ok_get(alice => 'team=platform&account=platform/cd'), \@want, 'account=TEAM/NAME: the same');
is_deeply(ok_get(alice => 'account=platform%2Fcd&team=platform'), \@want, 'the slash percent-encoded too');
my @tim = grep { $_->{actor} eq 'tim' } @$all;
is(scalar @tim, 80, "tim's 80 entries");
is_deeply(ok_get(alice => 'team=platform&actor=tim'), \@tim, 'actor=tim: exactly his');
my @both = grep { $_->{actor} eq 'tim' && ($_->{target} eq $cd || $cdtok{ $_->{target} }) } @$all;
is(scalar @both, 60, "tim's on cd: 60");
is_deeply(ok_get(alice => "team=platform&actor=tim&account=$cd"), \@both, 'both filters: both hold');
is_deeply(ok_get(alice => 'team=platform&actor=nobody'), [], 'an actor of no entry: []');

# newest first, paged with before=: the whole log reversed, no gap, no repeat
sub pages {
    my ($q, $n, $hook) = @_;
    my ($cursor, @seen, @sizes);
    for my $i (1 .. 100) {
        my $page = ok_get(alice => "$q&order=newest&limit=$n" . ($cursor ? "&before=$cursor" : ''));
        $hook->($i, $page) if $hook;
        last unless @$page;
        push @sizes, scalar @$page;
        push @seen, @$page;
        $cursor = $page->[-1]{id};
    }
    return (\@seen, \@sizes);
}
my ($seen, $sizes) = pages('team=platform', 40);
is_deeply(ids($seen), [ reverse @{ ids($all) } ], 'newest first, page after page: the whole log reversed');
ok(!grep({ $_ != 40 } @$sizes[0 .. $#$sizes - 1]) && $sizes->[-1] <= 40, 'pages of 40, the last one shorter');
($seen) = pages("team=platform&account=$cd&actor=alice", 7);
is_deeply(ids($seen), [ reverse @{ ids([ grep { $_->{actor} eq 'alice' } @want ]) } ],
          'filtered and paged by 7: the filtered log reversed');

# entries written between pages shift nothing; after= gives the page newer
my (@p, $added);
($seen) = pages('team=platform', 50, sub {
    my ($i, $page) = @_;
    push @p, $page;
    if ($i == 1) {          # 15 new entries after the first page
        as('tim', 'token', 'issue', $ci, '--count', 15);
        $added = 15;
    }
});
is_deeply(ids($seen), [ reverse @{ ids($all) } ], '15 entries added after page 1: the pages still the old log');
my $newer = ok_get(alice => "team=platform&order=oldest&limit=50&after=$p[1][0]{id}");
is_deeply(ids([ reverse @$newer ]), ids($p[0]), 'after=<the first id of page 2>: page 1 again, reversed');
$newer = ok_get(alice => "team=platform&order=oldest&limit=50&after=$p[0][0]{id}");
is(scalar @$newer, $added, 'after=<the first id of page 1>: the 15 new entries');
ok(!grep({ $_->{actor} ne 'tim' || $_->{action} ne 'token.issue' } @$newer), 'they are the new ones');
my $top = ok_get(alice => 'team=platform&order=newest&limit=50');
is_deeply(ids([ @$top[0 .. 14] ]), [ reverse @{ ids($newer) } ], 'the first page now starts with them');
is_deeply(ids([ @$top[15 .. 49] ]), ids([ @{ $p[0] }[0 .. 34] ]), 'followed by the old first page');

# limit with the default order: the oldest; before and after together
my $first = ok_get(alice => 'team=platform&limit=3');
is_deeply(ids($first), [ @{ ids($all) }[0 .. 2] ], 'limit=3: the three oldest');
my $mid = ok_get(alice => "team=platform&after=$all->[9]{id}&before=$all->[20]{id}");
is_deeply(ids($mid), [ @{ ids($all) }[10 .. 19] ], 'after= and before=: the entries between');
is_deeply(ok_get(alice => 'team=platform&before=0-0'), [], 'before=0-0: none');
is_deeply(ok_get(alice => 'team=platform&after=18446744073709551615-18446744073709551615'), [],
          'after=the largest id: none');
is(scalar @{ ok_get(alice => 'team=platform&since=1h&order=newest&limit=1000') }, scalar(@$all) + $added,
   'since= with order=newest');

# a deleted account, by its id: the entries naming it
as('alice', 'account', 'delete', $cd);
my $gone = ok_get(alice => "team=platform&account=$cd");
is_deeply([ map { $_->{action} } @$gone ], [qw(account.create account.delete)],
          'a deleted account by id: its creation and deletion');

# refused: 400 problem+json naming what is wrong
for my $case (
    [ 'limit=0', qr/invalid limit '0' \(expected 1 to 1000\)/ ],
    [ 'limit=1001', qr/invalid limit '1001'/ ],
    [ 'limit=abc', qr/invalid limit 'abc'/ ],
    [ 'limit=5x', qr/invalid limit '5x'/ ],
    [ 'limit=-5', qr/invalid limit '-5'/ ],
    [ 'limit=', qr/invalid limit ''/ ],
    [ 'order=sideways', qr/invalid order 'sideways' \(expected oldest or newest\)/ ],
    [ 'before=abc', qr/invalid before 'abc' \(expected an entry id/ ],
    [ 'before=1-2-3', qr/invalid before '1-2-3'/ ],
    [ 'before=-1', qr/invalid before '-1'/ ],
    [ 'after=99999999999999999999999-0', qr/invalid after/ ],
    [ 'after=1-', qr/invalid after '1-'/ ],
    [ 'actor=', qr/invalid actor ''/ ],
    [ 'page=2', qr/unknown field 'page'/ ],
    [ 'limit=5&limit=6', qr/field 'limit' given twice/ ],
) {
    my $r = get(alice => "team=platform&$case->[0]");
    is($r->{status}, 400, "$case->[0]: 400") or diag $r->{raw};
    is($r->{headers}{'content-type'}, 'application/problem+json', "$case->[0]: problem+json");
    like($r->{json}{detail} // '', $case->[1], "$case->[0]: says why");
}
# long and odd values: refused or matching nothing, never a crash
my $r = get(alice => 'team=platform&account=' . ('a' x 10000));
is($r->{status}, 404, 'account= of 10 kB: 404') or diag substr($r->{raw}, 0, 300);
$r = get(alice => 'team=platform&account=platform/' . ('a' x 10000));
ok($r->{status} == 400 || $r->{status} == 404, "account=platform/<10 kB>: $r->{status}");
is_deeply(ok_get(alice => 'team=platform&actor=' . ('x' x 10000)), [], 'actor= of 10 kB: []');
is_deeply(ok_get(alice => 'team=platform&actor=%E2%80%AEalice%0A'), [], 'actor= with controls: []');
$r = get(alice => 'team=platform&before=' . ('1' x 10000) . '-0');
is($r->{status}, 400, 'before= of 10 kB digits: 400');
$r = get(alice => 'team=platform&after=1-%00');
is($r->{status}, 400, 'after= with a NUL: 400');

$r = get(alice => 'team=platform&account=platform/nosuch');
is($r->{status}, 404, 'account= of no account: 404');
like($r->{json}{detail} // '', qr/no account 'platform\/nosuch'/, 'saying so');
$r = get(alice => 'team=platform&account=other/bot');
is($r->{status}, 403, "account= of a team alice does not read: 403");
$r = get(dave => "team=other&account=$ci");
is($r->{status}, 403, "dave naming platform's account: 403");
is_deeply(ok_get(dave => 'team=other&actor=alice'), [], "dave filters his own team's log only");

$api->stop;
is($api->exit_code, 0, 'serve stops cleanly');
done_testing;
