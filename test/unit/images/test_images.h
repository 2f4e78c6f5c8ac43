#pragma once
// Test helpers: tar archives written with libarchive (including hostile
// ones), gzip/zstd compression, and whole images (layers, config,
// manifest) as a registry would serve them.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "images/digest.h"
#include "images/manifest.h"
#include "nlohmann/json.hpp"

namespace crisp::images::testing {

// One tar entry. `type` is an AE_IF* constant; `link` is the symlink
// target or, with `hardlink`, the hardlink target.
struct TarEntry {
  std::string name;
  mode_t type = AE_IFREG;
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
  e.type = AE_IFDIR;
  e.perm = perm;
  return e;
}
inline TarEntry Symlink(std::string name, std::string target) {
  TarEntry e;
  e.name = std::move(name);
  e.type = AE_IFLNK;
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

// A PAX tar of `entries`, in order.
inline std::string MakeTar(const std::vector<TarEntry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](struct archive*, void* user, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(user)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const TarEntry& t : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.name.c_str());
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, 0);
    if (t.hardlink) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, t.perm);
      archive_entry_set_hardlink(e, t.link.c_str());
      archive_entry_set_size(e, 0);
    } else {
      archive_entry_set_filetype(e, t.type);
      archive_entry_set_perm(e, t.perm);
      if (t.type == AE_IFLNK) archive_entry_set_symlink(e, t.link.c_str());
      if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
        archive_entry_set_rdevmajor(e, t.rdev_major);
        archive_entry_set_rdevminor(e, t.rdev_minor);
      }
      archive_entry_set_size(e, t.type == AE_IFREG ? static_cast<la_int64_t>(t.data.size()) : 0);
    }
    for (const auto& [k, v] : t.xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    if (!t.pax.empty()) archive_write_set_format_pax(a);
    archive_write_header(a, e);
    if (!t.hardlink && t.type == AE_IFREG && !t.data.empty()) archive_write_data(a, t.data.data(), t.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A raw ustar header block with `name` (<= 100 bytes), type flag and size;
// for archives libarchive's writer refuses to produce.
inline std::string RawTarHeader(const std::string& name, char typeflag, size_t size, const std::string& link = "") {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(h.data() + 100, 8, "%07o", 0644);
  std::snprintf(h.data() + 108, 8, "%07o", 0);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  std::snprintf(h.data() + 124, 12, "%011zo", size);
  std::snprintf(h.data() + 136, 12, "%011o", 1700000000);
  h[156] = typeflag;
  std::memcpy(h.data() + 157, link.data(), std::min<size_t>(link.size(), 100));
  std::memcpy(h.data() + 257, "ustar", 6);
  h[263] = '0';
  h[264] = '0';
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

inline std::string PadTo512(std::string s) {
  s.resize((s.size() + 511) / 512 * 512, '\0');
  return s;
}

inline std::string Gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline std::string Zstd(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  out.resize(n);
  return out;
}

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
