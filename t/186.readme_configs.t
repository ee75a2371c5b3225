# Issue 18 item 3: every nginx configuration block README.md and doc/*.md
# show passes `nginx -t` as written, on a Debian machine as it comes (the
# system nginx, its /etc/nginx/mime.types and /var/lib/nginx), with the
# module's package installed.  Run as root: "user www-data" and the state
# directory's owner only mean something then (CI runs the suite as root).
#
# Each ```nginx block is a complete nginx.conf (it has "events") or says
# where it goes in an HTML comment on the line before the fence:
#   <!-- nginx -t: http -->                  inside http { } of Debian's
#                                            stock /etc/nginx/nginx.conf
#   <!-- nginx -t: replace DIRECTIVE -->     each line in place of that
#                                            directive's line in README's
#                                            complete configuration
#   <!-- nginx -t: replace location / -->    the block in place of
#                                            "location / { }" there
#   <!-- nginx -t: main -->                  a complete nginx.conf
#   <!-- nginx -t: t/187 FILE -->            a file of deploy/ (t/187 checks it)
# followed by ", placeholders" when the block uses doc/'s placeholders
# (PREFIX, PORT, P1.., AGENT, /abs/build/...so): they get values first.
# A block without one fails this test, so a new block gets checked too.
#
# What is changed before nginx -t, and only that: the files the package
# installs live in a temporary tree laid out as the package lays them out
# (/etc/nginx/nb_maint/ with static/nginx/*.conf and a tokens file,
# /var/lib/nb-maint/ owned by www-data, mode 0750); "modules/" (load_module)
# is that tree's, linking the built modules and Debian's own; -p and -e
# point at the tree.  Addresses stay as written (nginx -t binds nothing,
# connects nowhere).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use File::Temp ();
use File::Path qw(make_path);
use File::Basename qw(basename);

plan skip_all => 'needs root: "user www-data" and the state directory owner '
    . 'are checked as the worker user only when nginx starts as root'
    unless $> == 0;
my @www = getpwnam('www-data');
plan skip_all => 'no www-data user (Debian has one)' unless @www;

my $ROOT = NbTest::repo_root();

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

# ---- the package's files, in a temporary tree ------------------------------
my $T = File::Temp::tempdir('nb_maint_readme_XXXXXX', TMPDIR => 1,
                            CLEANUP => !$ENV{NB_KEEP});
chmod 0755, $T;
diag "tree: $T" if $ENV{NB_KEEP};
make_path("$T/etc/nginx/nb_maint", "$T/var/lib/nb-maint", "$T/modules", "$T/logs");
chown $www[2], $www[3], "$T/var/lib/nb-maint";
chmod 0750, "$T/var/lib/nb-maint";

# every path the package owns moves into the tree; nothing else changes
sub localize {
    my ($text) = @_;
    $text =~ s{/etc/nginx/nb_maint/}{$T/etc/nginx/nb_maint/}g;
    $text =~ s{/var/lib/nb-maint/}{$T/var/lib/nb-maint/}g;
    return $text;
}

for my $f (glob "$ROOT/static/nginx/*.conf") {
    open my $fh, '>', "$T/etc/nginx/nb_maint/" . basename($f) or die $!;
    print $fh localize(slurp($f));
    close $fh;
}
for my $tokens ("$T/etc/nginx/nb_maint/tokens", "$T/tokens") {   # PREFIX/tokens: doc/
    open my $fh, '>', $tokens or die $!;
    print $fh "admin:" . ('x' x 43) . "\n";
    close $fh;
    chmod 0600, $tokens;
}
# load_module modules/X: the built modules, Debian's for the rest
symlink NbTest::module_path(), "$T/modules/ngx_http_nb_maint_module.so";
symlink NbTest::stream_module_path(), "$T/modules/ngx_stream_nb_maint_module.so";
symlink NbTest::stream_core_path(), "$T/modules/ngx_stream_module.so";

# Debian 12's /etc/nginx/nginx.conf (nginx-common), comments left out; its
# includes of conf.d/, sites-enabled/ and modules-enabled/ are the
# machine's own business, the module is loaded as its package does
sub debian_nginx_conf {
    my ($http) = @_;
    return <<"EOF";
user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
load_module modules/ngx_http_nb_maint_module.so;
events {
	worker_connections 768;
}
http {
	sendfile on;
	tcp_nopush on;
	types_hash_max_size 2048;
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
	ssl_prefer_server_ciphers on;
	access_log /var/log/nginx/access.log;
	gzip on;
$http
}
EOF
}

