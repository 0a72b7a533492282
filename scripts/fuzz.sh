#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 600), starting from the seeds
# in fuzz/seeds/<target>/ (its working corpus goes to fuzz/corpus/<target>/, not committed), and
# prints one summary line per target: runs, executions per second, corpus size. Stops at the
# first crash (the reproducer is in fuzz/artifacts/<target>/; commit it under fuzz/seeds/ once
# fixed, so that tests/fuzz_corpus.rs keeps it).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (needs `rustup toolchain install nightly` and
#        `cargo install cargo-fuzz`)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
if ! cargo +nightly fuzz build -O >/dev/null; then
  echo "fuzz: the targets do not build"
  exit 1
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" \
      -print_final_stats=1 -rss_limit_mb=4096 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t crashed (see fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(find "corpus/$t" -type f | wc -l)
  echo "fuzz: $t: ${secs} s, $runs runs ($speed/s), corpus $corpus inputs, no crash"
  rm -f "$log"
done
