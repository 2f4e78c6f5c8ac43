#pragma once
// Docker Registry v2 schema 2 and OCI image manifests, indexes and configs:
// parsing, platform choice and the OCI chain-ID computation.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crisp::images {

inline constexpr char kMediaTypeDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kMediaTypeDockerManifestList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kMediaTypeOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kMediaTypeOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kMediaTypeDockerConfig[] = "application/vnd.docker.container.image.v1+json";
inline constexpr char kMediaTypeOciConfig[] = "application/vnd.oci.image.config.v1+json";

// The Accept header for manifest requests: every type we can parse.
inline constexpr char kManifestAccept[] =
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

// Manifests larger than this are refused (containerd uses the same limit):
// they are read into memory and a registry must not be able to exhaust it.
inline constexpr size_t kMaxManifestBytes = 4 << 20;
// Image configs are read into memory too.
inline constexpr int64_t kMaxConfigBytes = 64 << 20;

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64" (normalised: x86_64 -> amd64, aarch64 -> arm64)
  std::string variant;       // "v8", "v7", ... or empty
  std::string String() const;
};

struct Descriptor {
  std::string media_type;
  std::string digest;  // validated sha256 digest
  int64_t size = 0;    // validated >= 0
  std::vector<std::string> urls;
  std::optional<Platform> platform;
};

struct Manifest {
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
};

struct Index {
  std::string media_type;
  std::vector<Descriptor> manifests;
};

// A manifest document is either an image manifest or an index / manifest list.
struct ManifestDocument {
  bool is_index = false;
  Manifest manifest;  // when !is_index
  Index index;        // when is_index
};

// Parses a manifest or index. The media type comes from the document's
// "mediaType", else from `content_type` (the HTTP Content-Type), else from
// its shape ("manifests" vs "layers"), as OCI allows it to be absent.
// INVALID_ARGUMENT for malformed JSON, bad digests or sizes;
// UNIMPLEMENTED for schema 1 manifests and unknown media types;
// FAILED_PRECONDITION for manifests whose config is not an image config
// (OCI artifacts such as Helm charts).
absl::StatusOr<ManifestDocument> ParseManifestDocument(absl::string_view body,
                                                       absl::string_view content_type);

// Normalises an architecture/variant pair the way containerd's platforms
// package does (x86_64 -> amd64, aarch64 -> arm64, arm64 "" == "v8", arm "" == "v7").
Platform NormalizePlatform(Platform p);

// Picks the entry of `index` for `want`: same OS and architecture, and the
// same variant if `want` has one (an entry without a variant is preferred
// when `want` has none). NOT_FOUND naming the available platforms otherwise.
absl::StatusOr<Descriptor> ChoosePlatform(const Index& index, const Platform& want);

// How a layer blob is compressed, from its media type.
enum class LayerCompression { kNone, kGzip, kZstd };

// FAILED_PRECONDITION for foreign / non-distributable layers (which live
// outside the registry and which we refuse to fetch), INVALID_ARGUMENT for
// media types that are not image layers.
absl::StatusOr<LayerCompression> LayerMediaType(absl::string_view media_type);

struct ImageConfig {
  std::string os, architecture, variant;
  std::string user;                   // config.User
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, validated
};

// Parses the parts of an image config we need. INVALID_ARGUMENT if it is not
// a JSON object, rootfs.type is not "layers", or a diff ID is not a digest.
absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view json);

// OCI chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) =
// sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

struct ImageUser {
  std::optional<int64_t> uid;
  std::string username;
};

// config.User as CRI reports it: "1000" and "1000:1000" give uid 1000,
// "www-data" and "www-data:1004" give username "www-data", "" gives neither.
ImageUser ParseImageUser(absl::string_view user);

}  // namespace crisp::images
