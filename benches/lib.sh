# What the shell benches share (sourced): waiting for a ring to be ready, and wrk's script that
# sends GET /v1/lookup/<random key> spread over the peers' APIs (PEERS and API_BASE in its env).

wait_ready() { # api_base; PEERS peers on consecutive API ports; READY_SECS (60) at most
  local deadline=$((SECONDS + ${READY_SECS:-60}))
  for ((i = 0; i < PEERS; i++)); do
    until curl -sf "http://127.0.0.1:$(($1 + i))/readyz" >/dev/null; do
      ((SECONDS < deadline)) || { echo "ring at $1 not ready" >&2; exit 1; }
      sleep 0.2
    done
  done
}

write_lookup_lua() { # path
  cat >"$1" <<'LUA'
local peers, base = tonumber(os.getenv("PEERS")), tonumber(os.getenv("API_BASE"))
local n = 0
request = function()
  n = n + 1
  local key = string.format("key-%d-%d", math.random(1, 1000000000), n)
  return wrk.format("GET", "/v1/lookup/" .. key, {Host = "127.0.0.1:" .. (base + n % peers)})
end
LUA
}

cpu_ms() { # pids... -> their utime + stime, in milliseconds
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $((t * 1000 / $(getconf CLK_TCK)))
}

wrk_lookups() { # api_base conns pids... -> "lookups/s cpu_ms_per_lookup" (SECS, PEERS from env)
  local base=$1 conns=$2 before after out
  shift 2
  before=$(cpu_ms "$@")
  out=$(API_BASE=$base PEERS=$PEERS wrk -t2 -c"$conns" -d"${SECS}s" -s "$work/lookup.lua" \
    "http://127.0.0.1:$base")
  after=$(cpu_ms "$@")
  awk -v ms=$((after - before)) '/requests in/ {n = $1} /Requests\/sec/ {rps = $2}
    END {printf "%.0f %.4f\n", rps, ms / n}' <<<"$out"
}
