#include "images/digest.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace crisp::images {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Allocation failure of a tiny context is not recoverable in any useful way.
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(absl::string_view data) {
  if (data.empty()) return;
  EVP_DigestUpdate(ctx_, data.data(), data.size());
  bytes_ += data.size();
}

std::string Sha256::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  return absl::StrCat("sha256:",
                      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), len)));
}

std::string Sha256Digest(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

bool IsHex(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

absl::Status ValidateDigest(absl::string_view digest) {
  if (!absl::StartsWith(digest, "sha256:")) {
    size_t colon = digest.find(':');
    if (colon != absl::string_view::npos && colon > 0)
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported digest algorithm \"", digest.substr(0, colon), "\" (only sha256)"));
    return absl::InvalidArgumentError(absl::StrCat("invalid digest \"", digest, "\""));
  }
  absl::string_view hex = digest.substr(7);
  if (hex.size() != 64 || !IsHex(hex))
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", digest, "\": want sha256: and 64 lowercase hex digits"));
  return absl::OkStatus();
}

std::string DigestHex(absl::string_view digest) {
  size_t colon = digest.find(':');
  return std::string(colon == absl::string_view::npos ? digest : digest.substr(colon + 1));
}

}  // namespace crisp::images
