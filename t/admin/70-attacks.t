# Attacks on sa-admin by a process that can write Redis but lacks the
# signing key.  The rule under test: the unsigned index keys (the sets
# sa:acct:<aid>:tokens and sa:team:<team>:accounts, the hash
# sa:team:<team>:names) are hints, never authority.  Every record sa-admin
# acts on is verified and must name the account (and team) it is acted on
# for; a token whose signed `account` is another account is skipped and
# reported on stderr, never re-signed; deleting or ungranting an account
# reaches every token whose signed record names it (found by scanning
# sa:tok:*), not only those its set lists; a malformed record is reported
# and skipped, never a crash.
#
#   1. widening across teams: another team's token SADDed into an account's
#      set is re-signed by grant/ungrant (gaining the account's apps) or
#      revoked by delete
#   2. escaping delete: a token SREMed from its account's set stays live
#      after the account is deleted
#   3. escaping ungrant: likewise keeps the removed application
#   4. account list with malformed, unsigned or foreign records in the
#      team's set: no crash, genuine accounts listed, bad ones reported
#   5. record substitution: account A's genuine record (or a token record)
#      under sa:acct:<B>: acting on B must not act on A
#   6. name mapping: sa:team:platform:names pointing at another team's
#      account (or at another account of the same team)
#   7. token list of an account whose set holds another account's token
#
# Assertions are on Redis state (the signed records, decoded from byte 91)
# and on exit codes and stderr; where the module is built, a real nginx
# shows the gateway's verdict on the tokens concerned.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use SaTest;

SaTest::require_build('sa-admin');

my $redis = SaTest::Redis->start;
my $JSON = JSON::PP->new;

sub as { my $u = shift; SaTest::admin($redis, { SA_ACTOR => $u }, @_) }
sub get { $redis->cmd('GET', $_[0]) }
sub tok_rec  { get("sa:tok:$_[0]") }
sub acct_rec { get("sa:acct:$_[0]") }

# the payload of a signed record, or undef when it is not an envelope
sub payload {
    my ($v) = @_;
    return undef unless defined $v && $v =~ /^sa1\.[A-Za-z0-9_-]{86}\./;
    return eval { $JSON->decode(substr($v, 91)) };
}
sub field { my $p = payload($_[0]); $p ? $p->{ $_[1] } : undef }

sub account {
    my ($actor, $team, $name, @apps) = @_;
    my $r = as($actor, 'account', 'create', $team, $name,
               (map { ('--app', $_) } @apps), '--json');
    die "account create $team/$name: $r->{err}" if $r->{code} || !$r->{json};
    return $r->{json}{id};
}

# -> { token, id }
sub token {
    my ($actor, $ref) = @_;
    my $r = as($actor, 'token', 'issue', $ref, '--scope', 'x:read', '--json');
    die "token issue $ref: $r->{err}" if $r->{code} || !$r->{json};
    return $r->{json};
}

as('alice', qw(team create platform --owner alice));
as('bob',   qw(team create other --owner bob));
SaTest::apps($redis, 'platform', qw(api extra bapp x));
SaTest::apps($redis, 'other', qw(oapp));

# ------------------------------------------------------------- the gateway

my $nginx;
if (-e SaTest::module_path() && -x '/usr/sbin/nginx') {
    $nginx = SaTest::Nginx->start(redis => $redis, http => <<'CONF');
    log_format sa '$arg_case $status $sa_status';
    server {
        listen unix:%%DIR%%/backend.sock;
        access_log off;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/sa.log sa;
        sa_auth gw;
        location ~ ^/app/([a-z]+)/ {
            sa_application $1;
            proxy_pass http://unix:%%DIR%%/backend.sock;
        }
    }
CONF
}

# "STATUS SA_STATUS" for a request with $token to application $app
my $case = 0;
sub gw {
    my ($token, $app) = @_;
    my $c = 'c' . ++$case;
    my $res = $nginx->get("/app/$app/?case=$c", Authorization => "Bearer $token");
    my $line = SaTest::wait_until(2, sub {
        SaTest::slurp($nginx->dir . '/sa.log') =~ /^\Q$c\E (\d+ \S+)$/m ? $1 : 0;
    });
    return $line || "$res->{status} (not logged)";
}

