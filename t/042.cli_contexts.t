#!/usr/bin/perl
# nb-maint's named gateways: --token-file, the contexts file under
# $XDG_CONFIG_HOME/nb-maint/config (config set/use/list/current/group/
# delete), the precedence of --url, --context, NB_MAINT_URL and the current
# context, and acting on a group: reads on every gateway, writes on every
# gateway when their stores are separate (file stores), once when they share
# a Redis store (and the others see it). Real gateways and mock nodes.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbCli;
use JSON::PP;

my $J = JSON::PP->new->utf8->canonical;
sub jdec { my $r = eval { $J->decode($_[0]) }; $r }

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my ($G1, $G2) = map { NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B])) } 1 .. 2;
$_->start for $G1, $G2;
ok($G1->wait_all_health('up', 5, $aid, $bid) && $G2->wait_all_health('up', 5, $aid, $bid), 'two gateways, nodes up');
my ($U1, $U2) = map { $_->url('/_nb_maint/') } $G1, $G2;

my $D = NbCli::dir();
my $XDG = "$D/xdg";
my $TOK = "$D/ops.token";
open my $fh, '>', $TOK or die; print $fh NbTest::ADMIN_TOKEN, "\n"; close $fh;
open $fh, '>', "$D/empty.token" or die; close $fh;

sub cli { my $env = ref $_[0] eq 'HASH' ? shift : {}; NbCli::run({ env => { XDG_CONFIG_HOME => $XDG, %$env } }, @_) }
my ($rc, $out, $err);

# ---------------------------------------------------------------- --token-file
($rc, $out, $err) = cli({ NB_MAINT_URL => $U1 }, 'status', '--token-file', $TOK);
is($rc, 0, '--token-file: exit 0') or diag $err;
like($out, qr/^mode:\s+normal$/m, '... status shown');
($rc, $out, $err) = cli({ NB_MAINT_URL => $U1, NB_MAINT_TOKEN_FILE => $TOK }, 'status');
is($rc, 0, 'NB_MAINT_TOKEN_FILE: exit 0') or diag $err;
($rc, $out, $err) = cli({ NB_MAINT_URL => $U1 }, 'status', '--token-file', "$D/missing");
is($rc, 2, 'missing token file: exit 2');
like($err, qr/cannot read the token file \Q$D\E\/missing/, '... says which');
($rc, $out, $err) = cli({ NB_MAINT_URL => $U1 }, 'status', '--token-file', "$D/empty.token");
is($rc, 2, 'empty token file: exit 2');
($rc, $out, $err) = cli({ NB_MAINT_URL => $U1, NB_MAINT_TOKEN => 'wrong' }, 'status', '--token-file', $TOK);
is($rc, 0, '--token-file wins over NB_MAINT_TOKEN') or diag $err;

# ---------------------------------------------------------------- the config file
my $CFG = "$XDG/nb-maint/config";
($rc, $out) = cli('config', 'path');
is($out, "$CFG\n", 'config path: $XDG_CONFIG_HOME/nb-maint/config');
($rc, $out) = cli('config', 'list');
like($out, qr/no contexts/, 'config list: none yet');
($rc, $out, $err) = cli('status');
is($rc, 2, 'no URL, no context: exit 2');
like($err, qr/config set NAME --url URL/, '... says how to add a context');

($rc, $out, $err) = cli('config', 'set', 'one', '--url', $U1, '--token-file', $TOK);
is($rc, 0, 'config set one: exit 0') or diag $err;
ok(-f $CFG, '... the file exists');
is((stat $CFG)[2] & 0777, 0600, '... mode 0600');
($rc) = cli('config', 'set', 'two', '--url', $U2, '--token-file', $TOK);
is($rc, 0, 'config set two');
($rc, $out, $err) = cli('config', 'set', 'bad', '--url', 'ftp:/x');
is($rc, 2, 'config set with a bad URL: exit 2');
($rc, $out) = cli('config', 'current');
is($out, "one\n", 'the first context set becomes the current one');
($rc, $out) = cli('config', 'list');
like($out, qr/^\*\s+one\s+\Q$U1\E\s+\Q$TOK\E$/m, 'config list: one, current');
like($out, qr/^\s+two\s+\Q$U2\E/m, 'config list: two');

$G2->admin(POST => 'mode', { mode => 'upgrade', reason => 'on two' });
($rc, $out, $err) = cli('status');
is($rc, 0, 'status through the current context (one)') or diag $err;
like($out, qr/^mode:\s+normal$/m, '... gateway one (normal)');
($rc, $out) = cli('--context', 'two', 'status');
like($out, qr/^mode:\s+upgrade$/m, '--context two: gateway two (upgrade)');
($rc, $out) = cli({ NB_MAINT_CONTEXT => 'two' }, 'status');
like($out, qr/^mode:\s+upgrade$/m, 'NB_MAINT_CONTEXT=two');
($rc, $out) = cli({ NB_MAINT_URL => $U2, NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN }, 'status');
like($out, qr/^mode:\s+upgrade$/m, 'NB_MAINT_URL beats the current context');
($rc, $out) = cli({ NB_MAINT_URL => $U2, NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN }, '--context', 'one', 'status');
like($out, qr/^mode:\s+normal$/m, '--context beats NB_MAINT_URL');
($rc, $out) = cli('--url', $U2, '--token-file', $TOK, 'status');
like($out, qr/^mode:\s+upgrade$/m, '--url beats the current context');
($rc, $out, $err) = cli('config', 'use', 'two');
is($rc, 0, 'config use two');
($rc, $out) = cli('status');
like($out, qr/^mode:\s+upgrade$/m, '... now status shows gateway two');
($rc, $out, $err) = cli('--context', 'tow', 'status');
is($rc, 2, 'unknown context: exit 2');
like($err, qr/no context or group 'tow'.*did you mean 'two'\?/, '... did you mean');
($rc, $out, $err) = cli('config', 'use', 'nope');
is($rc, 2, 'config use of an unknown name: exit 2');
$G2->admin(POST => 'restore', { force => JSON::PP::true });

