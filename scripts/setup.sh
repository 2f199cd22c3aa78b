#!/usr/bin/env bash
# Installs and starts what logagg needs on a machine without Docker: RabbitMQ running on
# 127.0.0.1:5672 and the MongoDB-compatible SecantusDB server on 127.0.0.1:27017.
# Idempotent: anything already installed or running is left as it is.
set -euo pipefail

SECANTUS_VERSION="0.5.3-beta.196"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA_DIR="${LOGAGG_DATA_DIR:-$ROOT/.data}"
MONGO_PORT="${LOGAGG_MONGO_PORT:-27017}"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[setup] %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  log "$name did not open port $port"; return 1
}

install_secantus() {
  if command -v secantusd-rs >/dev/null 2>&1 \
     && secantusd-rs --version 2>/dev/null | grep -q "$SECANTUS_VERSION"; then
    return 0
  fi
  if ! command -v cmake >/dev/null 2>&1; then
    log "installing cmake (SecantusDB builds WiredTiger with it)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
  fi
  log "building SecantusDB $SECANTUS_VERSION (about 4 minutes, once)"
  cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version --locked --quiet
}

start_rabbitmq() {
  if port_open 5672; then return 0; fi
  log "starting RabbitMQ"
  rabbitmq-server -detached
  rabbitmqctl -q await_startup >/dev/null 2>&1 || wait_for_port 5672 RabbitMQ
}

start_secantus() {
  if port_open "$MONGO_PORT"; then return 0; fi
  mkdir -p "$DATA_DIR/mongo"
  log "starting SecantusDB on 127.0.0.1:$MONGO_PORT (data in $DATA_DIR/mongo)"
  nohup secantusd-rs --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$DATA_DIR/mongo" \
    --log-level WARNING >"$DATA_DIR/secantusd.log" 2>&1 &
  echo $! >"$DATA_DIR/secantusd.pid"
  wait_for_port "$MONGO_PORT" SecantusDB
}

install_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  log "installing Chromium and ChromeDriver (the dashboard's browser test)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

install_secantus
install_browser
start_rabbitmq
# A test that raises a memory alarm (tests/blocked_broker.rs) lifts it when it ends; should
# it have died first, publishers would stay blocked: lift it here too.
rabbitmqctl -q set_vm_memory_high_watermark 0.4 >/dev/null 2>&1 || true
start_secantus
log "ready: RabbitMQ on 127.0.0.1:5672, MongoDB-compatible server on 127.0.0.1:$MONGO_PORT"
