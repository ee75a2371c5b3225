# NbMaint/Wait.pm: the waits: mode normal, a node idle, a node healthy, nodes idle.
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
our ($JSON, $PROG);    # $JSON: Base.pm, $PROG: Base.pm

# Poll until the mode is normal. $say prints progress: the nodes awaited,
# each with its reason, and the time waited so far (again every 10 s).
# Returns the status or dies (EX_TIMEOUT naming the nodes still awaited).
sub wait_normal {
    my ($timeout, $interval, $say) = @_;
    my $t0 = time;
    my $deadline = $t0 + $timeout;
    my ($last, $last_at) = ('', 0);
    my $neterr = 0;
    my @pend;
    my $s;
    while (1) {
        $s = eval { get_status() };
        if (!$s) {
            my $e = $@;
            die $e unless ref $e && $e->{code} eq 'unreachable';
            $say->("gateway not reachable, retrying: " . err_msg($e)) unless $neterr++;
        } else {
            $neterr = 0;
            return $s if defined $s->{mode} && $s->{mode} eq 'normal';
            @pend = map { { id => $_, reason => node_reason(status_node($s, $_)) } } pending_of($s);
            my $now = "mode " . str($s->{mode})
                    . (@pend ? ", waiting for " . join('; ', map { "node $_->{id}: $_->{reason}" } @pend) : '');
            if ($now ne $last || time - $last_at >= 10) {
                $say->($now . ', ' . dur_text(time - $t0));
                $last_at = time;
            }
            $last = $now;
            if (defined $s->{mode} && $s->{mode} ne 'restoring') {
                die nb_err(EX_CONFLICT, 'mode_changed',
                    "mode is " . str($s->{mode}) . " (someone changed it while waiting)");
            }
        }
        if (time >= $deadline) {
            my $who = @pend ? ': still waiting for ' . join('; ', map { "node $_->{id} ($_->{reason})" } @pend)
                            : '';
            die nb_err(EX_TIMEOUT, 'timeout',
                sprintf("timed out after %s waiting for mode normal%s. Bring %s up, or skip the health "
                    . "wait with `%s restore --force` (traffic then goes to the nodes as they are)",
                    dur_text($timeout), $who, (@pend == 1 ? 'it' : @pend ? 'them' : 'the nodes'), $PROG),
                pending => [map { $_->{id} } @pend], reasons => { map { $_->{id} => $_->{reason} } @pend });
        }
        sleep $interval;
    }
}

# Wait until node $id has no request in flight. Returns (1, node) or (0, node).
# Progress: "1 request in flight on ID, 5s" when the count changes, else
# every 10 s.
sub wait_idle {
    my ($id, $timeout, $interval, $say) = @_;
    my $t0 = time;
    my $deadline = $t0 + $timeout;
    my ($last, $last_at) = (-1, 0);
    my $n;
    while (1) {
        $n = get_node($id);
        my $a = $n->{active} // 0;
        if ($a == 0) {      # and HAProxy's, if it is in front
            my $why = hap_wait([$id], $t0, $deadline, $interval, $say || sub {});
            return defined $why ? (0, $n, $why) : (1, $n);
        }
        if ($say && ($a != $last || time - $last_at >= 10)) {
            $say->("$a request" . ($a == 1 ? '' : 's') . " in flight on $id, " . dur_text(time - $t0));
            $last_at = time;
        }
        $last = $a;
        return (0, $n) if time >= $deadline;
        sleep $interval;
    }
}

