#pragma once
// Error helpers shared by every layer: errno -> absl::Status, context wrapping,
// and the RETURN_IF_ERROR / ASSIGN_OR_RETURN macros absl does not ship publicly.
#include <cerrno>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace crisp {

// Maps an errno value to the closest absl code (ENOENT -> NOT_FOUND, EEXIST ->
// ALREADY_EXISTS, EACCES/EPERM -> PERMISSION_DENIED, EINVAL -> INVALID_ARGUMENT,
// ETIMEDOUT -> DEADLINE_EXCEEDED, ENOSPC -> RESOURCE_EXHAUSTED, else INTERNAL)
// and formats "<what>: <strerror> (errno N)".
absl::Status ErrnoStatus(int err, absl::string_view what);

// Returns `s` with "<context>: " prepended to its message, keeping the code.
// OK stays OK.
absl::Status Annotate(const absl::Status& s, absl::string_view context);

}  // namespace crisp

#define CRISP_CONCAT_INNER_(a, b) a##b
#define CRISP_CONCAT_(a, b) CRISP_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                   \
  do {                                          \
    ::absl::Status crisp_status_ = (expr);      \
    if (!crisp_status_.ok()) return crisp_status_; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(CRISP_CONCAT_(crisp_statusor_, __LINE__), lhs, expr)
