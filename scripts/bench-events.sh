#!/usr/bin/env bash
# bench-events: single-claim ingest with events off (EVENTS_EXCHANGE=) and on (the outbox,
# relayed to RabbitMQ with publisher confirms), alternating ROUNDS times in one window of this
# noisy machine. CPU per claim per process comes from /proc: claimd, every postgres process,
# the Redis server, the RabbitMQ node (beam.smp; its idle cost is in both). After each load
# with events on it reports the outbox's depth when the load ended and how long the relay
# took to drain it.
#
#   scripts/bench-events.sh [claimd] [claimbench]     (make bench runs it after the suite)
#
# Settings: DATABASE_HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6379/0), RABBITMQ_URL
# (amqp://guest:guest@127.0.0.1:5672/), ROUNDS (2), DURATION (10s), CONCURRENCY (64).
set -euo pipefail
CLAIMD=${1:-bin/claimd}
CLAIMBENCH=${2:-bin/claimbench}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
PGHOST=${DATABASE_HOST:-127.0.0.1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}
REDIS_HOSTPORT=${REDIS_URL#redis://}; REDIS_HOSTPORT=${REDIS_HOSTPORT%%/*}
WORK=$(mktemp -d /tmp/bench-events.XXXXXX)
NAME=bench-events-$$
CLAIMD_PID=
DB=bench_events_$$

psql_() { psql -q -At -h "$PGHOST" -U "${PGUSER:-root}" "$@"; }

cleanup() {
  [ -n "$CLAIMD_PID" ] && kill "$CLAIMD_PID" 2>/dev/null || true
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$NAME:*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null 2>&1 || true
  # The run's queue; the exchange keeps one fixed name (rabbitmqctl cannot delete one), so
  # runs leave at most that one, empty and unbound.
  rabbitmqctl delete_queue "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { local s=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
# Postgres: the server's postmaster with the backends it reaped (cutime, cstime), and those
# still running; other postgres servers on the machine (tests' own) are not counted.
PGDATA_DIR=${PGDATA_DIR:-$(psql_ -d postgres -c "SHOW data_directory" 2>/dev/null)}
POSTMASTER=$(head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || pgrep -o -x postgres)
pg_ticks() {
  local s=$(awk '{print $14+$15+$16+$17}' "/proc/$POSTMASTER/stat") p
  for p in $(pgrep -P "$POSTMASTER"); do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$s"
}
REDIS_PIDS=$(pgrep -f "redis-server ${REDIS_HOSTPORT}" | tr '\n' ' ' || true)
BROKER_PIDS=$(pgrep -u rabbitmq beam.smp | tr '\n' ' ' || pgrep -f "beam.smp.*rabbit" | tr '\n' ' ' || true) # the shared node (tests run their own as root)

run() { # name events-env...
  local name=$1; shift
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
  redis-cli -u "$REDIS_URL" --scan --pattern "$NAME:*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null 2>&1 || true
  local addr=127.0.0.1:$(free_port) dburl="postgres://${PGUSER:-root}@$PGHOST:5432/$DB"
  env "$@" DATABASE_URL="$dburl" REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$NAME:" RABBITMQ_URL="$RABBITMQ_URL" \
    HTTP_ADDR="$addr" METRICS_ADDR= LOG_LEVEL=warn "$CLAIMD" serve >"$WORK/claimd-$name.log" 2>&1 &
  CLAIMD_PID=$!
  local i
  for i in $(seq 150); do curl -sf "http://$addr/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  local c0 p0 r0 b0 c1 p1 r1 b1
  c0=$(ticks "$CLAIMD_PID"); p0=$(pg_ticks); r0=$(ticks $REDIS_PIDS); b0=$(ticks $BROKER_PIDS)
  "$CLAIMBENCH" -url "http://$addr" -mode single -lines 4 -concurrency "$CONCURRENCY" -duration "$DURATION" \
    -verify=false -progress=false -json >"$WORK/$name.json"
  c1=$(ticks "$CLAIMD_PID"); p1=$(pg_ticks); r1=$(ticks $REDIS_PIDS); b1=$(ticks $BROKER_PIDS)
  local depth="" drain=""
  if [ "$name" != "${name%on}" ]; then
    depth=$(psql_ -d "$DB" -c "SELECT count(*) FROM outbox")
    local start=$(date +%s.%N)
    for i in $(seq 600); do
      [ "$(psql_ -d "$DB" -c "SELECT count(*) FROM outbox")" = 0 ] && break; sleep 0.1
    done
    drain=$(python3 -c "import time; print(f'{time.time()-$start:.1f} s')")
  fi
  kill "$CLAIMD_PID"; wait "$CLAIMD_PID" 2>/dev/null || true; CLAIMD_PID=
  python3 - "$WORK/$name.json" "$name" $((c1 - c0)) $((p1 - p0)) $((r1 - r0)) $((b1 - b0)) "$(getconf CLK_TCK)" "$depth" "$drain" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
c, p, r, b, hz = map(int, sys.argv[3:8]); depth, drain = sys.argv[8], sys.argv[9]
j = json.load(open(path)); n = j["claims_acked"]; op = j["operations"][0]
us = lambda t: t * 1e6 / hz / n
print(f"| {name} | {j['claims_per_sec']:,.0f} | {op['latency_ms']['p99']:.1f} | {us(c):.0f} | {us(p):.0f} | {us(r):.1f} | "
      f"{us(c)+us(p)+us(r):.0f} | {us(b):.0f} | {depth or '—'} | {drain or '—'} |")
PY
}

echo "| events | claims/s | p99 ms | claimd µs | Postgres µs | Redis µs | the three | RabbitMQ µs | outbox at the end | drained in |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  run off EVENTS_EXCHANGE=
  run on EVENTS_EXCHANGE=claimd-bench-events EVENTS_QUEUE="$NAME"
done
