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
# Only what appeared is a leak; things that existed before and went away
# (another user's daemon on a shared machine) are not ours to judge.
leaked=$(comm -13 "$before" "$after")
if [ -n "$leaked" ]; then
  echo "LEAK: the test suite left these behind:"
  echo "$leaked"
  rc=1
fi
rm -f "$before" "$after"
exit $rc
