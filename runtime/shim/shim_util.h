#pragma once
// Small helpers shared by the crisp-shim modes (libc only).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace crisp::shim {

// Writes `value` to an existing file (a /proc or cgroup control file) in one
// write(2). False with errno set on failure.
inline bool WriteControlFile(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::write(fd, value.data(), value.size());
  int e = errno;
  ::close(fd);
  errno = e;
  return n == static_cast<ssize_t>(value.size());
}

}  // namespace crisp::shim
