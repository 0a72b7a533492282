#!/usr/bin/env bash
# Emulates the chart's StatefulSet with the real image in containers, without a cluster:
#
#   tools     installs what is missing (Debian's docker.io, python3-venv; the venv of
#             scripts/k8s-check.sh with the same pins and cache, for helm-python-sdk)
#   binary    a static chordnet (RUSTFLAGS=-C target-feature=+crt-static cargo build --profile dist
#             --target <arch>-unknown-linux-gnu), or CHORDNET_STATIC_BIN when given; or, with
#             CHORDNET_BIN, the binary `cargo test --release` already built (dynamically linked:
#             its loader and libraries from ldd go into the image beside it; CI does this to
#             avoid a second release build)
#   docker    starts a private dockerd (its own data/exec root, socket and pid file in a
#             temporary directory; no iptables rules, no docker0 bridge, no IP forwarding change),
#             an internal bridge network on K8S_EMU_SUBNET, and a DNS stub on the bridge that
#             answers NXDOMAIN for unknown names at once, as CoreDNS does for absent pods
#   image     the Dockerfile's `prebuilt` target around that binary, tagged as the chart says
#   render    the chart rendered with the same helm-python-sdk as scripts/k8s-check.sh: the pods'
#             env, args, config.toml, security context, resources, probes, grace period,
#             minReadySeconds and names all come from the rendered StatefulSet
#             (scripts/k8s/emulate/emulate.py); every pod gets its headless-Service DNS names
#             (chordnet-N.chordnet-headless.<ns>.svc.cluster.local and the short forms) as network
#             aliases, the kubelet's resolv.conf (search list, ndots:5), its own named volume at
#             /data (the PVC, made writable the way fsGroup does) and a new IP at every start
#
# then the scenario, each phase timed, every check bounded:
#   1. 3 pods start in parallel: all ready, and the ring walk from every pod lists all of them
#   2. scale to 6 (kubectl scale: ordinals 3..5 start with the same seed list): one ring of 6
#   3. K8S_EMU_FILES (50) files of random size up to 100 KiB (seed K8S_EMU_SEED) uploaded
#      through random pods, each downloaded byte-identical from another; every file reaches
#      ring.replicas copies
#   4. scale to 3 as the StatefulSet controller does with podManagementPolicy Parallel: SIGTERM
#      to ordinals 5, 4, 3 together (docker stop, time-out = terminationGracePeriodSeconds); each
#      must exit 0; one ring of 3, every file from every pod, copies restored. Then scale to 6
#      again (the kept volumes come back) and down one ordinal at a time (K8S_EMU_SEQUENTIAL=0
#      skips this variant)
#   5. SIGKILL to chordnet-0: the other two close the ring and serve every file; chordnet-0
#      restarts with its volume and names (new IP): one ring, one ring_id, every file
#   6. rolling restart, highest ordinal first: SIGTERM (exit 0), start, ready, minReadySeconds;
#      one ring, the same ring_id as in phase 1, every file; only one ring was ever founded
#
# Usage: bash scripts/k8s-emulate.sh      (as root: it starts a dockerd; on Debian 12 it installs
#                                         docker.io and python3-venv when missing)
# Environment: CHORDNET_STATIC_BIN (a static chordnet binary: skips the build), CHORDNET_BIN (any
# chordnet binary, static or dynamic: skips the build; a dynamic one brings its libraries), CARGO_TARGET_DIR
# (for the build), K8S_EMU_SUBNET (default 172.31.250.0/24), K8S_EMU_FILES (50), K8S_EMU_SEED (1),
# K8S_EMU_VALUES (a values file for the chart), K8S_EMU_NAMESPACE / K8S_EMU_RELEASE (chordnet),
# K8S_EMU_SEQUENTIAL (1), K8S_EMU_LOGS (a directory to keep every pod's log in), K8S_CHECK_CACHE
# (the venv cache of scripts/k8s-check.sh).
# Everything it starts or creates (containers, network, volumes, image, dockerd, the DNS stub,
# the temporary directory) is removed when it exits, also on failure or interruption; it then
# compares network interfaces, addresses, routes and iptables rules with their state before.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$ROOT/scripts/k8s/emulate/emulate.py"
CACHE_DIR="${K8S_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chordnet-k8s-check}"
SUBNET="${K8S_EMU_SUBNET:-172.31.250.0/24}"
NFILES="${K8S_EMU_FILES:-50}"
SEED="${K8S_EMU_SEED:-1}"
SEQUENTIAL="${K8S_EMU_SEQUENTIAL:-1}"
NETWORK=chordnet-emulate
BRIDGE="chordemu$$"
BRIDGE="${BRIDGE:0:15}"
READY_TIMEOUT=90
RING_TIMEOUT=90
VERIFY_TIMEOUT=30
COPIES_TIMEOUT=60
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1

