# NbMaint/Commands.pm: the one-call commands: status, node, maintenance, upgrade, restore,
# drain, undrain, bypass, events.
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
our (%HEALTH_STYLE);    # %HEALTH_STYLE: Base.pm

# ------------------------------------------------------------------ simple commands

sub cmd_status {
    my ($o) = @_;
    my $s = guard(\&get_status);
    return print_json($s) if $o->{json};
    print_status($s);
}

sub cmd_node {
    my ($o, $id) = @_;
    my $n = guard(sub { get_node($id) });
    return print_json($n) if $o->{json};
    for my $k (qw(id health drain active websockets fails last_check requests failures check_ms)) {
        next if !exists $n->{$k} && $k =~ /^(?:requests|failures|check_ms)$/;
        my $v = $k eq 'drain' ? yesno($n->{$k}) : str($n->{$k});
        $v = paint($HEALTH_STYLE{$v}, $v) if $k eq 'health';
        printf "%-11s %s\n", "$k:", $v;
    }
    printf "%-11s %s\n", 'app:', app_text($n->{app}) if ref $n->{app} eq 'HASH';
}

sub mode_body {
    my ($mode, $o) = @_;
    my %b = (mode => $mode);
    $b{node} = $o->{node} if defined $o->{node};
    $b{reason} = $o->{reason} if defined $o->{reason};
    $b{retry_after} = $o->{'retry-after'} + 0 if defined $o->{'retry-after'};
    $b{force} = JSON::PP::true if $o->{force};
    return \%b;
}

