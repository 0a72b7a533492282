#!/usr/bin/env bash
# The simulator's speed, one build against another, same run, same machine, same seed:
#   bash benches/sim_speed.sh OLD_BINARY [NEW_BINARY]     (NEW default target/release/chordnet)
# Runs `chordnet sim $SIM_ARGS --json` (default: 2,000 nodes split into 2 parts and merged,
# 10,000 lookups, seed 1) with each binary, ROUNDS (2) times, alternating which goes first,
# and prints per run the CPU seconds (user + system) and the peak resident memory (GNU time,
# Debian package `time`), then the medians and the ratios old / new. It also says whether both
# builds printed the same report (every field but wall_seconds): a speed-up that changes the
# seeded results is a behaviour change, not only a speed-up. Nothing is left behind.
set -euo pipefail
old=${1:?usage: bash benches/sim_speed.sh OLD_BINARY [NEW_BINARY]}
new=${2:-target/release/chordnet}
ROUNDS=${ROUNDS:-2}
read -r -a args <<<"${SIM_ARGS:---nodes 2000 --partition-parts 2 --lookups 10000 --seed 1}"
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }
for b in "$old" "$new"; do [[ -x $b ]] || { echo "no binary at $b" >&2; exit 2; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # name binary round -> appends "cpu_s rss_mib" to $work/name.runs, report to $work/name.json
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$2" sim "${args[@]}" --json >"$work/$1.$3.json"
  awk '{printf "%.2f %.0f\n", $1 + $2, $3 / 1024}' "$work/time" >>"$work/$1.runs"
  read -r cpu rss <<<"$(tail -1 "$work/$1.runs")"
  printf '%-4s round %d: %8.2f CPU s %7d MiB peak RSS\n' "$1" "$3" "$cpu" "$rss"
}

echo "chordnet sim ${args[*]} --json; old = $old, new = $new"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then run old "$old" "$r"; run new "$new" "$r"; else run new "$new" "$r"; run old "$old" "$r"; fi
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
oc=$(cut -d' ' -f1 "$work/old.runs" | median); nc=$(cut -d' ' -f1 "$work/new.runs" | median)
om=$(cut -d' ' -f2 "$work/old.runs" | median); nm=$(cut -d' ' -f2 "$work/new.runs" | median)
awk -v oc="$oc" -v nc="$nc" -v om="$om" -v nm="$nm" 'BEGIN {
  printf "median: old %.2f CPU s, %d MiB; new %.2f CPU s, %d MiB\n", oc, om, nc, nm
  printf "ratio old/new: CPU %.2fx, peak RSS %.2fx\n", oc / nc, om / nm }'
strip() { sed -E 's/"wall_seconds":[0-9.e+-]+//' "$1"; }
if [[ "$(strip "$work/old.1.json")" == "$(strip "$work/new.1.json")" ]]; then
  echo "reports: identical (but wall_seconds)"
else
  echo "reports: DIFFER"; echo "old: $(cat "$work/old.1.json")"; echo "new: $(cat "$work/new.1.json")"
fi
