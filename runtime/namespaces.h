#pragma once
// Pinning a process's namespaces by bind-mounting /proc/<pid>/ns/<type> onto
// files, so they outlive the process, and releasing those pins.
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace crisp::runtime {

// Bind-mounts /proc/<pid>/ns/<type> onto <dir>/<type> for each type (creating
// <dir> and the empty target files). On failure undoes what it did.
absl::Status PinNamespaces(int pid, const std::vector<std::string>& types, const std::string& dir);

// Unmounts (MNT_DETACH) and removes <dir>/<type> for every file in <dir>, then
// <dir> itself. OK if <dir> does not exist.
absl::Status UnpinNamespaces(const std::string& dir);

// True if <path> is a mounted nsfs file (i.e. a live pin).
bool IsNamespacePin(const std::string& path);

// tmpfs of `size_bytes` mounted at `dir` (created), mode 1777, nosuid/nodev/noexec: the pod's /dev/shm.
absl::Status MountShm(const std::string& dir, uint64_t size_bytes);
// Unmounts and removes `dir`. OK if it does not exist.
absl::Status UnmountAndRemove(const std::string& dir);

}  // namespace crisp::runtime
