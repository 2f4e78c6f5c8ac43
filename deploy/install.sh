#!/bin/bash
# Installs what crisp needs on Debian 12, builds it, installs it and starts
# crispd with the default configuration.
#   sudo deploy/install.sh            # everything
#   sudo deploy/install.sh --no-start # install only
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
START=1
[ "${1:-}" = "--no-start" ] && START=0

"$HERE/deploy/deps.sh"

BUILD=${BUILD_DIR:-$HERE/build-release}
cmake -S "$HERE" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCRISP_BUILD_TESTS=OFF
ninja -C "$BUILD" crispd crisp-shim

install -D -m 0755 "$BUILD/crispd" /usr/local/bin/crispd
install -D -m 0755 "$BUILD/crisp-shim" /usr/local/bin/crisp-shim
mkdir -p /etc/crisp /etc/cni/net.d
[ -f /etc/crisp/crisp.yaml ] || install -m 0644 "$HERE/deploy/crisp.yaml" /etc/crisp/crisp.yaml
# Only give the node a pod network if it has none yet.
if [ -z "$(ls -A /etc/cni/net.d 2>/dev/null)" ]; then
  install -m 0644 "$HERE/deploy/10-crisp-bridge.conflist" /etc/cni/net.d/10-crisp-bridge.conflist
fi
[ -f /etc/crictl.yaml ] || install -m 0644 "$HERE/deploy/crictl.yaml" /etc/crictl.yaml
install -D -m 0644 "$HERE/README.md" /usr/local/share/doc/crisp/README.md

[ "$START" = 1 ] || exit 0
if [ -d /run/systemd/system ]; then
  install -m 0644 "$HERE/deploy/crisp.service" /etc/systemd/system/crisp.service
  systemctl daemon-reload
  systemctl enable --now crisp.service
  systemctl --no-pager status crisp.service | head -5
else
  # No systemd (containers, minimal VMs): run it in the background.
  if pgrep -x crispd >/dev/null; then echo "crispd is already running"; exit 0; fi
  setsid /usr/local/bin/crispd --config /etc/crisp/crisp.yaml >>/var/log/crispd.log 2>&1 < /dev/null &
  for _ in $(seq 50); do [ -S /run/crisp/crisp.sock ] && break; sleep 0.1; done
  [ -S /run/crisp/crisp.sock ] || { echo "crispd did not start; see /var/log/crispd.log"; exit 1; }
  echo "crispd running (pid $(pgrep -x crispd)), socket unix:///run/crisp/crisp.sock, log /var/log/crispd.log"
fi
