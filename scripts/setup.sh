#!/usr/bin/env bash
# Installs what building and testing setpoint needs on a fresh Debian machine with rustup.
# Idempotent: safe to run before every build.
#   scripts/setup.sh          the toolchain pieces (quickstart)
#   scripts/setup.sh --stack  also the Debian packages of the real-stack tests
set -euo pipefail

# Plugins are WASM components built from source by the build itself.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target" >&2
  rustup target add wasm32-unknown-unknown
fi

if [ "${1:-}" = "--stack" ]; then
  # Prometheus, VictoriaMetrics, PostgreSQL, Redis and their exporters, for the end-to-end tests.
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: checking the real-stack packages" >&2
  $sudo bash "$(dirname "$0")/../examples/stack/stack.sh" install
  # The TLS test makes a throwaway CA with openssl and serves HTTPS with python3.
  missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v python3 >/dev/null || missing+=(python3)
  # The Patroni actuator test (engine/act/tests/patroni.rs) runs etcd + Patroni + PostgreSQL.
  for p in patroni etcd-server; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  # The MLflow end-to-end test makes a venv (scripts/mlflow-venv.sh); Debian ships venv apart.
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  # The review page's browser test (tests/it/serve.rs) drives headless Chromium via chromedriver.
  for p in chromium chromium-driver; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
