#include "images/manifest.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "images/digest.h"
#include "nlohmann/json.hpp"

namespace crisp::images {
namespace {

using nlohmann::json;

std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, absl::string_view what) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": descriptor is not an object"));
  Descriptor d;
  d.media_type = StringField(j, "mediaType");
  d.digest = StringField(j, "digest");
  if (absl::Status s = ValidateDigest(d.digest); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0)
    return absl::InvalidArgumentError(absl::StrCat(what, " ", d.digest, ": missing or negative size"));
  d.size = size->get<int64_t>();
  if (auto urls = j.find("urls"); urls != j.end() && urls->is_array())
    for (const auto& u : *urls)
      if (u.is_string()) d.urls.push_back(u.get<std::string>());
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.platform = NormalizePlatform(
        Platform{StringField(*p, "os"), StringField(*p, "architecture"), StringField(*p, "variant")});
  }
  return d;
}

bool IsImageConfigType(absl::string_view mt) {
  return mt == kMediaTypeDockerConfig || mt == kMediaTypeOciConfig;
}

absl::StatusOr<ManifestDocument> ParseDocumentJson(const json& j, absl::string_view content_type) {
  if (!j.is_object()) return absl::InvalidArgumentError("manifest is not a JSON object");
  if (auto sv = j.find("schemaVersion"); sv != j.end() && sv->is_number_integer() && sv->get<int>() == 1)
    return absl::UnimplementedError("Docker schema 1 manifests are not supported (deprecated since 2017)");
  std::string mt = StringField(j, "mediaType");
  if (mt.empty()) {
    // Content-Type may carry parameters ("; charset=utf-8").
    absl::string_view ct = content_type.substr(0, content_type.find(';'));
    mt = std::string(absl::StripAsciiWhitespace(ct));
    bool generic =
        mt.empty() || mt == "application/json" || mt == "application/octet-stream" || mt == "text/plain";
    if (generic) mt = j.contains("manifests") ? kMediaTypeOciIndex : kMediaTypeOciManifest;
  }
  ManifestDocument doc;
  if (mt == kMediaTypeOciIndex || mt == kMediaTypeDockerManifestList) {
    doc.is_index = true;
    doc.index.media_type = mt;
    auto ms = j.find("manifests");
    if (ms == j.end() || !ms->is_array())
      return absl::InvalidArgumentError("index has no \"manifests\" array");
    for (size_t i = 0; i < ms->size(); ++i) {
      auto d = ParseDescriptor((*ms)[i], absl::StrCat("index entry ", i));
      if (!d.ok()) return d.status();
      doc.index.manifests.push_back(std::move(*d));
    }
    return doc;
  }
  if (mt == kMediaTypeOciManifest || mt == kMediaTypeDockerManifest) {
    doc.manifest.media_type = mt;
    auto cfg = j.find("config");
    if (cfg == j.end()) return absl::InvalidArgumentError("manifest has no \"config\"");
    auto c = ParseDescriptor(*cfg, "config");
    if (!c.ok()) return c.status();
    doc.manifest.config = std::move(*c);
    if (doc.manifest.config.media_type.empty()) doc.manifest.config.media_type = kMediaTypeOciConfig;
    if (!IsImageConfigType(doc.manifest.config.media_type))
      return absl::FailedPreconditionError(absl::StrCat("not a container image: config media type is \"",
                                                        doc.manifest.config.media_type, "\""));
    auto ls = j.find("layers");
    if (ls == j.end() || !ls->is_array())
      return absl::InvalidArgumentError("manifest has no \"layers\" array");
    for (size_t i = 0; i < ls->size(); ++i) {
      auto d = ParseDescriptor((*ls)[i], absl::StrCat("layer ", i));
      if (!d.ok()) return d.status();
      doc.manifest.layers.push_back(std::move(*d));
    }
    return doc;
  }
  return absl::UnimplementedError(absl::StrCat("unsupported manifest media type \"", mt, "\""));
}

}  // namespace

std::string Platform::String() const {
  std::string s = absl::StrCat(os, "/", architecture);
  if (!variant.empty()) absl::StrAppend(&s, "/", variant);
  return s;
}

Platform NormalizePlatform(Platform p) {
  p.os = absl::AsciiStrToLower(p.os);
  p.architecture = absl::AsciiStrToLower(p.architecture);
  p.variant = absl::AsciiStrToLower(p.variant);
  if (p.architecture == "x86_64" || p.architecture == "x86-64") p.architecture = "amd64";
  if (p.architecture == "aarch64") p.architecture = "arm64";
  if (p.architecture == "armhf") p.architecture = "arm", p.variant = "v7";
  if (p.architecture == "armel") p.architecture = "arm", p.variant = "v6";
  if (p.architecture == "arm64" && (p.variant == "8" || p.variant.empty())) p.variant = "v8";
  if (p.architecture == "arm" && p.variant.empty()) p.variant = "v7";
  if (p.architecture == "arm" && p.variant.size() == 1) p.variant = "v" + p.variant;
  return p;
}

