#!/usr/bin/env bash
# Runs every test against the real RabbitMQ and MongoDB-compatible server, starting them
# first (scripts/setup.sh). This is the command README gives and CI runs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh

# Queues left by an interrupted earlier run would only cost broker memory; drop them.
if command -v rabbitmqctl >/dev/null 2>&1; then
  rabbitmqctl -q list_queues name 2>/dev/null | grep '^logagg_test_' \
    | while read -r queue; do rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true; done
fi

cargo test --workspace --all-targets --locked "$@"
