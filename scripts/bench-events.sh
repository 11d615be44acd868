#!/usr/bin/env bash
# bench-events: the CPU per claim that events cost. Two claimd run side by side, one with
# events off (EVENTS_EXCHANGE=) and one with them on (the outbox, relayed to RabbitMQ with
# publisher confirms), each with its own database and its own Redis server, and each is
# loaded at the same time by its own claimbench (single-claim ingest, 4-line claims, half of
# CONCURRENCY clients each). This machine's speed swings by 2-3x within seconds; running
# the two at once puts both under the same swings, and under the same competition for the
# cores (the broker's and the generators' CPU takes from both alike), so their ratio holds
# where runs taken one after the other did not.
#
# CPU per claim per process comes from /proc. Postgres: each side's backends (by database,
# from pg_stat_activity); what no backend of either side spent (the WAL writer, the
# checkpointer, autovacuum, backends that exited) is "Postgres shared", and is all counted
# against events on, so the ratio errs against events. RabbitMQ is the shared node's
# beam.smp, and only events on uses it. Each round prints both sides and the ratio of
# claimd + Postgres + Redis per claim; the last line gives the median over the rounds, and
# the outbox depth when the loads ended and how long the relay took to drain it.
#
#   scripts/bench-events.sh [claimd] [claimbench]     (make bench runs it after the suite)
#
# Settings: DATABASE_HOST (127.0.0.1), RABBITMQ_URL (amqp://guest:guest@127.0.0.1:5672/),
# ROUNDS (5), DURATION (10s), CONCURRENCY (64, split between the two sides).
#
# The same side by side measures other costs: BASE_CLAIMD runs the first side with another
# binary (default: the same), EVENTS=off turns events off on the second side too, ENV_ON
# adds NAME=value settings to it, and LABEL_OFF / LABEL_ON name the sides (make bench
# measures the boards so: see the Makefile).
set -euo pipefail
CLAIMD=${1:-bin/claimd}
CLAIMBENCH=${2:-bin/claimbench}
BASE_CLAIMD=${BASE_CLAIMD:-$CLAIMD}
EVENTS=${EVENTS:-on}
LABEL_OFF=${LABEL_OFF:-events off}
LABEL_ON=${LABEL_ON:-events on}
read -r -a ENV_ON <<<"${ENV_ON:-}"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
PGHOST=${DATABASE_HOST:-127.0.0.1}
RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}
WORK=$(mktemp -d /tmp/bench-events.XXXXXX)
NAME=bench-events-$$
PIDS=()

psql_() { psql -q -At -h "$PGHOST" -U "${PGUSER:-root}" "$@"; }
db() { echo "bench_events_${1}_$$"; }

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for side in off on; do psql_ -d postgres -c "DROP DATABASE IF EXISTS $(db $side) WITH (FORCE)" >/dev/null 2>&1 || true; done
  # The run's queue; the exchange keeps one fixed name (rabbitmqctl cannot delete one), so
  # runs leave at most that one, empty and unbound.
  rabbitmqctl delete_queue "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { local s=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
PGDATA_DIR=${PGDATA_DIR:-$(psql_ -d postgres -c "SHOW data_directory" 2>/dev/null)}
POSTMASTER=$(head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || pgrep -o -x postgres)
# Every process of this Postgres server: the postmaster with the children it reaped, and
# those still running (other servers on the machine, tests' own, are not counted).
pg_all() {
  local s=$(awk '{print $14+$15+$16+$17}' "/proc/$POSTMASTER/stat") p
  for p in $(pgrep -P "$POSTMASTER"); do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$s"
}
# pg_backends side: "pid ticks" of each backend connected to the side's database.
pg_backends() {
  local p
  for p in $(psql_ -d postgres -c "SELECT pid FROM pg_stat_activity WHERE datname = '$(db "$1")' AND pid <> pg_backend_pid()"); do
    [ -r "/proc/$p/stat" ] && echo "$p $(awk '{print $14+$15}' "/proc/$p/stat")"
  done
}
BROKER_PIDS=$(pgrep -u rabbitmq beam.smp | tr '\n' ' ' || pgrep -f "beam.smp.*rabbit" | tr '\n' ' ' || true) # the shared node (tests run their own as root)

declare -A ADDR CLAIMD_PID REDIS_PID
for side in off on; do
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $(db $side)" -c "CREATE DATABASE $(db $side)" >/dev/null 2>&1
  rport=$(free_port)
  redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no --dir "$WORK" --logfile "$WORK/redis-$side.log" &
  REDIS_PID[$side]=$!; PIDS+=("$!")
  ADDR[$side]=127.0.0.1:$(free_port)
  events=(EVENTS_EXCHANGE=)
  [ "$side" = on ] && [ "$EVENTS" = on ] && events=(EVENTS_EXCHANGE=claimd-bench-events EVENTS_QUEUE="$NAME")
  binary=$CLAIMD
  [ "$side" = off ] && binary=$BASE_CLAIMD
  [ "$side" = on ] && events+=("${ENV_ON[@]}")
  for i in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  env "${events[@]}" DATABASE_URL="postgres://${PGUSER:-root}@$PGHOST:5432/$(db $side)" REDIS_URL="redis://127.0.0.1:$rport/0" \
    RABBITMQ_URL="$RABBITMQ_URL" HTTP_ADDR="${ADDR[$side]}" METRICS_ADDR= LOG_LEVEL=warn "$binary" serve >"$WORK/claimd-$side.log" 2>&1 &
  CLAIMD_PID[$side]=$!; PIDS+=("$!")
