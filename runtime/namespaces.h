#pragma once
// Pinning a process's namespaces by bind-mounting /proc/<pid>/ns/<type> onto
// files, so they outlive the process, and releasing those pins.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace crisp::runtime {

// Bind-mounts /proc/<pid>/ns/<type> onto <dir>/<type> for each type ("net",
// "ipc", "uts", "pid", ...), creating <dir> and the empty target files. A pin
// keeps the namespace alive after every process in it is gone. On failure
// undoes what it did (incl. <dir> if it created it); INVALID_ARGUMENT for a
// type that is not a plain name.
absl::Status PinNamespaces(int pid, const std::vector<std::string>& types, const std::string& dir);

// Unmounts (MNT_DETACH) and removes <dir>/<type> for every file in <dir>, then
// <dir> itself. OK if <dir> does not exist.
absl::Status UnpinNamespaces(const std::string& dir);

// True if <path> is a mounted nsfs file (i.e. a live pin).
bool IsNamespacePin(const std::string& path);

// tmpfs of `size_bytes` mounted at `dir` (created), mode 1777, nosuid/nodev/noexec: the pod's /dev/shm.
absl::Status MountShm(const std::string& dir, uint64_t size_bytes);
// Unmounts `dir` (every stacked mount, MNT_DETACH) and removes it. OK if it
// does not exist or is not a mount point.
absl::Status UnmountAndRemove(const std::string& dir);

// Propagation of the mount that `path` (absolute, symlinks resolved) is on,
// from mountinfo text: "shared" (a shared:N tag), "slave" (master:N only) or
// "private". The mount is the one with the longest mount point that is a
// path prefix of `path` (the last such line wins, as later mounts cover
// earlier ones).
std::string MountPropagationOf(const std::string& mountinfo, const std::string& path);

}  // namespace crisp::runtime
