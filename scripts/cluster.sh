#!/usr/bin/env bash
# A local three-node RabbitMQ cluster beside the machine's default node, for the cluster
# tests, the chaos run and the soak. Each node has its own name, ports, data, logs, Erlang
# cookie and epmd, so the default node (127.0.0.1:5672) is never touched.
#   scripts/cluster.sh start          start nodes 1-3 and join them (idempotent)
#   scripts/cluster.sh stop           stop the nodes this script started, and their epmd
#   scripts/cluster.sh kill N         kill -9 node N
#   scripts/cluster.sh restart N      start node N again (it rejoins the cluster by itself)
#   scripts/cluster.sh pause N        SIGSTOP node N (it answers nothing, refuses nothing)
#   scripts/cluster.sh resume N       SIGCONT node N
#   scripts/cluster.sh urls           the nodes' AMQP URIs, comma-separated (broker.urls)
#   scripts/cluster.sh status         each node: running or not, and its AMQP port
#   scripts/cluster.sh leader QUEUE   the node (1-3) leading quorum queue QUEUE, as a running
#                                     node reports it (it may lag a leader change by seconds)
#   scripts/cluster.sh ctl ARGS...    rabbitmqctl ARGS on the first running node (list_queues,
#                                     delete_queue, …)
#   scripts/cluster.sh tls-urls       the nodes' AMQPS URIs (with LOGAGG_CLUSTER_TLS_DIR)
# Node N is logagg-cluster-N@localhost with AMQP on 127.0.0.1:$((BASE_PORT + N)), 5701-5703
# by default. LOGAGG_CLUSTER_DIR (default .data/cluster) holds everything it writes;
# LOGAGG_CLUSTER_NODES (default "1 2 3") picks the nodes (node 1 alone: one standalone
# node); LOGAGG_CLUSTER_TLS_DIR, a directory with ca.pem, server.pem and server.key, gives
# each node an AMQPS listener on 127.0.0.1:$((BASE_PORT + 10 + N)) (the TLS test's broker).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${LOGAGG_CLUSTER_DIR:-$ROOT/.data/cluster}"
# rabbitmqctl can leave files in its working directory (a Mnesia.<node> directory was
# found in collector_service/ after a test run there): work from the cluster's own.
mkdir -p "$DIR"
cd "$DIR"
BASE_PORT="${LOGAGG_CLUSTER_BASE_PORT:-5700}"
EPMD_PORT="${LOGAGG_CLUSTER_EPMD_PORT:-4370}"
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
read -r -a NODES <<<"${LOGAGG_CLUSTER_NODES:-1 2 3}"
TLS_DIR="${LOGAGG_CLUSTER_TLS_DIR:-}"

log() { printf '[cluster] %s\n' "$*"; }

if [ ! -x "$SERVER" ]; then
  log "RabbitMQ is not installed ($SERVER missing): run scripts/setup.sh first"
  exit 2
fi

node_name() { printf 'logagg-cluster-%s@localhost' "$1"; }

