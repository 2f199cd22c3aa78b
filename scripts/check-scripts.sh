#!/usr/bin/env bash
# Checks the project's shell scripts: shellcheck clean, and test-summary.sh adding up
# cargo test's result lines (and failing when no test ran). Run by .ci/run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if ! command -v shellcheck >/dev/null 2>&1; then
  echo "[check-scripts] installing shellcheck"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
shellcheck scripts/*.sh .ci/run

fixture='test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s'
summary="$(printf '%s\n' "$fixture" | scripts/test-summary.sh)"
expected="summary: 5 passed, 1 failed, 1 skipped (2 test binaries)"
if [ "$summary" != "$expected" ]; then
  echo "[check-scripts] test-summary.sh said '$summary', expected '$expected'"; exit 1
fi
if printf 'running 0 tests\n' | scripts/test-summary.sh >/dev/null; then
  echo "[check-scripts] test-summary.sh passed a run in which no test ran"; exit 1
fi
echo "[check-scripts] scripts ok"