# Wait until nodes @$ids hold no proxied WebSocket ("websockets" 0): the
# gateway closes a drained node's, and in maintenance the other nodes', after
# nb_maint_ws_drain_grace; the tabs reconnect to a node that stays, so none
# hears the stopping node's APP_STOPPED (issue 18).  Until $deadline (epoch
# seconds).  Progress: "2 WebSockets open on ID (...), 3s" when the count
# changes, else every 10 s.  Returns undef when closed, else why not.
sub wait_ws_closed {
    my ($ids, $deadline, $interval, $say) = @_;
    my $t0 = time;
    my ($last, $last_at) = ('', 0);
    while (1) {
        my $s = get_status();
        my @open;
        for my $id (@$ids) {
            my $n = status_node($s, $id) or next;
            push @open, [$id, $n->{websockets}] if ($n->{websockets} // 0) > 0;
        }
        return undef unless @open;
        my $msg = join(', ', map { "$_->[1] WebSocket" . ($_->[1] == 1 ? '' : 's') . " open on $_->[0]" } @open);
        if ($say && ($msg ne $last || time - $last_at >= 10)) {
            $say->("$msg (the gateway closes them after nb_maint_ws_drain_grace), " . dur_text(time - $t0));
            $last_at = time;
        }
        $last = $msg;
        return "$msg" if time >= $deadline;
        sleep $interval;
    }
}

sub parse_time {
    my ($t) = @_;
    return undef unless defined $t;
    return $t / ($t > 1e11 ? 1000 : 1) if $t =~ /^\d+(?:\.\d+)?$/;
    return undef;
}

# Wait until the gateway reports node $id healthy from a check done after now:
# health "up" and a check newer than the one seen at the start whose
# result did not add a failure. Dies on timeout.
sub wait_healthy {
    my ($id, $timeout, $interval) = @_;
    my $t0 = time;
    my $deadline = $t0 + $timeout;
    my ($prev_check, $prev_fails, $last_msg, $shown, $shown_at);
    my $first = 1;
    my $neterr = 0;
    my $unknown_since;
    while (1) {
        my $n = eval { get_node($id) };
        if (!$n) {
            my $e = $@;
            die $e unless ref $e && $e->{code} eq 'unreachable';
            say_step("gateway not reachable, retrying: " . err_msg($e)) unless $neterr++;
        } else {
            $neterr = 0;
            my $h = $n->{health} // 'unknown';
            my $lc = $n->{last_check};
            my $f = $n->{fails} // 0;
            my $lc_s = defined $lc ? (ref $lc ? $JSON->encode($lc) : "$lc") : '';
            if (!$first && $h eq 'up') {
                my $new_check = $lc_s ne '' && $lc_s ne ($prev_check // '');
                return $n if $new_check && $f <= ($prev_fails // $f);
                return $n if $lc_s eq '' && !$f;     # no check times reported
            }
            if ($h eq 'unknown' && $lc_s eq '') {
                $unknown_since //= time;
                if (time - $unknown_since >= 15) {
                    say_step("no health check result for $id: health checks seem to be off; not verified");
                    return $n;
                }
            } else {
                $unknown_since = undef;
            }
            # "node A: APP_COMMANDING upgrade (20s), waited 1m20s" when it
            # changes, and again every 10 s
            my $msg = "node $id: health $h";
            my $long = $msg;
            if ($h eq 'commanding' && ref $n->{app} eq 'HASH') {
                $msg = "node $id: " . app_text({ %{ $n->{app} }, seconds => undef });
                $long = "node $id: " . app_text($n->{app});
            }
            if ($h ne 'up' && ($msg ne ($shown // '') || time - ($shown_at // 0) >= 10)) {
                say_step("$long, waited " . dur_text(time - $t0));
                $shown_at = time;
            }
            $shown = $msg;
            $last_msg = $msg . ($f ? ", $f failed checks" : '');
            if ($first || $lc_s ne ($prev_check // '')) {
                $prev_check = $lc_s;
                $prev_fails = $f;
            }
            $first = 0;
        }
        die nb_err(EX_TIMEOUT, 'timeout', sprintf("timed out after %s waiting for %s to be healthy%s",
            dur_text($timeout), $id, defined $last_msg ? " (last seen: $last_msg)" : ''), node => $id)
            if time >= $deadline;
        sleep $interval;
    }
}

sub wait_nodes_idle {
    my ($ids, $timeout, $interval) = @_;
    my $t0 = time;
    my $deadline = $t0 + $timeout;
    my ($last, $last_at) = ('', 0);
    while (1) {
        my $s = get_status();
        my @busy;
        for my $id (@$ids) {
            my $n = status_node($s, $id) or next;
            push @busy, "$id: $n->{active}" if ($n->{active} // 0) > 0;
        }
        if (!@busy) {       # and HAProxy's, if it is in front
            my $why = hap_wait($ids, $t0, $deadline, $interval, \&say_step);
            return defined $why ? "timed out after ${timeout}s: $why; going on" : undef;
        }
        my $msg = "in flight: " . join(', ', @busy);
        if ($msg ne $last || time - $last_at >= 10) {
            say_step("$msg, " . dur_text(time - $t0));
            $last_at = time;
        }
        $last = $msg;
        return "timed out after ${timeout}s with requests still in flight; going on" if time >= $deadline;
        sleep $interval;
    }
}

1;
