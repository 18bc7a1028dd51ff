#!/usr/bin/env bash
# Installs ejabberd (Debian package) for the bench's `ejabberd` target. Idempotent: does nothing
# when ejabberdctl and an Erlang runtime are present. The package's own service is kept from
# starting (policy-rc.d) and stopped if it started anyway: the bench runs its own instance with
# a temporary config, spool and log directory on free loopback ports (bench/baselines/ejabberd.ts).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if command -v ejabberdctl >/dev/null 2>&1 && command -v erl >/dev/null 2>&1; then
  echo "install-ejabberd: ejabberd present ($(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo '?'))"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "install-ejabberd: not root and no sudo; install the ejabberd package yourself" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-ejabberd: no apt-get; install ejabberd (>= 21.12, with ejabberdctl) yourself" >&2
  exit 1
fi

# PIDs of beam.smp processes running as the ejabberd user before the install: never touched.
ejabberd_beams() { pgrep -u ejabberd -x beam.smp 2>/dev/null || true; }
before="$(ejabberd_beams | sort)"

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
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ejabberd

# Belt and braces for init systems that ignore policy-rc.d: stop only an instance the install started.
after="$(ejabberd_beams | sort)"
started="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -v '^$' || true)"
if [ -n "$started" ]; then
  echo "install-ejabberd: stopping the ejabberd service started by the package"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl stop ejabberd || true
  else
    "${SUDO[@]}" service ejabberd stop || true
  fi
  sleep 2
  for pid in $started; do
    if kill -0 "$pid" 2>/dev/null; then "${SUDO[@]}" kill "$pid" || true; fi
  done
fi

command -v ejabberdctl >/dev/null 2>&1 || { echo "install-ejabberd: ejabberdctl still missing after install" >&2; exit 1; }
echo "install-ejabberd: done ($(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo '?'))"
