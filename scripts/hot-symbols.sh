#!/usr/bin/env bash
# Writes link/hot-symbols.txt: the functions a peer runs while idle, then those a lookup and a
# small upload and download run, in that order. build.rs hands the list to the linker of the
# image's build (static, the dist profile), which lays those functions out first and together
# in .text: the kernel maps code in 64 KiB windows (and reads executables ahead 128 KiB around
# a fault), so about 1 MB of idle code scattered over 13 MiB kept ~6 MiB resident.
#
#   1. builds the image's binary (RUSTFLAGS='-C target-feature=+crt-static' cargo build
#      --profile dist --target <arch>-unknown-linux-gnu), or takes HOT_SYMBOLS_BIN; it must
#      have its symbol table (the dist profile keeps it) and be built exactly as the image is,
#      since a symbol's name carries a hash of the build's settings
#   2. a ring of HOT_SYMBOLS_PEERS (8; up to 64) peers on 127.0.0.1 (ports from
#      HOT_SYMBOLS_PORT_BASE, default 26900, below Linux's ephemeral ports: peer i on +i, its
#      API on +100+i), the
#      peers of HOT_SYMBOLS_PROFILE ("0 1": the founder and one joiner) under valgrind's
#      callgrind (Debian: apt-get install valgrind); a larger ring routes more (fingers, the
#      table)
#   3. once the ring is ready and start-up is over: callgrind's counters zeroed, HOT_SYMBOLS_IDLE
#      (150) seconds idle (stabilization, fingers, the files' repair and republish, a memory
#      release every 20 s), counters dumped (a dump zeroes them); 200 lookups and one upload and
#      download through peer 1's API, dumped again
#   4. the names of the functions with cost in the dumps, the idle ones first, one per line,
#      each C library function that comes in variants for several CPUs (__memcpy_avx2_..,
#      __strlen_evex..) followed by its other variants: valgrind's CPU lacks AVX-512, so the
#      profile names variants other than those a server's CPU runs
#
# A list made for an older build still links (names it does not find are ignored; the order is
# only a hint): run this again after updating dependencies or the toolchain, and compare the
# idle RSS (README "Lookups", "Idle memory").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${HOT_SYMBOLS_PORT_BASE:-26900}"
IDLE="${HOT_SYMBOLS_IDLE:-150}"
PROFILE="${HOT_SYMBOLS_PROFILE:-0 1}"
PEERS="${HOT_SYMBOLS_PEERS:-8}"
[ "$PEERS" -ge 3 ] && [ "$PEERS" -le 64 ] || die_early=1
OUT="$ROOT/link/hot-symbols.txt"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -z "${die_early:-}" ] || die "HOT_SYMBOLS_PEERS must be 3 to 64"
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
command -v curl >/dev/null || die "curl is missing"

BIN="${HOT_SYMBOLS_BIN:-}"
if [ -z "$BIN" ]; then
  TRIPLE="$(uname -m)-unknown-linux-gnu"
  log "building the image's binary (static, dist profile, $TRIPLE)"
  (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --profile dist --target "$TRIPLE" --bin chordnet)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TRIPLE/dist/chordnet"
fi
nm "$BIN" >"$WORK/nm" 2>/dev/null || true
grep -q ' [tT] main$' "$WORK/nm" || die "$BIN has no symbol table"

ready() { curl -fs -m 2 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
wait_ready() {
  local api=$1 limit=$2 start=$SECONDS
  until ready "$api"; do
    [ $((SECONDS - start)) -lt "$limit" ] || die "the peer with API port $api is not ready after ${limit}s"
    sleep 0.5
  done
}
peer() { # index, bootstrap port or "", then a command prefix
  local i=$1 boot=$2; shift 2
  mkdir -p "$WORK/$i/shared"
  local args=(serve --advertise "127.0.0.1:$((PORT + i))" --api "127.0.0.1:$((PORT + 100 + i))"
    --shared-dir "$WORK/$i/shared" --store-dir "$WORK/$i/data")
  [ -n "$boot" ] && args+=(--bootstrap "127.0.0.1:$boot")
  RUST_LOG=warn CHORDNET_MEMORY__RELEASE_CODE_INTERVAL=20s "$@" "$BIN" "${args[@]}" \
    >"$WORK/$i.log" 2>&1 &
  PIDS+=($!)
}

log "ring of $PEERS on 127.0.0.1:$PORT..$((PORT + PEERS - 1)), peers $PROFILE under callgrind"
profiled() { case " $PROFILE " in *" $1 "*) return 0 ;; esac; return 1; }
CG=()
for i in $(seq 0 $((PEERS - 1))); do
  boot=""; [ "$i" -gt 0 ] && boot=$PORT
  if profiled "$i"; then
    peer "$i" "$boot" valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.$i.out"
    CG+=("${PIDS[-1]}")
  else
    peer "$i" "$boot"
  fi
  [ "$i" -eq 0 ] && wait_ready $((PORT + 100)) 60
