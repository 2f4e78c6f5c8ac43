#!/bin/bash
# The whole test suite: installs what it needs (Debian 12, as root), builds
# crisp with -Werror and runs the unit, integration and e2e tiers, then checks
# that nothing leaked onto the machine. CI runs exactly this (.ci/run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$HERE/build-test}

"$HERE/deploy/deps.sh"
before=$(mktemp); after=$(mktemp)
"$HERE/test/leakcheck.sh" > "$before"

cmake -S "$HERE" -B "$BUILD" -G Ninja -DCRISP_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$BUILD"

rc=0
ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 600 || rc=$?

"$HERE/test/leakcheck.sh" > "$after"
if ! diff -u "$before" "$after" > /dev/null; then
  echo "LEAK: the test suite left these behind:"
  diff "$before" "$after" | grep '^>' || true
  rc=1
fi
rm -f "$before" "$after"
exit $rc
