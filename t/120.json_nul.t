# Issue 9 defect 24: "\u0000" inside a JSON string is rejected with 400 in
# every string field (admin bodies) and makes a stored state corrupt, never
# a silently truncated value.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $ng = NbTest::Nginx->new(http => std_http());
$ng->start;

my $before = state_fields($ng->status);

for my $case (
    [ 'reason'            => '{"mode":"upgrade","reason":"abc\u0000tail"}' ],
    [ 'node id'           => '{"mode":"maintenance","node":"127.0.0.1:13001\u0000garbage"}' ],
    [ 'mode'              => '{"mode":"upgrade\u0000x"}' ],
    [ 'field name'        => '{"mode":"upgrade","reason\u0000x":"a"}' ],
    [ 'nested, restore'   => '{"force":false,"x\u0000":1}' ],
) {
    my ($what, $body) = @$case;
    my $path = $what =~ /restore/ ? 'restore' : 'mode';
    my $r = $ng->admin(POST => $path, $body);
    is($r->{status}, 400, "NUL in $what: 400") or diag $r->{content};
    is($r->{json}{error}{code}, 'bad_json', "NUL in $what: bad_json");
    like($r->{json}{error}{message} // '', qr/NUL/, "NUL in $what: the message says why");
}
is_deeply(state_fields($ng->status), $before, 'state unchanged after the refused writes');
is(scalar $ng->events, 0, 'no event written');

# an escaped backslash before "u0000" is six ordinary characters
my $r = $ng->admin(POST => 'mode', '{"mode":"upgrade","reason":"lit \\\\u0000 ok"}');
is($r->{status}, 200, 'escaped backslash + u0000 is fine') or diag $r->{content};
is($r->{json}{reason}, 'lit \\u0000 ok', 'reason kept exactly');
is($ng->status->{reason}, 'lit \\u0000 ok', 'status shows it');

# a stored state with NUL in a string is corrupt, not truncated
$ng->stop;
my $file = $ng->prefix . '/state.json';
$ng->write_file($file, '{"mode":"maintenance","node":"127.0.0.1:13001\u0000x","version":40,'
    . '"since":"2026-01-01T00:00:00Z","reason":"r","retry_after":300,"drain":[]}' . "\n");
$ng->start;
my $st = $ng->status;
ok(!$st->{store}{ok}, 'state file with a NUL: store.ok false');
like($st->{store}{error} // '', qr/NUL/, 'store.error says NUL');
isnt($st->{mode}, 'maintenance', 'the truncated node id was not applied');
is(scalar $ng->crashes, 0, 'no worker crashed');

done_testing;
