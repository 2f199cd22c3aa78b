#!/usr/bin/env bash
# Where this machine's CPU went while a command ran: samples every core with perf's software
# clock (no hardware counters needed), then prints the share of all samples per process
# (idle included, so the shares add up to the machine) and each busy process's top symbols.
#
#   scripts/cpu-split.sh cargo bench -p collector_service --bench pipeline
#
# Build what the command runs first: compiling under it would be measured too.
# PERF_DATA (default .data/perf/cpu-split.data) keeps the samples for `perf report -i`.
# PERF_SYMBOLS (default 12) is how many symbols to print per process; PERF_PROCESSES
# (default 6) how many processes get that breakdown.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi
command -v perf >/dev/null || {
  echo "perf is not installed (apt-get install linux-perf)" >&2
  exit 1
}

data=${PERF_DATA:-.data/perf/cpu-split.data}
symbols=${PERF_SYMBOLS:-12}
processes=${PERF_PROCESSES:-6}
mkdir -p "$(dirname "$data")"

# 499 Hz per core: about 1,000 samples a second here, few enough to keep the run's cost small.
perf record --quiet -e cpu-clock -F 499 -a -g -o "$data" -- "$@"

report() {
  perf report -i "$data" --stdio --no-children -g none --percent-limit 0.5 "$@" 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' | cut -c1-150
}

# Per process (all its threads): perf's comm names a thread, and tokio workers share a name.
# A process is named by its main thread's comm, or by any of its threads' when that never ran.
split=$(perf script -i "$data" -F comm,pid,tid 2>/dev/null | awk '
  { split($NF, ids, "/"); pid = ids[1]; samples[pid]++; total++
    name = $1; for (i = 2; i < NF; i++) name = name " " $i
    if (!(pid in named) || ids[1] == ids[2]) { named[pid] = name } }
  END { for (p in samples) printf "%6.2f%%  %8d  %s\n", 100 * samples[p] / total, p, named[p] }' |
  sort -rn)

echo
echo "== share of all samples by process ($(nproc) cores; pid 0 is idle) =="
echo "$split" | head -15
echo
for pid in $(echo "$split" | awk '$2 != 0 { print $2 }' | head -"$processes"); do
  echo "== top symbols of process $pid ($(echo "$split" | awk -v p="$pid" '$2 == p { $1 = $2 = ""; print }' | sed 's/^ *//')) =="
  report --pid "$pid" --sort dso,symbol | head -"$symbols"
  echo
done
