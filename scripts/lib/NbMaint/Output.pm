# NbMaint/Output.pm: output helpers: tables, the status view, durations.
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
our ($PRETTY, %HEALTH_STYLE, %MODE_STYLE);    # $PRETTY: Base.pm, %HEALTH_STYLE: Base.pm, %MODE_STYLE: Base.pm

# ------------------------------------------------------------------ output helpers

sub yesno { $_[0] ? (JSON::PP::is_bool($_[0]) ? ($_[0] ? 'yes' : 'no') : 'yes') : 'no' }
sub str { defined $_[0] ? (JSON::PP::is_bool($_[0]) ? ($_[0] ? 'true' : 'false') : "$_[0]") : '-' }

sub status_nodes {
    my ($s) = @_;
    my (@ids, %seen);
    for my $u (@{ $s->{upstreams} || [] }) {
        for my $n (@{ $u->{nodes} || [] }) {
            next unless defined $n->{id};
            push @ids, $n->{id} unless $seen{ $n->{id} }++;
        }
    }
    return @ids;
}

sub status_node {
    my ($s, $id) = @_;
    for my $u (@{ $s->{upstreams} || [] }) {
        for my $n (@{ $u->{nodes} || [] }) {
            return $n if defined $n->{id} && $n->{id} eq $id;
        }
    }
    return undef;
}

sub mode_line {
    my ($s) = @_;
    my $m = str($s->{mode});
    $m .= " (from $s->{restoring_from})" if defined $s->{restoring_from} && $m eq 'restoring';
    $m .= ", node $s->{node}" if defined $s->{node} && $s->{node} ne '';
    $m .= ", version " . str($s->{version});
    return $m;
}

# rows of cells -> aligned columns; the first row is the header. Each cell
# is text or [text, style]; styles are painted after padding so that
# escapes do not shift the columns.
sub print_table {
    my ($rows, $indent) = @_;
    $indent //= '';
    my $nc = 0;
    for my $r (@$rows) { $nc = @$r if @$r > $nc }
    my @w = (0) x $nc;
    for my $r (@$rows) {
        for my $i (0 .. $#$r) {
            my $t = ref $r->[$i] ? $r->[$i][0] : $r->[$i];
            $w[$i] = length $t if length $t > $w[$i];
        }
    }
    my $first = 1;
    for my $r (@$rows) {
        my @cells;
        for my $i (0 .. $nc - 1) {
            my ($t, $st) = ref $r->[$i] ? @{ $r->[$i] } : ($r->[$i] // '', undef);
            $st = 'bold' if $first;
            my $pad = $i == $nc - 1 ? '' : ' ' x ($w[$i] - length $t);
            push @cells, paint($st, $t) . $pad;
        }
        my $line = $indent . join('  ', @cells);
        $line =~ s/\s+$//;
        print "$line\n";
        $first = 0;
    }
}

sub kv { printf "%-13s %s\n", $_[0], $_[1] }

sub print_status {
    my ($s) = @_;
    my $m = str($s->{mode});
    my $ms = $MODE_STYLE{$m};
    $m .= " (from $s->{restoring_from})" if defined $s->{restoring_from} && $m eq 'restoring';
    kv('mode:', paint($ms, $m));
    kv('node:', (defined $s->{node} && $s->{node} ne '' ? $s->{node} : '-'));
    kv('version:', str($s->{version}));
    kv('since:', str($s->{since}));
    kv('reason:', (defined $s->{reason} && $s->{reason} ne '' ? $s->{reason} : '-'));
    kv('retry after:', str($s->{retry_after}) . ' s');
    if (ref $s->{store} eq 'HASH') {
        my $st = $s->{store};
        my $txt = str($st->{type}) . ' ' . ($st->{ok} ? paint('green', 'ok') : paint('red bold', 'UNAVAILABLE'));
        $txt .= " ($st->{error})" if defined $st->{error} && $st->{error} ne '';
        $txt .= ", primary $st->{primary}" if defined $st->{primary};
        kv('store:', $txt);
    }
    my $pending = ref $s->{restore} eq 'HASH' ? $s->{restore}{pending} : undef;
    if (ref $pending eq 'ARRAY' && @$pending) {
        kv('waiting for:', paint('yellow', join(', ', @$pending)));
    }
    my $gws = ref $s->{restore} eq 'HASH' ? $s->{restore}{gateways_awaited} : undef;
    if (ref $gws eq 'ARRAY' && @$gws) {
        kv('and gateways:', paint('yellow', join(', ', @$gws)));
    }
    my @ups = @{ $s->{upstreams} || [] };
    if (!@ups) {
        print "upstreams:    none with nb_maint\n";
        return;
    }
    for my $u (@ups) {
        print "\nupstream " . paint('bold', str($u->{name})) . ":\n";
        my @nodes = @{ $u->{nodes} || [] };
        # the counters of interface 1, when the gateway reports them
        my $counters = grep { exists $_->{requests} } @nodes;
        my @rows = (['NODE', 'HEALTH', 'DRAIN', 'ACTIVE', 'WS', 'FAILS', 'LAST CHECK',
                     ($counters ? ('REQUESTS', 'FAILURES', 'CHECK MS') : ()), 'APP']);
        for my $n (@nodes) {
            my $h = str($n->{health});
            push @rows, [str($n->{id}), [$h, $HEALTH_STYLE{$h}],
                         [yesno($n->{drain}), $n->{drain} ? 'yellow' : undef], str($n->{active}),
                         str($n->{websockets}), str($n->{fails}), str($n->{last_check}),
                         ($counters ? (str($n->{requests}), str($n->{failures}), str($n->{check_ms})) : ()),
                         [app_text($n->{app}), 'yellow']];
        }
        print_table(\@rows, '  ');
    }
}

sub print_json { print $PRETTY->encode($_[0]) }

# "1m20s"
sub dur_text {
    my ($s) = @_;
    $s = int($s // 0);
    return $s >= 3600 ? sprintf('%dh%02dm', $s / 3600, ($s % 3600) / 60)
         : $s >= 60   ? sprintf('%dm%02ds', $s / 60, $s % 60)
         :              "${s}s";
}

# what a commanding node reported: "APP_COMMANDING upgrade (1m20s)"
sub app_text {
    my ($app) = @_;
    return '' unless ref $app eq 'HASH' && defined $app->{code};
    my $t = $app->{code};
    $t .= " $app->{command}{name}" if ref $app->{command} eq 'HASH' && defined $app->{command}{name};
    $t .= ' (' . dur_text($app->{seconds}) . ')' if defined $app->{seconds};
    return $t;
}

1;
