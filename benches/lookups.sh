#!/usr/bin/env bash
# Lookup throughput of two chordnet builds side by side, same run, same machine:
#   bash benches/lookups.sh OLD_BINARY NEW_BINARY
# Each build runs a ring of PEERS (8) peers on 127.0.0.1 with the dev defaults; wrk (Debian
# package `wrk`) sends GET /v1/lookup/<random key> with CONNS (32) connections spread over the
# peers' APIs for SECS (10) seconds; the builds alternate for ROUNDS (3) rounds and the medians
# and their ratio are printed. Only loopback traffic; everything started here is stopped here.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
old=${1:?old binary}; new=${2:?new binary}
PEERS=${PEERS:-8}; CONNS=${CONNS:-32}; SECS=${SECS:-10}; ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_ring() { # binary peer_base api_base tag
  local bin=$1 pb=$2 ab=$3 tag=$4
  for ((i = 0; i < PEERS; i++)); do
    local d="$work/$tag-$i"; mkdir -p "$d/shared"
    local boot=(); ((i > 0)) && boot=(--bootstrap "127.0.0.1:$pb")
    RUST_LOG=warn "$bin" serve --advertise "127.0.0.1:$((pb + i))" --api "127.0.0.1:$((ab + i))" \
      --shared-dir "$d/shared" --store-dir "$d/data" "${boot[@]}" >"$d.log" 2>&1 &
    pids+=($!)
  done
}

write_lookup_lua "$work/lookup.lua"

start_ring "$old" 17000 18000 old
start_ring "$new" 17100 18100 new
wait_ready 18000; wait_ready 18100
sleep 2 # let both rings finish their first stabilization rounds

run() { # api_base -> lookups/s
  API_BASE=$1 PEERS=$PEERS wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$work/lookup.lua" \
    "http://127.0.0.1:$1" | awk '/Requests\/sec/ {print $2}'
}
declare -a a b
for ((r = 0; r < ROUNDS; r++)); do
  if ((r % 2 == 0)); then a+=("$(run 18000)"); b+=("$(run 18100)"); else b+=("$(run 18100)"); a+=("$(run 18000)"); fi
  echo "round $((r + 1)): old ${a[-1]} lookups/s, new ${b[-1]} lookups/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ma=$(median "${a[@]}"); mb=$(median "${b[@]}")
echo "median: old $ma, new $mb lookups/s; new/old = $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", b / a}')"
