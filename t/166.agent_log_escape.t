# The agent port escapes what it logs from the network (issue 9, defect
# 26): control characters, ESC, CR, quotes and 8-bit bytes of an unknown
# node id never reach the error log raw; a long id is still matched.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $A = NbTest::Mock->new;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A]),
                            agent_opts(upstream => 'app'));
$ng->start;
my $AP = $ng->port_of('agent');
ok(NbTest::wait_until(sub { NbTest::Nginx::_port_open($AP) }, 5), 'agent port listens');

my @evil = ("\e[31mred\e[0m", "a\rFAKE [emerg] line", "q\"uote\\back", "\x01\x02\x7f\xff\xfe", "tab\there");
for my $e (@evil) {
    is(agent_ask($AP, undef, raw => "$e\n", timeout => 3), 'down', 'unknown id: down');
}
my $log = $ng->error_log;
my @lines = grep { /nb_maint_agent: "/ } split /\n/, $log;
cmp_ok(scalar @lines, '>=', scalar @evil, 'each unknown id is logged') or diag $log;
unlike($log, qr/\e/, 'no ESC in the error log');
unlike($log, qr/\r/, 'no CR in the error log');
unlike($log, qr/[\x00-\x08\x0b-\x1f\x7f-\xff]/, 'no control or 8-bit bytes in the error log');
unlike($log, qr/^FAKE/m, 'no forged log line');
like($log, qr/\\x1b\[31mred/, 'ESC written as \\x1b');
like($log, qr/q\\x22uote\\x5cback/, 'quote and backslash escaped');

is(agent_ask($AP, $A->id, timeout => 3), 'up ready', 'a real id still answers up ready')
;

# the admin API logs the URI of a refused request: escaped too
my $r = $ng->admin(GET => 'x%0d%0aFAKE%1b[31m%ff');
is($r->{status}, 404, 'admin: an unknown path with CR LF ESC in it: 404');
$log = $ng->error_log;
like($log, qr/admin \S*x\\x0d\\x0aFAKE\\x1b\[31m\\xff/, 'admin: the URI is logged escaped');
unlike($log, qr/[\r\e\xff]/, 'admin: no raw CR, ESC or 8-bit byte in the error log');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
