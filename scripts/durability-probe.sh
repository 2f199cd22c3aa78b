#!/usr/bin/env bash
# Whether a MongoDB-compatible server keeps writes it acknowledged as journaled across a
# SIGKILL (scripts/durability_probe.py says how). SecantusDB, the test suite's server, does
# not always: docs/RELIABILITY.md has the figures.
#   scripts/durability-probe.sh [ROUNDS] [SECONDS]     # SECANTUSD_BIN names the binary
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.data/probe-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pymongo' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'pymongo==4.*'
fi
exec "$VENV/bin/python" "$ROOT/scripts/durability_probe.py" "${SECANTUSD_BIN:-secantusd-rs}" "$@"
