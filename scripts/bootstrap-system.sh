#!/usr/bin/env bash
# Install the system packages aep-ops and its tests need, only when absent.
# Safe to run again: a second run checks and installs nothing.
set -euo pipefail

# command-to-check => Debian package providing it
declare -A NEEDS=(
  [/usr/lib/postgresql/15/bin/initdb]=postgresql-15
  [/usr/lib/postgresql/15/bin/pg_basebackup]=postgresql-client-15
  [/usr/bin/pgbackrest]=pgbackrest
  [/usr/sbin/sshd]=openssh-server
  [/usr/bin/ssh]=openssh-client
  [/usr/sbin/nginx]=nginx-light
  [/usr/sbin/logrotate]=logrotate
  [/usr/bin/pebble]=pebble
  [/usr/sbin/runuser]=util-linux
  [/usr/bin/openssl]=openssl
  [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/promtool]=prometheus
  [/usr/bin/prometheus-node-exporter]=prometheus-node-exporter
)

missing=()
for path in "${!NEEDS[@]}"; do
  [ -x "$path" ] || missing+=("${NEEDS[$path]}")
done
# python3 -m venv needs ensurepip, which Debian ships separately.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=("python3-venv")
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "aep-ops bootstrap: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

# Keep package postinst scripts from starting services (nginx on :80, sshd on :22):
# the tests start their own instances on their own ports.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
# (an if, not `[ ] && rm`: a false test as the trap's last command would become the exit status)
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
