#include "runtime/exit_record.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>

#include "common/unique_fd.h"
#include "nlohmann/json.hpp"

namespace crisp::runtime {
namespace {

using nlohmann::json;

// A record is a few hundred bytes; anything much bigger is not one of ours.
constexpr size_t kMaxRecordBytes = 1 << 20;

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r (g++ defines _GNU_SOURCE): returns the message, thread-safe for crispd.
  return ::strerror_r(err, buf, sizeof buf);
}

int WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t r = ::write(fd, data.data() + done, data.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return EIO;
    done += static_cast<size_t>(r);
  }
  return 0;
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Reads j[key] as an integer in [min, max] into *v. Absent: returns `!required` and leaves *v.
bool GetInt(const json& j, const char* key, bool required, int64_t min, int64_t max, int64_t* v,
            std::string* why) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) *why = std::string("missing key \"") + key + "\"";
    return !required;
  }
  if (!it->is_number_integer()) {
    *why = std::string("\"") + key + "\" is not an integer";
    return false;
  }
  bool in_range;
  int64_t value = 0;
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    in_range = max >= 0 && u <= static_cast<uint64_t>(max);
    value = static_cast<int64_t>(u);
  } else {
    value = it->get<int64_t>();
    in_range = true;
  }
  if (!in_range || value < min || value > max) {
    *why = std::string("\"") + key + "\" is out of range";
    return false;
  }
  *v = value;
  return true;
}

bool ParseRecord(const std::string& text, ExitRecord* rec, std::string* why) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *why = "not valid JSON";
    return false;
  }
  if (!j.is_object()) {
    *why = "not a JSON object";
    return false;
  }
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
  constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
  ExitRecord r;
  int64_t pid = 0, exit_code = 0, signal = 0;
  if (!GetInt(j, "pid", true, 1, kIntMax, &pid, why) ||
      !GetInt(j, "exit_code", true, 0, 255, &exit_code, why) ||
      !GetInt(j, "signal", false, 0, 127, &signal, why) ||
      !GetInt(j, "started_at_ns", false, kI64Min, kI64Max, &r.started_at_ns, why) ||
      !GetInt(j, "finished_at_ns", true, kI64Min, kI64Max, &r.finished_at_ns, why)) {
    return false;
  }
  r.pid = static_cast<int>(pid);
  r.exit_code = static_cast<int>(exit_code);
  r.signal = static_cast<int>(signal);
  if (auto it = j.find("start_time"); it != j.end()) {
    // uint64: a non-negative integer literal is always stored as unsigned by the parser.
    if (!it->is_number_unsigned()) {
      *why = "\"start_time\" is not a non-negative integer";
      return false;
    }
    r.start_time = it->get<uint64_t>();
  }
  if (auto it = j.find("oom_killed"); it != j.end()) {
    if (!it->is_boolean()) {
      *why = "\"oom_killed\" is not a boolean";
      return false;
    }
    r.oom_killed = it->get<bool>();
  }
  if (auto it = j.find("message"); it != j.end()) {
    if (!it->is_string()) {
      *why = "\"message\" is not a string";
      return false;
    }
    r.message = it->get<std::string>();
  }
  *rec = std::move(r);
  return true;
}

}  // namespace

bool ExitRecordFromWaitStatus(int wait_status, ExitRecord* rec) {
  if (WIFEXITED(wait_status)) {
    rec->exit_code = WEXITSTATUS(wait_status);
    rec->signal = 0;
    return true;
  }
  if (WIFSIGNALED(wait_status)) {
    rec->signal = WTERMSIG(wait_status);
    rec->exit_code = 128 + rec->signal;
    return true;
  }
  return false;
}

int WriteExitRecord(const std::string& path, const ExitRecord& rec) {
  std::string text;
  try {
    json j = {{"pid", rec.pid},
              {"start_time", rec.start_time},
              {"exit_code", rec.exit_code},
              {"signal", rec.signal},
              {"oom_killed", rec.oom_killed},
              {"started_at_ns", rec.started_at_ns},
              {"finished_at_ns", rec.finished_at_ns},
              {"message", rec.message}};
    // The message may come from anywhere (e.g. a container's termination output): replace invalid
    // UTF-8 instead of throwing.
    text = j.dump(-1, ' ', false, json::error_handler_t::replace);
    text.push_back('\n');
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const json::exception&) {
    return EINVAL;
  }

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int err = 0;
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd.valid()) return errno;
    err = WriteAll(fd.get(), text);
    if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
    // close() can report a delayed write error (NFS); the data must be known good before rename.
    if (::close(fd.release()) != 0 && err == 0) err = errno;
  }
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return err;
  }
  // Make the rename itself durable.
  UniqueFd dir(::open(DirOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return errno;
  if (::fsync(dir.get()) != 0) return errno;
  return 0;
}

bool ReadExitRecord(const std::string& path, ExitRecord* rec, std::string* error) {
  std::string why;
  std::string text;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    why = ErrnoText(errno);
  } else {
    char buf[4096];
    while (true) {
      ssize_t r = ::read(fd.get(), buf, sizeof buf);
      if (r < 0) {
        if (errno == EINTR) continue;
        why = ErrnoText(errno);
        break;
      }
      if (r == 0) break;
      text.append(buf, static_cast<size_t>(r));
      if (text.size() > kMaxRecordBytes) {
        why = "larger than " + std::to_string(kMaxRecordBytes) + " bytes";
        break;
      }
    }
  }
  if (why.empty()) {
    try {
      if (!ParseRecord(text, rec, &why) && why.empty()) why = "invalid record";
    } catch (const std::exception& e) {  // nlohmann_json or bad_alloc; not expected after the checks
      why = e.what();
    }
  }
  if (why.empty()) return true;
  if (error != nullptr) *error = "exit record " + path + ": " + why;
  return false;
}

}  // namespace crisp::runtime
