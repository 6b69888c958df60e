#!/usr/bin/env bash
# Installs what `npm run bench` compares Trellis against: nginx, haproxy and wrk,
# from Debian's packages. Idempotent: does nothing when every binary is already on PATH,
# and runs `apt-get update` only when something is missing. Never starts a system
# service: the bench runs its own processes with its own config files.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have nginx   || missing+=(nginx)
have haproxy || missing+=(haproxy)
have wrk     || missing+=(wrk)
# The TCP echo scenario's nginx pair needs the stream module, a separate package on Debian.
stream_module() { ls /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; }
stream_module || missing+=(libnginx-mod-stream)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-bench-deps: nginx (with its stream module), haproxy and wrk are already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-bench-deps: missing ${missing[*]} and there is no apt-get here; install them by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-bench-deps: missing ${missing[*]}; run this script as root (or install sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-bench-deps: installing ${missing[*]}"
$SUDO apt-get update -q

# Packages' postinst scripts would start system services; forbid that with a
# policy-rc.d that denies every start, removed again on exit (only if we made it).
POLICY=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  made_policy=1
fi
cleanup() { if [ "$made_policy" -eq 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

pkgs=()
for m in "${missing[@]}"; do
  case "$m" in
    nginx)
      # nginx-light is the small build; newer Debian releases only ship `nginx`.
      if apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=(nginx); fi ;;
    *) pkgs+=("$m") ;;
  esac
done

$SUDO apt-get install -y --no-install-recommends "${pkgs[@]}"

for b in "${missing[@]}"; do
  if [ "$b" = libnginx-mod-stream ]; then
    stream_module || { echo "install-bench-deps: nginx's stream module is still missing after the install" >&2; exit 1; }
  elif ! have "$b"; then
    echo "install-bench-deps: $b is still missing after the install" >&2
    exit 1
  fi
done
echo "install-bench-deps: done"
