# A corrupt state file does not stop nginx: it starts, reports the store
# error in status, keeps the bad file aside as <file>.corrupt, and the next
# accepted write makes a fresh file.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

for my $case ([ 'garbage'        => "\x00\xff garbage {{{ not json at all\n" ],
              [ 'truncated JSON' => '{"mode":"upgrade","version":7,"reason":"cut he' ]) {
    my ($name, $garbage) = @$case;
    subtest "corrupt state file: $name" => sub {
        my $ng = NbTest::Nginx->new(http => std_http());
        my $file = $ng->write_file('state.json', $garbage);
        $ng->start;    # dies if nginx does not start

        my @st = map { $ng->status } 1 .. 10;    # both workers report it
        is(scalar(grep { JSON::PP::is_bool($_->{store}{ok}) && !$_->{store}{ok} } @st), 10,
           'status store.ok is false (all 10 answers)');
        is(scalar(grep { defined $_->{store}{error} && !ref $_->{store}{error} && length $_->{store}{error} } @st), 10,
           'status store.error is a non-empty string') or diag explain $st[0]{store};
        like($ng->error_log, qr/\[alert\]/, 'alert in error.log');
        ok(-e "$file.corrupt", 'bad file kept aside as state.json.corrupt');
        is($ng->read_file("$file.corrupt"), $garbage, '.corrupt holds the original bytes');
        # the module may already have written a fresh file (e.g. for the bypass
        # secret); what matters is that the garbage itself was moved away
        isnt($ng->read_file($file) // '', $garbage, 'garbage no longer in state.json');
        isnt($ng->get('/')->{status}, 599, 'nginx answers requests');

        my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'fresh' });
        is($r->{status}, 200, 'a write is accepted') or diag $r->{content};
        ok($r->{json}{store}{ok}, 'store.ok true after the write');
        ok(!defined $r->{json}{store}{error}, 'store.error null after the write');
        ok(-s $file, 'fresh state.json written');
        is($ng->read_file("$file.corrupt"), $garbage, '.corrupt still kept');
        my $st = $ng->status;
        ok($st->{store}{ok}, 'status store.ok true');
        is($ng->get('/')->{status}, 503, 'new state applies (upgrade gates)');

        my $want = state_fields($st);
        $ng->stop;
        $ng->start;
        is_deeply(state_fields($ng->status), $want, 'fresh file loads after restart');
        ok($ng->status->{store}{ok}, 'store ok after restart');
        is(scalar $ng->crashes, 0, 'no worker exited on a signal');
    };
}

done_testing;
