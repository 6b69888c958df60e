#!/usr/bin/env bash
# Installs the Debian packages `npm test` uses that npm cannot provide: redis-server
# (the shop demo's cache), prometheus (the metrics tests query a real Prometheus;
# `trellis up` starts it when installed), chromium (the dashboard tests drive it headless
# through playwright-core, which downloads no browser of its own), and nftables + iproute2
# (`trellis up --isolate` and its tests: network namespaces and the interception rules;
# those tests also need root), and kubectl (the Kubernetes tests compare Trellis's
# rendering of the kustomizations with `kubectl kustomize`; no cluster is used).
# Idempotent; runs `apt-get update` only when something is missing, and never leaves a
# system service running.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-test-deps: everything is installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${missing[*]}; install them as root with apt-get (tests that need them will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${missing[*]}"
# A package's postinst would start its system service; forbid that while installing.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"; chmod +x "$POLICY"; made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$POLICY"' EXIT
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