START=$SECONDS
WORK="$(mktemp -d /tmp/chordnet-emu.XXXXXX)" # short: dockerd's exec root holds sockets
mkdir -p "$WORK/pods" "$WORK/logs" "$WORK/docker/client"
DOCKERD_PID=""
DNS_PID=""
RUN_DIRS_CREATED=()
CHILD=""
PHASE="setup"
declare -a TIMINGS=()
declare -a INSTALLED=()

log() { printf '%s\n' "$*"; }
die() {
  log "  FAIL: $*"
  exit 1
}

############################################################################## host state, cleanup
host_state() { # what a test network could leave behind on the host
  echo "# links"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "# addresses"
  ip -o addr show | awk '{print $2, $4}' | sort
  echo "# routes"
  ip route show | sort
  local t
  for t in iptables-save ip6tables-save; do
    if command -v "$t" >/dev/null; then
      echo "# $t"
      "$t" 2>/dev/null | { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//'
    fi
  done
  echo "# net.ipv4.ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
}

save_logs() { # save_logs CONTAINER POD: appends the container's log to logs/POD.log
  {
    echo "----- $1 ($(date -u +%H:%M:%S))"
    docker logs "$1" 2>&1
  } >>"$WORK/logs/$2.log" 2>&1 || true
}

show_logs() {
  local c
  for c in $(docker ps -aq 2>/dev/null); do
    local name
    name="$(docker inspect -f '{{.Name}} {{.State.Status}} exit {{.State.ExitCode}}' "$c" 2>/dev/null)"
    log "  --- last lines of ${name#/}"
    docker logs --tail 15 "$c" 2>&1 | sed 's/^/  | /'
  done
  local f
  for f in "$WORK"/logs/*.log; do
    [[ -e $f ]] || continue
    log "  --- last lines of the saved log $(basename "$f")"
    tail -8 "$f" | sed 's/^/  | /'
  done
}

exec 3>&1 4>&2 # the script's own output, for the exit trap (it may run inside a redirection)
cleanup() {
  local rc=$?
  set +e
  exec 1>&3 2>&4
  trap - EXIT
  trap '' INT TERM # the cleanup itself is bounded; let it finish
  if [[ -n $CHILD ]]; then
    kill -TERM "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  local t0=$SECONDS
  if ((rc == 130 || rc == 143)); then
    log ""
    log "k8s-emulate: interrupted in phase \"$PHASE\"; cleaning up"
  elif ((rc != 0)); then
    log ""
    log "k8s-emulate: FAILED in phase \"$PHASE\" (exit $rc)"
    [[ -n $DOCKERD_PID ]] && show_logs
  fi
  if [[ -n $DOCKERD_PID ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    local c
    for c in $(docker ps -aq); do
      save_logs "$c" "$(docker inspect -f '{{index .Config.Labels "statefulset.kubernetes.io/pod-name"}}' "$c" 2>/dev/null || echo other)"
    done
    docker ps -aq | xargs -r "$DOCKER_BIN" rm -f >/dev/null
    docker network ls -q --filter label=io.chordnet.k8s-emulate | xargs -r "$DOCKER_BIN" network rm >/dev/null
    docker volume ls -q | xargs -r "$DOCKER_BIN" volume rm -f >/dev/null
    docker image ls -aq | sort -u | xargs -r "$DOCKER_BIN" image rm -f >/dev/null 2>&1
    kill -TERM "$DOCKERD_PID"
    local n=0
    while kill -0 "$DOCKERD_PID" 2>/dev/null && ((n < 100)); do
      sleep 0.2
      n=$((n + 1))
    done
    kill -KILL "$DOCKERD_PID" 2>/dev/null
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  if [[ -n $DNS_PID ]]; then
    kill -TERM "$DNS_PID" 2>/dev/null
    wait "$DNS_PID" 2>/dev/null
  fi
  # dockerd's own containerd and shims (only these carry our temporary directory in their
  # command line): they end with dockerd; kill any left by pid.
  local pid left=()
  for pid in $(pgrep -f -- "$WORK/" 2>/dev/null); do
    [[ $pid == "$$" ]] || left+=("$pid")
  done
  if ((${#left[@]})); then
    log "  cleanup: killing leftover processes ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null
  fi
  # Directories dockerd and the containerd shims create at fixed places (empty once they are
  # gone): removed when this run created them.
  local d
  for d in "${RUN_DIRS_CREATED[@]}"; do
    if [[ -d $d ]] && [[ -z $(find "$d" -not -type d -print -quit 2>/dev/null) ]]; then rm -rf "$d"; fi
  done
  local m
  for m in $(findmnt -rn -o TARGET 2>/dev/null | grep -F "$WORK/" | sort -r); do umount -l "$m" 2>/dev/null; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null
  if [[ -n ${K8S_EMU_LOGS:-} ]]; then
    mkdir -p "$K8S_EMU_LOGS" && cp "$WORK"/logs/*.log "$K8S_EMU_LOGS"/ 2>/dev/null &&
      log "  pod logs kept in $K8S_EMU_LOGS"
  fi
  if [[ -s "$WORK/host-before" ]]; then
    host_state >"$WORK/host-after" 2>/dev/null
    if diff -q "$WORK/host-before" "$WORK/host-after" >/dev/null; then
      log "  cleanup ($((SECONDS - t0))s): containers, network, volumes, image, dockerd (pid $DOCKERD_PID)," \
        "DNS stub removed; links, addresses, routes, iptables rules and ip_forward as before"
    else
      log "  cleanup: the host's network state differs from before the run:"
      diff "$WORK/host-before" "$WORK/host-after" | sed 's/^/  | /'
      if diff "$WORK/host-before" "$WORK/host-after" | grep -qE "$BRIDGE|DOCKER|${SUBNET%.*}"; then
        log "  FAIL: left behind by this run"
        ((rc == 0)) && rc=1
      else
        log "  (nothing of this run's: another process changed it)"
      fi
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background and waits for it, so that a signal runs the traps at once.
run() {
  "$@" &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}
emu() { run "$VENV/bin/python" "$HELPER" "$@"; }

PHASE_T0=0
phase() {
  PHASE="$1"
  PHASE_T0=$SECONDS
  log ""
  log "== $1"
}
phase_done() {
  local d=$((SECONDS - PHASE_T0))
  TIMINGS+=("$(printf '%4ss  %s' "$d" "$PHASE")")
}

########################################################################################## tools
phase "tools"
((EUID == 0)) || die "run as root: the emulation starts its own dockerd (and installs packages when missing)"
# shellcheck source=scripts/k8s/lib.sh
source "$ROOT/scripts/k8s/lib.sh"
apt_install() {
  apt_packages "$@" || die "apt-get install $* failed"
  INSTALLED+=("apt: $*")
}
want=()
command -v ip >/dev/null || want+=(iproute2)
command -v pgrep >/dev/null || want+=(procps)
command -v dockerd >/dev/null || want+=(docker.io)
[[ -x /usr/bin/docker ]] || command -v docker >/dev/null || want+=(docker.io)
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || want+=(python3)
if ((${#want[@]})); then
  mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
  apt_install "${want[@]}"
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer needed"'
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
# Debian's client (/usr/bin/docker) matches Debian's daemon; the legacy builder needs no buildx.
if [[ -x /usr/bin/docker ]]; then DOCKER_BIN=/usr/bin/docker; else DOCKER_BIN="$(command -v docker)"; fi
docker() { "$DOCKER_BIN" "$@"; }
export DOCKER_HOST="unix://$WORK/docker/docker.sock" DOCKER_BUILDKIT=0 DOCKER_CONFIG="$WORK/docker/client"
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH

# The venv of scripts/k8s-check.sh (same pins, same cache key: one venv serves both).
pinned_venv "$PYTHON" "$CACHE_DIR"
if ((VENV_CREATED)); then INSTALLED+=("pip (venv $VENV): ${PIP_PINS[*]}"); fi
log "  docker: $("$DOCKER_BIN" --version) ($DOCKER_BIN), $(dockerd --version)"
log "  venv:   $VENV"
phase_done

######################################################################################### binary
phase "binary"
DYNAMIC=0
if [[ -n ${CHORDNET_BIN:-} ]]; then
  BIN="$CHORDNET_BIN"
  [[ -x $BIN ]] || die "CHORDNET_BIN=$BIN is not an executable file"
  log "  given: $BIN"
  ldd "$BIN" 2>&1 | grep -qE 'statically linked|not a dynamic executable' || DYNAMIC=1
elif [[ -n ${CHORDNET_STATIC_BIN:-} ]]; then
  BIN="$CHORDNET_STATIC_BIN"
  [[ -x $BIN ]] || die "CHORDNET_STATIC_BIN=$BIN is not an executable file"
  log "  given: $BIN"
else
  command -v cargo >/dev/null ||
    die "cargo is missing: install Rust (1.88 or newer, e.g. with rustup) or set CHORDNET_STATIC_BIN to a static chordnet binary"
  TRIPLE="$(uname -m)-unknown-linux-gnu"
  TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  log "  RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile dist --target $TRIPLE --bin chordnet (target dir $TARGET_DIR)"
  # Built like the Dockerfile's builder stage: static, the dist profile (no debug info, stripped).
  if ! run env RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo build --profile dist --manifest-path "$ROOT/Cargo.toml" --target "$TRIPLE" --bin chordnet \
    >"$WORK/cargo.log" 2>&1; then
    tail -30 "$WORK/cargo.log" | sed 's/^/  | /'
    die "cargo build failed"
  fi
  grep -E '^\s+Finished' "$WORK/cargo.log" | sed 's/^ */  /' || true
  BIN="$TARGET_DIR/$TRIPLE/dist/chordnet"
fi
if ((DYNAMIC)); then
  log "  $BIN: dynamically linked, $("$BIN" --version), $(du -h "$BIN" | cut -f1); the image gets its loader and libraries:"
  ldd "$BIN" | sed 's/^/  | /'
elif ! ldd "$BIN" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
  ldd "$BIN" | sed 's/^/  | /'
  die "$BIN is not statically linked: it cannot run in the FROM-scratch image"
else
  log "  $BIN: statically linked, $("$BIN" --version), $(du -h "$BIN" | cut -f1)"
fi
phase_done

######################################################################################### render
phase "render the chart"
host_state >"$WORK/host-before" 2>/dev/null
read -r -a ADDRS <<<"$("$VENV/bin/python" "$HELPER" ip "$SUBNET" 40 | tr '\n' ' ')"
GATEWAY="${ADDRS[0]}"
ADDRS=("${ADDRS[@]:1}")
NEXT_ADDR=0
emu render "$WORK/spec" --dns "$GATEWAY" ${K8S_EMU_VALUES:+--values "$K8S_EMU_VALUES"}
# STS_NAME HEADLESS DOMAIN NAMESPACE RELEASE REPLICAS POLICY IMAGE GRACE MIN_READY READY_PATH READY_PORT
# LIVE_PATH LIVE_PORT FS_GROUP FS_GROUP_POLICY REPLICATION LEAVE_TIMEOUT SEEDS ORDINALS CONFIG_FILES
# shellcheck source=/dev/null
source "$WORK/spec/meta.sh"
# shellcheck disable=SC2153
[[ $POLICY == Parallel ]] || log "  note: podManagementPolicy is $POLICY; the emulation starts and stops pods as Parallel does"
((REPLICAS == 3)) || die "the scenario scales 3 -> 6 -> 3: render the chart with replicaCount 3 (it is $REPLICAS)"
pod() { echo "$STS_NAME-$1"; }
container() { echo "k8s_chordnet_$(pod "$1")_$NAMESPACE"; }
phase_done

######################################################################################### docker
phase "dockerd, network, image"
# Refuse a subnet the host already routes: the test traffic must stay on the bridge.
if ip -4 route show | awk '{print $1}' | "$VENV/bin/python" -c '
import ipaddress, sys
mine = ipaddress.ip_network(sys.argv[1])
for line in sys.stdin:
    try:
        net = ipaddress.ip_network(line.strip(), strict=False)
    except ValueError:
        continue  # "default" and the like
    if net.overlaps(mine):
        print(f"  {sys.argv[1]} overlaps the host route {net}"); sys.exit(0)
sys.exit(1)' "$SUBNET"; then
  die "choose another K8S_EMU_SUBNET"
fi
# Its own configuration (not /etc/docker/daemon.json), and its trust key in the temporary
# directory (dockerd 20.10 would otherwise create /etc/docker/key.json).
printf '{"deprecated-key-path": "%s"}\n' "$WORK/docker/key.json" >"$WORK/docker/daemon.json"
# No iptables rules, no docker0, no IP forwarding or masquerading: the containers only need the
# bridge between them and the host's address on it (which serves the DNS stub and the checks).
for d in /run/docker /run/containerd; do [[ -e $d ]] || RUN_DIRS_CREATED+=("$d"); done
setsid dockerd --host "$DOCKER_HOST" --data-root "$WORK/docker/data" --exec-root "$WORK/docker/exec" \
  --pidfile "$WORK/docker/dockerd.pid" --config-file "$WORK/docker/daemon.json" \
  --iptables=false --ip-forward=false --ip-masq=false --bridge=none --userland-proxy=false \
  --containerd-namespace chordnet-emulate --containerd-plugins-namespace chordnet-emulate-plugins \
  --log-level warn >"$WORK/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
n=0
until docker version >/dev/null 2>&1; do
  if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
    tail -20 "$WORK/dockerd.log" | sed 's/^/  | /'
    DOCKERD_PID=""
    die "dockerd exited"
  fi
  ((n++ < 150)) || die "dockerd did not answer within 30s"
  sleep 0.2
done
log "  dockerd pid $DOCKERD_PID ready after $((SECONDS - PHASE_T0))s ($WORK/docker; no iptables, no bridge docker0)"
docker network create --driver bridge --internal --subnet "$SUBNET" --gateway "$GATEWAY" \
  -o com.docker.network.bridge.name="$BRIDGE" --label io.chordnet.k8s-emulate=1 "$NETWORK" >/dev/null
log "  network $NETWORK: internal bridge $BRIDGE, $SUBNET, host address $GATEWAY"
setsid "$VENV/bin/python" "$ROOT/scripts/k8s/emulate/nxdns.py" "$GATEWAY" >"$WORK/nxdns.log" 2>&1 </dev/null &
DNS_PID=$!
n=0
until grep -q answering "$WORK/nxdns.log"; do
  kill -0 "$DNS_PID" 2>/dev/null || die "the DNS stub did not start: $(cat "$WORK/nxdns.log")"
  ((n++ < 50)) || die "the DNS stub did not start within 10s"
  sleep 0.2
done
log "  DNS stub (pid $DNS_PID) on $GATEWAY:53: the containers' upstream; NXDOMAIN for every name that is not an alias"
mkdir -p "$WORK/image/rootfs"
# Debug line tables stay out of the image (the static build has none).
objcopy --strip-debug "$BIN" "$WORK/image/chordnet" 2>/dev/null || cp "$BIN" "$WORK/image/chordnet"
TARGET_STAGE=prebuilt
if ((DYNAMIC)); then
  # The loader and every library ldd names, at the paths the binary looks for them.
  while read -r lib; do
    mkdir -p "$WORK/image/rootfs$(dirname "$lib")"
    cp -L "$lib" "$WORK/image/rootfs$lib"
  done < <(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  TARGET_STAGE=prebuilt-dynamic
fi
docker build -q --target "$TARGET_STAGE" -t "$IMAGE" -f "$ROOT/Dockerfile" "$WORK/image" >/dev/null
IMAGE_SIZE="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
IMAGE_SIZE="$((IMAGE_SIZE / 1000000)) MB"
log "  image $IMAGE (Dockerfile target $TARGET_STAGE): $IMAGE_SIZE, user $(docker image inspect -f '{{.Config.User}}' "$IMAGE"), entrypoint $(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")"
log "  in the image: $(docker run --rm --network none --entrypoint /chordnet "$IMAGE" --version)"
phase_done

########################################################################################### pods
# pod_start ORDINAL: the pod's PVC (a named volume, created once and made writable the way the
# kubelet applies fsGroup), then the container with the next free address.
pod_start() {
  local i=$1 addr=$2 vol mp
  while read -r vol; do
    [[ -n $vol ]] || continue
    if ! docker volume inspect "$vol" >/dev/null 2>&1; then
      docker volume create --label io.chordnet.k8s-emulate=1 "$vol" >/dev/null
    fi
    if [[ -n $FS_GROUP ]]; then
      mp="$(docker volume inspect -f '{{.Mountpoint}}' "$vol")"
      # fsGroupChangePolicy OnRootMismatch: only when the root does not have the group yet.
      if [[ $FS_GROUP_POLICY != OnRootMismatch || $(stat -c %g "$mp") != "$FS_GROUP" ]]; then
        chgrp -R "$FS_GROUP" "$mp" && chmod g+rwxs "$mp"
      fi
    fi
  done <"$WORK/spec/pod-$i.volumes"
  local args=()
  mapfile -d '' args <"$WORK/spec/pod-$i.args"
  docker run -d --name "$(container "$i")" --network "$NETWORK" --ip "$addr" "${args[@]}" >/dev/null
  echo "$addr" >"$WORK/pods/$(pod "$i").ip"
  echo "$(pod "$i")@$addr"
}

# pods_start ORDINAL...: like the StatefulSet controller with Parallel: all at once.
pods_start() {
  local i pids=() out=()
  for i in "$@"; do
    pod_start "$i" "${ADDRS[$NEXT_ADDR]}" >"$WORK/start-$i.out" 2>&1 &
    pids+=($!)
    NEXT_ADDR=$((NEXT_ADDR + 1))
  done
  local rc=0 k=0
  for i in "$@"; do
    wait "${pids[$k]}" || {
      rc=1
      sed 's/^/  | /' "$WORK/start-$i.out"
    }
    out+=("$(tail -1 "$WORK/start-$i.out")")
    k=$((k + 1))
  done
  ((rc == 0)) || die "docker run failed"
  log "  started ${out[*]}"
}

# pods_stop ORDINAL...: SIGTERM to all at once (docker stop, time-out = the grace period), as
# the kubelet does for every removed pod; each must exit 0 in time. The pods are then deleted.
pods_stop() {
  local i pids=() k=0 rc=0 t0=$SECONDS
  for i in "$@"; do
    (
      s=$(date +%s%N)
      docker stop -t "$GRACE" "$(container "$i")" >/dev/null
      ms=$((($(date +%s%N) - s) / 1000000))
      code="$(docker inspect -f '{{.State.ExitCode}}' "$(container "$i")")"
      printf '%s %s %d.%d\n' "$(pod "$i")" "$code" $((ms / 1000)) $((ms % 1000 / 100))
    ) >"$WORK/stop-$i.out" 2>&1 &
    pids+=($!)
  done
  local report=()
  for i in "$@"; do
    wait "${pids[$k]}" || rc=1
    k=$((k + 1))
    local name code took
    read -r name code took <"$WORK/stop-$i.out" || true
    save_logs "$(container "$i")" "$(pod "$i")"
    docker rm "$(container "$i")" >/dev/null
    rm -f "$WORK/pods/$(pod "$i").ip"
    if [[ $code != 0 ]]; then
      log "  $(pod "$i"): exit code $code after SIGTERM (${took}s; 137 = killed at the end of the ${GRACE}s grace period)"
      tail -5 "$WORK/logs/$(pod "$i").log" | sed 's/^/  | /'
      rc=1
    else
      report+=("$name exit 0 in ${took}s")
    fi
  done
  ((rc == 0)) || die "a pod did not leave gracefully"
  log "  SIGTERM: ${report[*]}"
}

pod_kill() {
  docker kill -s KILL "$(container "$1")" >/dev/null
  docker wait "$(container "$1")" >/dev/null
  save_logs "$(container "$1")" "$(pod "$1")"
  docker rm "$(container "$1")" >/dev/null
  rm -f "$WORK/pods/$(pod "$1").ip"
  log "  SIGKILL: $(pod "$1") killed and deleted (its volume stays)"
}

# Name resolution inside the network, with the peers' resolver (the static binary's glibc code)
# and a pod's resolv.conf: the names Kubernetes serves resolve, a bare pod name does not.
dns_check() {
  local client=() name t0 out
  mapfile -d '' client <"$WORK/spec/client.args"
  for name in "$(pod 1).$HEADLESS.$NAMESPACE.svc.$DOMAIN" "$(pod 1).$HEADLESS" "$HEADLESS" "$(pod 1)"; do
    t0=$(date +%s%N)
    if out="$(docker run --rm --network "$NETWORK" "${client[@]}" --entrypoint /chordnet "$IMAGE" \
      node --api "http://$name:$READY_PORT" 2>&1)"; then
      [[ $name != "$(pod 1)" ]] || die "the bare pod name $name resolves inside the network; it does not on Kubernetes"
      log "  DNS in a container: $name resolves ($(grep -m1 '^address' <<<"$out" | awk '{print $2}'); $((($(date +%s%N) - t0) / 1000000)) ms with the container's start)"
    else
      [[ $name == "$(pod 1)" ]] || die "$name does not resolve in a container: $out"
      log "  DNS in a container: the bare pod name $name does not resolve, as on Kubernetes ($((($(date +%s%N) - t0) / 1000000)) ms)"
    fi
  done
}

checks() { # checks ORDINAL...: one ring of exactly these pods, every file from each, copies
  emu wait-ring "$WORK" "$RING_TIMEOUT" "$@"
  if [[ -s "$WORK/files.json" ]]; then
    emu verify "$WORK" "$VERIFY_TIMEOUT" "$@"
    emu wait-copies "$WORK" "$COPIES_TIMEOUT" "$@"
  fi
}

####################################################################################### scenario
phase "1. start 3 pods in parallel"
pods_start 0 1 2
emu wait-ready "$WORK" "$READY_TIMEOUT" 0 1 2
emu wait-ring "$WORK" "$RING_TIMEOUT" 0 1 2
dns_check
phase_done

phase "2. scale to 6"
pods_start 3 4 5
emu wait-ready "$WORK" "$READY_TIMEOUT" 3 4 5
emu wait-ring "$WORK" "$RING_TIMEOUT" 0 1 2 3 4 5
phase_done

phase "3. upload $NFILES files"
emu upload "$WORK" "$NFILES" "$SEED" 0 1 2 3 4 5
emu wait-copies "$WORK" "$COPIES_TIMEOUT" 0 1 2 3 4 5
phase_done

phase "4a. scale to 3: ordinals 5, 4, 3 terminated together"
pods_stop 5 4 3
checks 0 1 2
phase_done

if [[ $SEQUENTIAL == 1 ]]; then
  phase "4b. scale to 6 again (the volumes of 3..5 come back)"
  pods_start 3 4 5
  emu wait-ready "$WORK" "$READY_TIMEOUT" 3 4 5
  checks 0 1 2 3 4 5
  phase_done

  phase "4c. scale to 3 one ordinal at a time"
  pods_stop 5
  emu wait-ring "$WORK" "$RING_TIMEOUT" 0 1 2 3 4
  pods_stop 4
  emu wait-ring "$WORK" "$RING_TIMEOUT" 0 1 2 3
  pods_stop 3
  checks 0 1 2
  phase_done
fi

phase "5. SIGKILL $(pod 0), restart it with its volume"
pod_kill 0
checks 1 2
pods_start 0
emu wait-ready "$WORK" "$READY_TIMEOUT" 0
checks 0 1 2
phase_done

phase "6. rolling restart (2, 1, 0; minReadySeconds ${MIN_READY}s)"
for i in 2 1 0; do
  pods_stop "$i"
  pods_start "$i"
  emu wait-ready "$WORK" "$READY_TIMEOUT" "$i"
  ((MIN_READY == 0)) || run sleep "$MIN_READY"
  emu wait-ready "$WORK" 5 0 1 2
done
checks 0 1 2
phase_done

phase "final checks"
founded="$({
  cat "$WORK"/logs/*.log
  for i in 0 1 2; do docker logs "$(container "$i")" 2>&1; done
} | grep -c 'founded a new ring' || true)"
((founded == 1)) || die "the pods' logs show $founded rings founded, expected exactly 1 (by $(pod 0) at the start)"
log "  exactly one ring founded in the whole run (the logs of all $NEXT_ADDR pod incarnations)"
for i in 0 1 2; do
  "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
    "http://$(cat "$WORK/pods/$(pod "$i").ip"):$LIVE_PORT$LIVE_PATH" ||
    die "$(pod "$i"): liveness $LIVE_PATH did not answer 200"
done
log "  liveness $LIVE_PATH 200 on every pod"
log "  memory in use (cgroup, without page cache): $(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | sed 's/^k8s_chordnet_//; s/_[^ ]* / /' | sort | paste -sd, - | sed 's/,/, /g')"
phase_done

log ""
log "== summary ($((SECONDS - START))s in all; image $IMAGE $IMAGE_SIZE)"
printf '  %s\n' "${TIMINGS[@]}"
if ((${#INSTALLED[@]})); then
  log "  installed this run:"
  printf '    %s\n' "${INSTALLED[@]}"
else
  log "  installed this run: nothing (docker.io present; venv cached in $CACHE_DIR)"
fi
log "k8s-emulate: all checks passed"
