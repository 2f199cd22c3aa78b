#!/usr/bin/env bash
# Runs every test against the real RabbitMQ and MongoDB-compatible server, installing and
# starting them first (scripts/setup.sh). This is the command README gives and CI runs.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p search_service`).
# Ends with one line adding up every test binary's result: `summary: N passed, N failed, …`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh

OUTPUT="$(mktemp)"
trap 'rm -f "$OUTPUT"' EXIT
status=0
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$OUTPUT" || status=$?
scripts/test-summary.sh <"$OUTPUT"
exit "$status"