absl::StatusOr<ManifestDocument> ParseManifestDocument(absl::string_view body,
                                                       absl::string_view content_type) {
  if (body.size() > kMaxManifestBytes)
    return absl::InvalidArgumentError(absl::StrCat("manifest larger than ", kMaxManifestBytes, " bytes"));
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("manifest is not valid JSON");
  try {
    return ParseDocumentJson(j, content_type);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed manifest: ", e.what()));
  }
}

absl::StatusOr<Descriptor> ChoosePlatform(const Index& index, const Platform& want_in) {
  Platform want = NormalizePlatform(want_in);
  const Descriptor* best = nullptr;
  int best_score = -1;
  std::vector<std::string> available;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform) continue;
    const Platform& p = *d.platform;
    // Attestation manifests (buildkit) carry "unknown/unknown".
    if (p.os != "unknown") available.push_back(p.String());
    if (p.os != want.os || p.architecture != want.architecture) continue;
    int score;
    if (p.variant == want.variant) {
      score = 2;
    } else if (want.variant.empty()) {
      score = 1;  // e.g. amd64/v3 when nothing in particular was asked for
    } else {
      continue;
    }
    if (score > best_score) best = &d, best_score = score;
  }
  if (best == nullptr) {
    // An index whose only entry has no platform is a single image.
    if (index.manifests.size() == 1 && !index.manifests[0].platform) return index.manifests[0];
    std::sort(available.begin(), available.end());
    return absl::NotFoundError(absl::StrCat(
        "no image for platform ", want.String(),
        " in the index (it has: ", available.empty() ? "none" : absl::StrJoin(available, ", "), ")"));
  }
  return *best;
}

absl::StatusOr<LayerCompression> LayerMediaType(absl::string_view mt) {
  if (mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
      mt == "application/vnd.oci.image.layer.v1.tar+gzip")
    return LayerCompression::kGzip;
  if (mt == "application/vnd.oci.image.layer.v1.tar+zstd") return LayerCompression::kZstd;
  if (mt == "application/vnd.oci.image.layer.v1.tar" || mt == "application/vnd.docker.image.rootfs.diff.tar")
    return LayerCompression::kNone;
  if (mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
      mt.find("nondistributable") != absl::string_view::npos)
    return absl::FailedPreconditionError(absl::StrCat(
        "foreign (non-distributable) layer of type \"", mt,
        "\": it lives outside the registry and is not supported; mirror the image with its layers included"));
  return absl::InvalidArgumentError(absl::StrCat("unsupported layer media type \"", mt, "\""));
}

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("image config is not a JSON object");
  ImageConfig c;
  c.os = StringField(j, "os");
  c.architecture = StringField(j, "architecture");
  c.variant = StringField(j, "variant");
  if (auto cfg = j.find("config"); cfg != j.end() && cfg->is_object()) c.user = StringField(*cfg, "User");
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object())
    return absl::InvalidArgumentError("image config has no rootfs");
  if (StringField(*rootfs, "type") != "layers")
    return absl::InvalidArgumentError("image config rootfs.type is not \"layers\"");
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array())
    return absl::InvalidArgumentError("image config has no rootfs.diff_ids array");
  for (const auto& id : *ids) {
    if (!id.is_string()) return absl::InvalidArgumentError("image config diff_id is not a string");
    std::string s = id.get<std::string>();
    if (absl::Status st = ValidateDigest(s); !st.ok())
      return absl::InvalidArgumentError(absl::StrCat("image config diff_id: ", st.message()));
    c.diff_ids.push_back(std::move(s));
  }
  return c;
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  for (const std::string& d : diff_ids) {
    if (out.empty()) {
      out.push_back(d);
    } else {
      out.push_back(Sha256Digest(absl::StrCat(out.back(), " ", d)));
    }
  }
  return out;
}

ImageUser ParseImageUser(absl::string_view user) {
  ImageUser u;
  absl::string_view name = user.substr(0, user.find(':'));
  if (name.empty()) return u;
  int64_t uid = 0;
  if (absl::SimpleAtoi(name, &uid) && uid >= 0) {
    u.uid = uid;
  } else {
    u.username = std::string(name);
  }
  return u;
}

}  // namespace crisp::images