sub post_mode { scalar api('POST', 'mode', $_[0], expect => 'status') }
sub post_restore {
    my ($force, $expect) = @_;
    return scalar api('POST', 'restore', { force => ($force ? JSON::PP::true : JSON::PP::false),
                                           (defined $expect ? (expect => $expect + 0) : ()) }, expect => 'status');
}
sub post_drain {
    my ($id, $what) = @_;
    return scalar api('POST', 'nodes/' . path_escape($id) . '/' . ($what // 'drain'), {}, expect => 'status');
}

sub cmd_maintenance {
    my ($o) = @_;
    usage_error('maintenance', '--node ID is required') unless defined $o->{node} && $o->{node} ne '';
    my $s = guard(sub { post_mode(mode_body('maintenance', $o)) });
    return print_json($s) if $o->{json};
    print "mode: " . mode_line($s) . "\n";
}

sub cmd_upgrade {
    my ($o) = @_;
    my $s = guard(sub { post_mode(mode_body('upgrade', $o)) });
    return print_json($s) if $o->{json};
    print "mode: " . mode_line($s) . "\n";
}

sub pending_of {
    my ($s) = @_;
    my $p = ref $s->{restore} eq 'HASH' ? $s->{restore}{pending} : undef;
    return ref $p eq 'ARRAY' ? @$p : ();
}

# why a node is not (yet) healthy: "health down, 3 failed checks",
# "APP_COMMANDING upgrade (1m20s)", "drained"
sub node_reason {
    my ($n) = @_;
    return 'not reported by the gateway' unless $n;
    my $h = $n->{health} // 'unknown';
    my $r = $h eq 'commanding' && ref $n->{app} eq 'HASH' ? app_text($n->{app}) : "health $h";
    $r .= ", $n->{fails} failed check" . ($n->{fails} == 1 ? '' : 's') if $h eq 'down' && ($n->{fails} // 0) > 0;
    return $r;
}

sub cmd_restore {
    my ($o) = @_;
    my $s = eval { post_restore($o->{force}, $o->{expect}) };
    if (!$s) {
        my $e = $@;
        # already restoring/normal: with --wait the goal is reached by waiting
        if ($o->{wait} && ref $e && $e->{code} eq 'invalid_transition') {
            my $cur = guard(\&get_status);
            if (($cur->{mode} // '') eq 'normal') {
                return print_json($cur) if $o->{json};
                print "mode: already normal\n";
                return;
            }
            fail($e) unless ($cur->{mode} // '') eq 'restoring';
            $s = $cur;
        } else {
            fail($e);
        }
    }
    if (!$o->{wait} || ($s->{mode} // '') eq 'normal') {
        return print_json($s) if $o->{json};
        print "mode: " . mode_line($s) . "\n";
        my @p = pending_of($s);
        print "waiting for: " . join(', ', @p) . "\n" if @p;
        return;
    }
    text("mode: " . mode_line($s) . "\n");
    my $final = guard(sub {
        wait_normal($o->{timeout} // 600, $o->{interval} // 0.5, sub { text("  $_[0]\n") });
    });
    return print_json($final) if $o->{json};
    print "mode: " . mode_line($final) . "\n";
}

# Draining these would leave an upstream without an undrained node:
# (upstream name, [its nodes]) for each such upstream.
sub drain_leaves_none {
    my ($s, @ids) = @_;
    my %going = map { $_ => 1 } @ids;
    my @bad;
    for my $u (@{ $s->{upstreams} || [] }) {
        my @nodes = @{ $u->{nodes} || [] };
        next unless grep { $going{ $_->{id} // '' } } @nodes;
        my @left = grep { !$_->{drain} && !$going{ $_->{id} // '' } } @nodes;
        push @bad, str($u->{name}) unless @left;
    }
    return @bad;
}

sub cmd_drain {
    my ($o, @ids) = @_;
    return drain_self($o, @ids) if $o->{self};
    usage_error('drain', 'drain: give the node ids (or --self)') unless @ids;
    usage_error('drain', '--address and --port go with --self') if defined $o->{address} || defined $o->{port};
    my %seen;
    @ids = grep { !$seen{$_}++ } @ids;
    if (!$o->{force}) {
        my $s = guard(\&get_status);
        my @bad = drain_leaves_none($s, @ids);
        fail(nb_err(EX_REFUSED, 'last_node',
            "draining " . join(', ', @ids) . " leaves no undrained node in upstream " . join(', ', @bad)
            . ": every request would fail. Add --force to drain anyway")) if @bad;
    }
    my @done;
    for my $id (@ids) {
        my $r = guard(sub { post_drain($id, 'drain') });
        push @done, status_node($r, $id) // { id => $id };
        text("$id drained\n") unless $o->{wait};
    }
    if (!$o->{wait}) {
        return print_json({ nodes => \@done }) if $o->{json};
        return;
    }
    text(join(', ', @ids) . " drained; waiting for requests in flight to finish and WebSockets to close\n");
    my $t = $o->{timeout} // 60;
    my $end = time + $t;
    my @idle;
    for my $id (@ids) {
        my $left = $end - time;
        $left = 0.001 if $left <= 0;
        my ($ok, $n, $why) = guard(sub { wait_idle($id, $left, $o->{interval} // 0.5, sub { text("  $_[0]\n") }) });
        fail(nb_err(EX_TIMEOUT, 'timeout', sprintf("timed out after %s: %s (%s stays drained)", dur_text($t), $why, $id),
            node => $id)) if !$ok && defined $why;
        fail(nb_err(EX_TIMEOUT, 'timeout',
            sprintf("timed out after %s: %s request(s) still in flight on %s (it stays drained)",
                dur_text($t), str($n->{active}), $id), node => $id, active => $n->{active})) unless $ok;
        # the gateway closes its WebSockets after nb_maint_ws_drain_grace
        my $ws = guard(sub { wait_ws_closed([$id], $end, $o->{interval} // 0.5, sub { text("  $_[0]\n") }) });
        fail(nb_err(EX_TIMEOUT, 'timeout', sprintf("timed out after %s: %s (%s stays drained)", dur_text($t), $ws, $id),
            node => $id)) if defined $ws;
        $n = guard(sub { get_node($id) });
        push @idle, $n;
        text("$id has no request in flight and no WebSocket open\n");
    }
    return print_json({ nodes => \@idle }) if $o->{json};
}

sub cmd_undrain {
    my ($o, @ids) = @_;
    my @done;
    for my $id (@ids) {
        my $r = guard(sub { post_drain($id, 'undrain') });
        push @done, status_node($r, $id) // { id => $id };
        text("$id undrained\n");
    }
    return print_json({ nodes => \@done }) if $o->{json};
}

sub get_bypass_cookie {
    my ($ttl) = @_;
    my ($data, $res) = api('POST', 'bypass', (defined $ttl ? { ttl => $ttl + 0 } : {}), raw_ok => 1);
    my $sc = $res->{headers}{'set-cookie'};
    my @sc = ref $sc eq 'ARRAY' ? @$sc : defined $sc ? ($sc) : ();
    for my $c (@sc) {
        return ($1, $c, $data) if $c =~ /^\s*(nb_maint_bypass=[^;]*)/;
    }
    # fall back to a cookie value in the JSON answer
    if (ref $data eq 'HASH') {
        for my $k (qw(cookie value)) {
            next unless defined $data->{$k};
            my $v = $data->{$k};
            $v = "nb_maint_bypass=$v" unless $v =~ /^nb_maint_bypass=/;
            $v =~ s/;.*//;
            return ($v, $v, $data);
        }
    }
    die not_admin_api(base_url() . 'bypass', 'no nb_maint_bypass cookie in the answer');
}

sub cmd_bypass {
    my ($o) = @_;
    my ($pair, $full, $data) = guard(sub { get_bypass_cookie($o->{ttl}) });
    if ($o->{json}) {
        print_json({ %{ ref $data eq 'HASH' ? $data : {} }, cookie => $pair, set_cookie => $full });
        return;
    }
    print "$pair\n";
    print STDERR "($full)\n" if -t STDERR;
}

sub cmd_events {
    my ($o) = @_;
    my $since = $o->{since} // 0;
    my $d = guard(sub { api('GET', "events?since=$since", undef, expect => 'events') });
    my $ev = ref $d eq 'HASH' ? $d->{events} : $d;
    $ev = [] unless ref $ev eq 'ARRAY';
    return print_json($d) if $o->{json};
    if (!@$ev) { print "no events since version $since\n"; return }
    for my $e (@$ev) {
        my $line = sprintf "%6s  %s  %s  %s", str($e->{version}), str($e->{time}),
            str($e->{actor}), str($e->{action});
        if (defined $e->{from} || defined $e->{to}) {
            $line .= ' ' . str($e->{from}) . ' -> ' . str($e->{to});
        }
        $line .= "  node=$e->{node}" if defined $e->{node} && $e->{node} ne '';
        $line .= "  reason=$e->{reason}" if defined $e->{reason} && $e->{reason} ne '';
        print "$line\n";
    }
}

1;
