#!/usr/bin/env bash
# Installs and starts what logagg needs on a Debian machine without Docker: RabbitMQ on
# 127.0.0.1:5672 (installed from Debian's packages when missing), the MongoDB-compatible
# SecantusDB server on 127.0.0.1:27017 (built once with cargo), Chromium with
# ChromeDriver for the dashboard's browser tests, and schemathesis (from PyPI, in a venv
# under .data/) for the OpenAPI conformance test, with the shippers' Python clients the
# protocol tests drive (python-logging-loki, loki-logger-handler, python-snappy,
# elasticsearch, opentelemetry-sdk, graypy), the JavaScript OTLP exporter (npm, into
# .data/node) and rsyslog with omelasticsearch (Debian packages).
# Idempotent: anything already installed or running is left as it is.
set -euo pipefail

SECANTUS_VERSION="0.5.3-beta.196"
SCHEMATHESIS_VERSION="4.32.5"
LOGGING_LOKI_VERSION="0.3.1"
LOKI_LOGGER_HANDLER_VERSION="1.1.2"
PYTHON_SNAPPY_VERSION="0.7.3"
ELASTICSEARCH_PY_VERSION="9.5.1"
OTEL_PY_VERSION="1.45.2"
GRAYPY_VERSION="2.1.0"
OTEL_JS_EXPORTER_VERSION="0.301.0"
OTEL_JS_SDK_LOGS_VERSION="3.1.0"
OTEL_JS_RESOURCES_VERSION="3.1.1"
OTEL_JS_API_VERSION="1.10.0"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA_DIR="${LOGAGG_DATA_DIR:-$ROOT/.data}"
MONGO_PORT="${LOGAGG_MONGO_PORT:-27017}"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[setup] %s\n' "$*"; }

APT_UPDATED=""
# Installs Debian packages, refreshing the package lists once per run.
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

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
    apt_install cmake
  fi
  log "building SecantusDB $SECANTUS_VERSION (about 4 minutes, once)"
  cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version --locked --quiet
}

install_rabbitmq() {
  if command -v rabbitmq-server >/dev/null 2>&1; then return 0; fi
  log "installing RabbitMQ (Debian's rabbitmq-server)"
  # No init system runs here: keep the package's scripts from starting it (start_rabbitmq
  # does), unless the machine already has a policy of its own.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt_install rabbitmq-server
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
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
  log "installing Chromium and ChromeDriver (the dashboard's browser tests)"
  apt_install chromium chromium-driver
}

install_schemathesis() {
  local venv="$DATA_DIR/venv"
  if "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return 0
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION (the OpenAPI conformance test)"
  mkdir -p "$DATA_DIR"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

# The shippers' own client libraries, from PyPI into the same venv, for the protocol tests
# (each drives our listener with the real client, unchanged).
install_python_clients() {
  local venv="$DATA_DIR/venv"
  if "$venv/bin/python" -c "import logging_loki, loki_logger_handler, snappy, elasticsearch, opentelemetry.exporter.otlp.proto.http, graypy" 2>/dev/null; then
    return 0
  fi
  log "installing the Python shipper clients (python-logging-loki, loki-logger-handler, python-snappy, elasticsearch, opentelemetry-sdk with its OTLP/HTTP exporter, graypy)"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "python-logging-loki==$LOGGING_LOKI_VERSION" \
    "loki-logger-handler==$LOKI_LOGGER_HANDLER_VERSION" \
    "python-snappy==$PYTHON_SNAPPY_VERSION" \
    "elasticsearch==$ELASTICSEARCH_PY_VERSION" \
    "opentelemetry-sdk==$OTEL_PY_VERSION" \
    "opentelemetry-exporter-otlp-proto-http==$OTEL_PY_VERSION" \
    "graypy==$GRAYPY_VERSION"
}

# rsyslog with omelasticsearch, which the shippers test runs to forward a file (omfwd to the
# syslog listener, omelasticsearch to the bulk API). Installing it starts no daemon here.
install_rsyslog() {
  if command -v rsyslogd >/dev/null \
    && ls /usr/lib/*/rsyslog/omelasticsearch.so >/dev/null 2>&1; then
    return 0
  fi
  log "installing rsyslog and rsyslog-elasticsearch (Debian packages)"
  apt_install rsyslog rsyslog-elasticsearch
}

# The JavaScript OTLP/HTTP log exporter (JSON), for the OTLP test, into .data/node.
install_node_clients() {
  local prefix="$DATA_DIR/node"
  if [ -f "$prefix/node_modules/@opentelemetry/exporter-logs-otlp-http/package.json" ] \
    && grep -q "\"version\": \"$OTEL_JS_EXPORTER_VERSION\"" \
      "$prefix/node_modules/@opentelemetry/exporter-logs-otlp-http/package.json"; then
    return 0
  fi
  command -v npm >/dev/null || apt_install nodejs npm
  log "installing the JavaScript OTLP exporter (@opentelemetry/exporter-logs-otlp-http $OTEL_JS_EXPORTER_VERSION)"
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --silent \
    "@opentelemetry/exporter-logs-otlp-http@$OTEL_JS_EXPORTER_VERSION" \
    "@opentelemetry/sdk-logs@$OTEL_JS_SDK_LOGS_VERSION" \
    "@opentelemetry/resources@$OTEL_JS_RESOURCES_VERSION" \
    "@opentelemetry/api@$OTEL_JS_API_VERSION"
}

install_rabbitmq
install_secantus
install_browser
install_schemathesis
install_python_clients
install_node_clients
install_rsyslog
start_rabbitmq
# A test that raises a memory alarm (tests/blocked_broker.rs) lifts it when it ends; should
# it have died first, publishers would stay blocked: lift it here too.
rabbitmqctl -q set_vm_memory_high_watermark 0.4 >/dev/null 2>&1 || true
start_secantus
log "ready: RabbitMQ on 127.0.0.1:5672, MongoDB-compatible server on 127.0.0.1:$MONGO_PORT"
