#pragma once
// A container's exit record (`/run/crisp/shims/<id>/exit.json`): written once by crisp-shim when it
// has reaped the container process, read by crispd (ContainerStatus, and recovery after a crispd
// restart, when the shim may be long gone).
//
// Free of absl/spdlog/protobuf so that crisp-shim can link it; only header-only nlohmann_json.
#include <cstdint>
#include <string>

namespace crisp::runtime {

struct ExitRecord {
  int pid = 0;              // the container process, as seen from crispd's PID namespace; > 0
  uint64_t start_time = 0;  // its start time (field 22 of /proc/<pid>/stat), so a reused pid is not ours
  // Shell convention, as kubelet shows it: the exit status (0..255) when the process exited, and
  // 128 + signal when a signal killed it (SIGKILL -> 137). `signal` tells the two apart when a
  // process itself exits with 137.
  int exit_code = 0;
  int signal = 0;              // the signal that killed the process, 0 if it exited
  bool oom_killed = false;     // the kernel's OOM killer killed a process of the container's cgroup
  int64_t started_at_ns = 0;   // Unix time in ns; 0 if unknown
  int64_t finished_at_ns = 0;  // Unix time in ns when the shim reaped the process
  // Free text for the CRI status message; may be empty. Need not be UTF-8: invalid UTF-8 is replaced
  // by U+FFFD when written.
  std::string message;
};

// Fills exit_code and signal of `*rec` from a wait status (from waitpid/wait4 without or with
// WUNTRACED). Returns false, leaving `*rec` untouched, if the status is not a termination (a
// stopped or continued child). Other fields are the caller's.
bool ExitRecordFromWaitStatus(int wait_status, ExitRecord* rec);

// Writes `rec` as JSON to `path` atomically: to `<path>.tmp.<getpid()>` (mode 0644 less the umask), fsync,
// rename over `path`, fsync of the directory. A reader sees either no file, the previous file, or the whole
// new record. Returns 0 or errno; on an error before the rename the temp file is removed and `path`
// is untouched; an error fsyncing the directory is returned although the record is in place (it may
// not survive a power loss).
int WriteExitRecord(const std::string& path, const ExitRecord& rec);

// Reads a record written by WriteExitRecord. Unknown keys are ignored (a newer shim may add some);
// pid, exit_code and finished_at_ns are required; every key present must have its type (integers,
// not floats or strings; a boolean; a string) and range (pid > 0, exit_code 0..255, signal 0..127,
// start_time >= 0). Missing optional keys read as the struct's defaults. Returns false with a
// message naming `path` in `*error` (if not null) on any failure; `*rec` is then unspecified.
bool ReadExitRecord(const std::string& path, ExitRecord* rec, std::string* error);

}  // namespace crisp::runtime
