#!/usr/bin/env bash
# The demo: set up this machine (scripts/setup.sh), build plexgate, and run
# `plexgate demo` in network namespaces: a strongSwan client negotiates IKEv2 with
# a plexgate gateway, whose DVIPA spreads new HTTP connections over three targets
# over GRE; recovery records go to the embedded store. Everything it creates is
# removed at the end. Needs root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null
if [ "${PLEXGATE_SKIP_SETUP:-0}" != 1 ]; then
  scripts/setup.sh
fi
cargo build --bin plexgate
exec target/debug/plexgate demo "$@"
