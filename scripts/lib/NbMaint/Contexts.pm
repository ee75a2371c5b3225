# NbMaint/Contexts.pm: contexts and groups: the configuration file, the gateways a command
# acts on, tokens, and running a command for each gateway of a group.
# Part of nb-maint (scripts/nb-maint): one package, NbMaint, over the files of
# scripts/lib/NbMaint, loaded in order by NbMaint.pm.
package NbMaint;
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use Getopt::Long qw(GetOptionsFromArray);
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use Encode qw(decode encode);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use File::Path qw(make_path);
our ($LINE, $PROG, %G);    # $LINE: Base.pm, $PROG: Base.pm, %G: Cli.pm

# ------------------------------------------------------------------ contexts (config file)

# $NB_MAINT_CONFIG, else $XDG_CONFIG_HOME/nb-maint/config, else
# ~/.config/nb-maint/config. An INI file:
#   current = NAME
#   [context NAME]   url = URL   token-file = PATH
#   [group NAME]     contexts = A, B
sub config_path {
    return $ENV{NB_MAINT_CONFIG} if defined $ENV{NB_MAINT_CONFIG} && $ENV{NB_MAINT_CONFIG} ne '';
    my $base = defined $ENV{XDG_CONFIG_HOME} && $ENV{XDG_CONFIG_HOME} =~ m{^/}
             ? $ENV{XDG_CONFIG_HOME} : ($ENV{HOME} // (getpwuid($<))[7] // '.') . '/.config';
    return "$base/nb-maint/config";
}

sub expand_home {
    my ($p) = @_;
    $p =~ s{^~(?=/|$)}{$ENV{HOME} // (getpwuid($<))[7] // '~'}e if defined $p;
    return $p;
}

my $CONFIG;

sub load_config {
    return $CONFIG if $CONFIG;
    my $path = config_path();
    my %c = (path => $path, current => undef, contexts => {}, groups => {}, order => []);
    $CONFIG = \%c;
    open my $fh, '<:encoding(UTF-8)', $path or do {
        return \%c if $!{ENOENT};
        usage_error(undef, "cannot read $path: $!");
    };
    my $sec;
    while (my $l = <$fh>) {
        $l =~ s/\r?\n\z//;
        next if $l =~ /^\s*(?:[#;].*)?$/;
        if ($l =~ /^\s*\[\s*(context|group)\s+"?([^"\]\s]+)"?\s*\]\s*$/) {
            my ($kind, $name) = ($1, $2);
            $sec = $kind eq 'context' ? ($c{contexts}{$name} ||= { name => $name })
                                      : ($c{groups}{$name} ||= { name => $name, contexts => [] });
            push @{ $c{order} }, "$kind $name";
            next;
        }
        if ($l =~ /^\s*([A-Za-z][\w-]*)\s*=\s*(.*?)\s*$/) {
            my ($k, $v) = ($1, $2);
            $v = $1 if $v =~ /^"(.*)"$/;
            if (!$sec) {
                usage_error(undef, "$path:$.: unknown key '$k' (expected current = NAME)") unless $k eq 'current';
                $c{current} = $v;
            } elsif (exists $sec->{contexts}) {
                usage_error(undef, "$path:$.: unknown key '$k' in a group (expected contexts = A, B)")
                    unless $k eq 'contexts';
                $sec->{contexts} = [grep { length } split /\s*,\s*/, $v];
            } else {
                usage_error(undef, "$path:$.: unknown key '$k' in a context (expected url, token-file)"
                    . did_you_mean('', suggest($k, qw(url token-file))))
                    unless $k eq 'url' || $k eq 'token-file';
                $sec->{$k} = $v;
            }
            next;
        }
        usage_error(undef, "$path:$.: cannot parse '$l'");
    }
    return \%c;
}

sub save_config {
    my ($c) = @_;
    my $path = $c->{path};
    (my $dir = $path) =~ s{/[^/]*$}{};
    if ($dir ne '' && !-d $dir) {
        eval { make_path($dir, { mode => 0700 }); 1 } && -d $dir
            or fail(nb_err(EX_USAGE, 'config', "cannot create $dir: " . ($@ || $!)));
    }
    my $t = "# nb-maint contexts (nb-maint config --help)\n";
    $t .= "current = $c->{current}\n" if defined $c->{current};
    for my $n (sort keys %{ $c->{contexts} }) {
        my $x = $c->{contexts}{$n};
        $t .= "\n[context $n]\nurl = " . ($x->{url} // '') . "\n";
        $t .= "token-file = $x->{'token-file'}\n" if defined $x->{'token-file'};
    }
    for my $n (sort keys %{ $c->{groups} }) {
        $t .= "\n[group $n]\ncontexts = " . join(', ', @{ $c->{groups}{$n}{contexts} }) . "\n";
    }
    my $tmp = "$path.tmp.$$";
    my $old = umask 077;
    open my $fh, '>:encoding(UTF-8)', $tmp or fail(nb_err(EX_USAGE, 'config', "cannot write $tmp: $!"));
    umask $old;
    print $fh $t;
    close $fh or fail(nb_err(EX_USAGE, 'config', "cannot write $tmp: $!"));
    rename $tmp, $path or do { unlink $tmp; fail(nb_err(EX_USAGE, 'config', "cannot write $path: $!")) };
}

# A name (context or group) or a comma list -> the contexts it means.
sub expand_contexts {
    my ($c, $spec) = @_;
    my @out;
    for my $name (grep { length } split /\s*,\s*/, $spec) {
        if ($c->{contexts}{$name}) { push @out, $c->{contexts}{$name}; next }
        if (my $g = $c->{groups}{$name}) {
            for my $m (@{ $g->{contexts} }) {
                my $x = $c->{contexts}{$m}
                    or usage_error(undef, "group '$name' names context '$m', which $c->{path} does not define");
                push @out, $x;
            }
            next;
        }
        my @all = (sort(keys %{ $c->{contexts} }), sort(keys %{ $c->{groups} }));
        usage_error(undef, "no context or group '$name' in $c->{path}"
            . (@all ? did_you_mean('', suggest($name, @all)) : " (add one with `$PROG config set $name --url URL`)"));
    }
    my %seen;
    return grep { !$seen{ $_->{name} }++ } @out;
}

# The gateways a command acts on: --url, else --context/NB_MAINT_CONTEXT,
# else NB_MAINT_URL, else the config file's current context.
sub resolve_targets {
    my ($cmd) = @_;
    my $url = $G{url};
    if (defined $url && $url ne '') {
        return ({ name => undef, url => $url });
    }
    my $spec = $G{context} // $ENV{NB_MAINT_CONTEXT};
    if (!(defined $spec && $spec ne '') && defined $ENV{NB_MAINT_URL} && $ENV{NB_MAINT_URL} ne '') {
        $G{url} = $ENV{NB_MAINT_URL};
        return ({ name => undef, url => $G{url} });
    }
    my $c = load_config();
    $spec = $c->{current} unless defined $spec && $spec ne '';
    return () unless defined $spec && $spec ne '';
    my @t = expand_contexts($c, $spec);
    for my $t (@t) {
        usage_error(undef, "context '$t->{name}' in $c->{path} has no url") unless defined $t->{url} && $t->{url} ne '';
    }
    use_target($t[0]) if @t == 1;
    return @t;
}

sub use_target {
    my ($t) = @_;
    $G{url} = $t->{url};
    $G{target} = $t;
    delete $G{token_cache};
}

sub read_token_file {
    my ($f) = @_;
    my $p = expand_home($f);
    open my $fh, '<', $p or fail(nb_err(EX_USAGE, 'token_file', "cannot read the token file $f: $!"));
    my $l = <$fh>;
    close $fh;
    $l = '' unless defined $l;
    $l =~ s/^\s+|\s+$//g;
    fail(nb_err(EX_USAGE, 'token_file', "the token file $f is empty")) if $l eq '';
    return $l;
}

# --token, --token-file, the context's token-file, NB_MAINT_TOKEN, NB_MAINT_TOKEN_FILE
sub api_token {
    return $G{token_cache} if exists $G{token_cache};
    my $t;
    if (defined $G{token} && $G{token} ne '') { $t = $G{token} }
    elsif (defined $G{'token-file'}) { $t = read_token_file($G{'token-file'}) }
    elsif ($G{target} && defined $G{target}{'token-file'}) { $t = read_token_file($G{target}{'token-file'}) }
    elsif (defined $ENV{NB_MAINT_TOKEN} && $ENV{NB_MAINT_TOKEN} ne '') { $t = $ENV{NB_MAINT_TOKEN} }
    elsif (defined $ENV{NB_MAINT_TOKEN_FILE} && $ENV{NB_MAINT_TOKEN_FILE} ne '') {
        $t = read_token_file($ENV{NB_MAINT_TOKEN_FILE});
    }
    return $G{token_cache} = $t;
}

sub cmd_config {
    my ($o, $sub, @a) = @_;
    $sub //= 'list';
    my %alias = ('get-contexts' => 'list', 'current-context' => 'current', 'use-context' => 'use',
                 'set-context' => 'set', 'delete-context' => 'delete', 'set-group' => 'group', view => 'list');
    $sub = $alias{$sub} // $sub;
    my @subs = qw(list current use set delete group path);
    usage_error('config', "unknown config command '$sub'" . did_you_mean('config ', suggest($sub, @subs)))
        unless grep { $_ eq $sub } @subs;
    my %n = (list => 0, current => 0, path => 0, use => 1, set => 1, delete => 1, group => 2);
    usage_error('config', "config $sub takes $n{$sub} argument" . ($n{$sub} == 1 ? '' : 's'))
        unless @a == $n{$sub};
    my $c = load_config();
    my ($name, $arg) = @a;
    usage_error('config', "bad name '$name': letters, digits, . _ - only")
        if defined $name && $name !~ /^[A-Za-z0-9._-]+$/;
    if ($sub eq 'path') {
        return json_out() ? print_json({ path => $c->{path} }) : print "$c->{path}\n";
    }
    if ($sub eq 'current') {
        fail(nb_err(EX_USAGE, 'no_context', "no current context in $c->{path}")) unless defined $c->{current};
        return json_out() ? print_json({ current => $c->{current} }) : print "$c->{current}\n";
    }
    if ($sub eq 'list') {
        if (json_out()) {
            return print_json({
                path => $c->{path}, current => $c->{current},
                contexts => [map { { name => $_, url => $c->{contexts}{$_}{url},
                                     'token-file' => $c->{contexts}{$_}{'token-file'} } } sort keys %{ $c->{contexts} }],
                groups => [map { { name => $_, contexts => $c->{groups}{$_}{contexts} } } sort keys %{ $c->{groups} }],
            });
        }
        my @rows = (['CURRENT', 'NAME', 'URL', 'TOKEN FILE']);
        for my $n (sort keys %{ $c->{contexts} }) {
            my $x = $c->{contexts}{$n};
            push @rows, [(($c->{current} // '') eq $n ? '*' : ''), $n, $x->{url} // '-', $x->{'token-file'} // '-'];
        }
        for my $n (sort keys %{ $c->{groups} }) {
            push @rows, [(($c->{current} // '') eq $n ? '*' : ''), $n,
                         'group: ' . join(', ', @{ $c->{groups}{$n}{contexts} }), ''];
        }
        if (@rows == 1) { print "no contexts in $c->{path}; add one with `$PROG config set NAME --url URL`\n"; return }
        print_table(\@rows);
        return;
    }
    if ($sub eq 'use') {
        usage_error('config', "no context or group '$name' in $c->{path}"
            . did_you_mean('', suggest($name, keys %{ $c->{contexts} }, keys %{ $c->{groups} })))
            unless $c->{contexts}{$name} || $c->{groups}{$name};
        $c->{current} = $name;
    } elsif ($sub eq 'set') {
        usage_error('config', "context '$name' is a group name") if $c->{groups}{$name};
        my $x = $c->{contexts}{$name} ||= { name => $name };
        my $url = $o->{url} // $x->{url};
        usage_error('config', 'config set NAME needs --url URL') unless defined $url && $url ne '';
        usage_error('config', "bad URL '$url': expected http://host[:port]/path/") unless $url =~ m{^https?://[^/\s]+}i;
        $x->{url} = $url;
        $x->{'token-file'} = $o->{'token-file'} if defined $o->{'token-file'};
        delete $x->{'token-file'} if defined $x->{'token-file'} && $x->{'token-file'} eq '';
        $c->{current} //= $name;
    } elsif ($sub eq 'delete') {
        usage_error('config', "no context or group '$name' in $c->{path}")
            unless delete($c->{contexts}{$name}) || delete($c->{groups}{$name});
        $c->{current} = undef if ($c->{current} // '') eq $name;
    } elsif ($sub eq 'group') {
        usage_error('config', "group '$name' is a context name") if $c->{contexts}{$name};
        my @m = grep { length } split /\s*,\s*/, $arg;
        for my $m (@m) {
            usage_error('config', "no context '$m' in $c->{path}"
                . did_you_mean('', suggest($m, keys %{ $c->{contexts} }))) unless $c->{contexts}{$m};
        }
        usage_error('config', 'a group needs at least one context') unless @m;
        $c->{groups}{$name} = { name => $name, contexts => \@m };
    }
    save_config($c);
    return print_json({ ok => JSON::PP::true, command => $sub, name => $name, current => $c->{current} }) if json_out();
    my %said = (use => "current context: $name", set => "context $name saved in $c->{path}",
                delete => "deleted $name", group => "group $name: " . join(', ', split /\s*,\s*/, $arg // ''));
    print "$said{$sub}\n";
}

# ------------------------------------------------------------------ gateway groups

# Re-run this command for one context of a group (a child process, so every
# command works unchanged): (exit, stdout or undef when not captured, stderr)
sub run_for_context {
    my ($t, $capture) = @_;
    my @args;
    my @argv = @ARGV;
    while (@argv) {
        my $x = shift @argv;
        if ($x eq '--') { push @args, $x, @argv; last }
        if ($x eq '--context') { shift @argv; next }
        next if $x =~ /^--context=/;
        push @args, $x;
    }
    my ($out, $err) = ('', '');
    my ($rout, $rerr);
    pipe($rout, my $wout) or fail("pipe: $!") if $capture;
    pipe($rerr, my $werr) or fail("pipe: $!") if $capture;
    my $pid = fork // fail("fork: $!");
    if (!$pid) {
        $ENV{NB_MAINT_CONTEXT} = $t->{name};
        delete $ENV{NB_MAINT_URL};
        if ($capture) {
            close $rout; close $rerr;
            open STDOUT, '>&', $wout; open STDERR, '>&', $werr;
        }
        { exec $^X, $0, map { encode('UTF-8', $_) } @args }
        POSIX::_exit(127);
    }
    if ($capture) {
        close $wout; close $werr;
        # stderr is small; read stdout first, then stderr
        local $/;
        $out = <$rout> // '';
        $err = <$rerr> // '';
    }
    waitpid $pid, 0;
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    return ($rc, $capture ? $out : undef, $err);
}

# Do the gateways share one store? Only Redis stores with the same primary
# do (a file store belongs to one gateway).
sub shared_store {
    my ($targets) = @_;
    my %prim;
    for my $t (@$targets) {
        use_target($t);
        my $s = eval { get_status() } or return (0, "$t->{name}: " . err_msg($@));
        my $st = $s->{store};
        return (0, "$t->{name} has a $st->{type} store")
            unless ref $st eq 'HASH' && ($st->{type} // '') =~ /^redis/ && defined $st->{primary};
        $prim{ $st->{primary} }++;
    }
    return keys %prim == 1 ? (1, 'Redis at ' . (keys %prim)[0]) : (0, 'different Redis primaries');
}

sub run_group {
    my ($cmd, $def, $targets) = @_;
    my @names = map { $_->{name} } @$targets;
    usage_error($cmd, "$cmd acts on one gateway: pick one context of " . join(', ', @names)
        . " (gateways sharing a Redis store are one cluster: any one of them)") if $def->{single};
    my @run = @$targets;
    if ($def->{write}) {
        my ($shared, $why) = shared_store($targets);
        if ($shared) {
            @run = ($targets->[0]);
            text("gateways " . join(', ', @names) . " share one store ($why): writing through $names[0]\n");
        } else {
            text("gateways " . join(', ', @names) . " do not share a store ($why): writing to each in turn\n");
        }
    }
    my (@res, $rc_all);
    for my $t (@run) {
        text(paint('bold', "== $t->{name} ($t->{url})") . "\n");
        my ($rc, $out, $err) = run_for_context($t, json_out());
        if (json_out()) {
            my $r = eval { $LINE->decode($out) };
            my $e = eval { $LINE->decode($err) };
            push @res, { context => $t->{name}, url => $t->{url}, exit => $rc,
                         result => $r, (ref $e eq 'HASH' && $e->{error} ? (error => $e->{error}) : ()) };
        }
        $rc_all //= $rc if $rc;
        last if $rc && $def->{write};
    }
    my @prop = $def->{write} && @run == 1 && !$rc_all ? group_propagation($targets) : ();
    print_json({ gateways => \@res, (@prop ? (propagation => \@prop) : ()) }) if json_out();
    exit($rc_all // 0);
}

# After a write through one gateway of a shared store: the others see it.
sub group_propagation {
    my ($targets) = @_;
    my ($first, @others) = @$targets;
    use_target($first);
    my $s = eval { get_status() } or return ();
    my $v = $s->{version};
    my @seen;
    for my $t (@others) {
        use_target($t);
        my $deadline = time + 5;
        my $got;
        while (1) {
            my $x = eval { get_status() };
            $got = $x->{version} if $x;
            last if defined $got && $got >= $v;
            last if time >= $deadline;
            sleep 0.1;
        }
        my $ok = defined $got && $got >= $v;
        text("$t->{name}: " . ($ok ? "sees version $got" : "still at version " . str($got) . " after 5 s") . "\n");
        push @seen, { context => $t->{name}, url => $t->{url}, version => $got, propagated => $ok ? JSON::PP::true : JSON::PP::false };
    }
    return @seen;
}

1;
