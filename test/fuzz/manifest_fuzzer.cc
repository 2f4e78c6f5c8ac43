// Fuzzes everything that parses registry-controlled or user-controlled
// text: image references, manifests and indexes (with platform choice),
// image configs, users, WWW-Authenticate challenges and token responses.
// Properties checked besides memory safety: a parsed reference re-parses to
// itself; a chosen platform entry belongs to the index.
#include <cstdint>
#include <string>

#include "images/auth.h"
#include "images/manifest.h"
#include "images/reference.h"

using namespace crisp::images;  // NOLINT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);

  if (auto ref = ParseReference(in); ref.ok()) {
    auto again = ParseReference(ref->String());
    if (!again.ok() || again->String() != ref->String() || again->domain != ref->domain ||
        again->path != ref->path)
      __builtin_trap();
  }
  (void)IsLoopbackHost(in);

  static const char* kTypes[] = {"", "application/json", kMediaTypeOciIndex, kMediaTypeDockerManifest};
  auto doc = ParseManifestDocument(in, kTypes[size % 4]);
  if (doc.ok() && doc->is_index) {
    for (const char* arch : {"amd64", "arm64", "arm"}) {
      auto d = ChoosePlatform(doc->index, Platform{"linux", arch, ""});
      if (!d.ok()) continue;
      bool found = false;
      for (const Descriptor& m : doc->index.manifests) found = found || m.digest == d->digest;
      if (!found) __builtin_trap();
    }
  }
  if (doc.ok() && !doc->is_index)
    for (const Descriptor& l : doc->manifest.layers) (void)LayerMediaType(l.media_type);

  if (auto cfg = ParseImageConfig(in); cfg.ok()) {
    if (ChainIds(cfg->diff_ids).size() != cfg->diff_ids.size()) __builtin_trap();
    (void)ParseImageUser(cfg->user);
  }
  (void)ParseImageUser(in);
  (void)ParseWwwAuthenticate(in);
  (void)ParseTokenResponse(in);
  return 0;
}
