#!/usr/bin/perl
# The module's source layout (issue 14), as scripts/check-layout checks it:
# files under 850 lines, functions under 100 (or a "/* long: why */" above
# them), no call cycle between files, no use or include of a higher layer,
# ./config bottom-up.  First the checker itself on small trees made here
# (each rule caught, each clean case passing), then the module's tree.
#
# A problem in a file listed in %PENDING (a split another branch is doing)
# is reported as a TODO test: shown, not failing the suite.  Every other
# problem fails.

use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use File::Temp ();
use File::Path qw(make_path);

my $root  = NbTest::repo_root();
my $check = "$root/scripts/check-layout";

# splits under way elsewhere: file => who
my %PENDING = ();

sub run_check {
    my ($dir, @args) = @_;
    my $out = `'$^X' '$check' --dir '$dir/m' --config '$dir/config' @args 2>&1`;
    return ($? >> 8, $out);
}

sub tree {
    my (%files) = @_;
    my $dir = File::Temp::tempdir('nb_layout.XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    make_path("$dir/m");
    for my $f (keys %files) {
        open(my $fh, '>', $f eq 'config' ? "$dir/config" : "$dir/m/$f")
            or die "$f: $!";
        print $fh $files{$f};
        close $fh;
    }
    return $dir;
}

sub func {
    my ($name, $lines, $calls, $static) = @_;
    my $body = join '', map { "    $_();\n" } @{ $calls || [] };
    $body .= "    x++;\n" x ($lines - 4 - @{ $calls || [] }) if $lines;
    return ($static ? "static " : "") . "void\n$name(void)\n{\n$body}\n\n\n";
}

sub config_of {
    return "ngx_module_srcs=\""
        . join(" \\\n    ", map { "\$NB_MAINT_SRC/$_" } @_) . "\"\n";
}

# the checker: a clean tree
{
    my $d = tree(
        'ngx_http_nb_maint.h'          => "/* shared */\n",
        'ngx_http_nb_maint_json.c'     => func('nb_json_a', 10),
        'ngx_http_nb_maint_state.c'    => func('nb_state_a', 10, ['nb_json_a']),
        'ngx_http_nb_maint_gate.c'     => func('nb_gate_a', 10, ['nb_state_a']),
        config => config_of(map { "ngx_http_nb_maint_$_.c" }
                            qw(json state gate)),
    );
    my ($rc, $out) = run_check($d);
    is($rc, 0, 'checker: a clean tree passes') or diag($out);
}

# each rule
{
    my $d = tree(
        'ngx_http_nb_maint_json.c'  => func('nb_json_a', 10, ['nb_state_a']),
        'ngx_http_nb_maint_state.c' => func('nb_state_a', 10, ['nb_json_a'])
                                       . func('nb_state_long', 120)
                                       . "/* long: one table */\n\n"
                                       . func('nb_state_ok', 120)
                                       . ("/* filler */\n" x 700),
        'ngx_http_nb_maint_gate.c'  => func('nb_gate_a', 10),
        config => config_of(map { "ngx_http_nb_maint_$_.c" }
                            qw(gate state json)),
    );
    my ($rc, $out) = run_check($d);
    is($rc, 1, 'checker: a bad tree fails');
    like($out, qr/cycle of 2 files: .*json\.c -> .*state\.c \(nb_state_a\)/,
         'checker: a call cycle is found');
    like($out, qr/json\.c \(base\) uses .*state\.c \(state\): nb_state_a/,
         'checker: a call into a higher layer is found');
    like($out, qr/nb_state_long\(\) has 120 lines/,
         'checker: a long function is found');
    unlike($out, qr/nb_state_ok/, 'checker: "/* long: why */" lets one be');
    like($out, qr/state\.c: \d+ lines \(limit 850\)/,
         'checker: a long file is found');
    like($out, qr/config: .*state\.c \(state\) listed after/,
         'checker: config out of layer order is found');
    unlike($out, qr/gate\.c/, 'checker: gate.c has nothing wrong');

    ($rc, $out) = run_check($d, '--only', 'ngx_http_nb_maint_gate.c');
    unlike($out, qr/nb_state_long/, 'checker: --only limits the lengths');
}

# a header's inline function is the header's; its prototypes are no use
{
    my $d = tree(
        'ngx_http_nb_maint.h' => "void nb_gate_a(void);\n\n"
                                 . "static ngx_inline void\nnb_h_inline(void)\n"
                                 . "{\n    nb_gate_a();\n}\n",
        'ngx_http_nb_maint_state.c' => "#include \"ngx_http_nb_maint.h\"\n"
                                       . func('nb_state_a', 10,
                                              ['nb_h_inline']),
        'ngx_http_nb_maint_gate.c'  => func('nb_gate_a', 10),
        config => config_of(map { "ngx_http_nb_maint_$_.c" } qw(state gate)),
    );
    my ($rc, $out) = run_check($d);
    like($out, qr/nb_maint\.h \(header\) uses .*gate\.c \(edge\): nb_gate_a/,
         'checker: a header inline function calling up is found');
    unlike($out, qr/state\.c \(state\) uses/,
           'checker: a call to a header inline function is no use of gate.c');
}

# the module's tree
{
    my $out = `'$^X' '$check' --dir '$root/ngx_nb_maint_module' --config '$root/config' 2>&1`;
    my @problems = grep { !/^check-layout: / } split /\n/, $out;
    my (@todo, @bad);
    for my $p (@problems) {
        my ($who) = map { $PENDING{$_} } grep { index($p, $_) >= 0 }
                    sort keys %PENDING;
        if ($who) { push @todo, [$p, $who] } else { push @bad, $p }
    }
    ok(!@bad, 'the module: no layout problem outside pending splits')
        or diag(join "\n", @bad);
    TODO: {
        for my $t (@todo) {
            local $TODO = "pending: $t->[1]";
            ok(0, $t->[0]);
        }
    }
}

done_testing();
