#pragma once
// Test helpers: tar archives (test_support.h's writer), gzip/zstd
// compression, and whole images (layers, config, manifest) as a registry
// would serve them.
#include <sys/stat.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "images/digest.h"
#include "images/manifest.h"
#include "nlohmann/json.hpp"
#include "test/unit/images/test_support.h"

namespace crisp::images::testing {

// One tar entry. `type` is an S_IF* constant; `link` is the symlink
// target or, with `hardlink`, the hardlink target.
struct TarEntry {
  std::string name;
  mode_t type = S_IFREG;
  mode_t perm = 0644;
  std::string data;
  std::string link;
  bool hardlink = false;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1700000000;
  unsigned rdev_major = 0, rdev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
  // Extra PAX attributes (name -> value), e.g. a huge "comment".
  std::vector<std::pair<std::string, std::string>> pax;
};

inline TarEntry File(std::string name, std::string data, mode_t perm = 0644) {
  TarEntry e;
  e.name = std::move(name);
  e.data = std::move(data);
  e.perm = perm;
  return e;
}
inline TarEntry Dir(std::string name, mode_t perm = 0755) {
  TarEntry e;
  e.name = std::move(name);
  e.type = S_IFDIR;
  e.perm = perm;
  return e;
}
inline TarEntry Symlink(std::string name, std::string target) {
  TarEntry e;
  e.name = std::move(name);
  e.type = S_IFLNK;
  e.perm = 0777;
  e.link = std::move(target);
  return e;
}
inline TarEntry Hardlink(std::string name, std::string target) {
  TarEntry e;
  e.name = std::move(name);
  e.link = std::move(target);
  e.hardlink = true;
  return e;
}

// A PAX tar of `entries`, in order (test_support.h's writer).
inline std::string MakeTar(const std::vector<TarEntry>& entries) {
  std::vector<tartest::TarEntry> out;
  for (const TarEntry& t : entries) {
    tartest::TarEntry e;
    e.path = t.name;
    e.data = t.data;
    e.target = t.link;
    e.mode = static_cast<int>(t.perm);
    e.uid = t.uid;
    e.gid = t.gid;
    e.mtime = t.mtime;
    e.dev_major = t.rdev_major;
    e.dev_minor = t.rdev_minor;
    e.xattrs.insert(t.xattrs.begin(), t.xattrs.end());
    e.pax.insert(t.pax.begin(), t.pax.end());
    switch (t.type) {
      case S_IFDIR:
        e.type = 'd';
        break;
      case S_IFLNK:
        e.type = 'l';
        break;
      case S_IFCHR:
        e.type = 'c';
        break;
      case S_IFBLK:
        e.type = 'b';
        break;
      case S_IFIFO:
        e.type = 'p';
        break;
      default:
        e.type = 'f';
        break;
    }
    if (t.hardlink) e.type = 'h';
    out.push_back(std::move(e));
  }
  return tartest::BuildTar(out);
}

using tartest::Gzip;
using tartest::Zstd;

enum class Compression { kNone, kGzip, kZstd };

struct TestLayer {
  std::string tar;   // uncompressed
  std::string blob;  // as served
  std::string media_type;
  std::string digest, diff_id;
};

struct TestImage {
  std::vector<TestLayer> layers;
  std::string config, config_digest;
  std::string manifest, manifest_digest, manifest_media_type;
};

inline TestLayer MakeLayer(const std::vector<TarEntry>& entries, Compression c = Compression::kGzip,
                           bool oci = false) {
  TestLayer l;
  l.tar = MakeTar(entries);
  l.diff_id = Sha256Digest(l.tar);
  switch (c) {
    case Compression::kNone:
      l.blob = l.tar;
      l.media_type = oci ? "application/vnd.oci.image.layer.v1.tar" : "application/vnd.docker.image.rootfs.diff.tar";
      break;
    case Compression::kGzip:
      l.blob = Gzip(l.tar);
      l.media_type =
          oci ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.docker.image.rootfs.diff.tar.gzip";
      break;
    case Compression::kZstd:
      l.blob = Zstd(l.tar);
      l.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
      break;
  }
  l.digest = Sha256Digest(l.blob);
  return l;
}

inline TestImage MakeImage(std::vector<TestLayer> layers, bool oci = false, const std::string& user = "",
                           const std::string& arch = "amd64") {
  TestImage img;
  img.layers = std::move(layers);
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const TestLayer& l : img.layers) diff_ids.push_back(l.diff_id);
  nlohmann::json cfg = {{"architecture", arch},
                        {"os", "linux"},
                        {"config", {{"User", user}, {"Cmd", {"/bin/sh"}}}},
                        {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  img.config = cfg.dump();
  img.config_digest = Sha256Digest(img.config);
  nlohmann::json ls = nlohmann::json::array();
  for (const TestLayer& l : img.layers)
    ls.push_back({{"mediaType", l.media_type}, {"digest", l.digest}, {"size", l.blob.size()}});
  img.manifest_media_type = oci ? kMediaTypeOciManifest : kMediaTypeDockerManifest;
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", img.manifest_media_type},
                      {"config",
                       {{"mediaType", oci ? kMediaTypeOciConfig : kMediaTypeDockerConfig},
                        {"digest", img.config_digest},
                        {"size", img.config.size()}}},
                      {"layers", ls}};
  img.manifest = m.dump();
  img.manifest_digest = Sha256Digest(img.manifest);
  return img;
}

// An index over (image, platform "os/arch[/variant]") pairs.
inline std::string MakeIndex(const std::vector<std::pair<const TestImage*, std::string>>& entries,
                             bool oci = true) {
  nlohmann::json ms = nlohmann::json::array();
  for (const auto& [img, plat] : entries) {
    std::vector<std::string> p;
    size_t start = 0;
    while (true) {
      size_t slash = plat.find('/', start);
      p.push_back(plat.substr(start, slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    nlohmann::json platform = {{"os", p[0]}, {"architecture", p[1]}};
    if (p.size() > 2) platform["variant"] = p[2];
    ms.push_back({{"mediaType", img->manifest_media_type},
                  {"digest", img->manifest_digest},
                  {"size", img->manifest.size()},
                  {"platform", platform}});
  }
  return nlohmann::json{{"schemaVersion", 2},
                        {"mediaType", oci ? kMediaTypeOciIndex : kMediaTypeDockerManifestList},
                        {"manifests", ms}}
      .dump();
}

}  // namespace crisp::images::testing
