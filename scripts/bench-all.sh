#!/usr/bin/env bash
# Every benchmark of docs/PERFORMANCE.md's one-run re-measure, one after the other, the
# realistic profile beside the simple one, each series on a freshly restarted SecantusDB
# (its data removed), so one run's figures compare with each other:
#
#   scripts/bench-all.sh 2>&1 | tee .data/bench-all.log
#   scripts/bench-all.sh pipeline search     # only these parts
#
# Parts, in this order: pipeline (a)-(f) batched, then (a)+(b) one log a message; search
# (1M logs, pages, stats, dashboard); freshness (ingest → searchable and search under load
# at half and 90 % of this run's batched (b)); retention; services ((f) at 10,000 services,
# batched, default prefetch); tenmillion (search over 10M realistic logs). About 45 min here.
# Nothing else should run meanwhile: the benchmarks share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=${*:-pipeline search freshness retention services tenmillion}
log_dir=.data/bench-all
mkdir -p "$log_dir"

# Build first, so no benchmark's time includes compiling.
cargo build --release --quiet -p source_service -p monitoring_service -p collector_service
cargo bench --no-run --quiet -p collector_service -p search_service -p retention_service

fresh_database() {
  pkill -f secantusd-rs || true
  while pgrep -f secantusd-rs >/dev/null; do sleep 0.2; done
  rm -rf .data/mongo
  bash scripts/setup.sh >/dev/null
}

# Runs a benchmark on a fresh database, printing its figures and keeping them in $log_dir.
bench() {
  local name=$1
  shift
  echo
  echo "### $name ($(date -u +%H:%M:%S))"
  fresh_database
  env "$@" 2>&1 | grep --line-buffered -v -E '^\s*(Compiling|Finished|Running|Blocking)' | tee "$log_dir/$name.log"
}

batched_b() {
  sed -n 's/^(b) pipeline[^:]*: *\([0-9]*\) logs\/s.*/\1/p' "$log_dir/pipeline-realistic.log" | head -1
}

for part in $parts; do
  case $part in
    pipeline)
      for profile in realistic simple; do
        bench "pipeline-$profile" BENCH_PROFILE=$profile BENCH_BATCH=50 BENCH_REPEAT=1 \
          LOGAGG__COLLECTOR__PREFETCH=80 cargo bench -p collector_service --bench pipeline
        bench "pipeline-one-$profile" BENCH_PROFILE=$profile BENCH_ONLY=ab BENCH_BATCH=1 \
          BENCH_MESSAGES=100000 cargo bench -p collector_service --bench pipeline
      done
      ;;
    search)
      for profile in realistic simple; do
        bench "search-$profile" BENCH_PROFILE=$profile BENCH_REQUESTS=100 \
          cargo bench -p search_service --bench queries
      done
      ;;
    freshness)
      ceiling=$(batched_b 2>/dev/null || true)
      bench freshness BENCH_CEILING="${ceiling:-20000}" BENCH_SECONDS=20 \
        cargo bench -p search_service --bench freshness
      ;;
    retention)
      for profile in realistic simple; do
        bench "retention-$profile" BENCH_PROFILE=$profile \
          cargo bench -p retention_service --bench purge
      done
      ;;
    services)
      bench services BENCH_ONLY=f BENCH_BATCH=50 BENCH_SERVICES=10000 \
        cargo bench -p collector_service --bench pipeline
      ;;
    tenmillion)
      bench search-10m BENCH_RECORDS=10000000 BENCH_REQUESTS=10 \
        cargo bench -p search_service --bench queries
      ;;
    *)
      echo "unknown part: $part (pipeline search freshness retention services tenmillion)" >&2
      exit 2
      ;;
  esac
done
