#!/bin/bash
# crisp against containerd on this machine, side by side (see docs/benchmarks.md).
#
#   sudo test/bench/compare.sh [cri_bench options, e.g. --n 20 --parallel 4 --pods 100]
#
# Installs what the comparison needs (crisp's build dependencies, Debian's
# containerd + runc), builds crispd and cri_bench in ./build, and runs
# cri_bench: its own crispd and its own containerd (private socket and temp
# dirs, the same CNI conflist shape, the same loopback registry), one after the
# other, then one table of medians and ratios. Nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root" >&2; exit 1; }
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || ! command -v ninja >/dev/null; then
  bash deploy/deps.sh
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd runc >/dev/null
fi
# Debian's containerd package may start a system containerd: the bench runs its
# own and needs no other.
[ -f build/CMakeCache.txt ] || cmake -S . -B build -G Ninja >/dev/null
ninja -C build crispd crisp-shim cri_bench >/dev/null
exec build/test/bench/cri_bench "$@"
