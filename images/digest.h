#pragma once
// Content digests. Only sha256 is supported: it is what every registry and
// image in use today produces, and accepting other algorithms would mean
// accepting content we cannot verify.
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header.

namespace crisp::images {

// Incremental SHA-256 (OpenSSL EVP). Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view data);
  // "sha256:<64 hex>" of everything passed to Update. Call once; the hasher
  // is finished afterwards.
  std::string Finish();
  uint64_t bytes() const { return bytes_; }

 private:
  evp_md_ctx_st* ctx_;
  uint64_t bytes_ = 0;
};

// "sha256:<hex>" of `data`.
std::string Sha256Digest(absl::string_view data);

// OK if `digest` is "sha256:" followed by 64 lowercase hex digits; otherwise
// INVALID_ARGUMENT (UNIMPLEMENTED-free: other algorithms are invalid here too).
absl::Status ValidateDigest(absl::string_view digest);

// True if `s` is 1..64 lowercase hex digits.
bool IsHex(absl::string_view s);

// The hex part of a valid digest ("sha256:abc" -> "abc").
std::string DigestHex(absl::string_view digest);

}  // namespace crisp::images
