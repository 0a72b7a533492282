#!/usr/bin/env bash
# The peer transports side by side, same binary, same run, same machine:
#   bash benches/transports.sh [BINARY]        (default target/release/chordnet)
# Two rings of PEERS (8) peers on 127.0.0.1 with the dev defaults, one with transport.kind =
# http and one with grpc (only the traffic between peers differs; users talk to both over the
# REST API). For ROUNDS (3) rounds, the transports alternating which goes first:
#   - wrk (Debian package `wrk`) sends GET /v1/lookup/<random key> with CONNS (32) connections
#     spread over the peers' APIs for SECS (10) seconds: lookups/s, and the peers' CPU time
#     (utime + stime from /proc, all 8 peers) per lookup;
#   - the same with 1 connection: lookups/s, p50 and p99 latency;
# then once per transport a file of SIZE_MIB (1024) MiB goes up through a peer that holds no
# copy and comes down through another (curl), so every byte crosses the transport: MiB/s each
# way. Prints every round, the medians and the grpc/http ratios. Only loopback traffic;
# everything started here is stopped and removed here.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
bin=${1:-target/release/chordnet}
PEERS=${PEERS:-8}; CONNS=${CONNS:-32}; SECS=${SECS:-10}; ROUNDS=${ROUNDS:-3}; SIZE_MIB=${SIZE_MIB:-1024}
for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 2; }
done
[[ -x $bin ]] || { echo "no binary at $bin (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
declare -A ring_pids

start_ring() { # kind peer_base api_base
  local kind=$1 pb=$2 ab=$3
  ring_pids[$kind]=""
  for ((i = 0; i < PEERS; i++)); do
    local d="$work/$kind-$i"; mkdir -p "$d/shared"
    local boot=(); ((i > 0)) && boot=(--bootstrap "127.0.0.1:$pb")
    RUST_LOG=warn CHORDNET_TRANSPORT__KIND=$kind CHORDNET_FILES__MAX_FILE_SIZE=$((SIZE_MIB + 1))MiB \
      "$bin" serve --advertise "127.0.0.1:$((pb + i))" --api "127.0.0.1:$((ab + i))" \
      --shared-dir "$d/shared" --store-dir "$d/data" "${boot[@]}" >"$d.log" 2>&1 &
    pids+=($!); ring_pids[$kind]+="$! "
  done
}

write_lookup_lua "$work/lookup.lua"

declare -A api=([http]=18200 [grpc]=18300) peer=([http]=17200 [grpc]=17300)
start_ring http "${peer[http]}" "${api[http]}"
start_ring grpc "${peer[grpc]}" "${api[grpc]}"
wait_ready "${api[http]}"; wait_ready "${api[grpc]}"
sleep 2 # let both rings finish their first stabilization rounds

cpu_ticks() { # pids... -> utime + stime, clock ticks
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

# kind conns -> "lookups/s cpu_ms_per_lookup p50_ms p99_ms"
run() {
  local kind=$1 conns=$2 threads=2 before after out
  ((conns == 1)) && threads=1
  # shellcheck disable=SC2086
  before=$(cpu_ticks ${ring_pids[$kind]})
  out=$(API_BASE=${api[$kind]} PEERS=$PEERS wrk -t"$threads" -c"$conns" -d"${SECS}s" --latency \
    -s "$work/lookup.lua" "http://127.0.0.1:${api[$kind]}")
  # shellcheck disable=SC2086
  after=$(cpu_ticks ${ring_pids[$kind]})
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
    /requests in/ {n = $1} /Requests\/sec/ {rps = $2}
    END {printf "%.0f %.4f %.2f %.2f\n", rps, ticks * 1000 / hz / n, p50, p99}' <<<"$out"
}

declare -A r32 cpu r1 p50 p99
for ((r = 0; r < ROUNDS; r++)); do
  order=(http grpc); ((r % 2 == 1)) && order=(grpc http)
  for kind in "${order[@]}"; do
    read -r a b _ _ <<<"$(run "$kind" "$CONNS")"
    read -r c _ d e <<<"$(run "$kind" 1)"
    r32[$kind]+="$a "; cpu[$kind]+="$b "; r1[$kind]+="$c "; p50[$kind]+="$d "; p99[$kind]+="$e "
    echo "round $((r + 1)) $kind: $a lookups/s at $CONNS connections ($b ms CPU per lookup), $c lookups/s at 1 (p50 $d ms, p99 $e ms)"
  done
done

median() { printf '%s\n' $1 | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b / a}'; }

# A file through peers that hold no copy: the uploader and downloader are outside the
# responsible peer and its two successors (ring.replicas = 3).
head -c $((SIZE_MIB << 20)) /dev/urandom >"$work/big.bin"
declare -A up down
for kind in http grpc; do
  base=${api[$kind]} name="big-$kind.bin"
  walk=$(curl -sf "http://127.0.0.1:$base/v1/ring" | jq -r '.nodes[].address')
  owner=$(curl -sf "http://127.0.0.1:$base/v1/lookup/$name" | jq -r '.node.address')
  mapfile -t ring <<<"$walk"
  for ((k = 0; k < ${#ring[@]}; k++)); do [[ ${ring[k]} == "$owner" ]] && first=$k; done
  holders=" ${ring[first]} ${ring[(first + 1) % PEERS]} ${ring[(first + 2) % PEERS]} "
  free=()
  for addr in "${ring[@]}"; do # a peer's API port from its peer port
    [[ $holders == *" $addr "* ]] || free+=("$((${addr##*:} - ${peer[$kind]} + base))")
  done
  secs=$(curl -sf -o /dev/null -w '%{time_total}' -T "$work/big.bin" "http://127.0.0.1:${free[0]}/v1/files/$name")
  up[$kind]=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN {printf "%.0f", m / s}')
  secs=$(curl -sf -o "$work/back.bin" -w '%{time_total}' "http://127.0.0.1:${free[1]}/v1/files/$name")
  cmp -s "$work/big.bin" "$work/back.bin" || { echo "$kind: the downloaded file differs" >&2; exit 1; }
  down[$kind]=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN {printf "%.0f", m / s}')
  rm -f "$work/back.bin"
  echo "$kind: $SIZE_MIB MiB up ${up[$kind]} MiB/s, down ${down[$kind]} MiB/s (through peers holding no copy)"
done

echo
printf '%-34s %10s %10s %10s\n' "median of $ROUNDS rounds, $PEERS peers" http grpc grpc/http
row() { printf '%-34s %10s %10s %10s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
row "lookups/s, $CONNS connections" "$(median "${r32[http]}")" "$(median "${r32[grpc]}")"
row "CPU ms per lookup, $CONNS conns" "$(median "${cpu[http]}")" "$(median "${cpu[grpc]}")"
row "lookups/s, 1 connection" "$(median "${r1[http]}")" "$(median "${r1[grpc]}")"
row "p50 ms, 1 connection" "$(median "${p50[http]}")" "$(median "${p50[grpc]}")"
row "p99 ms, 1 connection" "$(median "${p99[http]}")" "$(median "${p99[grpc]}")"
row "$SIZE_MIB MiB upload, MiB/s" "${up[http]}" "${up[grpc]}"
row "$SIZE_MIB MiB download, MiB/s" "${down[http]}" "${down[grpc]}"