# ============================================================================
# 1. Widening across teams: another team's token put into P's set
# ============================================================================
{
    my $p  = account('alice', 'platform', 'p', 'api');
    my $o  = account('bob', 'other', 'o', 'oapp');
    my $to = token('bob', $o);
    my $tp = token('alice', $p);
    my $orig = tok_rec($to->{id});
    is(field($orig, 'account'), $o, 'case 1 setup: TO is a signed token of O');

    if ($nginx) {
        is(gw($to->{token}, 'api'), '403 forbidden_application',
           'case 1 gateway: before, TO may not use platform\'s application api');
    }

    $redis->cmd('SADD', "sa:acct:$p:tokens", $to->{id});

    my $r = as('alice', 'account', 'grant', 'platform/p', '--app', 'extra');
    is($r->{code}, 0, 'case 1 grant: exit 0') or diag $r->{err};
    is_deeply(field(acct_rec($p), 'apps'), [qw(api extra)],
              'case 1 grant: P is granted extra');
    is_deeply(field(tok_rec($tp->{id}), 'apps'), [qw(api extra)],
              'case 1 grant: P\'s own token carries extra');
    is(tok_rec($to->{id}), $orig, 'case 1 grant: TO\'s record is byte for byte unchanged');
    my $t = payload(tok_rec($to->{id})) // {};
    is($t->{version}, 1, 'case 1 grant: TO still version 1');
    is_deeply($t->{apps}, ['oapp'], 'case 1 grant: TO still has apps [oapp] only');
    is($t->{account}, $o, 'case 1 grant: TO still names O');
    like($r->{err}, qr/\Q$to->{id}\E/, 'case 1 grant: stderr names the skipped token TO');
    if ($nginx) {
        is(gw($to->{token}, 'api'), '403 forbidden_application',
           'case 1 gateway: after the grant, TO still may not use api');
        is(gw($tp->{token}, 'extra'), '200 ok', 'case 1 gateway: P\'s token may use extra');
    }

    # each step starts from the attacker's state, whatever the last did
    # (restored TO's record if it was rewritten, TO in P's set again if it
    # was dropped from it)
    my $again = sub {
        if ((tok_rec($to->{id}) // '') ne $orig) {
            note 'case 1: restoring TO\'s original record for the next step';
            $redis->cmd('SET', "sa:tok:$to->{id}", $orig);
        }
        $redis->cmd('SADD', "sa:acct:$p:tokens", $to->{id});
    };
    $again->();

    $r = as('alice', 'account', 'ungrant', 'platform/p', '--app', 'extra');
    is($r->{code}, 0, 'case 1 ungrant: exit 0') or diag $r->{err};
    is_deeply(field(tok_rec($tp->{id}), 'apps'), ['api'],
              'case 1 ungrant: P\'s own token loses extra');
    is(tok_rec($to->{id}), $orig, 'case 1 ungrant: TO\'s record is unchanged');
    like($r->{err}, qr/\Q$to->{id}\E/, 'case 1 ungrant: stderr names the skipped token TO');

    $again->();

    $r = as('alice', 'account', 'delete', 'platform/p');
    is($r->{code}, 0, 'case 1 delete: exit 0') or diag $r->{err};
    ok(field(tok_rec($tp->{id}), 'revoked'), 'case 1 delete: P\'s own token is revoked');
    is(tok_rec($to->{id}), $orig, 'case 1 delete: TO\'s record is unchanged');
    ok(!field(tok_rec($to->{id}), 'revoked'), 'case 1 delete: TO is not revoked');
    like($r->{err}, qr/\Q$to->{id}\E/, 'case 1 delete: stderr names the skipped token TO');
    if ($nginx) {
        is(gw($to->{token}, 'oapp'), '200 ok',
           'case 1 gateway: after P\'s deletion, TO still works for its own application');
    }
}

# ============================================================================
# 2. Escaping delete: a token removed from its account's set
# ============================================================================
{
    my $d  = account('alice', 'platform', 'd', 'api');
    my $t1 = token('alice', 'platform/d');
    my $t2 = token('alice', 'platform/d');
    if ($nginx) {
        is(gw($t1->{token}, 'api'), '200 ok', 'case 2 gateway: before, T1 works');
    }

    $redis->cmd('SREM', "sa:acct:$d:tokens", $t1->{id});

    my $r = as('alice', 'account', 'delete', 'platform/d');
    is($r->{code}, 0, 'case 2 delete: exit 0') or diag $r->{err};
    is(acct_rec($d), undef, 'case 2 delete: the account record is gone');
    for ([T1 => $t1], [T2 => $t2]) {
        my ($n, $t) = @$_;
        my $v = tok_rec($t->{id});
        like($v // '', qr/^sa1\.[A-Za-z0-9_-]{86}\./, "case 2 delete: ${n}'s record is signed");
        my $p = payload($v) // {};
        ok($p->{revoked}, "case 2 delete: $n is revoked");
        cmp_ok($p->{version} // 0, '>', 1, "case 2 delete: ${n}'s version grew");
        is($p->{account}, $d, "case 2 delete: $n still names D");
    }
    if ($nginx) {
        is(gw($t1->{token}, 'api'), '401 revoked', 'case 2 gateway: T1 is refused as revoked');
        is(gw($t2->{token}, 'api'), '401 revoked', 'case 2 gateway: T2 is refused as revoked');
    }
}

# ============================================================================
# 3. Escaping ungrant
# ============================================================================
{
    my $u  = account('alice', 'platform', 'u', 'api', 'extra');
    my $tu = token('alice', 'platform/u');
    if ($nginx) {
        is(gw($tu->{token}, 'extra'), '200 ok', 'case 3 gateway: before, TU may use extra');
    }

    $redis->cmd('SREM', "sa:acct:$u:tokens", $tu->{id});

    my $r = as('alice', 'account', 'ungrant', 'platform/u', '--app', 'extra');
    is($r->{code}, 0, 'case 3 ungrant: exit 0') or diag $r->{err};
    is_deeply(field(acct_rec($u), 'apps'), ['api'], 'case 3 ungrant: U keeps only api');
    my $v = tok_rec($tu->{id});
    like($v // '', qr/^sa1\.[A-Za-z0-9_-]{86}\./, 'case 3 ungrant: TU\'s record is signed');
    my $apps = field($v, 'apps') // ['?'];
    ok(!grep({ $_ eq 'extra' } @$apps), 'case 3 ungrant: TU no longer lists extra')
        or diag "TU apps: @$apps";
    if ($nginx) {
        like(gw($tu->{token}, 'extra'), qr/^40[13] /, 'case 3 gateway: TU is refused extra');
    }
}

# ============================================================================
# 4. account list with bad records in the team's set
# ============================================================================
{
    as('alice', qw(team create listing --owner alice));
    as('alice', qw(app share api --team listing));
    my $a1 = account('alice', 'listing', 'a1', 'api');
    my $a2 = account('alice', 'listing', 'a2');
    my $sig = 'A' x 86;
    my $o = $redis->cmd('HGET', 'sa:team:other:names', 'o');    # bob's O
    my %variants = (
        'garbage'    => [ 'GarbageGarbage01', 'sa1.garbage' ],
        'no name'    => [ 'NoNameNoNameNo02', "sa1.$sig." . '{"id":"x"}' ],
        'not JSON'   => [ 'NotJsonNotJson03', "sa1.$sig.{not json" ],
        'unsigned'   => [ 'UnsignedUnsign04', "sa1.$sig." . $JSON->canonical->encode({
            kind => 'account', version => 1, id => 'UnsignedUnsign04', team => 'listing',
            name => 'forged', email => 'UnsignedUnsign04@listing.sa.invalid',
            apps => ['*'], created_at => time, created_by => 'mallory' }) ],
        'other team' => [ $o, undef ],    # a genuine record, of team other
    );
    for my $what (sort keys %variants) {
        my ($id, $value) = @{ $variants{$what} };
        $redis->cmd('SADD', 'sa:team:listing:accounts', $id);
        $redis->cmd('SET', "sa:acct:$id", $value) if defined $value;

        my $r = SaTest::admin($redis, qw(account list listing --json));
        cmp_ok($r->{code}, '<', 128, "case 4 ($what) --json: no crash (exit $r->{code})");
        is(ref $r->{json}, 'ARRAY', "case 4 ($what) --json: a JSON array on stdout");
        is_deeply([map { $_->{name} // '(none)' } @{ $r->{json} // [] }], [qw(a1 a2)],
                  "case 4 ($what) --json: exactly the genuine accounts are listed");
        like($r->{err}, qr/\Q$id\E/, "case 4 ($what) --json: stderr names the bad record");

        $r = SaTest::admin($redis, qw(account list listing));
        cmp_ok($r->{code}, '<', 128, "case 4 ($what): no crash (exit $r->{code})");
        my @ids = map { /^(\S+)/ ? $1 : () } grep { !/^ID\s/ } split /\n/, $r->{out};
        is_deeply([sort @ids], [sort $a1, $a2],
                  "case 4 ($what): exactly the genuine accounts are listed");
        like($r->{err}, qr/\Q$id\E/, "case 4 ($what): stderr names the bad record");

        $redis->cmd('SREM', 'sa:team:listing:accounts', $id);
        $redis->cmd('DEL', "sa:acct:$id") if defined $value;
    }
}

# ============================================================================
# 5. Record substitution: A's record (or a token record) under sa:acct:<B>
# ============================================================================
{
    my $a  = account('alice', 'platform', 'sub-a', 'api');
    my $b  = account('alice', 'platform', 'sub-b', 'bapp');
    my $ta = token('alice', $a);
    my $tb = token('alice', $b);
    my ($orig_a, $orig_b, $orig_ta) = (acct_rec($a), acct_rec($b), tok_rec($ta->{id}));

    # every command starts from the attacker's state: the genuine records
    # back in place (a command that failed to refuse may have changed them),
    # then the substitute under B
    my $attack = sub {
        my ($value) = @_;
        $redis->cmd('SET', "sa:acct:$a", $orig_a);
        $redis->cmd('SET', "sa:tok:$ta->{id}", $orig_ta);
        $redis->cmd('SADD', 'sa:team:platform:accounts', $a, $b);
        $redis->cmd('HSET', 'sa:team:platform:names', 'sub-a', $a, 'sub-b', $b);
        $redis->cmd('SADD', "sa:acct:$a:tokens", $ta->{id});
        $redis->cmd('SET', "sa:acct:$b", $value);
    };
    for my $kind ([account => $orig_a], [token => tok_rec($tb->{id})]) {
        my ($what, $value) = @$kind;
        for my $cmd (['account show B' => qw(account show), $b],
                     ['account show platform/sub-b' => qw(account show platform/sub-b)],
                     ['account grant B --app x' => qw(account grant), $b, qw(--app x)],
                     ['account ungrant B --app api' => qw(account ungrant), $b, qw(--app api)],
                     ['token issue B' => qw(token issue), $b, qw(--scope x:read)],
                     ['account delete B' => qw(account delete), $b]) {
            my ($label, @args) = @$cmd;
            $attack->($value);
            my $before = $redis->digest;
            my $r = as('alice', @args);
            my $t = "case 5 ($what record under B): '$label'";
            is($r->{code}, 2, "$t refused with 2")
                or diag "exit $r->{code}; stdout: $r->{out}stderr: $r->{err}";
            unlike($r->{out}, qr/\Q$a\E|sat_/, "$t shows nothing of A");
            is($redis->digest, $before, "$t wrote nothing");
            is(acct_rec($a), $orig_a, "$t left A's record alone");
            is(tok_rec($ta->{id}), $orig_ta, "$t left A's token alone");
        }
    }
    $redis->cmd('SET', "sa:acct:$b", $orig_b);
}

# ============================================================================
# 6. Name mapping: platform's name hash pointing elsewhere
# ============================================================================
{
    # a: another team, alice no member there: permissions alone stop it
    my $o2  = account('bob', 'other', 'o2', 'oapp');
    my $to2 = token('bob', $o2);
    $redis->cmd('HSET', 'sa:team:platform:names', 'victim', $o2);
    my ($rec, $trec, $before) = (acct_rec($o2), tok_rec($to2->{id}), $redis->digest);
    my $r = as('alice', qw(account delete platform/victim));
    is($r->{code}, 2, 'case 6 (other team, not alice\'s): delete platform/victim refused with 2');
    is($redis->digest, $before, 'case 6 (other team, not alice\'s): nothing was written');
    is(acct_rec($o2), $rec, 'case 6 (other team, not alice\'s): O2 untouched');
    is(tok_rec($to2->{id}), $trec, 'case 6 (other team, not alice\'s): its token untouched');

    # b: another team that alice owns too
    as('alice', qw(team create shared --owner alice));
    SaTest::apps($redis, 'shared', qw(sapp));
    my $s  = account('alice', 'shared', 's', 'sapp');
    my $ts = token('alice', 'shared/s');
    $redis->cmd('HSET', 'sa:team:platform:names', 'victim2', $s);
    ($rec, $trec, $before) = (acct_rec($s), tok_rec($ts->{id}), $redis->digest);
    for my $cmd ([qw(account show platform/victim2)],
                 [qw(account grant platform/victim2 --app x)],
                 [qw(account delete platform/victim2)]) {
        $r = as('alice', @$cmd);
        is($r->{code}, 2, "case 6 (other team, alice owns it): '@$cmd' refused with 2")
            or diag "exit $r->{code}; stderr: $r->{err}";
    }
    is($redis->digest, $before, 'case 6 (other team, alice owns it): nothing was written');
    is(acct_rec($s), $rec, 'case 6 (other team, alice owns it): shared/s untouched');
    is(tok_rec($ts->{id}), $trec, 'case 6 (other team, alice owns it): its token untouched');
    if ($nginx) {
        is(gw($ts->{token}, 'sapp'), '200 ok', 'case 6 gateway: shared/s\'s token still works');
    }

    # c: same team, a name remapped to another account ("delete the unused one")
    my $prod = account('alice', 'platform', 'prod', 'api');
    my $tprod = token('alice', 'platform/prod');
    account('alice', 'platform', 'old-unused');
    $redis->cmd('HSET', 'sa:team:platform:names', 'old-unused', $prod);
    ($rec, $trec, $before) = (acct_rec($prod), tok_rec($tprod->{id}), $redis->digest);
    $r = as('alice', qw(account delete platform/old-unused));
    is($r->{code}, 2, 'case 6 (same team): delete platform/old-unused, mapped to prod, refused with 2');
    is($redis->digest, $before, 'case 6 (same team): nothing was written');
    is(acct_rec($prod), $rec, 'case 6 (same team): platform/prod untouched');
    is(tok_rec($tprod->{id}), $trec, 'case 6 (same team): its token untouched');
}

# ============================================================================
# 7. token list with another account's token in the set
# ============================================================================
{
    my $l  = account('alice', 'platform', 'lister', 'api');
    my $tl = token('alice', 'platform/lister');
    my $o3 = account('bob', 'other', 'o3', 'oapp');
    my $tf = token('bob', $o3);
    $redis->cmd('SADD', "sa:acct:$l:tokens", $tf->{id});
    my $before = $redis->digest;

    my $r = SaTest::admin($redis, 'token', 'list', 'platform/lister', '--json');
    is($r->{code}, 0, 'case 7 --json: exit 0') or diag $r->{err};
    my @list = @{ $r->{json} // [] };
    ok((grep { ($_->{id} // '') eq $tl->{id} } @list), 'case 7 --json: the account\'s own token is listed');
    ok(!(grep { ($_->{id} // '') eq $tf->{id} } @list), 'case 7 --json: the foreign token is not listed');
    is_deeply([grep { ($_->{account} // '') ne $l } @list], [],
              'case 7 --json: every listed token names this account');
    like($r->{err}, qr/\Q$tf->{id}\E/, 'case 7 --json: stderr names the foreign token');

    $r = SaTest::admin($redis, 'token', 'list', 'platform/lister');
    is($r->{code}, 0, 'case 7: exit 0') or diag $r->{err};
    like($r->{out}, qr/^\Q$tl->{id}\E /m, 'case 7: the account\'s own token is listed');
    unlike($r->{out}, qr/\Q$tf->{id}\E/, 'case 7: the foreign token is not listed');
    like($r->{err}, qr/\Q$tf->{id}\E/, 'case 7: stderr names the foreign token');
    is($redis->digest, $before, 'case 7: listing wrote nothing');
}

# what the caller typed comes back in the error as one bounded line: a
# control sequence or a newline in a name is \xNN, a 10 kB name is cut
{
    my $before = $redis->digest;

    for my $ref ("x\e[31mX\nsa-admin: forged line", 'ghost/' . ('a' x 10000),
                 'a' x 10000, "platform/\r\e]0;title\a") {
        my $r = SaTest::admin($redis, 'account', 'show', $ref);
        my $what = length($ref) > 40 ? length($ref) . ' bytes' : 'controls';
        isnt($r->{code}, 0, "error echo ($what): refused");
        unlike($r->{err}, qr/[\x00-\x09\x0b-\x1f\x7f]/,
               "error echo ($what): no control byte reaches stderr");
        is(scalar(() = $r->{err} =~ /\n/g), 1,
           "error echo ($what): one line") or diag $r->{err};
        cmp_ok(length($r->{err}), '<', 1100,
               "error echo ($what): at most about 1 kB");
        like($r->{err}, qr/\\x1b/, "error echo ($what): ESC shown as \\x1b")
            if $ref =~ /\e/;
    }
    is($redis->digest, $before, 'error echo: nothing written');
}

done_testing;
