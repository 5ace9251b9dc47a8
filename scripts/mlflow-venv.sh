#!/usr/bin/env bash
# Prepares the Python venv with a real MLflow tracking server for setpoint-mlflow's end-to-end
# test. Idempotent: an existing venv with the pinned version is reused as it is.
#   scripts/mlflow-venv.sh [DIR]    DIR defaults to target/mlflow-venv
# Prints the path of the venv's `mlflow` executable on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pin the end-to-end test was written against; the REST API it uses is stable across 3.x.
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"
dir="${1:-target/mlflow-venv}"
mlflow="$dir/bin/mlflow"
# Written last, so a half-finished install is never taken for a finished one.
marker="$dir/.mlflow-version"

if [ -x "$mlflow" ] && [ "$(cat "$marker" 2>/dev/null)" = "$MLFLOW_VERSION" ]; then
  echo "$mlflow"
  exit 0
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  # Debian splits venv/ensurepip out of python3 itself.
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "mlflow-venv: installing python3-venv" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

echo "mlflow-venv: creating $dir with mlflow==$MLFLOW_VERSION" >&2
rm -rf "$dir"
"$python" -m venv "$dir"
# The full `mlflow` package, not `mlflow-skinny`: only it ships the tracking server.
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION" >&2
echo "$MLFLOW_VERSION" > "$marker"
echo "$mlflow"
