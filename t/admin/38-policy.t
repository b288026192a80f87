# Token policies in the signed records (issue 25, item 1): --rate, --burst,
# --quota, --allow-from on account create (the defaults of its tokens),
# token issue and token scope; shown by token list / account show and
# --json; bad values refused before anything is written; a policy edited in
# Redis is tampered.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use SaTest;

my $redis = SaTest::Redis->start;
sub as { SaTest::admin($redis, { SA_ACTOR => 'alice' }, @_) }
sub record { $redis->cmd('GET', "sa:tok:$_[0]") }
sub token_json {
    my ($id) = @_;
    my ($t) = grep { $_->{id} eq $id } @{ as(qw(token list), $_[1] // 'platform/ci', '--json')->{json} };
    return $t;
}

as(qw(team create platform --owner alice));
SaTest::apps($redis, 'platform', qw(api));

# an account without a policy: its tokens have none
my $r = as(qw(account create platform plain --app api --json));
is($r->{code}, 0, 'account without a policy') or diag $r->{err};
ok(!exists $r->{json}{$_}, "no $_ in it") for qw(rate burst quota allow_from);
$r = as(qw(token issue platform/plain --json));
is($r->{json}{rate}, undef, 'its token: no rate');
is($r->{json}{quota}, undef, 'no quota');
is_deeply($r->{json}{allow_from}, [], 'from anywhere');
unlike(record($r->{json}{id}), qr/"rate"|"quota"|"allow_from"|"burst"/,
       'and its record names none of the fields');

# an account with defaults
$r = as(qw(account create platform ci --app api --rate 10/s --burst 5
           --quota 1000/day --allow-from 10.0.0.0/8 --allow-from 2001:DB8::/32
           --json));
is($r->{code}, 0, 'account create with a policy') or diag $r->{err};
my $acct = $r->{json};
is($acct->{rate}, '10/s', 'the account has a rate');
is($acct->{burst}, 5, 'a burst');
is($acct->{quota}, '1000/day', 'a quota');
is_deeply($acct->{allow_from}, ['10.0.0.0/8', '2001:db8::/32'],
          'networks, canonical');
like($redis->cmd('GET', "sa:acct:$acct->{id}"),
     qr/^sa1\.[^.]+\..*"rate":"10\/s"/, 'signed in the account record');
$r = as(qw(account show platform/ci));
like($r->{out}, qr{token defaults: rate 10/s burst 5 quota 1000/day allow-from \["10.0.0.0/8","2001:db8::/32"\]},
     'account show says the defaults');

# a token inherits what it does not set
$r = as(qw(token issue platform/ci --scope a:b --json));
is($r->{code}, 0, 'issue') or diag $r->{err};
my $inh = $r->{json};
is($inh->{rate}, '10/s', 'inherited rate');
is($inh->{burst}, 5, 'inherited burst');
is($inh->{quota}, '1000/day', 'inherited quota');
is_deeply($inh->{allow_from}, ['10.0.0.0/8', '2001:db8::/32'], 'inherited networks');
like(record($inh->{id}), qr/"allow_from":\["10.0.0.0\/8","2001:db8::\/32"\].*"burst":5.*"quota":"1000\/day".*"rate":"10\/s"/,
     'all four in the signed token record');

$r = as(qw(token issue platform/ci --rate 100/m --burst 3 --allow-from 192.0.2.7 --json));
my $own = $r->{json};
is($own->{rate}, '100/m', 'its own rate');
is($own->{burst}, 3, 'its own burst');
is($own->{quota}, '1000/day', 'the quota it does not set: the account\'s');
is_deeply($own->{allow_from}, ['192.0.2.7/32'], 'an address is one host');

$r = as(qw(token issue platform/ci --rate none --quota none --allow-from none --json));
is($r->{code}, 0, 'none clears') or diag $r->{err};
my $none = $r->{json};
is($none->{rate}, undef, 'no rate');
is($none->{burst}, undef, 'nor burst');
is($none->{quota}, undef, 'no quota');
is_deeply($none->{allow_from}, [], 'from anywhere');

# list: text and json
$r = as(qw(token list platform/ci));
like($r->{out}, qr{^\Q$own->{id}\E .*\n  rate 100/m burst 3 quota 1000/day allow-from 192.0.2.7/32$}m,
     'token list shows the policy under the token');
is(token_json($inh->{id})->{rate}, '10/s', 'token list --json too');

# scope: only the policy changes, the scopes stay
my ($v0) = record($inh->{id}) =~ /"version":(\d+)/;
$r = as('token', 'scope', $inh->{id}, qw(--rate 5/s --json));
is($r->{code}, 0, 'scope --rate alone') or diag $r->{err};
is($r->{json}{rate}, '5/s', 'the new rate');
is($r->{json}{burst}, 0, 'a new rate without --burst: burst 0');
is_deeply($r->{json}{scopes}, ['a:b'], 'the scopes kept');
is_deeply($r->{json}{allow_from}, ['10.0.0.0/8', '2001:db8::/32'], 'the networks kept');
my ($v1) = record($inh->{id}) =~ /"version":(\d+)/;
is($v1, $v0 + 1, 'a new version of the record');
$r = as('token', 'scope', $inh->{id}, qw(--allow-from none --quota 20/month));
is($r->{code}, 0, 'scope --allow-from none --quota') or diag $r->{err};
like($r->{out}, qr{now has scopes a:b\n  rate 5/s burst 0 quota 20/month allow-from anywhere}, 'said');
$r = as('token', 'scope', $inh->{id}, qw(--scope c:d));
is_deeply(token_json($inh->{id})->{scopes}, ['c:d'], 'scope --scope still replaces scopes');
is(token_json($inh->{id})->{quota}, '20/month', 'and keeps the policy');
$r = as('token', 'scope', $inh->{id});
is_deeply(token_json($inh->{id})->{scopes}, [], 'scope without flags: no scopes, as before');

# rotate keeps the policy
$r = as('token', 'rotate', $own->{id}, '--json');
is($r->{code}, 0, 'rotate') or diag $r->{err};
is($r->{json}{rate}, '100/m', 'the new token keeps the rate');
is_deeply($r->{json}{allow_from}, ['192.0.2.7/32'], 'and the networks');

# account grant POLICY: the defaults change for tokens issued from now on,
# the given fields only; the tokens already issued keep theirs
$r = as(qw(account grant platform/ci --rate 3/m --burst 1 --json));
is($r->{code}, 0, 'account grant --rate alone') or diag $r->{err};
is($r->{json}{rate}, '3/m', 'the new default rate');
is($r->{json}{burst}, 1, 'its burst');
is($r->{json}{quota}, '1000/day', 'the quota kept');
is_deeply($r->{json}{apps}, ['api'], 'the applications kept');
like($redis->cmd('GET', "sa:acct:$acct->{id}"), qr/"rate":"3\/m"/, 'signed in the account record');
like(as(qw(account show platform/ci))->{out}, qr{token defaults: rate 3/m burst 1 quota 1000/day},
     'account show says so');
is(token_json($own->{id})->{rate}, '100/m', 'a token issued before keeps its own rate');
is(as('token', 'issue', 'platform/ci', '--json')->{json}{rate}, '3/m', 'a token issued after gets the new one');
$r = as(qw(account grant platform/ci --rate none --quota none --allow-from none --json));
is($r->{code}, 0, 'account grant --rate none --quota none --allow-from none') or diag $r->{err};
ok(!exists $r->{json}{$_}, "the account has no $_ left") for qw(rate burst quota allow_from);
unlike($redis->cmd('GET', "sa:acct:$acct->{id}"), qr/"rate"|"burst"|"quota"|"allow_from"/, 'nor its record');
$r = as(qw(token issue platform/ci --json));
is($r->{json}{rate}, undef, 'a token issued now: no rate');
$r = as(qw(account grant platform/ci --app api --quota 7/month --json));
is($r->{json}{quota}, '7/month', 'an --app and a policy flag together');
$r = as(qw(account grant platform/ci));
is($r->{code}, 1, 'account grant without --app or POLICY: usage error');
like($r->{err}, qr/at least one --app APP or POLICY flag/, 'and says what it needs');
is(as(qw(account ungrant platform/ci --app api --rate 1/s))->{code}, 1, 'account ungrant takes no POLICY');

# bad values: a clear answer, nothing written
my $before = $redis->digest_but_audit;
for my $bad ([qw(--rate 10/d)], [qw(--rate 0/s)], [qw(--rate 1000001/s)],
             [qw(--rate ten/s)], [qw(--burst 3)], [qw(--rate none --burst 3)],
             [qw(--rate 1/s --burst x)], [qw(--rate 1/s --burst -1)],
             [qw(--rate 1/s --burst +5)], ['--rate', '1/s', '--burst', ' 5'],
             [qw(--rate 1/s --burst 05)],
             [qw(--quota 5/week)], [qw(--quota 0/day)],
             [qw(--allow-from 10.0.0.1/8)], [qw(--allow-from nowhere)],
             [qw(--allow-from 10.0.0.0/33)],
             [map { ('--allow-from', "10.$_.0.0/16") } 1 .. 17]) {
    for my $cmd ([qw(token issue platform/ci)], ['token', 'scope', $inh->{id}],
                 [qw(account create platform other)], [qw(account grant platform/ci)]) {
        $r = as(@$cmd, @$bad);
        is($r->{code}, 1, "refused: @$cmd[0,1] @$bad[0,1]");
    }
}
for my $mix ([qw(--allow-from none --allow-from 10.0.0.0/8)], [qw(--allow-from 10.0.0.0/8 --allow-from none)]) {
    $r = as(qw(token issue platform/ci), @$mix);
    is($r->{code}, 1, "@$mix: a usage error, not from anywhere");
    like($r->{err}, qr/--allow-from none cannot be combined with networks/, 'and says why');
}
like(as(qw(token issue platform/ci --allow-from 10.0.0.1/8))->{err},
     qr{network '10\.0\.0\.1/8' has host bits set \(the network is 10\.0\.0\.0/8\)},
     'host bits: the network meant is named');
like(as(qw(token issue platform/ci --rate 10/d))->{err},
     qr{invalid rate '10/d' \(expected N/s, N/m or N/h}, 'a bad rate is explained');
like(as(qw(token issue platform/ci --burst 3))->{err}, qr/'burst' needs a 'rate'/,
     'a burst needs a rate');
is($redis->digest_but_audit, $before, 'no refusal wrote anything');

# tampering with a policy field: refused everywhere
my $rec = record($own->{id});
(my $forged = $rec) =~ s{"rate":"100/m"}{"rate":"999/m"} or die;
$redis->cmd('SET', "sa:tok:$own->{id}", $forged);
my ($t) = grep { $_->{id} eq $own->{id} } @{ as(qw(token list platform/ci --json))->{json} };
is($t->{status}, 'tampered', 'a raised rate: tampered');
is($t->{rate}, undef, 'and its rate is not shown');
($forged = $rec) =~ s{"192.0.2.7/32"}{"0.0.0.0/0"   } or die;
$redis->cmd('SET', "sa:tok:$own->{id}", $forged);
($t) = grep { $_->{id} eq $own->{id} } @{ as(qw(token list platform/ci --json))->{json} };
is($t->{status}, 'tampered', 'a widened network: tampered');
$r = as('token', 'scope', $own->{id}, qw(--rate 1/s));
is($r->{code}, 2, 'a tampered record is not re-signed');
is(record($own->{id}), $forged, 'and left alone');

# the account's defaults, edited or swapped by a Redis writer
as(qw(account grant platform/ci --rate 2/s));
my $akey = "sa:acct:$acct->{id}";
my $arec = $redis->cmd('GET', $akey);
(my $aforged = $arec) =~ s{"rate":"2/s",?}{} or die "no rate in $arec";
$redis->cmd('SET', $akey, $aforged);
sub tokens { scalar @{ $redis->cmd('KEYS', 'sa:tok:*') } }
my $ntok = tokens();
$r = as(qw(token issue platform/ci --json));
is($r->{code}, 2, 'the account\'s rate removed in Redis: issue refused (exit 2)');
my $plain_id = as(qw(account show platform/plain --json))->{json}{id};
$redis->cmd('SET', $akey, $redis->cmd('GET', "sa:acct:$plain_id"));
$r = as(qw(token issue platform/ci --json));
is($r->{code}, 2, 'another account\'s genuine record (no policy) under its key: refused');
is(tokens(), $ntok, 'and nothing issued');
$redis->cmd('SET', $akey, $arec);
is(as(qw(token issue platform/ci --json))->{json}{rate}, '2/s', 'the genuine record back: its rate is inherited');

done_testing;
