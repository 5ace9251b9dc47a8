#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --stack
bash scripts/mlflow-venv.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# Fuzzing smoke: every fuzz target briefly from its seeds, failing on a crash or a broken
# property (scripts/fuzz.sh; docs/reliability.md "Fuzzing"). Longer runs are for developers.
bash scripts/fuzz.sh 20
