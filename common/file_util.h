#pragma once
// Small filesystem helpers. All return absl::Status with the path in the message.
#include <sys/types.h>

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crisp {

// Writes `data` to a temp file next to `path` and renames it over `path`:
// readers see the old or the new content, never a torn file. With `durable`
// (the default) the file and its directory are fsync'd too, so the new
// content also survives a crash; files that are regenerated anyway can skip
// that cost.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode = 0644,
                             bool durable = true);

// Reads a whole file. NOT_FOUND if it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// mkdir -p with `mode` for the directories it creates. OK if it exists.
absl::Status MkdirAll(const std::string& path, mode_t mode = 0755);

// rm -rf that never crosses a mount point (it refuses with FAILED_PRECONDITION
// instead) and never follows symlinks. OK if `path` does not exist.
absl::Status RemoveAll(const std::string& path);

// True if `path` exists (lstat).
bool PathExists(const std::string& path);

// Names in a directory (no "." / ".."), sorted. NOT_FOUND if missing.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);

// Joins path components with single slashes.
std::string JoinPath(absl::string_view a, absl::string_view b);

}  // namespace crisp
