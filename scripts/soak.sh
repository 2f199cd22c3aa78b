#!/usr/bin/env bash
# Soak (issue 16): the services on the three-node cluster (scripts/cluster.sh) for DURATION
# seconds at half the ceiling measured first, a fault every FAULT_EVERY seconds in turn
# (the storage queue's leader node killed, a collector killed, the database killed, a node
# paused), sampling every process's RSS and the queues' depths every SAMPLE seconds.
#   scripts/soak.sh        # DURATION=1800 FAULT_EVERY=300 SAMPLE=10; RATE=0 measures the
#                          # ceiling (30 s unpaced) and runs at half; RATE=N runs at N logs/s
# Writes $SOAK_DIR (default .data/soak): soak.csv (one row a sample), soak.svg (memory and
# queue depth over time, faults marked) and the services' logs; prints the summary. Release
# builds, a private SecantusDB, its own exchange and queues (deleted afterwards).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
DURATION="${DURATION:-1800}"; FAULT_EVERY="${FAULT_EVERY:-300}"; SAMPLE="${SAMPLE:-10}"
RATE="${RATE:-0}"
OUT="${SOAK_DIR:-$ROOT/.data/soak}"
log() { printf '[soak] %s\n' "$*"; }

scripts/setup.sh >/dev/null
cargo build --release --locked -q -p source_service -p collector_service -p monitoring_service
BIN="$ROOT/target/release"
if [ ! -x "$OUT/venv/bin/python" ] || ! "$OUT/venv/bin/python" -c 'import pymongo' 2>/dev/null; then
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install --quiet --disable-pip-version-check 'pymongo==4.*'
fi
scripts/cluster.sh start >/dev/null
URLS="$(scripts/cluster.sh urls)"

rm -rf "$OUT/run" && mkdir -p "$OUT/run/pids" "$OUT/run/mongo"
RUN="$OUT/run"
UNIQUE="soak_$$"
MONGO_PORT="$((30000 + $$ % 20000))"
STORAGE="$UNIQUE.storage"
export LOGAGG__BROKER__URL="${URLS%%,*}" LOGAGG__BROKER__URLS="$URLS" \
  LOGAGG__BROKER__HEARTBEAT_SECONDS=5 LOGAGG__BROKER__QUORUM_GROUP_SIZE=3 \
  LOGAGG__BROKER__EXCHANGE="$UNIQUE.exchange" LOGAGG__BROKER__STORAGE_QUEUE="$STORAGE" \
  LOGAGG__BROKER__MONITORING_QUEUE="$UNIQUE.monitoring" \
  LOGAGG__BROKER__DEAD_LETTER_EXCHANGE="$UNIQUE.dlx" LOGAGG__BROKER__DEAD_LETTER_QUEUE="$UNIQUE.dlq" \
  LOGAGG__BROKER__ALERTS_EXCHANGE="$UNIQUE.alerts" \
  LOGAGG__STORE__URL="mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true" \
  LOGAGG__STORE__DATABASE="$UNIQUE" LOGAGG__STORE__SERVER_SELECTION_TIMEOUT_MS=1000 \
  LOGAGG__TELEMETRY__LOG_LEVEL=warn

# start NAME ADMIN_PORT COMMAND...: runs it in the background, its pid in $RUN/pids/NAME.
start() {
  local name=$1 port=$2; shift 2
  LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:$port" "$@" >>"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/pids/$name"
}
pid_of() { cat "$RUN/pids/$1" 2>/dev/null || true; }
start_mongo() {
  secantusd-rs --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$RUN/mongo" \
    --log-level WARNING >>"$RUN/mongo.log" 2>&1 &
  echo $! >"$RUN/pids/mongo"
}
ADMIN_BASE="$((MONGO_PORT + 1))"
start_collector() { start "collector$1" "$((ADMIN_BASE + $1))" "$BIN/collector_service"; }
start_simulator() { start simulator "$((ADMIN_BASE + 9))" "$BIN/source_service" simulate --count 0 --rate "$1"; }
stored_total() {  # the live collectors' stored counters, summed
  local total=0 n value
  for n in 1 2; do
    value="$(curl -fsS "http://127.0.0.1:$((ADMIN_BASE + n))/metrics" 2>/dev/null |
      awk '$1 == "logagg_collector_stored_total" { print int($2) }')"
    total=$((total + ${value:-0}))
  done
  echo "$total"
}
queue_depth() {
  scripts/cluster.sh ctl list_queues name messages --no-table-headers 2>/dev/null |
    awk -v queue="$1" '$1 == queue { print $2 }'
}
count_stored() {  # logs in the database (the ceiling's too)
  "$OUT/venv/bin/python" -c "
import pymongo
client = pymongo.MongoClient('$LOGAGG__STORE__URL', serverSelectionTimeoutMS=30000)
print(client['$UNIQUE']['logs'].count_documents({}))"
}
rss_kib() {
  local pid=$1
  [ -n "$pid" ] && awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0
}

