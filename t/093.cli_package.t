#!/usr/bin/perl
# The CLI as a package (issue 20): a thin entry point scripts/nb-maint and its
# modules scripts/lib/NbMaint/*.pm, each a concern of at most ~800 lines; `make install-cli` (part of make install) puts
# them where the entry point finds them from any PREFIX, and the installed
# CLI runs from there alone (not from the source tree).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use File::Temp qw(tempdir);

my $ROOT = NbTest::repo_root();
my $dir  = tempdir(CLEANUP => 1);

sub lines { open my $fh, '<', $_[0] or return 0; my @l = <$fh>; scalar @l }

# ---- the shape
my @mods = sort glob "$ROOT/scripts/lib/NbMaint/*.pm";
cmp_ok(scalar @mods, '>=', 8, 'modules by concern in scripts/lib/NbMaint (' . scalar(@mods) . ')');
cmp_ok(lines("$ROOT/scripts/nb-maint"), '<=', 40, 'scripts/nb-maint is a thin entry point');
for my $m (@mods, "$ROOT/scripts/lib/NbMaint.pm") {
    my $n = $m =~ s{.*/scripts/lib/}{}r;
    cmp_ok(lines($m), '<=', 800, "$n: at most 800 lines");
    # each file names the package and ends true: loaded by NbMaint.pm
    my $text = NbTest::Nginx->read_file($m);
    like($text, qr/^package NbMaint;$/m, "$n: package NbMaint");
}
# every module is loaded by NbMaint.pm
my $loader = NbTest::Nginx->read_file("$ROOT/scripts/lib/NbMaint.pm");
for my $m (@mods) {
    my ($b) = $m =~ m{/(\w+)\.pm$};
    like($loader, qr/^use NbMaint::\Q$b\E;$/m, "NbMaint.pm loads NbMaint::$b");
}

# ---- installed: make install-cli into a DESTDIR, then run it from there
my ($rc, $out) = NbTest::run_cmd("$dir/make.out", 'make', '-s', '-C', $ROOT, 'install-cli',
                                 "DESTDIR=$dir/root", 'PREFIX=/opt/nbm');
is($rc, 0, 'make install-cli DESTDIR=... PREFIX=/opt/nbm') or diag $out;
my $bin = "$dir/root/opt/nbm/bin/nb-maint";
ok(-x $bin, 'PREFIX/bin/nb-maint');
ok(-f "$dir/root/opt/nbm/share/nb-maint/perl/NbMaint/$_.pm", "PREFIX/share/nb-maint/perl/NbMaint/$_.pm")
    for map { m{/(\w+)\.pm$} } @mods;
# no path to the source tree: PERL5LIB emptied, run from elsewhere
local $ENV{PERL5LIB} = '';
($rc, $out) = NbTest::run_cmd("$dir/v.out", $^X, $bin, '--version');
is($rc, 0, 'installed CLI runs: --version') or diag $out;
like($out, qr/^nb-maint \d/, '... prints its version');
($rc, $out) = NbTest::run_cmd("$dir/s.out", $^X, $bin, 'status', '--url', 'http://127.0.0.1:1/_nb_maint/',
                              '--token', 'x', '-o', 'json');
is($rc, 4, 'installed CLI: status against nothing exits 4 (unavailable)') or diag $out;
like($out, qr/"code"\s*:\s*"/, '... with the JSON error object');
# and through a symbolic link (as /usr/local/bin -> /opt/...): the modules are
# found from the link's target
symlink $bin, "$dir/nb-maint-link" or die "symlink: $!";
($rc, $out) = NbTest::run_cmd("$dir/l.out", "$dir/nb-maint-link", '--version');
is($rc, 0, 'installed CLI through a symlink') or diag $out;
unlike(NbTest::Nginx->read_file("$dir/$_.out") // '', qr/ at \S+ line \d+/, "$_: no Perl warnings")
    for qw(v s l);

done_testing();
