#include "test/unit/images/test_support.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "images/digest.h"
#include "nlohmann/json.hpp"

namespace crisp::images::tartest {

TarEntry File(const std::string& path, const std::string& data, int mode) {
  TarEntry e;
  e.type = 'f';
  e.path = path;
  e.data = data;
  e.mode = mode;
  return e;
}
TarEntry Dir(const std::string& path, int mode) {
  TarEntry e;
  e.type = 'd';
  e.path = path;
  e.mode = mode;
  return e;
}
TarEntry Symlink(const std::string& path, const std::string& target) {
  TarEntry e;
  e.type = 'l';
  e.path = path;
  e.target = target;
  e.mode = 0777;
  return e;
}
TarEntry Hardlink(const std::string& path, const std::string& target) {
  TarEntry e;
  e.type = 'h';
  e.path = path;
  e.target = target;
  return e;
}

namespace {

la_ssize_t AppendCb(struct archive*, void* user, const void* buf, size_t n) {
  static_cast<std::string*>(user)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// A raw ustar header block (for entries libarchive's writer cannot make).
std::string RawHeader(const std::string& name, char type, size_t size, int mode) {
  char h[512] = {};
  std::snprintf(h, 100, "%s", name.substr(0, 99).c_str());
  std::snprintf(h + 100, 8, "%07o", mode);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  std::snprintf(h + 124, 12, "%011zo", size);
  std::snprintf(h + 136, 12, "%011o", 1700000000);
  h[156] = type;
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  return std::string(h, 512);
}

std::string Pad(std::string s) {
  s.resize((s.size() + 511) / 512 * 512, '\0');
  return s;
}

std::string PaxRecord(const std::string& key, const std::string& value) {
  // "<len> key=value\n" where len counts itself.
  size_t body = key.size() + value.size() + 3;
  size_t len = body + std::to_string(body).size();
  if (std::to_string(len).size() != std::to_string(body).size()) ++len;
  return absl::StrCat(len, " ", key, "=", value, "\n");
}

std::string BuildRawTar(const std::vector<TarEntry>& entries) {
  std::string out;
  for (const TarEntry& e : entries) {
    if (!e.pax.empty()) {
      std::string recs;
      for (const auto& [k, v] : e.pax) recs += PaxRecord(k, v);
      out += RawHeader("PaxHeaders/x", 'x', recs.size(), 0644) + Pad(recs);
    }
    char type = e.type == 'd' ? '5' : e.type == 'l' ? '2' : e.type == 'h' ? '1' : '0';
    std::string h = RawHeader(e.path, type, e.type == 'f' ? e.data.size() : 0, e.mode);
    if (e.type == 'l' || e.type == 'h') {
      std::snprintf(h.data() + 157, 100, "%s", e.target.substr(0, 99).c_str());
      std::memset(h.data() + 148, ' ', 8);
      unsigned sum = 0;
      for (unsigned char c : h) sum += c;
      std::snprintf(h.data() + 148, 8, "%06o", sum);
      h[155] = ' ';
    }
    out += h;
    if (e.type == 'f') out += Pad(e.data);
  }
  out += std::string(1024, '\0');
  return out;
}

}  // namespace

std::string BuildTar(const std::vector<TarEntry>& entries) {
  for (const TarEntry& e : entries)
    if (!e.pax.empty()) return BuildRawTar(entries);
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(a, &out, nullptr, &AppendCb, nullptr);
  for (const TarEntry& e : entries) {
    struct archive_entry* ent = archive_entry_new();
    archive_entry_set_pathname(ent, e.path.c_str());
    archive_entry_set_uid(ent, e.uid);
    archive_entry_set_gid(ent, e.gid);
    archive_entry_set_mtime(ent, e.mtime, e.mtime_nsec);
    mode_t type = AE_IFREG;
    switch (e.type) {
      case 'd':
        type = AE_IFDIR;
        break;
      case 'l':
        type = AE_IFLNK;
        archive_entry_set_symlink(ent, e.target.c_str());
        break;
      case 'h':
        type = AE_IFREG;
        archive_entry_set_hardlink(ent, e.target.c_str());
        break;
      case 'c':
        type = AE_IFCHR;
        break;
      case 'b':
        type = AE_IFBLK;
        break;
      case 'p':
        type = AE_IFIFO;
        break;
      default:
        break;
    }
    archive_entry_set_filetype(ent, type);
    archive_entry_set_perm(ent, static_cast<mode_t>(e.mode));
    if (e.type == 'c' || e.type == 'b') {
      archive_entry_set_rdevmajor(ent, e.dev_major);
      archive_entry_set_rdevminor(ent, e.dev_minor);
    }
    for (const auto& [k, v] : e.xattrs) archive_entry_xattr_add_entry(ent, k.c_str(), v.data(), v.size());
    archive_entry_set_size(ent, e.type == 'f' ? static_cast<la_int64_t>(e.data.size()) : 0);
    archive_write_header(a, ent);
    if (e.type == 'f' && !e.data.empty()) archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(ent);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::string Gzip(const std::string& data) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string Zstd(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  out.resize(n);
  return out;
}

BuiltImage BuildImage(const ImageSpec& spec) {
  using nlohmann::json;
  BuiltImage img;
  json diff_ids = json::array();
  json layers = json::array();
  for (const std::string& tar : spec.layer_tars) {
    diff_ids.push_back(Sha256Digest(tar));
    std::string blob = tar;
    std::string mt;
    if (spec.compression == "gzip") {
      blob = Gzip(tar);
      mt = spec.oci ? "application/vnd.oci.image.layer.v1.tar+gzip"
                    : "application/vnd.docker.image.rootfs.diff.tar.gzip";
    } else if (spec.compression == "zstd") {
      blob = Zstd(tar);
      mt = "application/vnd.oci.image.layer.v1.tar+zstd";
    } else {
      mt = spec.oci ? "application/vnd.oci.image.layer.v1.tar"
                    : "application/vnd.docker.image.rootfs.diff.tar";
    }
    if (!spec.layer_media_type.empty()) mt = spec.layer_media_type;
    std::string d = Sha256Digest(blob);
    img.layer_blobs.push_back(blob);
    img.layer_digests.push_back(d);
    layers.push_back({{"mediaType", mt}, {"digest", d}, {"size", blob.size()}});
  }
  json cfg = {{"architecture", spec.arch},
              {"os", "linux"},
              {"config", {{"User", spec.user}, {"Env", {"PATH=/bin"}}, {"Cmd", {"/bin/sh"}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  if (!spec.variant.empty()) cfg["variant"] = spec.variant;
  img.config = cfg.dump();
  img.config_digest = Sha256Digest(img.config);
  img.manifest_media_type = spec.oci ? "application/vnd.oci.image.manifest.v1+json"
                                     : "application/vnd.docker.distribution.manifest.v2+json";
  json man = {{"schemaVersion", 2},
              {"mediaType", img.manifest_media_type},
              {"config",
               {{"mediaType", spec.oci ? "application/vnd.oci.image.config.v1+json"
                                       : "application/vnd.docker.container.image.v1+json"},
                {"digest", img.config_digest},
                {"size", img.config.size()}}},
              {"layers", layers}};
  img.manifest = man.dump();
  img.manifest_digest = Sha256Digest(img.manifest);
  return img;
}

std::string BuildIndex(const std::vector<std::tuple<const BuiltImage*, std::string, std::string>>& entries,
                       bool oci) {
  using nlohmann::json;
  json ms = json::array();
  for (const auto& [img, arch, variant] : entries) {
    json p = {{"os", "linux"}, {"architecture", arch}};
    if (!variant.empty()) p["variant"] = variant;
    ms.push_back({{"mediaType", img->manifest_media_type},
                  {"digest", img->manifest_digest},
                  {"size", img->manifest.size()},
                  {"platform", p}});
  }
  json idx = {{"schemaVersion", 2},
              {"mediaType", oci ? "application/vnd.oci.image.index.v1+json"
                                : "application/vnd.docker.distribution.manifest.list.v2+json"},
              {"manifests", ms}};
  return idx.dump();
}

// ---- SnapshotTree --------------------------------------------------------------

namespace {
void Walk(const std::string& dir, const std::string& rel, std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    std::string p = dir + "/" + n, r = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    std::string extra;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
      extra = std::string(buf, k > 0 ? static_cast<size_t>(k) : 0);
    } else if (S_ISREG(st.st_mode)) {
      std::ifstream f(p, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      extra = Sha256Digest(ss.str());
    }
    out.push_back(absl::StrCat(r, " mode=", st.st_mode, " uid=", st.st_uid, " gid=", st.st_gid,
                               " size=", S_ISDIR(st.st_mode) ? 0 : st.st_size, " mtime=", st.st_mtim.tv_sec,
                               " ", extra));
    if (S_ISDIR(st.st_mode)) Walk(p, r, out);
  }
}
}  // namespace

std::string SnapshotTree(const std::string& dir) {
  std::vector<std::string> out;
  Walk(dir, "", out);
  return absl::StrJoin(out, "\n");
}

}  // namespace crisp::images::tartest
