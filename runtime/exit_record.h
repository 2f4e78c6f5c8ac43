#pragma once
// The exit record a container's crisp-shim writes (atomically) when it has
// reaped the container process, and crispd reads to report the exit, also
// after a restart. Free of absl so that the shim can link it.
#include <cstdint>
#include <string>

namespace crisp::runtime {

struct ExitRecord {
  int pid = 0;
  uint64_t start_time = 0;
  // Shell convention: the exit status, or 128 + signal when killed by one.
  int exit_code = 0;
  int signal = 0;  // the killing signal, 0 if it exited
  bool oom_killed = false;
  int64_t started_at_ns = 0, finished_at_ns = 0;
  std::string message;
};

// exit_code/signal from a waitpid() status.
ExitRecord ExitRecordFromWaitStatus(int wait_status);

// Writes `rec` to `path` atomically and durably (temp file, fsync, rename,
// fsync of the directory). Returns 0 or an errno.
int WriteExitRecord(const std::string& path, const ExitRecord& rec);

// Reads a record written by WriteExitRecord. Unknown keys are ignored; pid,
// exit_code and finished_at_ns are required. False (with `error`) if the
// file is missing, not JSON, or has a wrong type.
bool ReadExitRecord(const std::string& path, ExitRecord* out, std::string* error);

}  // namespace crisp::runtime