done
for side in off on; do
  for i in $(seq 150); do curl -sf "http://${ADDR[$side]}/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -sf "http://${ADDR[$side]}/readyz" >/dev/null || { cat "$WORK/claimd-$side.log"; exit 1; }
done

echo "| round | side | claims/s | p99 ms | claimd µs | Postgres µs | Redis µs | the three | RabbitMQ µs | the three, on / off |"
echo "|---|---|---|---|---|---|---|---|---|---|"
declare -A c0 r0 c1 r1
for round in $(seq "$ROUNDS"); do
  for side in off on; do c0[$side]=$(ticks "${CLAIMD_PID[$side]}"); r0[$side]=$(ticks "${REDIS_PID[$side]}"); pg_backends "$side" >"$WORK/pg0-$side"; done
  a0=$(pg_all); b0=$(ticks $BROKER_PIDS)
  loads=()
  for side in off on; do
    "$CLAIMBENCH" -url "http://${ADDR[$side]}" -mode single -lines 4 -concurrency $((CONCURRENCY / 2)) -duration "$DURATION" \
      -verify=false -progress=false -json >"$WORK/$side-$round.json" &
    loads+=("$!")
  done
  wait "${loads[@]}"
  for side in off on; do c1[$side]=$(ticks "${CLAIMD_PID[$side]}"); r1[$side]=$(ticks "${REDIS_PID[$side]}"); pg_backends "$side" >"$WORK/pg1-$side"; done
  a1=$(pg_all); b1=$(ticks $BROKER_PIDS)
  LABEL_OFF=$LABEL_OFF LABEL_ON=$LABEL_ON python3 - "$WORK" "$round" "$(getconf CLK_TCK)" $((a1 - a0)) $((b1 - b0)) \
    $((c1[off] - c0[off])) $((r1[off] - r0[off])) $((c1[on] - c0[on])) $((r1[on] - r0[on])) <<'PY'
import json, os, sys
work, rnd = sys.argv[1], sys.argv[2]
label = {"off": os.environ["LABEL_OFF"], "on": os.environ["LABEL_ON"]}
hz, pg_all, broker, c_off, r_off, c_on, r_on = map(int, sys.argv[3:10])
def backends(side):
    before = dict(map(int, l.split()) for l in open(f"{work}/pg0-{side}") if l.strip())
    after = dict(map(int, l.split()) for l in open(f"{work}/pg1-{side}") if l.strip())
    return sum(t - before.get(p, 0) for p, t in after.items())
pg = {s: backends(s) for s in ("off", "on")}
shared = pg_all - pg["off"] - pg["on"]
cpu = {"off": (c_off, pg["off"], r_off, 0), "on": (c_on, pg["on"] + shared, r_on, broker)}
three = {}
rows = []
for side in ("off", "on"):
    j = json.load(open(f"{work}/{side}-{rnd}.json")); n = j["claims_acked"]; op = j["operations"][0]
    c, p, r, b = (t * 1e6 / hz / n for t in cpu[side])
    three[side] = c + p + r
    rows.append(f"| {rnd} | {label[side]} | {j['claims_per_sec']:,.0f} | {op['latency_ms']['p99']:.1f} | {c:.0f} | {p:.0f} | {r:.1f} | {c+p+r:.0f} | {b:.0f} |")
ratio = three["on"] / three["off"]
print(rows[0] + " |"); print(rows[1] + f" ×{ratio:.2f} |")
open(f"{work}/ratios", "a").write(f"{ratio}\n")
open(f"{work}/shared", "a").write(f"{shared * 1e6 / hz / json.load(open(f'{work}/on-{rnd}.json'))['claims_acked']:.0f}\n")
PY
done

depth=$(psql_ -d "$(db on)" -c "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM outbox")
start=$(date +%s.%N)
for i in $(seq 600); do
  [ "$(psql_ -d "$(db on)" -c "SELECT count(*) FROM outbox")" = 0 ] && break; sleep 0.1
done
LABEL_OFF=$LABEL_OFF LABEL_ON=$LABEL_ON python3 - "$WORK" "$depth" "$start" <<'PY'
import os, statistics, sys, time
work, depth, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
ratios = sorted(float(l) for l in open(f"{work}/ratios"))
shared = [l.strip() for l in open(f"{work}/shared")]
print()
print(f"{os.environ['LABEL_ON'].capitalize()}: claimd + Postgres + Redis cost **×{statistics.median(ratios):.2f}** the CPU per claim of {os.environ['LABEL_OFF']} "
      f"(median of {len(ratios)} rounds; range ×{ratios[0]:.2f}–×{ratios[-1]:.2f}), counting against the second side the "
      f"Postgres CPU of neither side's backends ({', '.join(shared)} µs per claim of it). "
      f"The outbox held {depth} events when the last load ended; the relay emptied it in {time.time() - start:.1f} s.")
PY
