#!/usr/bin/env bash
# The quickstart: one cycle over the embedded simulated fleet (no servers), in dry-run.
# Extra arguments go to setpoint, e.g. `scripts/quickstart.sh explain pg-reporting-01`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p setpoint
if [ "$#" -eq 0 ]; then
  set -- run --once
fi
exec target/release/setpoint "$@"
