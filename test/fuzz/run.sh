#!/bin/bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in their own build
# dir and runs each for a while from a small seed corpus.
#
#   test/fuzz/run.sh [SECONDS_PER_TARGET]     (default 30; BUILD_DIR overrides build-fuzz)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$HERE/build-fuzz}
SECS=${1:-30}
command -v clang++ >/dev/null || { echo "run.sh: clang is not installed (apt-get install -y clang)" >&2; exit 1; }

cmake -S "$HERE" -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCRISP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$BUILD" tar_fuzzer tar_reader_fuzzer manifest_fuzzer

CORPUS=$BUILD/fuzz-corpus
mkdir -p "$CORPUS/tar" "$CORPUS/tar_reader" "$CORPUS/manifest"
seed=$(mktemp -d)
trap 'rm -rf "$seed"' EXIT
mkdir -p "$seed/d/sub" "$seed/d/opq"
echo hello > "$seed/d/file"
ln -s file "$seed/d/link"
ln -s /etc "$seed/d/abs"
ln "$seed/d/file" "$seed/d/hard"
: > "$seed/d/sub/.wh.gone"
: > "$seed/d/opq/.wh..wh..opq"
chmod 4755 "$seed/d/file"
tar --format=pax -C "$seed/d" -cf "$CORPUS/tar/pax.tar" .
tar --format=gnu -C "$seed/d" -cf "$CORPUS/tar/gnu.tar" .
tar --format=ustar -C "$seed/d" -cf "$CORPUS/tar/ustar.tar" .
gzip -n -c "$CORPUS/tar/pax.tar" > "$CORPUS/tar/pax.tar.gz"
zstd -q -c "$CORPUS/tar/gnu.tar" > "$CORPUS/tar/gnu.tar.zst"
D=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
cat > "$CORPUS/manifest/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,"digest":"$D"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32654,"digest":"$D","urls":["https://x"]}]}
JSON
cat > "$CORPUS/manifest/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$D","size":7143,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},{"digest":"$D","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}
JSON
cat > "$CORPUS/manifest/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"User":"www-data:1004"},"rootfs":{"type":"layers","diff_ids":["$D","$D"]}}
JSON
printf 'docker.io/library/busybox:1.36@%s' "$D" > "$CORPUS/manifest/ref1"
printf '127.0.0.1:5000/a/b-c__d.e:v1' > "$CORPUS/manifest/ref2"
printf '[::1]:5000/app' > "$CORPUS/manifest/ref3"
printf 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull", Basic realm="r"' > "$CORPUS/manifest/auth"
printf '{"token":"t","access_token":"a","expires_in":300,"refresh_token":"r"}' > "$CORPUS/manifest/token"

"$BUILD/test/fuzz/tar_fuzzer" -max_total_time="$SECS" -max_len=65536 -timeout=20 -print_final_stats=1 "$CORPUS/tar"
# The reader fuzzer's first byte picks buffer/piece/chunk sizes; then a tar.
for f in pax gnu ustar; do
  for k in 00 15 2a ff; do
    { printf "\\x$k"; cat "$CORPUS/tar/$f.tar"; } > "$CORPUS/tar_reader/$f-$k"
  done
done
truncate -s 1M "$seed/d/sparse" && printf 'x' | dd of="$seed/d/sparse" bs=1 seek=300000 conv=notrunc 2>/dev/null
for v in 0.0 0.1 1.0; do
  { printf '\x00'; tar --format=pax --sparse --sparse-version=$v -C "$seed/d" -cf - sparse; } > "$CORPUS/tar_reader/sparse-$v"
done
{ printf '\x00'; tar --format=gnu --sparse -C "$seed/d" -cf - sparse; } > "$CORPUS/tar_reader/sparse-gnu"

"$BUILD/test/fuzz/tar_reader_fuzzer" -max_total_time="$SECS" -max_len=65536 -timeout=20 -print_final_stats=1 \
  "$CORPUS/tar_reader"
"$BUILD/test/fuzz/manifest_fuzzer" -max_total_time="$SECS" -max_len=8192 -timeout=20 -print_final_stats=1 \
  "$CORPUS/manifest"
