#include "runtime/exit_record.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nlohmann/json.hpp"

namespace crisp::runtime {

ExitRecord ExitRecordFromWaitStatus(int status) {
  ExitRecord r;
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
    r.exit_code = 128 + r.signal;
  } else {
    r.exit_code = 255;
  }
  return r;
}

int WriteExitRecord(const std::string& path, const ExitRecord& r) {
  nlohmann::json j = {{"pid", r.pid},
                      {"start_time", r.start_time},
                      {"exit_code", r.exit_code},
                      {"signal", r.signal},
                      {"oom_killed", r.oom_killed},
                      {"started_at_ns", r.started_at_ns},
                      {"finished_at_ns", r.finished_at_ns},
                      {"message", r.message}};
  std::string data = j.dump();
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return e;
  }
  std::string dir = path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return 0;
}

bool ReadExitRecord(const std::string& path, ExitRecord* out, std::string* error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("opening ") + path + ": " + std::strerror(errno);
    return false;
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < (1 << 20)) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "exit record is not a JSON object";
    return false;
  }
  try {
    ExitRecord r;
    r.pid = j.at("pid").get<int>();
    r.exit_code = j.at("exit_code").get<int>();
    r.finished_at_ns = j.at("finished_at_ns").get<int64_t>();
    r.start_time = j.value("start_time", uint64_t{0});
    r.signal = j.value("signal", 0);
    r.oom_killed = j.value("oom_killed", false);
    r.started_at_ns = j.value("started_at_ns", int64_t{0});
    r.message = j.value("message", "");
    *out = r;
    return true;
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("exit record: ") + e.what();
    return false;
  }
}

}  // namespace crisp::runtime
