# NbMaint/Members.pm: the guided runs over nodes from a DNS name
# (nb_maint_resolve, a Kubernetes headless Service).  A pod that is stopped
# and started again, or replaced (kubectl scale, rollout restart, delete
# pod), comes back under a new address: its old id turns "leaving" and goes,
# a new id joins.  So a wait for "node X healthy again" is also met by the
# pods that replaced it, and a replaced node is neither undrained nor
# restarted again.
# Part of nb-maint (scripts/nb-maint): one package, NbMaint, over the files of
# scripts/lib/NbMaint, loaded in order by NbMaint.pm.
package NbMaint;
use strict;
use warnings;
use Time::HiRes qw(time sleep);

# the upstream (its status entry) of node $id when it follows a DNS name
sub dns_upstream_of {
    my ($s, $id) = @_;
    for my $u (@{ $s->{upstreams} || [] }) {
        next unless ref $u->{resolve} eq 'HASH';
        return $u if grep { ($_->{id} // '') eq $id } @{ $u->{nodes} || [] };
    }
    return undef;
}

# node $id is a member still: in status and not leaving
sub is_member {
    my ($s, $id) = @_;
    my $n = status_node($s, $id);
    return $n && !$n->{leaving} ? 1 : 0;
}

# Wait until node $id, after its command, is healthy again (it was seen down
# or gone, then up), or until it has left upstream $uname's name and the
# members other than the ids in @$old are at least $want, each up and not
# drained: the pods that replaced it.  Returns ('node', $id) or
# ('replaced', the members).  Dies on timeout.
sub wait_healthy_or_replaced {
    my ($id, $uname, $want, $old, $timeout, $interval) = @_;
    my %old = map { $_ => 1 } @$old, $id;
    my $t0 = time;
    my ($went, $last, $last_at, $neterr) = (0, '', 0, 0);
    while (1) {
        my $s = eval { get_status() };
        if (!$s) {
            my $e = $@;
            die $e unless ref $e && $e->{code} eq 'unreachable';
            say_step("gateway not reachable, retrying: " . err_msg($e)) unless $neterr++;
        } else {
            $neterr = 0;
            my ($u) = grep { ($_->{name} // '') eq $uname } @{ $s->{upstreams} || [] };
            my @nodes = @{ ($u || {})->{nodes} || [] };
            my ($n) = grep { ($_->{id} // '') eq $id } @nodes;
            my $up = $n && !$n->{leaving} && ($n->{health} // '') eq 'up';
            $went ||= !$up;
            return ('node', $id) if $went && $up;
            # replaced: $id left the name's answer, and the members (but
            # those stopped before) are $want or more, every one up and
            # undrained: a rollout still replacing pods is not done yet
            my @m = grep { !$old{ $_->{id} } && !$_->{leaving} } @nodes;
            my @ok = map { $_->{id} } grep { !$_->{drain} && ($_->{health} // '') eq 'up' } @m;
            my $member = $n && !$n->{leaving};
            return ('replaced', @ok) if !$member && @ok >= $want && @ok == @m;
            my $msg = "$uname: " . scalar(@ok) . " of $want other member" . ($want == 1 ? '' : 's') . " up"
                    . (@m > @ok ? ", " . (@m - @ok) . " not yet" : '') . "; $id "
                    . (!$n ? 'gone' : $n->{leaving} ? 'leaving' : ($n->{health} // 'unknown'));
            if ($msg ne $last || time - $last_at >= 10) {
                say_step("$msg, waited " . dur_text(time - $t0));
                $last_at = time;
            }
            $last = $msg;
        }
        die nb_err(EX_TIMEOUT, 'timeout', sprintf("timed out after %s waiting for %s or %d member%s of %s "
            . "replacing it to be healthy", dur_text($timeout), $id, $want, $want == 1 ? '' : 's', $uname), node => $id)
            if time - $t0 >= $timeout;
        sleep $interval;
    }
}

# The "wait until ID is healthy" step of a guided run: wait_healthy for a
# fixed node ($uname undef); for a member of upstream $uname, which follows
# a DNS name, wait_healthy_or_replaced with $want (a code ref: how many
# members should be up then) and the ids @$old that do not count (stopped
# before).  $on (optional) gets ('node', id) or ('replaced', ids).  Returns
# the step's note.
sub wait_healthy_step {
    my ($id, $uname, $want, $old, $timeout, $interval, $on) = @_;
    if (!defined $uname) {
        wait_healthy($id, $timeout, $interval);
        $on->('node', $id) if $on;
        return;
    }
    my ($how, @ids) = wait_healthy_or_replaced($id, $uname, $want->(), $old, $timeout, $interval);
    $on->($how, @ids) if $on;
    return $how eq 'node' ? undef : "replaced by " . join(', ', @ids);
}

1;
