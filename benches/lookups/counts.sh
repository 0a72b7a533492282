#!/usr/bin/env bash
# What one lookup costs the peers, counted rather than timed: calls to libc's malloc, system
# calls, context switches and CPU time of all the ring's peers during 8 s of the lookups bench
# at 32 clients (8 peers), divided by the lookups the peers counted in the same window
# (`chordnet_lookups_total`, read from every peer's /metrics before and after).
#
#   LOOKUPS_PORT_BASE=44000 bash benches/lookups/counts.sh
#
# Needs perf and root (a uprobe on libc's malloc; the probe slows malloc, so the CPU figure here
# is above the bench's own). LOOKUPS_THIS=<an older chordnet> counts that build instead. The
# peers are found by their ports (from LOOKUPS_PORT_BASE); everything the bench starts, it stops.
set -euo pipefail
port_base=${LOOKUPS_PORT_BASE:?set LOOKUPS_PORT_BASE: the peers are found by their ports}
perf=${PERF:-perf}
window=8
out=$(mktemp)
trap 'rm -f "$out" "$out.stat"' EXIT

LOOKUPS_SECS=$((window + 6)) LOOKUPS_CLIENTS=32 LOOKUPS_ROUNDS=1 LOOKUPS_PEERS=8 \
    cargo bench --bench lookups >"$out" 2>&1 &
bench=$!
# The table's header is printed when the load starts (the build comes first: up to 30 min).
for _ in $(seq 1 3600); do
    grep -q '^ring  *clients' "$out" && break
    kill -0 "$bench" 2>/dev/null || { cat "$out"; exit 1; }
    sleep 0.5
done
sleep 2

# The peers: `chordnet serve --advertise 127.0.0.1:PORT` with PORT in the bench's range.
peers=$(ps -eo pid=,args= | awk -v lo="$port_base" -v hi=$((port_base + 100)) '
    / serve --advertise 127\.0\.0\.1:/ {
        for (i = 1; i <= NF; i++) if ($i == "--advertise") { split($(i + 1), a, ":"); p = a[2] }
        for (i = 1; i <= NF; i++) if ($i == "--api") api = $(i + 1)
        if (p >= lo && p < hi) print $1, api
    }')
pids=$(echo "$peers" | awk '{print $1}' | paste -sd, -)
apis=$(echo "$peers" | awk '{print $2}')
lookups() {
    local sum=0 n
    for api in $apis; do
        n=$(curl -s "http://$api/metrics" | awk '/^chordnet_lookups_total/ {s += $2} END {print s + 0}')
        sum=$((sum + n))
    done
    echo "$sum"
}

exe=$(ps -o args= -p "${pids%%,*}" | awk '{print $1}')
libc=$(ldd "$exe" | awk '/libc\.so/ {print $3}')
"$perf" probe -q -x "$libc" -a malloc 2>/dev/null || true # already there is fine
before=$(lookups)
"$perf" stat -x, -e probe_libc:malloc,raw_syscalls:sys_enter,context-switches,task-clock \
    -p "$pids" -o "$out.stat" -- sleep "$window"
after=$(lookups)
wait "$bench" || true

n=$((after - before))
echo "peers: $(echo "$peers" | wc -l), lookups in the ${window} s window: $n ($((n / window))/s)"
awk -F, -v n="$n" '/^[0-9]/ {
    unit = ($3 == "task-clock") ? " ms" : ""
    printf "%-26s %12.0f in all %10.2f%s per lookup\n", $3, $1, $1 / n, unit
}' "$out.stat"
