# shellcheck shell=bash
# Helpers shared by scripts/k8s-check.sh and scripts/k8s-emulate.sh (sourced, not run).
# They expect $WORK, a temporary directory of the calling script.

APT_UPDATED=0
# apt_packages PACKAGE...: installs Debian packages without starting the daemons they bring
# (prometheus on :9090, dockerd, containerd: a policy-rc.d refuses them for the time of the
# install). The log goes to $WORK/apt.log; on failure its tail is printed and it returns 1.
apt_packages() {
  if ((APT_UPDATED == 0)); then
    apt-get update -qq
    APT_UPDATED=1
  fi
  local policy=/usr/sbin/policy-rc.d made=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" >"$WORK/apt.log" 2>&1 || rc=$?
  ((made)) && rm -f "$policy"
  if ((rc != 0)); then
    tail -20 "$WORK/apt.log"
    return 1
  fi
}
