#!/usr/bin/env bash
# README "Partitions": the merge figures, one row per ring size and number of parts:
#   bash benches/partition_figures.sh [BINARY]        (default target/release/chordnet)
# For each N in NODES (64 1024 10000) and K in PARTS (2 3) runs
#   chordnet sim --nodes N --partition-parts K --lookups 10000 --seed SEED(1) --json
# (the split lasts the default 20 periods; r = 4; the membership table at its default,
# `ring.membership_table_max` 4,096) and prints a markdown row: rounds to merge
# (`merge_rounds`), those rounds in seconds at the default 500 ms stabilization period,
# messages per node from healing until one ring (`merge_messages_per_node`), unifications
# started, lookups correct after the merge, and what the run cost: CPU seconds (user + system)
# and peak resident memory (GNU time, Debian package `time`). Rows can run in parallel in
# separate invocations (NODES=10000 PARTS=3 ...); each 10,000-node row takes minutes.
set -euo pipefail
bin=${1:-target/release/chordnet}
NODES=${NODES:-64 1024 10000}; PARTS=${PARTS:-2 3}; SEED=${SEED:-1}
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }
[[ -x $bin ]] || { echo "no binary at $bin (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| N | parts | rounds to merge | seconds at 500 ms periods | messages per node | unifications started | lookups correct after | CPU s | peak RSS MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NODES; do
  for k in $PARTS; do
    /usr/bin/time -f "%U %S %M" -o "$work/time" "$bin" sim --nodes "$n" --partition-parts "$k" \
      --lookups 10000 --seed "$SEED" --json >"$work/report.json"
    field() { grep -o "\"$1\":[^,}]*" "$work/report.json" | cut -d: -f2; }
    read -r user system rss <<<"$(tail -1 "$work/time")"
    awk -v n="$n" -v k="$k" -v rounds="$(field merge_rounds)" -v msgs="$(field merge_messages_per_node)" \
      -v started="$(field merges_started)" -v ok="$(field lookup_success_rate)" \
      -v user="$user" -v sys="$system" -v rss="$rss" 'BEGIN {
        printf "| %d | %d | %s | %s | %.1f | %d | %.3f%% | %.1f | %.0f |\n", n, k,
          rounds == "null" ? "not merged" : rounds,
          rounds == "null" ? "-" : sprintf("%.1f", rounds * 0.5),
          msgs, started, 100 * ok, user + sys, rss / 1024 }'
  done
done
