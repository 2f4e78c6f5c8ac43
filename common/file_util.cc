#include "common/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp {

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  while (a.size() > 1 && a.back() == '/') a.remove_suffix(1);
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  if (a == "/") return absl::StrCat("/", b);
  return absl::StrCat(a, "/", b);
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode, bool durable) {
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  if (dir.empty()) dir = ".";
  std::string tmp = absl::StrCat(path, ".tmp-", RandomHex(8));
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("creating ", tmp));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::unlink(tmp.c_str());
      return ErrnoStatus(e, absl::StrCat("writing ", tmp));
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0 || (durable && ::fsync(fd.get()) != 0)) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(e, absl::StrCat("syncing ", tmp));
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(e, absl::StrCat("renaming ", tmp, " to ", path));
  }
  if (!durable) return absl::OkStatus();
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("reading ", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::InvalidArgumentError("MkdirAll: empty path");
  std::string cur;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    cur = path.substr(0, next);
    pos = next + 1;
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("creating directory ", cur));
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " is not a directory"));
  return absl::OkStatus();
}

namespace {

absl::Status RemoveAt(int dirfd, const std::string& name, const std::string& display, dev_t dev) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, absl::StrCat("stat ", display));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT)
      return ErrnoStatus(errno, absl::StrCat("removing ", display));
    return absl::OkStatus();
  }
  if (st.st_dev != dev) {
    return absl::FailedPreconditionError(absl::StrCat("refusing to remove ", display, ": it is a mount point"));
  }
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("opening ", display));
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return ErrnoStatus(errno, absl::StrCat("opening ", display));
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  absl::Status result;
  for (const auto& n : names) {
    absl::Status s = RemoveAt(::dirfd(d), n, absl::StrCat(display, "/", n), dev);
    if (!s.ok() && result.ok()) result = s;
  }
  ::closedir(d);
  if (!result.ok()) return result;
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, absl::StrCat("removing ", display));
  return absl::OkStatus();
}

}  // namespace

absl::Status RemoveAll(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, absl::StrCat("stat ", path));
  }
  return RemoveAt(AT_FDCWD, path, path, st.st_dev);
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return ErrnoStatus(errno, absl::StrCat("listing ", path));
  std::vector<std::string> out;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace crisp
