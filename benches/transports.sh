#!/usr/bin/env bash
# The peer transports side by side, same binary, same run, same machine:
#   bash benches/transports.sh [BINARY]        (default target/release/chordnet)
# Rings of PEERS (8) peers on 127.0.0.1 with the dev defaults, one per transport.kind in KINDS
# ("http grpc nats"; nats through a nats-server this script starts, Debian package
# `nats-server`) (only the traffic between peers differs; users talk to all over the REST API).
# For ROUNDS (3) rounds, the transports taking turns at going first:
#   - wrk (Debian package `wrk`) sends GET /v1/lookup/<random key> with CONNS (32) connections
#     spread over the peers' APIs for SECS (10) seconds: lookups/s, and the peers' CPU time
#     (utime + stime from /proc, all 8 peers) per lookup;
#   - the same with 1 connection: lookups/s, p50 and p99 latency;
# then once per transport a file of SIZE_MIB (1024) MiB goes up through a peer that holds no
# copy and comes down through another (curl), so every byte crosses the transport: MiB/s each
# way; then one peer per ring is killed (kill -9) and the time until the first other peer
# counts a failure (chordnet_peer_failures_detected_total) is printed. Prints every round, the
# medians and the ratios to http. Ports: HTTP_PEER, GRPC_PEER, HTTP_API, GRPC_API, NATS_API,
# NATS_PORT (each a base). Only loopback traffic; everything started here is stopped and
# removed here.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
bin=${1:-target/release/chordnet}
PEERS=${PEERS:-8}; CONNS=${CONNS:-32}; SECS=${SECS:-10}; ROUNDS=${ROUNDS:-3}; SIZE_MIB=${SIZE_MIB:-1024}
read -r -a kinds <<<"${KINDS:-http grpc nats}"
NATS_PORT=${NATS_PORT:-18900}
tools=(wrk curl jq); [[ " ${kinds[*]} " == *" nats "* ]] && tools+=(nats-server)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 2; }
done
[[ -x $bin ]] || { echo "no binary at $bin (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
declare -A ring_pids

# A peer's advertised address: host:port, or (nats) a subject that ends in its number.
advertise() { # kind peer_base i
  if [[ $1 == nats ]]; then echo "chordnet.bench.peer.p$3"; else echo "127.0.0.1:$(($2 + $3))"; fi
}

start_ring() { # kind peer_base api_base
  local kind=$1 pb=$2 ab=$3
  ring_pids[$kind]=""
  for ((i = 0; i < PEERS; i++)); do
    local d="$work/$kind-$i"; mkdir -p "$d/shared"
    local boot=(); ((i > 0)) && boot=(--bootstrap "$(advertise "$kind" "$pb" 0)")
    RUST_LOG=warn CHORDNET_TRANSPORT__KIND=$kind CHORDNET_FILES__MAX_FILE_SIZE=$((SIZE_MIB + 1))MiB \
      CHORDNET_NATS__URL="nats://127.0.0.1:$NATS_PORT" CHORDNET_NATS__RING_NAME=bench \
      "$bin" serve --advertise "$(advertise "$kind" "$pb" "$i")" --api "127.0.0.1:$((ab + i))" \
      --shared-dir "$d/shared" --store-dir "$d/data" "${boot[@]}" >"$d.log" 2>&1 &
    pids+=($!); ring_pids[$kind]+="$! "
  done
}

write_lookup_lua "$work/lookup.lua"

declare -A api=([http]=${HTTP_API:-18200} [grpc]=${GRPC_API:-18300} [nats]=${NATS_API:-18400})
declare -A peer=([http]=${HTTP_PEER:-17200} [grpc]=${GRPC_PEER:-17300} [nats]=0)
if [[ " ${kinds[*]} " == *" nats "* ]]; then
  nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$work/nats-server.log" 2>&1 &
  pids+=($!)
  for ((t = 0; t < 100; t++)); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
fi
for kind in "${kinds[@]}"; do start_ring "$kind" "${peer[$kind]}" "${api[$kind]}"; done
for kind in "${kinds[@]}"; do wait_ready "${api[$kind]}"; done
sleep 2 # let the rings finish their first stabilization rounds

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
  order=("${kinds[@]:r % ${#kinds[@]}}" "${kinds[@]:0:r % ${#kinds[@]}}")
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
for kind in "${kinds[@]}"; do
  base=${api[$kind]} name="big-$kind.bin"
  walk=$(curl -sf "http://127.0.0.1:$base/v1/ring" | jq -r '.nodes[].address')
  owner=$(curl -sf "http://127.0.0.1:$base/v1/lookup/$name" | jq -r '.node.address')
  mapfile -t ring <<<"$walk"
  for ((k = 0; k < ${#ring[@]}; k++)); do [[ ${ring[k]} == "$owner" ]] && first=$k; done
  holders=" ${ring[first]} ${ring[(first + 1) % PEERS]} ${ring[(first + 2) % PEERS]} "
  free=()
  for addr in "${ring[@]}"; do # a peer's API port from its peer port (or subject's number)
    if [[ $kind == nats ]]; then n=${addr##*.p}; else n=$((${addr##*:} - ${peer[$kind]})); fi
    [[ $holders == *" $addr "* ]] || free+=("$((n + base))")
  done
  secs=$(curl -sf -o /dev/null -w '%{time_total}' -T "$work/big.bin" "http://127.0.0.1:${free[0]}/v1/files/$name")
  up[$kind]=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN {printf "%.0f", m / s}')
  secs=$(curl -sf -o "$work/back.bin" -w '%{time_total}' "http://127.0.0.1:${free[1]}/v1/files/$name")
  cmp -s "$work/big.bin" "$work/back.bin" || { echo "$kind: the downloaded file differs" >&2; exit 1; }
  down[$kind]=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN {printf "%.0f", m / s}')
  rm -f "$work/back.bin"
  echo "$kind: $SIZE_MIB MiB up ${up[$kind]} MiB/s, down ${down[$kind]} MiB/s (through peers holding no copy)"
done

# kill -9 of one peer per ring: milliseconds until another peer counts a failure.
failures() { # api_base -> the sum of chordnet_peer_failures_detected_total over the peers
  local sum=0 v
  for ((i = 1; i < PEERS; i++)); do
    v=$(curl -sf "http://127.0.0.1:$(($1 + i))/metrics" | awk '/^chordnet_peer_failures_detected_total/ {print $2}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
declare -A detect
for kind in "${kinds[@]}"; do
  read -r -a rp <<<"${ring_pids[$kind]}"
  before=$(failures "${api[$kind]}")
  start=$(date +%s%N); kill -9 "${rp[0]}"
  until (($(failures "${api[$kind]}") > before)); do
    (($(date +%s%N) - start < 60000000000)) || { echo "$kind: no peer noticed the crash" >&2; exit 1; }
    sleep 0.01
  done
  detect[$kind]=$((($(date +%s%N) - start) / 1000000))
  echo "$kind: kill -9 to the first peer noticing: ${detect[$kind]} ms"
done

echo
head_row() { printf '%-34s' "median of $ROUNDS rounds, $PEERS peers"; printf ' %10s' "${kinds[@]}"; for k in "${kinds[@]:1}"; do printf ' %10s' "$k/${kinds[0]}"; done; echo; }
row() { # label, then one value per kind
  local label=$1; shift; local vals=("$@")
  printf '%-34s' "$label"; printf ' %10s' "${vals[@]}"
  for v in "${vals[@]:1}"; do printf ' %10s' "$(ratio "${vals[0]}" "$v")"; done; echo
}
col() { local k out=(); for k in "${kinds[@]}"; do out+=("$("$@" "$k")"); done; echo "${out[@]}"; }
m() { local -n arr=$1; median "${arr[$2]}"; }
v() { local -n arr=$1; echo "${arr[$2]}"; }
head_row
read -r -a x <<<"$(col m r32)"; row "lookups/s, $CONNS connections" "${x[@]}"
read -r -a x <<<"$(col m cpu)"; row "CPU ms per lookup, $CONNS conns" "${x[@]}"
read -r -a x <<<"$(col m r1)"; row "lookups/s, 1 connection" "${x[@]}"
read -r -a x <<<"$(col m p50)"; row "p50 ms, 1 connection" "${x[@]}"
read -r -a x <<<"$(col m p99)"; row "p99 ms, 1 connection" "${x[@]}"
read -r -a x <<<"$(col v up)"; row "$SIZE_MIB MiB upload, MiB/s" "${x[@]}"
read -r -a x <<<"$(col v down)"; row "$SIZE_MIB MiB download, MiB/s" "${x[@]}"
read -r -a x <<<"$(col v detect)"; row "kill -9 to first noticing, ms" "${x[@]}"
