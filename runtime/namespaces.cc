#include "runtime/namespaces.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace crisp::runtime {

absl::Status PinNamespaces(int pid, const std::vector<std::string>& types, const std::string& dir) {
  for (const auto& t : types)
    if (t.empty() || t.find('/') != std::string::npos || t == "." || t == "..")
      return absl::InvalidArgumentError(absl::StrCat("invalid namespace type \"", t, "\""));
  const bool dir_existed = PathExists(dir);
  RETURN_IF_ERROR(MkdirAll(dir, 0711));
  std::vector<std::string> done;
  auto undo = [&] {
    for (const auto& t : done) {
      std::string p = JoinPath(dir, t);
      ::umount2(p.c_str(), MNT_DETACH);
      ::unlink(p.c_str());
    }
    if (!dir_existed) ::rmdir(dir.c_str());  // fails harmlessly if something else is in it
  };
  for (const auto& t : types) {
    std::string target = JoinPath(dir, t);
    std::string source = absl::StrCat("/proc/", pid, "/ns/", t);
    int fd = ::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0444);
    if (fd < 0) {
      int e = errno;
      undo();
      return ErrnoStatus(e, "creating " + target);
    }
    ::close(fd);
    if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      int e = errno;
      ::unlink(target.c_str());
      undo();
      return ErrnoStatus(e, absl::StrCat("bind-mounting ", source, " on ", target));
    }
    done.push_back(t);
  }
  return absl::OkStatus();
}

absl::Status UnpinNamespaces(const std::string& dir) {
  auto names = ListDir(dir);
  if (!names.ok()) {
    if (names.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return names.status();
  }
  for (const auto& n : *names) {
    std::string p = JoinPath(dir, n);
    // Loop: a file may carry stacked mounts after a crash-and-retry.
    for (int i = 0; i < 64 && IsNamespacePin(p); ++i) {
      if (::umount2(p.c_str(), MNT_DETACH) != 0) return ErrnoStatus(errno, "unmounting " + p);
    }
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + p);
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + dir);
  return absl::OkStatus();
}

bool IsNamespacePin(const std::string& path) {
  struct statfs fs;
  if (::statfs(path.c_str(), &fs) != 0) return false;
  return static_cast<unsigned long>(fs.f_type) == static_cast<unsigned long>(NSFS_MAGIC);
}

absl::Status MountShm(const std::string& dir, uint64_t size_bytes) {
  RETURN_IF_ERROR(MkdirAll(dir, 0755));
  std::string opts = absl::StrCat("mode=1777,size=", size_bytes);
  if (::mount("shm", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts.c_str()) != 0) {
    int e = errno;
    ::rmdir(dir.c_str());
    return ErrnoStatus(e, "mounting tmpfs on " + dir);
  }
  return absl::OkStatus();
}

absl::Status UnmountAndRemove(const std::string& dir) {
  if (!PathExists(dir)) return absl::OkStatus();
  // Until EINVAL ("not a mount point"): a crash-and-retry may have stacked
  // mounts. A bounded loop, so an unexpected state cannot spin forever.
  for (int i = 0; i < 64; ++i) {
    if (::umount2(dir.c_str(), MNT_DETACH) == 0) continue;
    if (errno == EINVAL) break;
    return ErrnoStatus(errno, "unmounting " + dir);
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + dir);
  return absl::OkStatus();
}

std::string MountPropagationOf(const std::string& mountinfo, const std::string& path) {
  std::string best_point, best = "private";
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t nl = mountinfo.find('\n', pos);
    std::string line = mountinfo.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? mountinfo.size() : nl + 1;
    // id parent major:minor root mount_point options [optional...] - fstype source superopts
    std::vector<std::string> f;
    size_t i = 0;
    while (i < line.size()) {
      size_t sp = line.find(' ', i);
      f.push_back(line.substr(i, sp == std::string::npos ? std::string::npos : sp - i));
      if (sp == std::string::npos) break;
      i = sp + 1;
    }
    if (f.size() < 7) continue;
    const std::string& point = f[4];
    bool prefix = point == "/" || path == point || (path.rfind(point, 0) == 0 && path.size() > point.size() &&
                                                     path[point.size()] == '/');
    if (!prefix || point.size() < best_point.size()) continue;
    std::string prop = "private";
    for (size_t k = 6; k < f.size() && f[k] != "-"; ++k) {
      if (f[k].rfind("shared:", 0) == 0) prop = "shared";
      else if (f[k].rfind("master:", 0) == 0 && prop != "shared") prop = "slave";
    }
    best_point = point;
    best = prop;
  }
  return best;
}

}  // namespace crisp::runtime
