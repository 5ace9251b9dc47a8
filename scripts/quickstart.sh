#!/usr/bin/env bash
# The quickstart: one cycle over the embedded simulated fleet (no servers), in dry-run.
# Extra arguments go to setpoint, e.g. `scripts/quickstart.sh explain pg-reporting-01`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p setpoint
# The out-of-tree MongoDB plugin (examples/custom-plugin), built against the SDK alone: dropped
# in plugins.d, the quickstart runs it next to the bundled technologies.
if [ ! -f plugins.d/mongodb.wasm ] || [ -n "$(find examples/custom-plugin/src examples/custom-plugin/Cargo.toml sdk/src sdk/wit -newer plugins.d/mongodb.wasm 2>/dev/null | head -1)" ]; then
  target/release/setpoint plugin build examples/custom-plugin --out plugins.d/mongodb.wasm
fi
if [ "$#" -eq 0 ]; then
  set -- run --once
fi
exec target/release/setpoint "$@"
