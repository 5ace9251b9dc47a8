#!/usr/bin/env bash
# The soak: CYCLES enforce-mode cycles of the setpoint binary against a fake Kubernetes API
# server and a fake Prometheus on 127.0.0.1, with random faults from the reliability matrix,
# checking the journal chain, that no action ran twice or was lost, and that memory and the
# store stay bounded. docs/reliability.md ("Soak") says what is checked and the figures.
#   scripts/soak.sh [CYCLES]        default: 1000
# SOAK_SEED=N replays a soak (the seed is printed first); SOAK_RELEASE=1 builds and tests a
# release binary (default: the debug build, which the suite uses too); SOAK_VERBOSE=1 prints a
# line per cycle; SOAK_CHECK_EVERY=N runs the full checks every N cycles (default 50).
# Exits non-zero, naming the seed, when an invariant breaks.
set -euo pipefail
cd "$(dirname "$0")/.."

export SOAK_CYCLES=${1:-1000}
if [ "${SOAK_RELEASE:-0}" = 1 ]; then
  cargo build --release -p setpoint
  export SETPOINT=${SETPOINT:-$(pwd)/target/release/setpoint}
else
  cargo build -p setpoint
  export SETPOINT=${SETPOINT:-$(pwd)/target/debug/setpoint}
fi
# The harness itself is light: built in the test profile, it shares the suite's build.
cargo test -p setpoint-tests --bench soak
