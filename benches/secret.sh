#!/usr/bin/env bash
# The cost of the ring secret and of mutual TLS, same binary, same run, same machine:
#   bash benches/secret.sh [BINARY]        (default target/release/chordnet)
# Five rings of PEERS (8) peers on 127.0.0.1 with the dev defaults. Over HTTP: `off`
# (neither), `on` (security.ring_secret_file: every peer message signed and checked with
# HMAC-SHA256) and `tls` (security.tls: every peer connection mutual TLS, certificates made
# here with openssl: one CA, one ECDSA P-256 certificate for IP 127.0.0.1). Over gRPC
# (transport.kind grpc): `grpc` (neither) and `grpc-tls` (mutual TLS). For ROUNDS (3) rounds,
# rotating which goes first, wrk (Debian package `wrk`) sends GET /v1/lookup/<random key> with
# CONNS (32) connections spread over the peers' APIs (plain HTTP) for SECS (10) seconds:
# lookups/s, and the peers' CPU time (utime + stime from /proc, all peers) per lookup. Prints
# every round, the medians and the ratios: HTTP to `off`, gRPC with TLS to `grpc`. Ports from
# PORT_BASE (44100): peers at +0, +100, ..., +400, APIs at +500, ..., +900. Only loopback
# traffic; everything started here is stopped and removed here.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
bin=${1:-target/release/chordnet}
PEERS=${PEERS:-8}; CONNS=${CONNS:-32}; SECS=${SECS:-10}; ROUNDS=${ROUNDS:-3}; PORT_BASE=${PORT_BASE:-44100}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "needs openssl (the TLS ring's certificates)" >&2; exit 2; }
[[ -x $bin ]] || { echo "no binary at $bin (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
declare -A ring_pids

# A key of 32 random bytes, hex, the way an operator makes one.
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/ring-secret"; echo >>"$work/ring-secret"
# A CA and one certificate for 127.0.0.1 (every peer's advertised host), as cert-manager makes.
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.crt" -subj /CN=bench-ca \
  -days 1 2>/dev/null
openssl req "${ec[@]}" -keyout "$work/peer.key" -out "$work/peer.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$work/peer.ext"
openssl x509 -req -in "$work/peer.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/peer.ext" -out "$work/peer.crt" 2>/dev/null

start_ring() { # mode peer_base api_base
  local mode=$1 pb=$2 ab=$3 secret=(env)
  ring_pids[$mode]=""
  [[ $mode == on ]] && secret+=("CHORDNET_SECURITY__RING_SECRET_FILE=$work/ring-secret")
  [[ $mode == *tls ]] && secret+=("CHORDNET_SECURITY__TLS__CA_FILE=$work/ca.crt"
    "CHORDNET_SECURITY__TLS__CERT_FILE=$work/peer.crt" "CHORDNET_SECURITY__TLS__KEY_FILE=$work/peer.key")
  [[ $mode == grpc* ]] && secret+=("CHORDNET_TRANSPORT__KIND=grpc")
  for ((i = 0; i < PEERS; i++)); do
    local d="$work/$mode-$i"; mkdir -p "$d/shared"
    local boot=(); ((i > 0)) && boot=(--bootstrap "127.0.0.1:$pb")
    RUST_LOG=warn "${secret[@]}" "$bin" serve --advertise "127.0.0.1:$((pb + i))" \
      --api "127.0.0.1:$((ab + i))" --shared-dir "$d/shared" --store-dir "$d/data" "${boot[@]}" \
      >"$d.log" 2>&1 &
    pids+=($!); ring_pids[$mode]+="$! "
  done
}

write_lookup_lua "$work/lookup.lua"
modes=(off on tls grpc grpc-tls)
declare -A api
for ((m = 0; m < ${#modes[@]}; m++)); do
  api[${modes[$m]}]=$((PORT_BASE + 500 + 100 * m))
  start_ring "${modes[$m]}" "$((PORT_BASE + 100 * m))" "${api[${modes[$m]}]}"
  wait_ready "${api[${modes[$m]}]}" # one ring forms at a time (40 peers joining at once overload 2 cores)
done
sleep 2 # let the rings finish their first stabilization rounds

declare -A rps cpu
for ((r = 0; r < ROUNDS; r++)); do
  order=("${modes[@]:r % 5}" "${modes[@]:0:r % 5}")
  for mode in "${order[@]}"; do
    # shellcheck disable=SC2086
    read -r a b <<<"$(wrk_lookups "${api[$mode]}" "$CONNS" ${ring_pids[$mode]})"
    rps[$mode]+="$a "; cpu[$mode]+="$b "
    echo "round $((r + 1)) $mode: $a lookups/s at $CONNS connections ($b ms CPU per lookup)"
  done
done
# The secret was in use: the signed ring refused nothing and the other ring signed nothing.
rejected=$(curl -sf "http://127.0.0.1:${api[on]}/metrics" | awk '/^chordnet_peer_auth_rejections_total/ {s += $2} END {print s + 0}')
failed() { curl -sf "http://127.0.0.1:${api[$1]}/metrics" | awk '/^chordnet_peer_tls_handshake_failures_total/ {s += $2} END {print s + 0}'; }

median() { printf '%s\n' $1 | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b / a}'; }
echo
printf '%-34s %10s %10s %10s %10s %10s\n' "HTTP, median of $ROUNDS rounds, $PEERS peers" off on tls on/off tls/off
row() { printf '%-34s %10s %10s %10s %10s %10s\n' "$1" "$2" "$3" "$4" "$(ratio "$2" "$3")" "$(ratio "$2" "$4")"; }
row "lookups/s, $CONNS connections" "$(median "${rps[off]}")" "$(median "${rps[on]}")" "$(median "${rps[tls]}")"
row "CPU ms per lookup" "$(median "${cpu[off]}")" "$(median "${cpu[on]}")" "$(median "${cpu[tls]}")"
echo
printf '%-34s %10s %10s %10s\n' "gRPC, median of $ROUNDS rounds" grpc grpc-tls tls/plain
row2() { printf '%-34s %10s %10s %10s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
row2 "lookups/s, $CONNS connections" "$(median "${rps[grpc]}")" "$(median "${rps[grpc-tls]}")"
row2 "CPU ms per lookup" "$(median "${cpu[grpc]}")" "$(median "${cpu[grpc-tls]}")"
echo "messages refused in the signed ring: $rejected; failed TLS handshakes (peer 0): HTTP $(failed tls), gRPC $(failed grpc-tls)"
