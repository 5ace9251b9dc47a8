#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --stack
bash scripts/mlflow-venv.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every test of every binary in one pool of processes (cargo-nextest, which machines of this
# kind carry): a long integration test no longer leaves a core idle while the other binaries
# wait their turn, as under `cargo test`. nextest does not run doc tests; they run apart.
# Without cargo-nextest, plain `cargo test` runs the same tests.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked
fi
# Fuzzing smoke: every fuzz target briefly from its seeds, failing on a crash or a broken
# property (scripts/fuzz.sh; docs/reliability.md "Fuzzing"). Longer runs are for developers.
bash scripts/fuzz.sh 20
