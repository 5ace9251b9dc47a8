#!/usr/bin/env bash
# A real observability stack on 127.0.0.1, from Debian packages, for setpoint to read:
# PostgreSQL + postgres_exporter, node_exporter, Redis + redis_exporter, Prometheus and
# VictoriaMetrics (both scraping the exporters), with weeks of simulated history backfilled.
#
#   examples/stack/stack.sh install              # apt packages (root)
#   examples/stack/stack.sh start DIR            # start everything; ports in DIR/ports.env
#   examples/stack/stack.sh backfill DIR [ID…]   # simulated history into both TSDBs (restarts
#                                                # Prometheus); default: the targets setpoint.yaml declares
#   examples/stack/stack.sh import DIR FILE.om   # your own OpenMetrics history into Prometheus
#   examples/stack/stack.sh import-victoria DIR FILE.vm  # Prometheus text lines into VictoriaMetrics
#
# PROM_QUERY_TIMEOUT (default 2m) is Prometheus' own limit on one query's evaluation.
# FLEET_SIZE=N makes backfill write a simulated fleet of N targets (every scenario in its
# share) instead of the declared ones, e.g. for the observe benchmark.
#   examples/stack/stack.sh stop DIR             # stop every process this script started, by PID
#
# Every listener is on 127.0.0.1 on a free port. DIR/setpoint-prometheus.yaml and
# DIR/setpoint-victoria.yaml are examples/stack/setpoint.yaml pointed at the stack's TSDBs
# (see examples/stack/README.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
setpoint=${SETPOINT:-$root/target/debug/setpoint}

# What backfill writes by default: the simulated targets examples/stack/setpoint.yaml declares.
scenario_targets=(pg-reporting-01 pg-transactional-01 pg-saturated-01 pg-connections-01 pg-gap-01
  pg-steady-01 pg-spiky-01)

packages=(prometheus victoria-metrics prometheus-node-exporter prometheus-postgres-exporter
  prometheus-redis-exporter postgresql redis-server)

die() { echo "stack: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A server's usual port when it is free on 127.0.0.1 (so examples/stack/setpoint.yaml works as
# it stands), otherwise any free one.
usual_or_free_port() {
  python3 -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1]); s.close()' "$1"
}

wait_for() { # name, seconds, command…
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$name not ready after ${seconds}s (logs in $dir/logs)"
    sleep 0.2
  done
}

