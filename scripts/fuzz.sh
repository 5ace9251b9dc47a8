#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the parsers and decoders at setpoint's
# boundaries: the config file, Prometheus answers, plugin outputs, the policy's output and the
# review server's HTTP handlers. docs/reliability.md ("Fuzzing") says what each target asserts.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default: 60 s each, every target
# Builds every target once, then runs each in turn from its seed corpus (fuzz/corpus/<target>,
# never written to); what the fuzzer finds on the way grows fuzz/target/corpus/<target>, which
# is not committed. Stops at the first crash, naming the input under fuzz/artifacts/<target>/,
# and exits non-zero. Ends with each target's executions and executions per second.
# FUZZ_SANITIZER=address builds with AddressSanitizer, which needs a nightly toolchain
# (installed here when missing); the default, none, builds with the stable one.
# Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config prometheus plugin_output policy_output serve_http)
fi
for target in "${targets[@]}"; do
  if [ ! -d "fuzz/corpus/$target" ]; then
    echo "fuzz: no target $target (no seeds in fuzz/corpus/$target)" >&2
    exit 2
  fi
done

sanitizer=${FUZZ_SANITIZER:-none}
toolchain=()
if [ "$sanitizer" != none ]; then
  # Sanitizers are a -Z flag; the plugins the engine embeds are built by the same toolchain,
  # for wasm, into a directory of its own so they do not thrash the stable build's.
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
  fi
  if ! rustup target list --toolchain nightly --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add --toolchain nightly wasm32-unknown-unknown
  fi
  toolchain=(+nightly)
  export SETPOINT_PLUGIN_TARGET_DIR="$root/fuzz/target/plugins-nightly"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz --version 0.13.2
fi

# One build for every target. `--dev` (opt-level 1, see fuzz/Cargo.toml) keeps the debug
# assertions and overflow checks on and builds the instrumented engine several times faster
# than cargo-fuzz's release build with one codegen unit.
build=(--dev --sanitizer "$sanitizer")
cargo "${toolchain[@]}" fuzz build "${build[@]}"

logs="$root/fuzz/target/logs"
mkdir -p "$logs"
# The serve_http target keeps its state directory for the whole run; here it is cleaned.
export TMPDIR="$root/fuzz/target/tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
summary=()
for target in "${targets[@]}"; do
  seeds="$root/fuzz/corpus/$target"
  grown="$root/fuzz/target/corpus/$target"
  mkdir -p "$grown"
  echo "fuzz: $target for ${seconds}s" >&2
  status=0
  # The first corpus directory is where libFuzzer writes what it finds: the grown one.
  cargo "${toolchain[@]}" fuzz run "${build[@]}" "$target" "$grown" "$seeds" -- \
    -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    2>&1 | tee "$logs/$target.log" >&2 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -1)
  summary+=("$(printf '%-14s %12s execs %8s exec/s' "$target" "${runs:-?}" "${rate:-?}")")
  if [ "$status" -ne 0 ]; then
    crash=$(ls -t "$root/fuzz/artifacts/$target"/* 2>/dev/null | head -1 || true)
    echo "fuzz: $target FAILED (exit $status); input: ${crash:-see $logs/$target.log}" >&2
    echo "fuzz: reproduce with: cargo fuzz run ${build[*]} $target ${crash:-<input>}" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a crash" >&2
printf '%s\n' "${summary[@]}"
