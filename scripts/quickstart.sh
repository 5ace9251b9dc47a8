#!/usr/bin/env bash
# The quickstart: one cycle of the weekly loops over the embedded simulated fleet and one tick
# of the fast loop over the simulated services (no servers), in dry-run, then a simulated day of
# the fast loop in closed loop.
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
if [ "$#" -gt 0 ]; then
  exec target/release/setpoint "$@"
fi
# The weekly right-sizing loops over the simulated fleet; then the predictive fast loop: one
# tick over the simulated service fleet (dry-run), and a simulated day of it in closed loop
# against the reactive HPA-style baseline on the same traffic.
status=0
target/release/setpoint run --once || status=$?
echo
target/release/setpoint run --once --config examples/fast/setpoint.yaml \
  --now 2026-11-24T11:00:00Z --no-notify || status=$?
echo
target/release/setpoint sim fast-loop --hours 15 || status=$?
exit "$status"
