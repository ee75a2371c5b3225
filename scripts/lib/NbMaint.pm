# NbMaint.pm: nb-maint, the operator CLI for the nb_maint admin API (SPEC §10),
# as modules by concern. They share one package, NbMaint (as the module's C
# files share one namespace), and are loaded here in dependency order: the
# core first, the command table (Cli.pm) last, once every command exists.
# Core Perl only (HTTP::Tiny, JSON::PP).
#
#   Base.pm      exit codes, errors, colours, did-you-mean
#   Usage.pm     --help texts
#   Api.pm       the admin API client
#   Contexts.pm  contexts and groups (the configuration file), tokens
#   Output.pm    tables and the status view
#   Wait.pm      waits: mode normal, node idle, node healthy
#   Members.pm   nodes from a DNS name: a node healthy again or replaced
#   HAProxy.pm   the HAProxy errorfile pair and stats-socket waits
#   Steps.pm     the guided runs' machinery (steps, Ctrl-C, resume hints)
#   Commands.pm  the one-call commands
#   Self.pm      drain --self: a pod's preStop drains its own node
#   Guided.pm    rolling-restart, startup, upgrade-run, maintenance-run
#   Cli.pm       options, the command table, main()
package NbMaint;
use strict;
use warnings;

use NbMaint::Base;
use NbMaint::Usage;
use NbMaint::Api;
use NbMaint::Contexts;
use NbMaint::Output;
use NbMaint::Wait;
use NbMaint::Members;
use NbMaint::HAProxy;
use NbMaint::Steps;
use NbMaint::Commands;
use NbMaint::Self;
use NbMaint::Guided;
use NbMaint::Cli;

1;