# Exports node N's environment: everything the server and rabbitmqctl read.
node_env() {
  local n=$1 base="$DIR/node$1"
  export HOME="$DIR/home"
  export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
  export ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_CTL_DIST_PORT_MIN=$((EPMD_PORT + 200))
  export RABBITMQ_CTL_DIST_PORT_MAX=$((EPMD_PORT + 220))
  export RABBITMQ_NODENAME; RABBITMQ_NODENAME="$(node_name "$n")"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$((BASE_PORT + n))
  export RABBITMQ_DIST_PORT=$((BASE_PORT + 100 + n))
  export RABBITMQ_MNESIA_BASE="$base/mnesia"
  export RABBITMQ_LOG_BASE="$base/log"
  export RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
  export RABBITMQ_PID_FILE="$base/rabbit.pid"
  export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# Writes the shared cookie and env file, and node N's own files, once.
prepare() {
  local n=$1 base="$DIR/node$1"
  mkdir -p "$DIR/home" "$base/mnesia" "$base/log"
  if [ ! -f "$DIR/home/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/home/.erlang.cookie"
    chmod 400 "$DIR/home/.erlang.cookie"
  fi
  : >"$DIR/rabbitmq-env.conf"
  printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users = none\n' $((BASE_PORT + n)) >"$base/rabbitmq.conf"
  if [ -n "$TLS_DIR" ]; then
    {
      printf 'listeners.ssl.1 = 127.0.0.1:%s\n' $((BASE_PORT + 10 + n))
      printf 'ssl_options.cacertfile = %s/ca.pem\n' "$TLS_DIR"
      printf 'ssl_options.certfile = %s/server.pem\n' "$TLS_DIR"
      printf 'ssl_options.keyfile = %s/server.key\n' "$TLS_DIR"
      printf 'ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n'
    } >>"$base/rabbitmq.conf"
  fi
  printf '[].\n' >"$base/advanced.config"
  printf '[].\n' >"$base/enabled_plugins"
}

# Node N's pid while it runs. A killed node whose parent does not reap it (a container's
# init may not) stays a zombie that `kill -0` still finds: that is not running.
node_pid() {
  local file="$DIR/node$1/rabbit.pid" pid state
  [ -s "$file" ] || return 1
  pid="$(cat "$file")"
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [ "$state" != Z ] || return 1
  printf '%s\n' "$pid"
}

ctl() { local n=$1; shift; (node_env "$n"; "$CTL" -n "$(node_name "$n")" -q "$@"); }

start_node() {
  local n=$1
  if node_pid "$n" >/dev/null; then return 0; fi
  prepare "$n"
  log "starting $(node_name "$n") (AMQP 127.0.0.1:$((BASE_PORT + n)))"
  (node_env "$n"; "$SERVER" -detached >"$DIR/node$n/log/start.out" 2>&1)
}

await_node() {
  local n=$1
  for _ in $(seq 1 120); do
    if ctl "$n" await_startup --timeout 1 >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$(node_name "$n") did not start; see $DIR/node$n/log"
  return 1
}

join_node() {
  local n=$1 first; first="$(node_name 1)"
  if ctl "$n" cluster_status --formatter json 2>/dev/null | grep -q "\"$first\""; then
    return 0
  fi
  log "joining $(node_name "$n") to $first"
  ctl "$n" stop_app
  ctl "$n" join_cluster "$first"
  ctl "$n" start_app
}

stop_all() {
  local stopped=0
  for n in "${NODES[@]}"; do
    local pid
    if pid="$(node_pid "$n")"; then
      kill -CONT "$pid" 2>/dev/null || true
      ctl "$n" stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
      stopped=$((stopped + 1))
    fi
    rm -f "$DIR/node$n/rabbit.pid"
  done
  # This cluster's own epmd, never the default node's.
  if command -v epmd >/dev/null 2>&1; then
    ERL_EPMD_PORT="$EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
  fi
  log "stopped $stopped nodes"
}

signal_node() {
  local n=$1 signal=$2 pid
  pid="$(node_pid "$n")" || { log "$(node_name "$n") is not running"; return 1; }
  kill "-$signal" "$pid"
  log "sent SIG$signal to $(node_name "$n") (pid $pid)"
  # A killed node may take a moment to go (a busy machine): `restart` right after must not
  # find it still running and skip starting it.
  if [ "$signal" = KILL ]; then
    for _ in $(seq 100); do node_pid "$n" >/dev/null || return 0; sleep 0.1; done
    log "$(node_name "$n") still running 10 s after SIGKILL"; return 1
  fi
}

check_node_argument() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    *) log "name a node: 1, 2 or 3"; exit 2 ;;
  esac
}

case "${1:-}" in
  start)
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do await_node "$n"; done
    for n in "${NODES[@]}"; do [ "$n" = 1 ] || join_node "$n"; done
    log "ready: $("$0" urls)"
    ;;
  stop) stop_all ;;
  kill) check_node_argument "${2:-}"; signal_node "$2" KILL ;;
  pause) check_node_argument "${2:-}"; signal_node "$2" STOP ;;
  resume) check_node_argument "${2:-}"; signal_node "$2" CONT ;;
  restart)
    check_node_argument "${2:-}"
    start_node "$2"
    await_node "$2"
    ;;
  tls-urls)
    urls=()
    for n in "${NODES[@]}"; do urls+=("amqps://guest:guest@localhost:$((BASE_PORT + 10 + n))/%2f"); done
    (IFS=,; printf '%s\n' "${urls[*]}")
    ;;
  urls)
    urls=()
    for n in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$((BASE_PORT + n))/%2f"); done
    (IFS=,; printf '%s\n' "${urls[*]}")
    ;;
  leader)
    [ -n "${2:-}" ] || { log "name a queue"; exit 2; }
    for n in "${NODES[@]}"; do
      node_pid "$n" >/dev/null || continue
      leader="$(ctl "$n" list_queues name leader --no-table-headers 2>/dev/null |
        awk -v queue="$2" '$1 == queue { print $2 }')"
      case "$leader" in
        logagg-cluster-[123]@*) leader="${leader#logagg-cluster-}"; printf '%s\n' "${leader%%@*}"; exit 0 ;;
      esac
    done
    log "no running node names a leader for $2"; exit 1
    ;;
  ctl)
    shift
    for n in "${NODES[@]}"; do
      if node_pid "$n" >/dev/null; then ctl "$n" "$@"; exit $?; fi
    done
    log "no node is running"; exit 1
    ;;
  status)
    for n in "${NODES[@]}"; do
      if pid="$(node_pid "$n")"; then state="running (pid $pid)"; else state="not running"; fi
      printf '%s  127.0.0.1:%s  %s\n' "$(node_name "$n")" $((BASE_PORT + n)) "$state"
    done
    ;;
  *)
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
