#include "common/units.h"

#include <cctype>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace crisp {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  uint64_t n = 0;
  if (i == 0 || !absl::SimpleAtoi(s.substr(0, i), &n))
    return absl::InvalidArgumentError(absl::StrCat("invalid size \"", s, "\""));
  absl::string_view suf = s.substr(i);
  uint64_t mult;
  if (suf.empty()) mult = 1;
  else if (suf == "Ki") mult = 1ull << 10;
  else if (suf == "Mi") mult = 1ull << 20;
  else if (suf == "Gi") mult = 1ull << 30;
  else if (suf == "Ti") mult = 1ull << 40;
  else if (suf == "k") mult = 1000ull;
  else if (suf == "M") mult = 1000ull * 1000;
  else if (suf == "G") mult = 1000ull * 1000 * 1000;
  else if (suf == "T") mult = 1000ull * 1000 * 1000 * 1000;
  else return absl::InvalidArgumentError(absl::StrCat("invalid size suffix in \"", s, "\" (use Ki, Mi, Gi, Ti, k, M, G, T)"));
  if (n > UINT64_MAX / mult) return absl::InvalidArgumentError(absl::StrCat("size \"", s, "\" is too large"));
  return n * mult;
}

absl::StatusOr<absl::Duration> ParseDurationString(absl::string_view s) {
  absl::Duration d;
  if (!absl::ParseDuration(std::string(s), &d) || d < absl::ZeroDuration())
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", s, "\" (e.g. 30s, 2m, 500ms)"));
  return d;
}

}  // namespace crisp
