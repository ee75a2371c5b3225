# GET stream over HTTP/2 (h2c, prior knowledge) with curl: the events come
# as on HTTP/1.1; streams the client drops (RST_STREAM / connection close)
# free their slot (32 per worker, twice over); a reload with h2 streams open
# does not keep the old worker.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'curl without HTTP/2' unless `curl -V 2>&1` =~ /\bHTTP2\b/;

my $new_h2 = NbTest::nginx_version() >= 1025001;
my $h2l    = $new_h2 ? '' : ' http2';
my $h2d    = $new_h2 ? 'http2 on;' : '';

my $N = NbTest::Nginx->new(workers => 1, http => std_http(servers => <<"EOT"));
server {
    listen 127.0.0.1:%%PORT_h2c%%$h2l;
    $h2d
    location /_nb_maint/ { nb_maint_admin; }
}
EOT
$N->start;
my $p = $N->prefix;
my $url = 'http://127.0.0.1:' . $N->port_of('h2c') . '/_nb_maint/stream';
my $T = 'Authorization: Bearer ' . ADMIN_TOKEN;

# curl in the background: its pid; output (-D headers, -o body) in $p/s$n.*
my $n = 0;
sub curl_bg {
    my ($max) = @_;
    $n++;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', "$p/s$n.w"; open STDERR, '>', '/dev/null';
        exec 'curl', '-sS', '-N', '--http2-prior-knowledge', '--max-time', $max,
             '-H', $T, '-D', "$p/s$n.h", '-o', "$p/s$n.b", '-w', '%{http_version} %{http_code}', $url
            or POSIX::_exit(127);
    }
    return [$pid, $n];
}
sub reap { waitpid($_->[0], 0) for @_ }
sub result {
    my ($c) = @_;
    my ($ver, $code) = split ' ', $N->read_file("s$c->[1].w") // '';
    return { version => $ver // '', status => $code // 0, body => $N->read_file("s$c->[1].b") // '' };
}

my $c = curl_bg(3);
sleep 0.8;
my $r = $N->admin(POST => 'mode', { mode => 'upgrade', reason => 'over h2' });
is($r->{status}, 200, 'POST mode');
reap($c);
my $res = result($c);
is($res->{version}, '2', 'HTTP/2');
is($res->{status}, 200, 'stream: 200');
like($N->read_file("s$c->[1].h") // '', qr{^content-type: text/event-stream}mi, 'text/event-stream');
like($res->{body}, qr/\Aevent: status\ndata: \{[^\n]*"mode":"normal"/, 'status at once');
like($res->{body}, qr/event: status\ndata: \{[^\n]*"reason":"over h2"/, 'the new status');
like($res->{body}, qr/event: events\ndata: \[\{[^\n]*"action":"mode"/, 'the event');

# 33 at once (one curl, 33 multiplexed h2 streams): one refused; once curl
# drops them all, 32 fit again
sub parallel_codes {
    my ($count, $max) = @_;
    my @cmd = ('curl', '-s', '--no-progress-meter', '--http2-prior-knowledge', '--parallel', '--parallel-immediate',
               '--parallel-max', $count + 5, '--max-time', $max, '-H', $T,
               '-w', '%{http_code}\n', map { ('-o', '/dev/null', $url) } 1 .. $count);
    open my $ph, '-|', @cmd or die "curl: $!";
    my @codes = map { /(\d+)/ ? $1 : 0 } <$ph>;
    close $ph;
    return @codes;
}
for my $round (1 .. 2) {
    my @st = parallel_codes(33, 3);
    is(scalar(grep { $_ == 200 } @st), 32, "round $round: 32 streams accepted") or diag "@st";
    is(scalar(grep { $_ == 503 } @st), 1, "round $round: one 503 (too_many_streams)");
}

# reload with h2 streams open
my @c = map { curl_bg(10) } 1 .. 3;
sleep 1;
my %old = map { ($_ => 1) } $N->worker_pids;
my $t0 = time;
NbTest::run_cmd("$p/logs/reload.out", $N->nginx_cmd('-s', 'reload'));
ok(wait_until(sub { !grep { $old{$_} } $N->worker_pids }, 10, 0.05), 'old worker exits');
my $took = time - $t0;
cmp_ok($took, '<', 2.5, sprintf('... within 2.5 s with 3 h2 streams open (%.2f s)', $took));
reap(@c);
cmp_ok(time - $t0, '<', 5, 'the curls ended with the old worker (not at --max-time)');

is(scalar($N->crashes), 0, 'no crash');
unlike($N->error_log, qr/\[alert\]|open socket/, 'no alert');
$N->stop;
done_testing;
