#!/usr/bin/env bash
# The fast loop's tick on SERVICES services against a real Prometheus (on 127.0.0.1 only):
# generates DAYS of telemetry for them (engine/runtime/examples/fast_loop_prometheus.rs: request
# rate, replicas, p99 latency every STEP seconds up to AT), backfills it with promtool, serves it
# with Prometheus on a free port, then times the loop's first tick (which fits every model) and
# TICKS more ticks 15 s apart. docs/benchmarks.md ("Fast loop on 1,000 services against
# Prometheus") has the figures.
#   scripts/bench-fast-loop.sh [SERVICES] [TICKS]        defaults: 1000 20
# Settings: BENCH_AT (default 2026-11-24T09:00:00Z, a fixed past time: everything is history),
# BENCH_DAYS (15), BENCH_STEP_SECONDS (300), BENCH_SEED (42), BENCH_DIR (a new temporary
# directory, removed on exit unless BENCH_KEEP=1), BENCH_ARGS (more arguments for the bench,
# e.g. "--max-points-per-series 1000"). Needs prometheus and promtool
# (bash scripts/setup.sh --stack installs them), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=${1:-1000}
TICKS=${2:-20}
AT=${BENCH_AT:-2026-11-24T09:00:00Z}
DAYS=${BENCH_DAYS:-15}
STEP=${BENCH_STEP_SECONDS:-300}
SEED=${BENCH_SEED:-42}

for tool in prometheus promtool curl python3; do
  command -v "$tool" >/dev/null || {
    echo "bench-fast-loop: $tool not found (bash scripts/setup.sh --stack installs prometheus and promtool)" >&2
    exit 1
  }
done

nice -n 10 cargo build --release -p setpoint-runtime --example fast_loop_prometheus
TARGET_DIR=$(nice -n 10 cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH="$TARGET_DIR/release/examples/fast_loop_prometheus"

if [ -n "${BENCH_DIR:-}" ]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d -t setpoint-fast-bench.XXXXXX)
fi
PROM_PID=
cleanup() {
  if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench-fast-loop: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== generating $SERVICES services × 3 series, $DAYS days every $STEP s up to $AT"
/usr/bin/time -f "   %e s, max RSS %M KiB" nice -n 10 "$BENCH" --write-openmetrics "$WORK/series.om" \
  --services "$SERVICES" --days "$DAYS" --at "$AT" --step-seconds "$STEP" --seed "$SEED"
ls -lh "$WORK/series.om" | awk '{print "   " $5 " of OpenMetrics"}'

echo "== backfilling with promtool (blocks of at most 168 h)"
rm -rf "$WORK/data"
/usr/bin/time -o "$WORK/promtool.time" -f "   %e s, max RSS %M KiB" \
  nice -n 10 promtool tsdb create-blocks-from openmetrics \
  --max-block-duration=168h "$WORK/series.om" "$WORK/data" >"$WORK/promtool.log" 2>&1 || {
  tail -20 "$WORK/promtool.log" >&2
  exit 1
}
cat "$WORK/promtool.time"
[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$WORK/series.om"
du -sh "$WORK/data" | awk '{print "   " $1 " of TSDB blocks"}'

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
URL="http://127.0.0.1:$PORT"
# No scrape jobs: the TSDB holds the backfilled blocks only, and nothing newer moves its
# retention. No flag is needed to query the backfilled blocks: they are ordinary blocks of the
# TSDB, older than its (empty) head.
printf 'global:\n  scrape_interval: 1m\n' >"$WORK/prometheus.yml"
echo "== starting prometheus on $URL"
nice -n 10 prometheus \
  --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/data" \
  --storage.tsdb.retention.time=60d \
  --web.listen-address="127.0.0.1:$PORT" \
  >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
for _ in $(seq 1 300); do
  if curl -fsS "$URL/-/ready" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$PROM_PID" 2>/dev/null; then
    tail -20 "$WORK/prometheus.log" >&2
    echo "bench-fast-loop: prometheus exited" >&2
    exit 1
  fi
  sleep 0.2
done
curl -fsS "$URL/-/ready" >/dev/null || {
  echo "bench-fast-loop: prometheus not ready after 60 s; see $WORK/prometheus.log" >&2
  exit 1
}
echo "   series of bench_request_rate at $AT: $(curl -fsS "$URL/api/v1/query" \
  --data-urlencode 'query=count(bench_request_rate)' --data-urlencode "time=$AT" |
  python3 -c 'import json,sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')"

echo "== bench"
# shellcheck disable=SC2086 # BENCH_ARGS is split on purpose
nice -n 10 "$BENCH" --prometheus "$URL" --services "$SERVICES" --ticks "$TICKS" --at "$AT" \
  --days "$DAYS" --step-seconds "$STEP" ${BENCH_ARGS:-}
