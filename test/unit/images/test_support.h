#pragma once
// Helpers for the extractor and parser tests: tar archives built by a small
// writer of our own (and raw headers for hostile ones), gzip/zstd, image
// documents, and directory snapshots. (ImageManager tests use
// fake_registry.h / test_images.h instead.)
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace crisp::images::tartest {

// One tar entry. `type` is one of 'f' (file), 'd' (dir), 'l' (symlink),
// 'h' (hardlink), 'c' (char device), 'b' (block device), 'p' (fifo).
struct TarEntry {
  char type = 'f';
  std::string path;
  std::string data;    // file content
  std::string target;  // symlink or hardlink target
  int mode = 0644;     // permission bits incl. setuid/setgid/sticky
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1700000000;
  long mtime_nsec = 0;
  unsigned dev_major = 0, dev_minor = 0;
  std::map<std::string, std::string> xattrs;
  // Extra PAX attributes written verbatim (name -> value), for hostile headers.
  std::map<std::string, std::string> pax;
};

TarEntry File(const std::string& path, const std::string& data, int mode = 0644);
TarEntry Dir(const std::string& path, int mode = 0755);
TarEntry Symlink(const std::string& path, const std::string& target);
TarEntry Hardlink(const std::string& path, const std::string& target);

// A tar stream with `entries` in order: ustar headers, with a PAX header
// before an entry whose name, link, ids, times or xattrs need one (our own
// writer, so the reader tests also cross-check against GNU tar).
std::string BuildTar(const std::vector<TarEntry>& entries);

// Raw pieces, for archives no writer makes. A ustar header block (name and
// link cut at 100 bytes, uid/gid 0, mtime 1700000000, checksum set):
std::string HeaderBlock(const std::string& name, char type, int64_t size, int mode = 0644,
                        const std::string& link = "");
// Writes `v` into the field at [off, off+len) of a header: octal digits and
// a NUL, or GNU base-256 (two's complement, first bit set).
void SetOctal(std::string& blk, size_t off, size_t len, int64_t v);
void SetBase256(std::string& blk, size_t off, size_t len, int64_t v);
// Recomputes the checksum of the block at the start of `blk` (summing
// signed chars, as some old tars did, when `signed_sum`).
void FixChecksum(std::string& blk, bool signed_sum = false);
// Zero bytes up to the next multiple of 512.
std::string PadBlock(std::string s);
// "<len> key=value\n"
std::string PaxRecord(const std::string& key, const std::string& value);
// A PAX header ('x', or 'g' for a global one) with its padded records.
std::string PaxHeader(const std::vector<std::pair<std::string, std::string>>& records, char type = 'x');

std::string Gzip(const std::string& data);
std::string Zstd(const std::string& data);

// A minimal image: one config and one manifest over the given layer blobs.
struct BuiltImage {
  std::string config, config_digest;
  std::string manifest, manifest_digest;
  std::string manifest_media_type;
  std::vector<std::string> layer_blobs, layer_digests;
};

struct ImageSpec {
  std::vector<std::string> layer_tars;  // uncompressed
  std::string compression = "gzip";     // "gzip", "zstd", "none"
  bool oci = false;                     // OCI media types (else Docker v2s2)
  std::string user;                     // config.User
  std::string arch = "amd64", variant;
  std::string layer_media_type;  // overrides the computed one when set
};

BuiltImage BuildImage(const ImageSpec& spec);

// An OCI index (or Docker manifest list) over (image, arch, variant).
std::string BuildIndex(const std::vector<std::tuple<const BuiltImage*, std::string, std::string>>& entries,
                       bool oci = true);

// Every path under `dir` with its type, mode, owner, size, mtime, link
// target and content hash, one line each, sorted: compare two snapshots to
// prove nothing changed.
std::string SnapshotTree(const std::string& dir);

}  // namespace crisp::images::tartest
