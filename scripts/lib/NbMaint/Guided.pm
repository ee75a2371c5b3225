# NbMaint/Guided.pm: the guided runs: rolling-restart, startup, upgrade-run, maintenance-run.
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

sub cmd_rolling_restart {
    my ($o) = @_;
    require_opts('rolling-restart', $o, 'restart-cmd');
    my $dt = $o->{timeout} // 60;
    my $ht = $o->{'health-timeout'} // 600;
    my $iv = $o->{interval} // 0.5;
    my $s = guard(\&get_status);
    my @ids = nodes_or_fail($s);
    if (defined $o->{nodes}) {
        my @want = grep { length } split /\s*,\s*/, $o->{nodes};
        for my $w (@want) {
            fail("node $w is not in the gateway's upstreams (" . join(', ', @ids) . ")")
                unless grep { $_ eq $w } @ids;
        }
        @ids = @want;
    }
    if (!$o->{force} && ($s->{mode} // '') ne 'normal') {
        fail("the gateway is in mode " . str($s->{mode}) . "; rolling-restart needs mode normal (--force to go on anyway)");
    }
    my @all = status_nodes($s);
    # nodes from a DNS name: a restarted pod may come back as a new member
    # (then it is not undrained), a node already replaced is skipped
    my (%skip, %replaced);
    my %pool = map { my $u = $_; ($u->{name} => scalar grep { !$_->{leaving} } @{ $u->{nodes} || [] }) }
               grep { ref $_->{resolve} eq 'HASH' } @{ $s->{upstreams} || [] };
    my @steps;
    my %until;      # the drain timeout covers requests and WebSockets
    for my $id (@ids) {
        my $u = dns_upstream_of($s, $id);
        my $skipped = sub { $skip{$id} ? "skipped: $id left (replaced)" : undef };
        push @steps, {
            desc => "drain $id",
            manual => cli_prefix() . " drain $id --wait",
            run => sub {
                if ($u && !is_member(get_status(), $id)) {
                    $skip{$id} = 1;
                    return $skipped->();
                }
                if (!$o->{force}) {
                    my $cur = get_status();
                    my @others = grep { $_ ne $id } @all;
                    my @up = grep { my $n = status_node($cur, $_);
                                    $n && ($n->{health} // '') ne 'down' && !$n->{drain} } @others;
                    die "no other node is up and undrained: restarting $id would leave no node "
                      . "to serve (--force to go on anyway)\n" unless @up;
                }
                post_drain($id, 'drain');
                return;
            },
        }, {
            desc => "wait until $id has no request in flight",
            run => sub {
                return $skipped->() if $skip{$id};
                $until{$id} = time + $dt;
                my ($ok, $n, $why) = wait_idle($id, $dt, $iv, \&say_step);
                return $ok ? undef : "timed out after ${dt}s with " . ($why // str($n->{active}) . " still in flight")
                                   . "; going on";
            },
        }, {
            desc => "wait until $id has no WebSocket open (open tabs move to the other nodes)",
            run => sub {
                return $skipped->() if $skip{$id};
                my $why = wait_ws_closed([$id], $until{$id} // time + $dt, $iv, \&say_step);
                return defined $why ? "timed out after ${dt}s with $why; going on" : undef;
            },
        }, {
            desc => "restart $id: " . subst_cmd($o->{'restart-cmd'}, $id, $u ? $pool{ $u->{name} } : undef),
            manual => "restart $id: " . subst_cmd($o->{'restart-cmd'}, $id),
            run => sub {
                return $skipped->() if $skip{$id};
                run_cmd($o->{'restart-cmd'}, $id, $u ? $pool{ $u->{name} } : undef);
                return;
            },
        }, {
            desc => "wait until $id is healthy" . ($u ? " (or the pod that replaced it)" : ''),
            manual => "wait until `" . cli_prefix() . " node $id` shows health up",
            run => sub {
                return $skipped->() if $skip{$id};
                return wait_healthy_step($id, $u && $u->{name}, sub { $pool{ $u->{name} } }, [], $ht, $iv,
                                         sub { $replaced{$id} = $_[0] eq 'replaced' });
            },
        }, {
            desc => "undrain $id",
            manual => cli_prefix() . " undrain $id",
            run => sub {
                return $skipped->() if $skip{$id};
                return "not undrained: $id was replaced (it goes with its address)" if $replaced{$id};
                my $t = time;
                post_drain($id, 'undrain');
                # HAProxy takes it back at its next checks: before the next drain
                my $why = hap_wait([$id], $t, $t + $ht, $iv, \&say_step, 1);
                return defined $why ? "HAProxy still does not use it after ${ht}s: $why" : undef;
            },
        };
    }
    run_steps("rolling restart of " . scalar(@ids) . " node" . (@ids == 1 ? '' : 's') . ": " . join(', ', @ids),
        \@steps, sub {
            my ($i) = @_;
            my $node = $ids[int($i / 6)];
            my $k = $i % 6;
            my $txt = '';
            if ($k == 0) {
                $txt .= "$node was not drained" . ($i ? "; the nodes before it are restarted and undrained" : '') . ".\n";
            } else {
                $txt .= "$node is still drained: it gets no new requests until `" . cli_prefix() . " undrain $node`.\n";
            }
            my @rest = @ids[int($i / 6) + 1 .. $#ids];
            $txt .= "Nodes not restarted yet: " . join(', ', @rest) . "\n"
                 .  "Afterwards: " . cli_prefix() . " rolling-restart --restart-cmd " . shq($o->{'restart-cmd'})
                 .  " --nodes " . join(',', @rest) . "\n" if @rest;
            return $txt;
        });
    run_done("rolling restart done");
}

sub cmd_startup {
    my ($o) = @_;
    require_opts('startup', $o, 'start-cmd');
    my $t = $o->{timeout} // 900;
    my $iv = $o->{interval} // 0.5;
    my $s = guard(\&get_status);
    my @ids = pick_first($o, nodes_or_fail($s));
    my @steps;
    for my $k (0 .. $#ids) {
        my $id = $ids[$k];
        push @steps, {
            desc => ($k == 0 ? "start the first node $id (installs and enables plugins): "
                             : "start $id: ") . subst_cmd($o->{'start-cmd'}, $id),
            manual => "start $id: " . subst_cmd($o->{'start-cmd'}, $id),
            run => sub { run_cmd($o->{'start-cmd'}, $id, $k + 1); return },
        }, {
            desc => "wait until $id is healthy",
            manual => "wait until `" . cli_prefix() . " node $id` shows health up",
            run => sub { wait_healthy($id, $t, $iv); return },
        };
    }
    run_steps("startup of " . scalar(@ids) . " node" . (@ids == 1 ? '' : 's') . ", first $ids[0]", \@steps, sub {
        my ($i) = @_;
        my $k = int($i / 2);
        return "Nodes started so far keep running"
             . ($k ? " (" . join(', ', @ids[0 .. $k - 1]) . ")" : '')
             . "; the gateway only sends traffic to healthy nodes.\n"
             . "To roll back, stop them with your stop command.\n";
    });
    run_done("startup done: all nodes are healthy");
}

sub cmd_upgrade_run {
    my ($o) = @_;
    require_opts('upgrade-run', $o, 'stop-cmd', 'start-cmd');
    usage_error('upgrade-run', '--verify-cmd and --confirm exclude each other')
        if defined $o->{'verify-cmd'} && $o->{confirm};
    my $t = $o->{timeout} // 1800;
    my $dt = $o->{'drain-timeout'} // 30;
    my $iv = $o->{interval} // 0.5;
    my $s = guard(\&get_status);
    my @ids = pick_first($o, nodes_or_fail($s));
    my ($first, @others) = @ids;
    my $P = cli_prefix();
    # nodes from a DNS name: every pod stopped comes back under a new address,
    # so no node is designated (bypass requests go to the first one up)
    my $dns = dns_upstream_of($s, $first);
    my $up_first = $first;      # the first node up again (a new id from DNS)
    my @steps;
    my $mode_step;
    my $mode_args = "--node $first" . (defined $o->{reason} ? " --reason " . shq($o->{reason}) : '')
                  . (defined $o->{'retry-after'} ? " --retry-after $o->{'retry-after'}" : '');
    $mode_args =~ s/^--node \S+ ?// if $dns;
    push @steps, {
        desc => "enter upgrade mode (public requests get the 503 page; bypass goes to "
              . ($dns ? "the first node up" : $first) . ")",
        manual => "$P upgrade $mode_args",
        run => sub { post_mode(mode_body('upgrade', { %$o, node => ($dns ? undef : $first) })); return },
    }, hap_regen_steps('upgrade mode'), {
        desc => "wait for requests in flight to finish",
        run => sub { wait_nodes_idle(\@ids, $dt, $iv) },
    };
    for my $k (0 .. $#ids) {
        my ($id, $n) = ($ids[$k], $#ids - $k);
        push @steps, {
            desc => "stop $id: " . subst_cmd($o->{'stop-cmd'}, $id, $n),
            manual => "stop $id: " . subst_cmd($o->{'stop-cmd'}, $id, $n),
            run => sub { run_cmd($o->{'stop-cmd'}, $id, $n); return },
        };
    }
    my $backup_step;
    if (defined $o->{'backup-cmd'}) {
        $backup_step = @steps;
        push @steps, {
            desc => "back up: " . subst_cmd($o->{'backup-cmd'}, $first),
            manual => "back up: " . subst_cmd($o->{'backup-cmd'}, $first),
            run => sub { run_cmd($o->{'backup-cmd'}, $first); return },
        };
    }
    my $update_step;
    if (defined $o->{'update-cmd'}) {
        $update_step = @steps;
        my @targets = $o->{'update-cmd'} =~ /\{(?:node|host|port)\}/ ? @ids : ($first);
        for my $id (@targets) {
            my $c = subst_cmd($o->{'update-cmd'}, $id);
            push @steps, {
                desc => (@targets > 1 ? "update $id: " : "update: ") . $c,
                manual => (@targets > 1 ? "update $id: " : "update: ") . $c,
                run => sub { run_cmd($o->{'update-cmd'}, $id); return },
            };
        }
    }
    my $start_first = @steps;
    push @steps, {
        desc => "start $first (runs the upgrade): " . subst_cmd($o->{'start-cmd'}, $first, 1),
        manual => "start $first: " . subst_cmd($o->{'start-cmd'}, $first, 1),
        run => sub { run_cmd($o->{'start-cmd'}, $first, 1); return },
    }, {
        desc => "wait until $first is healthy" . ($dns ? " (or the pod that replaced it)" : ''),
        manual => "wait until `$P node $first` shows health up",
        run => sub {
            return wait_healthy_step($first, $dns && $dns->{name}, sub { 1 }, \@ids, $t, $iv,
                                     sub { $up_first = $_[1] });
        },
    };
    if (defined $o->{'verify-cmd'}) {
        push @steps, {
            desc => "verify $first: " . subst_cmd($o->{'verify-cmd'}, $first),
            manual => "verify $first: " . subst_cmd($o->{'verify-cmd'}, $first),
            run => sub { run_cmd($o->{'verify-cmd'}, $up_first); return },
        };
    } elsif ($o->{confirm}) {
        push @steps, {
            desc => "verify $first (operator)",
            manual => "verify $first through a bypass cookie (`$P bypass`)",
            run => sub {
                my ($pair) = get_bypass_cookie(undef);
                confirm_line("Check the upgraded node through the gateway with this cookie:\n"
                    . "  $pair\n"
                    . "(browser: set it for the site; curl: -b '$pair').\n"
                    . "Type yes when it works, anything else to stop here:", 'yes');
                return;
            },
        };
    }
    for my $k (0 .. $#others) {
        my ($id, $n) = ($others[$k], $k + 2);
        push @steps, {
            desc => "start $id: " . subst_cmd($o->{'start-cmd'}, $id, $n),
            manual => "start $id: " . subst_cmd($o->{'start-cmd'}, $id, $n),
            run => sub { run_cmd($o->{'start-cmd'}, $id, $n); return },
        };
    }
    push @steps, {
        desc => "restore (traffic returns once every node is healthy)",
        manual => "$P restore --wait",
        run => sub { post_restore(0); return },
    }, {
        desc => "wait until every node is healthy and the mode is normal",
        run => sub { wait_normal($t, $iv, \&say_step); return },
    }, hap_regen_steps('mode normal');
    run_steps("upgrade of " . scalar(@ids) . " node" . (@ids == 1 ? '' : 's') . ", first $first", \@steps, sub {
        my ($i) = @_;
        return "Nothing was changed.\n" if $i == 0;
        my $txt = "The gateway stays in upgrade mode: public requests get the 503 page,\n"
                . "bypass requests (`$P bypass`) go to $first.\n";
        if ($i >= $start_first) {
            $txt .= "$first may have begun upgrading the database. To roll back: stop every node,\n"
                  . "restore the backup" . (defined $backup_step ? " taken in step " . ($backup_step + 1) : '')
                  . ", put the previous version back, start every node\n"
                  . "and run `$P restore --wait`.\n";
        } else {
            $txt .= "To roll back: put the previous version back if the update ran, start every\n"
                  . "stopped node and run `$P restore --wait`.\n";
        }
        return $txt;
    });
    run_done("upgrade done: every node is healthy, mode normal");
}

sub cmd_maintenance_run {
    my ($o) = @_;
    require_opts('maintenance-run', $o, 'node', 'stop-cmd', 'start-cmd');
    my $t = $o->{timeout} // 1800;
    my $dt = $o->{'drain-timeout'} // 30;
    my $iv = $o->{interval} // 0.5;
    my $s = guard(\&get_status);
    my ($node, @others) = pick_first($o, nodes_or_fail($s));
    my $P = cli_prefix();
    my $mode_args = "--node $node" . (defined $o->{reason} ? " --reason " . shq($o->{reason}) : '')
                  . (defined $o->{'retry-after'} ? " --retry-after $o->{'retry-after'}" : '')
                  . ($o->{force} ? ' --force' : '');
    my @steps;
    push @steps, {
        desc => "enter maintenance mode (all traffic goes to $node)",
        manual => "$P maintenance $mode_args",
        run => sub { post_mode(mode_body('maintenance', $o)); return },
    }, hap_regen_steps('maintenance mode');
    if (@others) {
        my $until;      # the drain timeout covers requests and WebSockets
        push @steps, {
            desc => "wait for requests in flight on the other nodes to finish",
            run => sub { $until = time + $dt; wait_nodes_idle(\@others, $dt, $iv) },
        }, {
            desc => "wait until the other nodes have no WebSocket open (open tabs move to $node)",
            run => sub {
                my $why = wait_ws_closed(\@others, $until // time + $dt, $iv, \&say_step);
                return defined $why ? "timed out after ${dt}s with $why; going on" : undef;
            },
        };
    }
    for my $k (0 .. $#others) {
        my ($id, $n) = ($others[$k], $#others - $k + 1);
        push @steps, {
            desc => "stop $id: " . subst_cmd($o->{'stop-cmd'}, $id, $n),
            manual => "stop $id: " . subst_cmd($o->{'stop-cmd'}, $id, $n),
            run => sub { run_cmd($o->{'stop-cmd'}, $id, $n); return },
        };
    }
    my $task = @steps;
    if (defined $o->{'task-cmd'}) {
        push @steps, {
            desc => "maintenance on $node: " . subst_cmd($o->{'task-cmd'}, $node),
            manual => "maintenance on $node: " . subst_cmd($o->{'task-cmd'}, $node),
            run => sub { run_cmd($o->{'task-cmd'}, $node); return },
        };
    } else {
        push @steps, {
            desc => "maintenance on $node (waiting for the operator)",
            manual => "do the maintenance on $node",
            run => sub {
                confirm_line("Do the maintenance now (plugins, backup/restore, migration):\n"
                    . "every request goes to $node.\n"
                    . "Press Enter when done (type abort to stop here):", 'enter');
                return;
            },
        };
    }
    for my $k (0 .. $#others) {
        my ($id, $n) = ($others[$k], $k + 2);
        push @steps, {
            desc => "start $id: " . subst_cmd($o->{'start-cmd'}, $id, $n),
            manual => "start $id: " . subst_cmd($o->{'start-cmd'}, $id, $n),
            run => sub { run_cmd($o->{'start-cmd'}, $id, $n); return },
        };
    }
    push @steps, {
        desc => "restore (the pool returns once every node is healthy)",
        manual => "$P restore --wait",
        run => sub { post_restore(0); return },
    }, {
        desc => "wait until every node is healthy and the mode is normal",
        run => sub { wait_normal($t, $iv, \&say_step); return },
    }, hap_regen_steps('mode normal');
    run_steps("maintenance on $node" . (@others ? ", stopping " . join(', ', @others) : ''), \@steps, sub {
        my ($i) = @_;
        return "Nothing was changed.\n" if $i == 0;
        return "The gateway stays in maintenance mode: every request goes to $node.\n"
             . "To roll back: start the stopped nodes with your start command and run `$P restore --wait`.\n";
    });
    run_done("maintenance done: every node is healthy, mode normal");
}

1;
