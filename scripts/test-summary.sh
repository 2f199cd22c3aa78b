#!/usr/bin/env bash
# Adds up the `test result:` lines of `cargo test` output read from stdin into one line,
# `summary: N passed, N failed, N skipped (B test binaries)`. Exits 1 when no test ran.
set -euo pipefail
awk '
  /^test result: / {
    binaries++
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^passed;?$/) passed += $i
      if ($(i + 1) ~ /^failed;?$/) failed += $i
      if ($(i + 1) ~ /^ignored;?$/) ignored += $i
    }
  }
  END {
    printf "summary: %d passed, %d failed, %d skipped (%d test binaries)\n", passed, failed, ignored, binaries
    if (passed + failed == 0) exit 1
  }
'
