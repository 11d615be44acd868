#!/usr/bin/env bash
# bench-shards: single-claim ingest and /top-providers lookups with RANK_SHARDS 1 and 16,
# on the shared standalone Redis and on a six-node Redis Cluster this script starts on
# free ports (removed at exit). The four configurations alternate, ROUNDS times, so that
# each round compares them within one window of this noisy machine. CPU per request per
# process comes from /proc (claimd; every postgres process; the Redis server, or all six
# cluster nodes, replication included).
#
#   scripts/bench-shards.sh [claimd] [claimbench]     (make bench-shards builds both)
#
# Settings: DATABASE_HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6379/0), ROUNDS (2),
# DURATION (10s per load).
set -euo pipefail
CLAIMD=${1:-bin/claimd}
CLAIMBENCH=${2:-bin/claimbench}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
PGHOST=${DATABASE_HOST:-127.0.0.1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
REDIS_HOSTPORT=${REDIS_URL#redis://}; REDIS_HOSTPORT=${REDIS_HOSTPORT%%/*}
WORK=$(mktemp -d /tmp/bench-shards.XXXXXX)
CLAIMD_PID=

free_port() { # a port free now, whose cluster bus port (+10000) is free too
  python3 - <<'PY'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p + 10000 > 65535: s.close(); continue
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 10000)); print(p); break
    except OSError: pass
    finally: t.close(); s.close()
PY
}

cleanup() {
  [ -n "$CLAIMD_PID" ] && kill "$CLAIMD_PID" 2>/dev/null || true
  for f in "$WORK"/node-*/pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The cluster: three masters, three replicas.
NODES=()
for i in 1 2 3 4 5 6; do
  port=$(free_port); dir=$WORK/node-$i; mkdir -p "$dir"
  redis-server --daemonize yes --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 --repl-diskless-sync yes \
    --repl-diskless-sync-delay 0 --save "" --appendonly no --dir "$dir" --logfile "$dir/log" --pidfile "$dir/pid"
  NODES+=("127.0.0.1:$port")
done
for n in "${NODES[@]}"; do
  until redis-cli -h "${n%:*}" -p "${n#*:}" ping >/dev/null 2>&1; do sleep 0.1; done
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
until redis-cli -p "${NODES[0]#*:}" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
CLUSTER_URL="redis://${NODES[0]}?addr=${NODES[1]}&addr=${NODES[2]}"
CLUSTER_PIDS=$(cat "$WORK"/node-*/pid | tr '\n' ' ')
STANDALONE_PIDS=$(pgrep -f "redis-server ${REDIS_HOSTPORT}" | tr '\n' ' ' || true)

ticks() { local s=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
# Postgres: the server's postmaster with the backends it reaped (cutime, cstime), and those
# still running; other postgres servers on the machine (tests' own) are not counted.
PGDATA_DIR=${PGDATA_DIR:-$(psql -At -h "$PGHOST" -U "${PGUSER:-root}" -d postgres -c "SHOW data_directory" 2>/dev/null)}
POSTMASTER=$(head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || pgrep -o -x postgres)
pg_ticks() {
  local s=$(awk '{print $14+$15+$16+$17}' "/proc/$POSTMASTER/stat") p
  for p in $(pgrep -P "$POSTMASTER"); do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$s"
}

measure() { # name mode claimbench-args...: one load, one line of figures
  local name=$1 mode=$2; shift 2
  local c0 r0 p0 c1 r1 p1
  c0=$(ticks "$CLAIMD_PID"); r0=$(ticks $REDIS_PIDS); p0=$(pg_ticks)
  "$CLAIMBENCH" -url "http://$ADDR" -mode "$mode" -verify=false -progress=false -json -duration "$DURATION" "$@" \
    >"$WORK/$name-$mode.json"
  c1=$(ticks "$CLAIMD_PID"); r1=$(ticks $REDIS_PIDS); p1=$(pg_ticks)
  python3 - "$WORK/$name-$mode.json" "$name" "$mode" $((c1 - c0)) $((p1 - p0)) $((r1 - r0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, name, mode, c, p, r, hz = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
j = json.load(open(path)); n = j["requests"]; op = j["operations"][0]
us = lambda t: t * 1e6 / hz / n
print(f"| {name} | {mode} | {j['requests_per_sec']:,.0f} | {op['latency_ms']['p99']:.2f} | "
      f"{us(c):.0f} | {us(p):.0f} | {us(r):.1f} |")
PY
}

run() { # name shards redis-env...
  local name=$1 shards=$2; shift 2
  local db=bench_shards_$$ prefix="bench-shards-$$-$name:"
  psql -q -h "$PGHOST" -U "${PGUSER:-root}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
  ADDR=127.0.0.1:$(free_port)
  env "$@" DATABASE_URL="postgres://${PGUSER:-root}@$PGHOST:5432/$db" REDIS_KEY_PREFIX="$prefix" RANK_SHARDS="$shards" \
    TOP_PROVIDERS_RATE_LIMIT=0 HTTP_ADDR="$ADDR" METRICS_ADDR= LOG_LEVEL=warn "$CLAIMD" serve >"$WORK/claimd-$name.log" 2>&1 &
  CLAIMD_PID=$!
  local i
  for i in $(seq 150); do # until the first rebuild: lookups from Redis
    curl -sf "http://$ADDR/top-providers" 2>/dev/null | grep -q '"source":"redis"' && break; sleep 0.2
  done
  measure "$name" single -concurrency 64 -lines 4
  measure "$name" top -concurrency 32
  kill "$CLAIMD_PID"; wait "$CLAIMD_PID" 2>/dev/null || true; CLAIMD_PID=
  psql -q -h "$PGHOST" -U "${PGUSER:-root}" -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  if [ "$name" = "${name#cluster}" ]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
  fi
}

echo "| Redis, RANK_SHARDS | load | requests/s | p99 ms | claimd µs | Postgres µs | Redis µs |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  REDIS_PIDS=$STANDALONE_PIDS
  run standalone-1 1 REDIS_URL="$REDIS_URL"
  run standalone-16 16 REDIS_URL="$REDIS_URL"
  REDIS_PIDS=$CLUSTER_PIDS
  run cluster-1 1 REDIS_CLUSTER_URL="$CLUSTER_URL"
  run cluster-16 16 REDIS_CLUSTER_URL="$CLUSTER_URL"
done
