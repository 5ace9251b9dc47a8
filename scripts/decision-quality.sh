#!/usr/bin/env bash
# Decision quality, end to end, on telemetry setpoint has never seen.
#
# tests/fleetgen/fleetgen.py generates an independent PostgreSQL fleet (node_exporter and
# postgres_exporter series) with its ground truth; this script loads it into a real
# VictoriaMetrics (and, with --prometheus, a real Prometheus backfilled by promtool) on
# 127.0.0.1 and free ports, runs one setpoint cycle against each at the fleet's end time, and
# scores the report with tests/fleetgen/score.py. Every process it starts is stopped by PID on
# exit, failure or interrupt.
#
#   scripts/decision-quality.sh [--targets N] [--weeks N] [--seed N] [--end RFC3339]
#                               [--classifier bootstrap|model|source|…,…] [--prometheus]
#                               [--no-victoria] [--io-time-share X] [--cpu-modes idle,user,system]
#                               [--workdir DIR] [--keep]
#
# Classifiers: bootstrap (the heuristics), model (trained on the embedded simulator), source (a
# model trained from the TSDB's own history first: `setpoint train --from-source --promote`).
#
# Defaults: 200 targets, 13 weeks, seed 1, the last Monday 06:00 UTC, bootstrap, VictoriaMetrics
# only; a temporary work directory, removed at the end unless --keep (or --workdir) is given.
#
# SETPOINT: the setpoint binary (default target/debug/setpoint).
# Needs python3, curl, /usr/bin/victoria-metrics (and /usr/bin/prometheus, /usr/bin/promtool
# for --prometheus): `apt-get install victoria-metrics prometheus`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GEN="$ROOT/tests/fleetgen/fleetgen.py"
SCORE="$ROOT/tests/fleetgen/score.py"
SETPOINT=${SETPOINT:-target/debug/setpoint}
VM_BIN=${VM_BIN:-/usr/bin/victoria-metrics}
PROM_BIN=${PROM_BIN:-/usr/bin/prometheus}
PROMTOOL_BIN=${PROMTOOL_BIN:-/usr/bin/promtool}

TARGETS=200 WEEKS=13 SEED=1 END="" CLASSIFIER=bootstrap PROMETHEUS=0 VICTORIA=1
WORK="" KEEP=0 GEN_EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --targets) TARGETS=$2; shift 2 ;;
    --weeks) WEEKS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --end) END=$2; shift 2 ;;
    --classifier) CLASSIFIER=$2; shift 2 ;;
    --prometheus) PROMETHEUS=1; shift ;;
    --no-victoria) VICTORIA=0; shift ;;
    --io-time-share) GEN_EXTRA+=(--io-time-share "$2"); shift 2 ;;
    --cpu-modes) GEN_EXTRA+=(--cpu-modes "$2"); shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "decision-quality: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a CLASSIFIERS <<< "$CLASSIFIER"
for c in "${CLASSIFIERS[@]}"; do
  case "$c" in bootstrap|model|source) ;; *) echo "--classifier: bootstrap, model, source, or several (bootstrap,source)" >&2; exit 2 ;; esac
