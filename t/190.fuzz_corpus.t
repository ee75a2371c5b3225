#!/usr/bin/perl
# The fuzz targets (make fuzz-build, clang) replay every input kept in
# t/fuzz/<target>/: the seeds and the inputs that once crashed (regress-*).
# Skipped when the binaries are missing or older than the module's sources.

use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $root = NbTest::repo_root();
my $bin  = "$root/build/fuzz";
my @targets = sort map { m{/([^/]+)$} } grep { -d } glob("$root/t/fuzz/*");

plan skip_all => "no fuzz binaries in build/fuzz (make fuzz-build needs clang)"
    unless -x "$bin/fuzz_admin";

my $newest = 0;
for my $f (glob("$root/ngx_nb_maint_module/*"), "$root/t/fuzz/nb_fuzz.c") {
    my $m = (stat $f)[9] // 0;
    $newest = $m if $m > $newest;
}
plan skip_all => "build/fuzz is older than the sources (make fuzz-build)"
    if grep { -x "$bin/fuzz_$_" && (stat "$bin/fuzz_$_")[9] < $newest } @targets;

my $out = File::Temp::tempdir('nb_fuzz_replay.XXXXXX', TMPDIR => 1, CLEANUP => 1);

for my $t (@targets) {
    my @inputs = grep { -f } glob("$root/t/fuzz/$t/*");
    ok(-x "$bin/fuzz_$t", "fuzz target $t is built") or next;
    local $ENV{ASAN_OPTIONS} = 'detect_leaks=1:abort_on_error=1';
    local $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1';
    my ($rc, $log) = NbTest::run_cmd("$out/$t.log", "$bin/fuzz_$t",
                                     "-artifact_prefix=$out/", @inputs);
    is($rc, 0, "$t: " . scalar(@inputs) . " inputs replay without a report")
        or diag(substr($log, -6000));
}

done_testing();
