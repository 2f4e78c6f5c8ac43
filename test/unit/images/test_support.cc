#include "test/unit/images/test_support.h"

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

void SetOctal(std::string& blk, size_t off, size_t len, int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  for (size_t i = len - 1; i-- > 0;) {
    blk[off + i] = static_cast<char>('0' + (u & 7));
    u >>= 3;
  }
  blk[off + len - 1] = '\0';
}

void SetBase256(std::string& blk, size_t off, size_t len, int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  for (size_t i = len; i-- > 0;) {
    blk[off + i] = static_cast<char>(u & 0xff);
    u = v < 0 ? (u >> 8) | (uint64_t{0xff} << 56) : u >> 8;
  }
  blk[off] = static_cast<char>(blk[off] | 0x80);
}

void FixChecksum(std::string& blk, bool signed_sum) {
  std::memset(blk.data() + 148, ' ', 8);
  int64_t sum = 0;
  for (char c : blk.substr(0, 512))
    sum += signed_sum ? static_cast<signed char>(c) : static_cast<unsigned char>(c);
  std::snprintf(blk.data() + 148, 8, "%06llo", static_cast<long long>(sum));
  blk[155] = ' ';
}

std::string HeaderBlock(const std::string& name, char type, int64_t size, int mode, const std::string& link) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  SetOctal(h, 100, 8, mode);
  SetOctal(h, 108, 8, 0);
  SetOctal(h, 116, 8, 0);
  SetOctal(h, 124, 12, size);
  SetOctal(h, 136, 12, 1700000000);
  h[156] = type;
  std::memcpy(h.data() + 157, link.data(), std::min<size_t>(link.size(), 100));
  std::memcpy(h.data() + 257, "ustar", 6);  // with its NUL
  std::memcpy(h.data() + 263, "00", 2);
  SetOctal(h, 329, 8, 0);
  SetOctal(h, 337, 8, 0);
  FixChecksum(h);
  return h;
}

std::string PadBlock(std::string s) {
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

std::string PaxHeader(const std::vector<std::pair<std::string, std::string>>& records, char type) {
  std::string data;
  for (const auto& [k, v] : records) data += PaxRecord(k, v);
  return HeaderBlock("PaxHeaders/x", type, static_cast<int64_t>(data.size())) + PadBlock(data);
}

std::string BuildTar(const std::vector<TarEntry>& entries) {
  std::string out;
  for (const TarEntry& e : entries) {
    // What the ustar fields cannot hold goes into a PAX header, like
    // libarchive's and Go's writers do; `pax` is added verbatim after it.
    std::vector<std::pair<std::string, std::string>> recs;
    if (e.path.size() > 100) recs.emplace_back("path", e.path);
    if (e.target.size() > 100) recs.emplace_back("linkpath", e.target);
    const int64_t kMaxOctal7 = 07777777, kMaxOctal11 = 077777777777;
    if (e.uid < 0 || e.uid > kMaxOctal7) recs.emplace_back("uid", std::to_string(e.uid));
    if (e.gid < 0 || e.gid > kMaxOctal7) recs.emplace_back("gid", std::to_string(e.gid));
    bool pax_mtime = e.mtime_nsec != 0 || e.mtime < 0 || e.mtime > kMaxOctal11;
    if (pax_mtime) {
      char t[64];
      if (e.mtime < 0 && e.mtime_nsec > 0) {  // -1 s + 0.25 s is "-0.75"
        std::snprintf(t, sizeof t, "-%lld.%09ld", -static_cast<long long>(e.mtime + 1),
                      1000000000 - e.mtime_nsec);
      } else {
        std::snprintf(t, sizeof t, "%lld.%09ld", static_cast<long long>(e.mtime), e.mtime_nsec);
      }
      recs.emplace_back("mtime", t);
    }
    for (const auto& [k, v] : e.xattrs) recs.emplace_back("SCHILY.xattr." + k, v);
    for (const auto& [k, v] : e.pax) recs.emplace_back(k, v);
    if (!recs.empty()) out += PaxHeader(recs);

    char type = '0';
    switch (e.type) {
      case 'd':
        type = '5';
        break;
      case 'l':
        type = '2';
        break;
      case 'h':
        type = '1';
        break;
      case 'c':
        type = '3';
        break;
      case 'b':
        type = '4';
        break;
      case 'p':
        type = '6';
        break;
      default:
        break;
    }
    int64_t size = e.type == 'f' ? static_cast<int64_t>(e.data.size()) : 0;
    std::string h = HeaderBlock(e.path, type, size, e.mode, e.target);
    SetOctal(h, 108, 8, e.uid < 0 || e.uid > kMaxOctal7 ? 0 : e.uid);
    SetOctal(h, 116, 8, e.gid < 0 || e.gid > kMaxOctal7 ? 0 : e.gid);
    SetOctal(h, 136, 12, pax_mtime && (e.mtime < 0 || e.mtime > kMaxOctal11) ? 0 : e.mtime);
    SetOctal(h, 329, 8, e.dev_major);
    SetOctal(h, 337, 8, e.dev_minor);
    FixChecksum(h);
    out += h;
    if (e.type == 'f') out += PadBlock(e.data);
  }
  out += std::string(1024, '\0');
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
