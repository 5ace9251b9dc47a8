#!/usr/bin/env bash
# Installs what building and testing setpoint needs on a fresh Debian machine with rustup.
# Idempotent: safe to run before every build.
set -euo pipefail

# Plugins are WASM components built from source by the build itself.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target" >&2
  rustup target add wasm32-unknown-unknown
fi
