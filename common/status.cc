#include "common/status.h"

#include <cstring>

namespace crisp {

absl::Status ErrnoStatus(int err, absl::string_view what) {
  absl::StatusCode code;
  switch (err) {
    case ENOENT: case ESRCH: code = absl::StatusCode::kNotFound; break;
    case EEXIST: code = absl::StatusCode::kAlreadyExists; break;
    case EACCES: case EPERM: code = absl::StatusCode::kPermissionDenied; break;
    case EINVAL: case ENAMETOOLONG: case ELOOP: code = absl::StatusCode::kInvalidArgument; break;
    case ETIMEDOUT: code = absl::StatusCode::kDeadlineExceeded; break;
    case ENOSPC: case ENOMEM: case EMFILE: case ENFILE: code = absl::StatusCode::kResourceExhausted; break;
    case EBUSY: case ENOTEMPTY: code = absl::StatusCode::kFailedPrecondition; break;
    default: code = absl::StatusCode::kInternal;
  }
  return absl::Status(code, absl::StrCat(what, ": ", std::strerror(err), " (errno ", err, ")"));
}

absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

}  // namespace crisp