done
for i in $(seq 0 $((PEERS - 1))); do wait_ready $((PORT + 100 + i)) 120; done
# Start-up is over (the first memory release comes 5 s after ready).
sleep 10
for p in "${CG[@]}"; do callgrind_control -z "$p" >/dev/null 2>&1; done
log "idle for ${IDLE}s"
sleep "$IDLE"
for p in "${CG[@]}"; do callgrind_control --dump=idle "$p" >/dev/null 2>&1; done
log "lookups, an upload and a download"
API="http://127.0.0.1:$((PORT + 101))"
for k in $(seq 1 200); do curl -fs -o /dev/null "$API/v1/lookup/key-$k" || die "lookup $k failed"; done
head -c 300000 /dev/urandom >"$WORK/file"
curl -fs -o /dev/null -T "$WORK/file" "$API/v1/files/hot-symbols" || die "upload failed"
curl -fs -o "$WORK/back" "$API/v1/files/hot-symbols" || die "download failed"
cmp -s "$WORK/file" "$WORK/back" || die "the download differs from the upload"
for p in "${CG[@]}"; do callgrind_control --dump=load "$p" >/dev/null 2>&1; done

# Function names with cost in a callgrind dump: a name is written once, on the `fn=` or
# `cfn=` line that first mentions it, then referred to by its id; `fn=` opens a function's costs.
names() {
  awk '/^c?fn=\(/ {
         split($0, kv, "="); id = kv[2]; sub(/ .*/, "", id)
         rest = $0; sub(/^c?fn=\([0-9]+\) ?/, "", rest)
         if (rest != "") { name[id] = rest }
         if ($0 ~ /^fn=/ && (id in name) && !(name[id] in seen)) { seen[name[id]] = 1; print name[id] }
       }' "$1"
}
# Each profiled peer's first dump is its idle part, the second its load part.
dumps() { for i in $PROFILE; do ls "$WORK/cg.$i.out.$1" 2>/dev/null || die "peer $i wrote no dump $1"; done; }
awk '$2 ~ /^[tTwW]$/ { print $3 }' "$WORK/nm" | sort -u >"$WORK/defined"
# Only names the binary defines (callgrind also names addresses and valgrind's own stubs).
for d in $(dumps 1); do names "$d"; done | awk '!seen[$0]++' | grep -Fxf "$WORK/defined" >"$WORK/idle" || true
for d in $(dumps 2); do names "$d"; done | grep -Fxf "$WORK/defined" >"$WORK/load" || true
# A C library function the list names in one CPU variant (glibc's __<name>_<isa>...), then
# its other variants the binary defines.
variants() {
  awk -v defined="$WORK/defined" '
    BEGIN { while ((getline d < defined) > 0) all[++n] = d }
    function isa(rest) { return rest ~ /^(sse|ssse|avx|evex|erms)/ }
    { print }
    /^__[a-z0-9]+_/ {
      base = substr($0, 1, index(substr($0, 3), "_") + 2)
      if (!isa(substr($0, length(base) + 1)) || (base in done)) next
      done[base] = 1
      for (i = 1; i <= n; i++)
        if (index(all[i], base) == 1 && isa(substr(all[i], length(base) + 1))) print all[i]
    }' "$1"
}
cat "$WORK/idle" "$WORK/load" | awk '!seen[$0]++' >"$WORK/profiled"
n_idle=$(variants "$WORK/idle" | awk '!seen[$0]++' | wc -l)
variants "$WORK/profiled" | awk '!seen[$0]++' >"$WORK/list"
[ -s "$WORK/list" ] || die "no function names found in the dumps"
{
  echo "# The functions an idle chordnet peer runs, then those of lookups and a transfer: the"
  echo "# linker lays them out first in the image's build (build.rs). Written by"
  echo "# scripts/hot-symbols.sh from $("$BIN" --version) ($(date -u +%Y-%m-%d)); $n_idle idle."
  cat "$WORK/list"
} >"$OUT"
log "wrote $OUT: $(grep -vc '^#' "$OUT") functions ($n_idle of them idle)"