# ---------------------------------------------------------------- groups, separate stores
($rc, $out, $err) = cli('config', 'group', 'both', 'one,two');
is($rc, 0, 'config group both one,two') or diag $err;
($rc, $out, $err) = cli('config', 'group', 'bad', 'one,three');
is($rc, 2, 'a group of an unknown context: exit 2');

($rc, $out, $err) = cli('--context', 'both', 'status');
is($rc, 0, 'status on a group: exit 0') or diag $err;
like($out, qr/^== one \(\Q$U1\E\)$/m, '... a header for one');
like($out, qr/^== two \(\Q$U2\E\)$/m, '... a header for two');
is(scalar(() = $out =~ /^mode:/mg), 2, '... two status blocks');

($rc, $out, $err) = cli('--context', 'one,two', 'status', '-o', 'json');
my $g = jdec($out) || {};
is($rc, 0, 'status -o json on one,two: exit 0') or diag $err;
is_deeply([map { $_->{context} } @{ $g->{gateways} || [] }], ['one', 'two'], '... {"gateways":[one, two]}');
is_deeply([map { $_->{result}{mode} } @{ $g->{gateways} || [] }], ['normal', 'normal'], '... each with its status');

($rc, $out, $err) = cli('--context', 'both', 'maintenance', '--node', $aid, '--reason', 'group');
is($rc, 0, 'maintenance on a group of file-store gateways: exit 0') or diag "$out\n$err";
like($out, qr/do not share a store.*writing to each in turn/, '... says it writes to each');
is($G1->status->{mode}, 'maintenance', '... gateway one in maintenance');
is($G2->status->{mode}, 'maintenance', '... gateway two in maintenance');

$G2->admin(POST => 'restore', { force => JSON::PP::true });
($rc, $out, $err) = cli('--context', 'both', 'restore', '-o', 'json');
$g = jdec($out) || {};
is($rc, 3, 'restore on the group when two is already normal: exit 3 (409 from two)') or diag "$out\n$err";
is_deeply([map { $_->{exit} } @{ $g->{gateways} || [] }], [0, 3], '... one restored (0), two refused (3)');
is($g->{gateways}[1]{error}{code}, 'invalid_transition', '... with two\'s error');
ok(NbTest::wait_until(sub { $G1->status->{mode} eq 'normal' }, 10), 'gateway one back to normal');

($rc, $out, $err) = cli('--context', 'both', 'rolling-restart', '--restart-cmd', 'true');
is($rc, 2, 'a guided run on a group: exit 2');
like($err, qr/acts on one gateway/, '... says so');

($rc, $out) = cli('config', 'delete', 'both');
is($rc, 0, 'config delete both');
($rc, $out, $err) = cli('--context', 'both', 'status');
is($rc, 2, '... gone');

# ---------------------------------------------------------------- a group sharing one Redis store
SKIP: {
    skip 'no redis-server', 8 unless system('sh', '-c', 'command -v redis-server >/dev/null') == 0;
    my $redis = NbTest::Redis->new;
    my ($R1, $R2) = redis_gateways(redis => $redis, n => 2);
    ok($R1->wait_store_ok(1, 10) && $R2->wait_store_ok(1, 10), 'two gateways on one Redis');
    cli('config', 'set', 'r1', '--url', $R1->url('/_nb_maint/'), '--token-file', $TOK);
    cli('config', 'set', 'r2', '--url', $R2->url('/_nb_maint/'), '--token-file', $TOK);
    cli('config', 'group', 'redis', 'r1,r2');
    my $v = $R1->status->{version};
    ($rc, $out, $err) = cli('--context', 'redis', 'upgrade', '--reason', 'shared');
    is($rc, 0, 'upgrade on a group sharing Redis: exit 0') or diag "$out\n$err";
    like($out, qr/share one store \(Redis at .*\): writing through r1/, '... writes once, through r1');
    like($out, qr/^r2: sees version \Q@{[$v + 1]}\E$/m, '... and r2 sees the new version');
    is(scalar(grep { ($_->{to} // '') eq 'upgrade' } $R1->events($v)), 1, '... one change in the history, not two');
    is($R2->status->{mode}, 'upgrade', '... r2 in upgrade');
    ($rc, $out, $err) = cli('--context', 'redis', 'restore', '--force', '-o', 'json');
    my $x = jdec($out) || {};
    is($rc, 0, 'restore --force -o json on the group: exit 0') or diag "$out\n$err";
    is(scalar @{ $x->{gateways} || [] }, 1, '... one write; propagation reported')
        && ok($x->{propagation}[0]{propagated}, '... r2 propagated');
}

is(scalar($G1->crashes) + scalar($G2->crashes), 0, 'no worker crashed');
is_deeply(NbCli::warnings(), [], 'no Perl warnings from nb-maint');
done_testing;
