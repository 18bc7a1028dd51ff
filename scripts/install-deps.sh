#!/usr/bin/env bash
# Installs the servers the integration/cluster/chaos tests start from local binaries:
# MariaDB, NATS and Redis (Debian packages), and Chromium for the web app's browser tests
# (test/browser). Idempotent: does nothing when all are present.
# The package-managed services are kept from running: tests start their own instances.
set -euo pipefail

# Debian keeps mariadbd and nats-server in sbin dirs that non-root users may lack on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for bin in mariadbd mariadb-install-db nats-server redis-server chromium; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: mariadbd, mariadb-install-db, nats-server, redis-server, chromium present"
  exit 0
fi
echo "install-deps: missing ${missing[*]}; installing mariadb-server nats-server redis-server chromium"

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "install-deps: not root and no sudo; install mariadb-server nats-server redis-server chromium yourself" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: no apt-get; install MariaDB (mariadbd, mariadb-install-db), nats-server, redis-server and chromium yourself" >&2
  exit 1
fi

# Remember which of these services were already running, so we only stop what the install started.
was_running() { pgrep -x "$1" >/dev/null 2>&1; }
pre_mariadb=0; pre_redis=0; pre_nats=0
was_running mariadbd && pre_mariadb=1
was_running redis-server && pre_redis=1
was_running nats-server && pre_nats=1

# policy-rc.d exiting 101 tells invoke-rc.d / deb-systemd-invoke not to start services.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  mariadb-server nats-server redis-server chromium

# Belt and braces for init systems that ignore policy-rc.d.
stop_if_started() { # $1 process name, $2 service name, $3 was it running before
  if [ "$3" -eq 0 ] && was_running "$1"; then
    echo "install-deps: stopping the $2 service started by the package"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      "${SUDO[@]}" systemctl stop "$2" || true
    else
      "${SUDO[@]}" service "$2" stop || true
    fi
  fi
}
stop_if_started mariadbd mariadb "$pre_mariadb"
stop_if_started redis-server redis-server "$pre_redis"
stop_if_started nats-server nats-server "$pre_nats"

for bin in mariadbd mariadb-install-db nats-server redis-server chromium; do
  command -v "$bin" >/dev/null 2>&1 || { echo "install-deps: $bin still missing after install" >&2; exit 1; }
done
echo "install-deps: done"