started() { echo "$2 $1" >> "$dir/pids"; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

# The PostgreSQL plugin reads disk busy time per instance, one series each: with several disks
# node_exporter would give several, so it reports only the busiest whole disk (or DISK_DEVICE).
disk_device() {
  if [ -n "${DISK_DEVICE:-}" ]; then echo "$DISK_DEVICE"; return; fi
  awk '$3 !~ /^(loop|ram|zram|fd|sr|nbd|dm-|md)/ && $3 !~ /^((h|s|v|xv)d[a-z]|nvme[0-9]+n[0-9]+p|mmcblk[0-9]+p)[0-9]+$/ \
    { if ($13 >= best) { best = $13; name = $3 } } END { print name }' /proc/diskstats
}

install() {
  local missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

write_scrape_config() {
  cat > "$dir/scrape.yml" <<YAML
global:
  scrape_interval: ${SCRAPE_INTERVAL:-1s}
  scrape_timeout: ${SCRAPE_INTERVAL:-1s}
# Stable instance names instead of the random exporter addresses, so that setpoint.yaml can
# name the live database: postgres_exporter's series are "pg-live", node_exporter's (the host
# it runs on) "pg-live-host".
scrape_configs:
  - job_name: node
    static_configs: [{ targets: ["127.0.0.1:$NODE_PORT"], labels: { instance: pg-live-host } }]
  - job_name: postgres
    static_configs: [{ targets: ["127.0.0.1:$PG_EXPORTER_PORT"], labels: { instance: pg-live } }]
  - job_name: redis
    static_configs: [{ targets: ["127.0.0.1:$REDIS_EXPORTER_PORT"], labels: { instance: redis-live } }]
YAML
}

start_prometheus() {
  prometheus --config.file="$dir/scrape.yml" --storage.tsdb.path="$dir/prometheus" \
    --storage.tsdb.retention.time=400d --web.listen-address="127.0.0.1:$PROM_PORT" \
    --query.timeout="${PROM_QUERY_TIMEOUT:-2m}" \
    > "$dir/logs/prometheus.log" 2>&1 &
  started prometheus $!
  wait_for prometheus 30 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
}

write_setpoint_configs() { # examples/stack/setpoint.yaml with the stack's URLs and state dirs
  local template=$here/setpoint.yaml name url extra
  for name in prometheus victoria; do
    if [ $name = prometheus ]; then
      url="http://127.0.0.1:$PROM_PORT" extra=""
    else
      # VictoriaMetrics answers up to 30,000 points per series: fewer, larger range queries.
      url="http://127.0.0.1:$VM_PORT" extra='\n\1max_points_per_series: 30000'
    fi
    {
      echo "# Written by examples/stack/stack.sh from $template for the stack in $dir."
      sed -e "s|^state_dir: .*|state_dir: state-$name|" \
        -e "s|^\( *\)url: http://127.0.0.1:9090\$|\1url: $url$extra|" "$template"
    } > "$dir/setpoint-$name.yaml"
    grep -q "url: $url\$" "$dir/setpoint-$name.yaml" ||
      die "$template has no 'url: http://127.0.0.1:9090' line to point at the stack"
  done
}

start() {
  mkdir -p "$dir/logs"
  [ ! -s "$dir/pids" ] || die "$dir already has a running stack (stop it first)"
  : > "$dir/pids"
  local bin; bin=$(pg_bin)
  PG_PORT=$(free_port); PG_EXPORTER_PORT=$(free_port); NODE_PORT=$(free_port)
  REDIS_PORT=$(free_port); REDIS_EXPORTER_PORT=$(free_port); PROM_PORT=$(usual_or_free_port 9090); VM_PORT=$(free_port)
  cat > "$dir/ports.env" <<ENV
PG_PORT=$PG_PORT
PG_EXPORTER_PORT=$PG_EXPORTER_PORT
NODE_PORT=$NODE_PORT
REDIS_PORT=$REDIS_PORT
REDIS_EXPORTER_PORT=$REDIS_EXPORTER_PORT
PROM_PORT=$PROM_PORT
VM_PORT=$VM_PORT
ENV

  # PostgreSQL refuses to run as root: its files belong to postgres.
  mkdir -p "$dir/pg" "$dir/pgsock"
  chown postgres:postgres "$dir/pg" "$dir/pgsock"
  chmod 700 "$dir/pg"
  runuser -u postgres -- "$bin/initdb" -D "$dir/pg" -A trust -U postgres > "$dir/logs/initdb.log" 2>&1
  setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$dir/pg" \
    -p "$PG_PORT" -k "$dir/pgsock" -c listen_addresses=127.0.0.1 -c max_connections=100 \
    > "$dir/logs/postgres.log" 2>&1 &
  started postgres $!
  wait_for postgres 30 "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT"

  DATA_SOURCE_NAME="postgresql://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$PG_EXPORTER_PORT" \
    > "$dir/logs/postgres-exporter.log" 2>&1 &
  started postgres-exporter $!

  prometheus-node-exporter --web.listen-address="127.0.0.1:$NODE_PORT" --no-collector.systemd \
    --collector.diskstats.device-exclude= --collector.diskstats.device-include="^$(disk_device)\$" \
    > "$dir/logs/node-exporter.log" 2>&1 &
  started node-exporter $!

  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    > "$dir/logs/redis.log" 2>&1 &
  started redis $!
  prometheus-redis-exporter --redis.addr="redis://127.0.0.1:$REDIS_PORT" \
    --web.listen-address="127.0.0.1:$REDIS_EXPORTER_PORT" > "$dir/logs/redis-exporter.log" 2>&1 &
  started redis-exporter $!

  wait_for postgres-exporter 30 curl -sf "http://127.0.0.1:$PG_EXPORTER_PORT/metrics"
  wait_for node-exporter 30 curl -sf "http://127.0.0.1:$NODE_PORT/metrics"
  wait_for redis-exporter 30 curl -sf "http://127.0.0.1:$REDIS_EXPORTER_PORT/metrics"

  write_scrape_config
  start_prometheus
  victoria-metrics -storageDataPath="$dir/victoria" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=1y -search.latencyOffset=1s -promscrape.config="$dir/scrape.yml" \
    > "$dir/logs/victoria-metrics.log" 2>&1 &
  started victoria-metrics $!
  wait_for victoria-metrics 30 curl -sf "http://127.0.0.1:$VM_PORT/health"

  write_setpoint_configs
  echo "stack: running in $dir (ports in $dir/ports.env)"
  echo "stack: after backfill: setpoint --config $dir/setpoint-prometheus.yaml run --once"
}

backfill() {
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  [ -x "$setpoint" ] || die "no setpoint binary at $setpoint (cargo build -p setpoint, or set SETPOINT)"
  local now targets=() what
  now=${BACKFILL_END:-$(date -u +%Y-%m-%dT%H:00:00Z)}
  if [ -n "${FLEET_SIZE:-}" ]; then
    targets=(--fleet-size "$FLEET_SIZE")
    what="a simulated fleet of $FLEET_SIZE target(s)"
  else
    [ $# -gt 0 ] || set -- "${scenario_targets[@]}"
    for t in "$@"; do targets+=(--target "$t"); done
    what="$# target(s)"
  fi
  "$setpoint" sim export --format openmetrics --now "$now" --out "$dir/backfill.om" "${targets[@]}"
  import "$dir/backfill.om"
  # The files of a large fleet run to gigabytes: each is removed once imported.
  rm -f "$dir/backfill.om"
  "$setpoint" sim export --format victoria-metrics --now "$now" --out "$dir/backfill.vm" "${targets[@]}"
  import-victoria "$dir/backfill.vm"
  rm -f "$dir/backfill.vm"
  echo "stack: backfilled $what, history ending $now"
}

import-victoria() { # Prometheus text lines (millisecond timestamps) into VictoriaMetrics
  local file=$1
  [ -f "$file" ] || die "no file $file"
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  # -T streams the file: --data-binary @file would hold all of it in memory first.
  curl -sf -X POST -T "$file" "http://127.0.0.1:$VM_PORT/api/v1/import/prometheus" ||
    die "VictoriaMetrics refused $file; see $dir/logs/victoria-metrics.log"
  curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null
  curl -sf "http://127.0.0.1:$VM_PORT/internal/resetRollupResultCache" >/dev/null
}

import() { # OpenMetrics file (timestamps in seconds, ending in # EOF) into Prometheus
  local file=$1
  [ -f "$file" ] || die "no file $file"
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  # Blocks are written offline and picked up at start (retention counts from the newest block).
  # promtool reads the whole file once per block: for a fleet of thousands, BLOCK_DURATION=1458h
  # (its largest block size) makes that one or two passes instead of six.
  # The blocks go to an empty directory of their own first: promtool then never reads the data
  # directory of a Prometheus that has just stopped, and a failed run leaves that directory as it was.
  local blocks="$dir/blocks.new"
  rm -rf "$blocks" && mkdir -p "$blocks"
  if ! promtool tsdb create-blocks-from openmetrics --max-block-duration="${BLOCK_DURATION:-168h}" \
    "$file" "$blocks" > "$dir/logs/promtool.log" 2>&1; then
    tail -n 20 "$dir/logs/promtool.log" >&2
    df -h "$dir" >&2
    die "promtool failed; see $dir/logs/promtool.log"
  fi
  stop_one prometheus
  mkdir -p "$dir/prometheus"
  for block in "$blocks"/*/; do
    [ -d "$block" ] || continue
    mv "$block" "$dir/prometheus/" || die "could not move $block into $dir/prometheus"
  done
  rm -rf "$blocks"
  start_prometheus
}

alive() { # pid: running and not a zombie
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]
}

stop_pid() { # pid, signal
  local pid=$1 signal=$2
  alive "$pid" || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  # Prometheus flushes its head on TERM: on a loaded machine that takes a few seconds.
  for _ in $(seq 1 200); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_one() { # name
  local name=$1 pid n rest=()
  [ -f "$dir/pids" ] || return 0
  while read -r pid n; do
    if [ "$n" = "$name" ]; then stop_pid "$pid" TERM; else rest+=("$pid $n"); fi
  done < "$dir/pids"
  printf '%s\n' "${rest[@]}" > "$dir/pids"
}

stop() {
  [ -f "$dir/pids" ] || { echo "stack: nothing running in $dir"; return 0; }
  local pid name
  # Newest first; PostgreSQL stops fastest with SIGINT (SIGTERM waits for clients).
  tac "$dir/pids" | while read -r pid name; do
    [ -n "$pid" ] || continue
    if [ "$name" = postgres ]; then stop_pid "$pid" INT; else stop_pid "$pid" TERM; fi
  done
  : > "$dir/pids"
  echo "stack: stopped"
}

command=${1:-}
case "$command" in
  install) install ;;
  start|backfill|import|import-victoria|stop)
    [ $# -ge 2 ] || die "usage: $0 $command DIR"
    [ "$command" != import ] || [ $# -eq 3 ] || die "usage: $0 import DIR FILE.om"
    [ "$command" != import-victoria ] || [ $# -eq 3 ] || die "usage: $0 import-victoria DIR FILE.vm"
    mkdir -p "$2"; dir=$(cd "$2" && pwd); shift 2
    "$command" "$@" ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
