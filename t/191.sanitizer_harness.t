#!/usr/bin/perl
# make test-asan: the binaries under test really are instrumented, and a
# sanitizer report anywhere in a test's prefix is found (then the harness
# fails that test at teardown).

use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

plan skip_all => 'only under make test-asan (NB_SANITIZE=1)' unless $ENV{NB_SANITIZE};

sub instrumented {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return 0;
    local $/;
    my $b = <$fh> // '';
    return $b =~ /__asan_report_load/ && $b =~ /__ubsan_handle_/;
}

my $bin = NbTest::nginx_bin();
$bin = `command -v $bin` =~ s/\s+$//r unless $bin =~ m{/};
ok(instrumented($bin), "NGINX_BIN $bin is built with ASan and UBSan");
ok(instrumented(NbTest::module_path()), 'the http module is instrumented');
ok(instrumented(NbTest::stream_module_path()), 'the stream module is instrumented');
ok(instrumented(NbTest::stream_core_path()), 'the stream core module is instrumented');

like($ENV{ASAN_OPTIONS} // '', qr/detect_leaks=0/, 'ASAN_OPTIONS as mk/asan.mk sets them');

# a report file and an error.log line are both found
my $dir = File::Temp::tempdir('nb_san.XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/logs";
is(scalar NbTest::sanitizer_reports($dir), 0, 'a clean prefix has no report');
open my $fh, '>', "$dir/logs/sanitizer.12345" or die;
print $fh "==12345==ERROR: AddressSanitizer: heap-buffer-overflow\n";
close $fh;
open $fh, '>', "$dir/error.log" or die;
print $fh "x.c:1:2: runtime error: signed integer overflow\n";
close $fh;
is(scalar NbTest::sanitizer_reports($dir), 2, 'report file and error.log line found');

# what the harness starts gets log_path in the prefix (nginx itself
# overwrites its environment with the process title: ask a shell)
my ($rc, $out) = NbTest::run_cmd("$dir/logs/env.out", '/bin/sh', '-c',
                                 'echo "$ASAN_OPTIONS|$UBSAN_OPTIONS"');
like($out, qr{log_path=\Q$dir\E/logs/sanitizer.*\|.*log_path=\Q$dir\E/logs/sanitizer},
     'ASan and UBSan report into the prefix');

my $ng = NbTest::Nginx->new(http => "server { listen 127.0.0.1:%%PORT%%; location / { return 204; } }");
$ng->start;
is($ng->get('/')->{status}, 204, 'instrumented nginx answers');
$ng->reload;
is($ng->get('/')->{status}, 204, 'and reloads (report_globals=0, see mk/asan.mk)');
$ng->stop;

done_testing();
