#pragma once
// Image references, parsed and normalised as docker/distribution's
// reference.ParseNormalizedNamed does, so that "busybox", "library/busybox"
// and "docker.io/library/busybox:latest" all name the same image.
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crisp::images {

struct Reference {
  std::string domain;  // "docker.io", "registry.k8s.io", "127.0.0.1:5000", "[::1]:5000"
  std::string path;    // "library/busybox"
  std::string tag;     // "latest"; empty only when `digest` is set and no tag was given
  std::string digest;  // "sha256:<hex>" or empty

  // "docker.io/library/busybox"
  std::string Name() const;
  // The full normalised form: name[:tag][@digest].
  std::string String() const;
  // "name:tag", or "" without a tag.
  std::string TagRef() const;
  // "name@<digest>" for any digest.
  std::string DigestRef(absl::string_view digest) const;
  // What to ask the registry for: the digest if there is one (it wins over
  // the tag), else the tag.
  std::string Object() const { return digest.empty() ? tag : digest; }
};

// Parses and normalises `ref`. INVALID_ARGUMENT (with the reason) for empty
// references, uppercase repository names, bad tags, digests that are not
// sha256 with 64 lowercase hex digits, names longer than 255 characters,
// and bare 64-hex strings (those are image IDs, not names).
absl::StatusOr<Reference> ParseReference(absl::string_view ref);

// True for hosts that Docker talks plain HTTP to by default: localhost,
// 127.0.0.0/8 and ::1, with or without a port.
bool IsLoopbackHost(absl::string_view host_port);

}  // namespace crisp::images
