#!/usr/bin/env bash
# bench-lookups: /top-providers and /providers/{npi} alternated on one claimd, its CPU per
# lookup from /proc beside each rate. claimd runs on a database and a redis-server of its
# own, is given claims for a few seconds (providers drawn as claimbench draws them), then
# each lookup runs in turn, ROUNDS times: the two meet the machine's swings alike.
#
#   scripts/bench-lookups.sh [claimd] [claimbench]
#
# Settings: DATABASE_HOST (127.0.0.1), ROUNDS (3), DURATION (6s), CONCURRENCY (16).
set -euo pipefail
CLAIMD=${1:-bin/claimd}
CLAIMBENCH=${2:-bin/claimbench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
CONCURRENCY=${CONCURRENCY:-16}
PGHOST=${DATABASE_HOST:-127.0.0.1}
WORK=$(mktemp -d /tmp/bench-lookups.XXXXXX)
DB=bench_lookups_$$
PIDS=()
psql_() { psql -q -At -h "$PGHOST" -U "${PGUSER:-root}" "$@"; }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

psql_ -d postgres -c "CREATE DATABASE $DB" >/dev/null
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" &
redis=$!
PIDS+=("$redis")
for i in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
addr=127.0.0.1:$(free_port)
EVENTS_EXCHANGE= DATABASE_URL="postgres://${PGUSER:-root}@$PGHOST:5432/$DB" REDIS_URL="redis://127.0.0.1:$rport/0" \
  HTTP_ADDR="$addr" METRICS_ADDR= LOG_LEVEL=warn TOP_PROVIDERS_RATE_LIMIT=0 "$CLAIMD" serve >"$WORK/claimd.log" 2>&1 &
claimd=$!
PIDS+=("$claimd")
for i in $(seq 150); do curl -sf "http://$addr/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf "http://$addr/readyz" >/dev/null || { cat "$WORK/claimd.log"; exit 1; }
"$CLAIMBENCH" -url "http://$addr" -mode single -lines 4 -concurrency 32 -duration 8s -verify=false -progress=false -json >/dev/null

echo "| round | lookup | per s | claimd µs per lookup | Redis µs per lookup |"
echo "|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for mode in top rank; do
    c0=$(ticks "$claimd") r0=$(ticks "$redis")
    "$CLAIMBENCH" -url "http://$addr" -mode "$mode" -concurrency "$CONCURRENCY" -duration "$DURATION" \
      -verify=false -progress=false -json >"$WORK/$mode.json"
    c1=$(ticks "$claimd") r1=$(ticks "$redis")
    python3 - "$WORK/$mode.json" "$round" "$mode" $((c1 - c0)) $((r1 - r0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, rnd, mode, ticks, rticks, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
op = json.load(open(path))["operations"][0]
us = lambda t: t * 1e6 / hz / op['count']
print(f"| {rnd} | {mode} | {op['per_sec']:,.0f} | {us(ticks):.1f} | {us(rticks):.1f} |")
PY
  done
done
