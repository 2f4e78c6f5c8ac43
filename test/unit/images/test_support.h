#pragma once
// Helpers for the extractor and parser tests: tar archives built with
// libarchive's writer (and raw headers for hostile ones), gzip/zstd, image
// documents, and directory snapshots. (ImageManager tests use
// fake_registry.h / test_images.h instead.)
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
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

// A PAX tar stream with `entries` in order.
std::string BuildTar(const std::vector<TarEntry>& entries);

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
