#pragma once
// Parsing of human-written quantities in the config.
#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crisp {

// "64Mi", "1G", "512k", "4096" -> bytes. Binary suffixes Ki Mi Gi Ti, decimal
// k M G T (case as in Kubernetes quantities). INVALID_ARGUMENT otherwise.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view s);

// "30s", "1m30s", "500ms", "4h" -> duration (Go-style, via absl). Negative is
// INVALID_ARGUMENT.
absl::StatusOr<absl::Duration> ParseDurationString(absl::string_view s);

}  // namespace crisp