cleanup() {
  for name in simulator collector1 collector2 monitor mongo; do
    pid="$(pid_of "$name")"; [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
  done
  # The database is the run's own SecantusDB: its data goes with $RUN on the next run.
  for queue in storage monitoring dlq; do
    scripts/cluster.sh ctl delete_queue "$UNIQUE.$queue" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

start_mongo
start_collector 1
start_collector 2
start monitor "$((ADMIN_BASE + 3))" "$BIN/monitoring_service"
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$((ADMIN_BASE + 1))/metrics" 2>/dev/null && break
  sleep 0.2
done

if [ "$RATE" -eq 0 ]; then
  log "measuring the ceiling: 30 s unpaced"
  start_simulator 0
  sleep 10
  before="$(stored_total)"
  sleep 20
  after="$(stored_total)"
  kill -TERM "$(pid_of simulator)"; wait "$(pid_of simulator)" 2>/dev/null || true
  CEILING=$(((after - before) / 20))
  RATE=$((CEILING / 2))
  log "ceiling $CEILING logs/s stored; soaking at $RATE"
  for _ in $(seq 300); do [ "$(queue_depth "$STORAGE")" = 0 ] && break; sleep 1; done
fi

FAULTS=("kill -9 of the storage queue's leader node" "kill -9 of collector 1" \
  "kill -9 of SecantusDB" "SIGSTOP of node 2 for 15 s")
fault() {
  case "$1" in
    0) leader="$(scripts/cluster.sh leader "$STORAGE")"
       scripts/cluster.sh kill "$leader" >/dev/null; sleep 20; scripts/cluster.sh restart "$leader" >/dev/null ;;
    1) kill -9 "$(pid_of collector1)"; sleep 5; start_collector 1 ;;
    2) kill -9 "$(pid_of mongo)"; sleep 10; start_mongo ;;
    3) scripts/cluster.sh pause 2 >/dev/null; sleep 15; scripts/cluster.sh resume 2 >/dev/null ;;
  esac
}

stored_before="$(count_stored)"
start_simulator "$RATE"
CSV="$OUT/soak.csv"
echo "seconds,fault,collector1_kib,collector2_kib,monitor_kib,simulator_kib,secantusd_kib,node1_kib,node2_kib,node3_kib,storage_depth,monitoring_depth" >"$CSV"
start_time="$(date +%s)"
next_fault="$FAULT_EVERY"; faults_done=0; FAULT_PID=
while :; do
  elapsed=$(($(date +%s) - start_time))
  [ "$elapsed" -lt "$DURATION" ] || break
  label=""
  if [ "$elapsed" -ge "$next_fault" ]; then
    index=$((faults_done % ${#FAULTS[@]}))
    label="${FAULTS[$index]}"
    log "$elapsed s: ${label}"
    [ -z "$FAULT_PID" ] || wait "$FAULT_PID" || true
    fault "$index" &
    FAULT_PID=$!
    faults_done=$((faults_done + 1)); next_fault=$((next_fault + FAULT_EVERY))
  fi
  row="$elapsed,$label"
  for name in collector1 collector2 monitor simulator mongo; do row="$row,$(rss_kib "$(pid_of "$name")")"; done
  for n in 1 2 3; do row="$row,$(rss_kib "$(cat "$ROOT/.data/cluster/node$n/rabbit.pid" 2>/dev/null || true)")"; done
  row="$row,$(queue_depth "$STORAGE"),$(queue_depth "$UNIQUE.monitoring")"
  echo "$row" >>"$CSV"
  sleep "$SAMPLE"
done
[ -z "$FAULT_PID" ] || wait "$FAULT_PID" || true  # the last fault's recovery

kill -TERM "$(pid_of simulator)"; wait "$(pid_of simulator)" 2>/dev/null || true
for _ in $(seq 300); do [ "$(queue_depth "$STORAGE")" = 0 ] && break; sleep 1; done
report="$(sed 's/\x1b\[[0-9;]*m//g' "$RUN/simulator.log" | grep -o 'published [0-9]* confirmed [0-9]*.*' | tail -1)"
confirmed="$(echo "$report" | awk '{ print $4 }')"
stored=$(($(count_stored) - stored_before))
log "simulator: $report"
log "confirmed ${confirmed:-?}, stored $stored (after the ceiling's), storage queue left: $(queue_depth "$STORAGE")"
"$OUT/venv/bin/python" "$ROOT/scripts/soak_plot.py" "$CSV" "$OUT/soak.svg"
log "wrote $CSV and $OUT/soak.svg"