# ---- the blocks -------------------------------------------------------------
# (file, line, marker, text) of every ```nginx block
sub blocks {
    my ($file) = @_;
    my @lines = split /\n/, slurp($file), -1;
    my (@b, $marker);
    for (my $i = 0; $i < @lines; $i++) {
        my $l = $lines[$i];
        if ($l =~ /^<!--\s*nginx -t:\s*(.*?)\s*-->\s*$/) { $marker = $1; next }
        if ($l =~ /^```(\S*)\s*$/) {
            my ($lang, $start, $text) = ($1, $i + 1, '');
            $text .= "$lines[$i]\n" while ++$i < @lines && $lines[$i] !~ /^```\s*$/;
            push @b, { file => $file, line => $start, marker => $marker, text => $text }
                if $lang eq 'nginx';
            undef $marker;
            next;
        }
        undef $marker if $l =~ /\S/;
    }
    return @b;
}

my @files = ("$ROOT/README.md", sort glob "$ROOT/doc/*.md");
my @blocks = map { blocks($_) } @files;
my ($complete) = grep { $_->{file} =~ /README\.md$/ && $_->{text} =~ /^events\b/m } @blocks;
ok($complete, 'README has a complete configuration (a block with "events")')
    or BAIL_OUT('nothing to build on');
cmp_ok(scalar(grep { $_->{file} =~ /README/ } @blocks), '>=', 4, 'README: its nginx blocks found');

# doc/'s placeholders filled in
sub placeholders {
    my ($t) = @_;
    my $mod = NbTest::module_path();
    $t =~ s{\S*/build/ngx_http_nb_maint_module\.so}{$mod}g;
    $t =~ s/\bPREFIX\b/$T/g;
    $t =~ s/\b(?:PORT|AGENT|P\d)\b/NbTest::free_port()/ge;
    return $t;
}

# the configurations ([name, text]) a block stands for
sub configs {
    my ($b) = @_;
    my $m = $b->{marker} // ($b->{text} =~ /^events\b/m ? 'main' : undef);
    return () unless defined $m;
    my $text = $b->{text};
    $text = placeholders($text) if $m =~ s/,\s*placeholders$//;
    return ([ '', $text ]) if $m eq 'main';
    return ([ '', debian_nginx_conf($text) ]) if $m eq 'http';
    if ($m eq 'replace location /') {
        my $t = $complete->{text};
        $t =~ s/^([ \t]*)location \/ \{.*?\n\1\}\n/$text/ms or return ();
        return ([ '', $t ]);
    }
    if ($m =~ /^replace (\w+)$/) {
        my $d = $1;
        my @out;
        for my $l (grep { /^\s*\Q$d\E\s/ } split /\n/, $text) {
            my $t = $complete->{text};
            $t =~ s/^[ \t]*\Q$d\E\s.*$/$l/m or return ();
            (my $name = $l) =~ s/^\s+//;
            $name =~ s/\s*#.*//;
            push @out, [ " ($name)", $t ];
        }
        return @out;
    }
    return ();
}

my $n = 0;
for my $b (@blocks) {
    (my $where = "$b->{file}:$b->{line}") =~ s{^\Q$ROOT\E/}{};
    # deploy/'s configurations (image paths, service names): t/187 checks them
    if (($b->{marker} // '') =~ m{^t/187 (\S+)}) {
        ok(-f "$ROOT/$1", "$where: checked by t/187 against $1");
        next;
    }
    my @c = configs($b);
    ok(@c, "$where: the block says where it goes, or is a complete nginx.conf")
        or diag "marker: " . ($b->{marker} // 'none') . "\n$b->{text}";
    for my $c (@c) {
        my ($name, $text) = @$c;
        my $conf = "$T/nginx-" . ++$n . ".conf";
        open my $fh, '>', $conf or die $!;
        print $fh localize($text);
        close $fh;
        my ($rc, $out) = NbTest::run_cmd("$T/logs/t$n.out", NbTest::nginx_bin(),
            '-p', "$T/", '-e', "$T/logs/error.log", '-c', $conf, '-t');
        is($rc, 0, "$where$name: nginx -t") or diag "$out\n--- $conf:\n" . localize($text);
    }
}

done_testing();