done
[[ $VICTORIA == 1 || $PROMETHEUS == 1 ]] || { echo "nothing to run: --no-victoria without --prometheus" >&2; exit 2; }
if [[ $SETPOINT != /* && -x "$ROOT/$SETPOINT" && ! -x "$SETPOINT" ]]; then SETPOINT="$ROOT/$SETPOINT"; fi
[[ -x $SETPOINT ]] || { echo "setpoint binary not found: $SETPOINT (set SETPOINT=…)" >&2; exit 1; }

if [[ -z $WORK ]]; then
  WORK=$(mktemp -d /tmp/decision-quality.XXXXXX)
  OWN_WORK=1
else
  mkdir -p "$WORK"
  OWN_WORK=0
fi
WORK=$(cd "$WORK" && pwd)

PIDS=()
stop_all() {
  local pid i
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for i in $(seq 100); do
      # a zombie (state Z) or a vanished /proc entry has stopped
      if [[ ! -e /proc/$pid ]] || [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then break; fi
      sleep 0.1
    done
    if [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  local rc=$?
  stop_all
  if [[ $KEEP == 0 && $OWN_WORK == 1 ]]; then
    rm -rf "$WORK"
  else
    echo "kept: $WORK" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@" in the background and waits for it: the EXIT trap stops it too (by its PID), and
# an interrupt is handled at once (a trapped signal interrupts `wait`, not a foreground command).
forget() { # pid: drop it from PIDS once it has been waited for (its PID may be reused)
  local p keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
bg_wait() {
  local pid rc=0
  "$@" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget "$pid"
  return "$rc"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now_s() { date +%s.%N; }
TIMES=()
record() { # name start
  local t
  t=$(awk -v a="$2" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }')
  TIMES+=("$(printf '%-44s %7s s' "$1" "$t")")
  printf '[%7s s] %s\n' "$t" "$1" >&2
}
wait_http() { # url seconds what
  local i
  for i in $(seq $(($2 * 10))); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "$3 not ready after $2 s ($1)" >&2
  return 1
}

END=$(python3 "$GEN" --print-end ${END:+--end "$END"})
GEN_ARGS=(--targets "$TARGETS" --weeks "$WEEKS" --seed "$SEED" --end "$END" "${GEN_EXTRA[@]}")
echo "decision-quality: $TARGETS targets, $WEEKS weeks, seed $SEED, end $END, classifier(s) $CLASSIFIER," \
     "setpoint $SETPOINT, work $WORK" >&2

write_config() { # file url state extra-source-line classifier
  {
    echo "state_dir: $3"
    echo "loops:"
    echo "  - name: fleetgen"
    echo "    window: { weeks: 4, step: 5m }"
    echo "    plugin: builtin:postgres"
    echo "    source:"
    echo "      kind: prometheus"
    echo "      url: $2"
    echo "      timeout: 600s"
    echo "      retries: 1"
    if [[ -n $4 ]]; then echo "      $4"; fi
    if [[ $5 == model ]]; then
      echo "    classifier: { kind: model, train_on_simulator: true }"
    elif [[ $5 == source ]]; then
      echo "    classifier: { kind: model }"
    else
      echo "    classifier: { kind: bootstrap }"
    fi
    echo "    policies: builtin"
    echo "    mode: dry-run"
    echo "    inventory: $WORK/inventory.yaml"
  } > "$1"
}

run_setpoint() { # backend url extra-source-line: one cycle per classifier, each with its own state
  local backend=$1 c name t0 rc
  for c in "${CLASSIFIERS[@]}"; do
    name=$backend-$c
    write_config "$WORK/setpoint-$name.yaml" "$2" "$WORK/state-$name" "$3" "$c"
    if [[ $c == source ]]; then
      t0=$(now_s)
      rc=0
      bg_wait "$SETPOINT" --config "$WORK/setpoint-$name.yaml" --now "$END" train --from-source \
        --history-weeks "$WEEKS" --promote > "$WORK/train-$name.txt" 2> "$WORK/train-$name.log" || rc=$?
      record "setpoint train --from-source ($name; exit $rc)" "$t0"
      if [[ $rc != 0 ]]; then
        echo "setpoint train failed (exit $rc):" >&2
        tail -n 30 "$WORK/train-$name.log" >&2
        return 1
      fi
      head -n 3 "$WORK/train-$name.log" >&2
      head -n 2 "$WORK/train-$name.txt" >&2
    fi
    t0=$(now_s)
    rc=0
    bg_wait "$SETPOINT" --config "$WORK/setpoint-$name.yaml" --now "$END" run --once --output json \
      --no-notify > "$WORK/report-$name.json" 2> "$WORK/setpoint-$name.log" || rc=$?
    record "setpoint run --once ($name; exit $rc)" "$t0"
    if [[ $rc != 0 && $rc != 3 && $rc != 4 ]]; then
      echo "setpoint failed (exit $rc); its log:" >&2
      tail -n 30 "$WORK/setpoint-$name.log" >&2
      return 1
    fi
    t0=$(now_s)
    echo "=== $name"
    python3 "$SCORE" --truth "$WORK/truth.json" --report "$WORK/report-$name.json" \
      --json "$WORK/score-$name.json" | tee "$WORK/score-$name.txt"
    record "score ($name)" "$t0"
  done
}

T_ALL=$(now_s)

if [[ $VICTORIA == 1 ]]; then
  VM_PORT=$(free_port)
  t0=$(now_s)
  "$VM_BIN" -retentionPeriod=1y -search.latencyOffset=1s -httpListenAddr="127.0.0.1:$VM_PORT" \
    -storageDataPath="$WORK/vm-data" > "$WORK/victoria-metrics.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$VM_PORT/health" 30 VictoriaMetrics
  record "VictoriaMetrics ready (127.0.0.1:$VM_PORT)" "$t0"

  t0=$(now_s)
  # generator | curl, through a FIFO so that both have PIDs of their own
  mkfifo "$WORK/fleet.fifo"
  python3 "$GEN" "${GEN_ARGS[@]}" --format prometheus --out "$WORK/fleet.fifo" \
    --truth "$WORK/truth.json" --inventory "$WORK/inventory.yaml" 2> "$WORK/fleetgen.log" &
  gen_pid=$!
  PIDS+=("$gen_pid")
  curl -sS --fail -X POST -T - -H 'Content-Type: text/plain' \
    "http://127.0.0.1:$VM_PORT/api/v1/import/prometheus" < "$WORK/fleet.fifo" &
  curl_pid=$!
  PIDS+=("$curl_pid")
  rc=0
  wait "$curl_pid" || rc=$?
  forget "$curl_pid"
  gen_rc=0
  wait "$gen_pid" || gen_rc=$?
  forget "$gen_pid"
  rm -f "$WORK/fleet.fifo"
  cat "$WORK/fleetgen.log" >&2
  if [[ $rc != 0 || $gen_rc != 0 ]]; then
    echo "import failed (curl exit $rc, fleetgen exit $gen_rc)" >&2
    exit 1
  fi
  record "generate + import into VictoriaMetrics" "$t0"

  t0=$(now_s)
  curl -sS --fail "http://127.0.0.1:$VM_PORT/internal/force_flush" > /dev/null
  curl -sS --fail "http://127.0.0.1:$VM_PORT/internal/resetRollupResultCache" > /dev/null
  record "force flush" "$t0"
  added=$(curl -sS "http://127.0.0.1:$VM_PORT/metrics" | awk '$1 == "vm_rows_added_to_storage_total" { print $2 }')
  ignored=$(curl -sS "http://127.0.0.1:$VM_PORT/metrics" | awk '$1 ~ /^vm_rows_ignored_total/ { s += $2 } END { print s + 0 }')
  discovered=$(curl -sS --data-urlencode "query=count(count_over_time(pg_up[${WEEKS}w]))" \
    --data-urlencode "time=$END" "http://127.0.0.1:$VM_PORT/api/v1/query?nocache=1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
  echo "VictoriaMetrics: $added samples stored, $ignored ignored, $discovered targets with pg_up" >&2

  run_setpoint victoria "http://127.0.0.1:$VM_PORT" "max_points_per_series: 30000"
fi

if [[ $PROMETHEUS == 1 ]]; then
  t0=$(now_s)
  bg_wait python3 "$GEN" "${GEN_ARGS[@]}" --format openmetrics --out "$WORK/fleet.om" \
    --truth "$WORK/truth-om.json" --inventory "$WORK/inventory.yaml" 2> "$WORK/fleetgen-om.log"
  cat "$WORK/fleetgen-om.log" >&2
  [[ -f $WORK/truth.json ]] || cp "$WORK/truth-om.json" "$WORK/truth.json"
  record "generate OpenMetrics file" "$t0"

  t0=$(now_s)
  mkdir -p "$WORK/prom-data"
  # One pass over the file per block: blocks as long as the whole window.
  bg_wait "$PROMTOOL_BIN" tsdb create-blocks-from openmetrics --max-block-duration="$((WEEKS * 168 + 168))h" \
    "$WORK/fleet.om" "$WORK/prom-data" > "$WORK/promtool.log" 2>&1 \
    || { tail -n 20 "$WORK/promtool.log" >&2; exit 1; }
  rm -f "$WORK/fleet.om"
  record "promtool backfill" "$t0"

  PROM_PORT=$(free_port)
  printf 'global:\n  scrape_interval: 1h\nscrape_configs: []\n' > "$WORK/prometheus.yml"
  t0=$(now_s)
  "$PROM_BIN" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
    --storage.tsdb.retention.time=400d --web.listen-address="127.0.0.1:$PROM_PORT" \
    --query.timeout=10m --query.max-samples=200000000 > "$WORK/prometheus.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 120 Prometheus
  record "Prometheus ready (127.0.0.1:$PROM_PORT)" "$t0"

  run_setpoint prometheus "http://127.0.0.1:$PROM_PORT" ""
fi

t0=$(now_s)
stop_all
record "stop every process" "$t0"
record "total" "$T_ALL"
echo
echo "wall time per phase:"
printf '  %s\n' "${TIMES[@]}"
