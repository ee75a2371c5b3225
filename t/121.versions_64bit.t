# Issue 9 defect 23: versions are 64-bit integers end to end.  A version
# above 2^53 survives a write and a restart exactly; a version that is not
# an integer from 0 to 2^63-1 is a corrupt state: the file stays, writes are
# refused (503 store_unavailable), the version never goes back.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

sub state_json {
    my ($version) = @_;
    return '{"mode":"upgrade","node":null,"restoring_from":null,"version":' . $version
         . ',"since":"2026-01-01T00:00:00Z","reason":"big","retry_after":300,"drain":[]}' . "\n";
}

subtest 'above 2^53: exact through write, events and restart' => sub {
    my $ng = NbTest::Nginx->new(http => std_http());
    my $big = '9007199254740993';    # 2^53 + 1: no double holds it
    $ng->write_file('state.json', state_json($big));
    $ng->start;

    my $r = $ng->admin(GET => 'status');
    like($r->{content}, qr/"version":$big\b/, 'status has the exact version text');
    is($r->{json}{mode}, 'upgrade', 'state loaded');
    ok($r->{json}{store}{ok}, 'store ok');

    $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001' });
    is($r->{status}, 200, 'write accepted') or diag $r->{content};
    like($r->{content}, qr/"version":9007199254740994\b/, 'next version is +1 exactly');
    like($ng->read_file('state.json'), qr/"version":9007199254740994\b/, 'written as integer text');
    like($ng->read_file('state.json.events') // '', qr/"version":9007199254740994\b/,
         'audit line has the exact version');

    $r = $ng->admin(GET => 'events?since=9007199254740993');
    is($r->{status}, 200, 'events?since=2^53+1');
    like($r->{content}, qr/"version":9007199254740994\b/, 'events list shows the exact version');
    is(scalar @{ $r->{json}{events} }, 1, 'only the newer event');

    $ng->stop;
    $ng->start;
    like($ng->admin(GET => 'status')->{content}, qr/"version":9007199254740994\b/,
         'exact after a restart');

    # the largest version still works; one more is refused, not wrapped
    $ng->stop;
    $ng->write_file('state.json', state_json('9223372036854775806'));
    $ng->start;
    $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'last' });
    is($r->{status}, 200, 'write to 2^63-1 accepted');
    like($r->{content}, qr/"version":9223372036854775807\b/, 'version 2^63-1');
    $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'one more' });
    is($r->{status}, 503, 'no version after 2^63-1: 503');
    like($ng->admin(GET => 'status')->{content}, qr/"version":9223372036854775807\b/,
         'version did not wrap');
    is(scalar $ng->crashes, 0, 'no crash');
};

for my $bad ('1e20', '18446744073709551615', '9223372036854775808', '-1', '3.5',
             '99999999999999999999999') {
    subtest "version $bad is corrupt, never a reset" => sub {
        my $ng = NbTest::Nginx->new(http => std_http());
        my $text = state_json($bad);
        $ng->write_file('state.json', $text);
        $ng->start;

        my $st = $ng->status;
        ok(!$st->{store}{ok}, 'store.ok false');
        like($st->{store}{error} // '', qr/version/, 'store.error names the version');

        my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001' });
        is($r->{status}, 503, 'write refused with 503');
        is($r->{json}{error}{code}, 'store_unavailable', 'store_unavailable');
        is($ng->read_file('state.json'), $text, 'state file left as it was');
        isnt($ng->status->{mode}, 'maintenance', 'state unchanged');

        $ng->stop;
        $ng->start;
        ok(!$ng->status->{store}{ok}, 'still refused after a restart (no fresh start at 1)');
        is(scalar $ng->crashes, 0, 'no crash');
    };
}

done_testing;
