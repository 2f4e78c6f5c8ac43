#pragma once
// Process identity that survives pid reuse: a pid is always paired with its
// start time (field 22 of /proc/<pid>/stat, in clock ticks since boot).
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crisp {

struct ProcessId {
  pid_t pid = 0;
  uint64_t start_time = 0;
};

// Start time of `pid`. NOT_FOUND if there is no such process.
absl::StatusOr<uint64_t> ProcStartTime(pid_t pid);

// True if `id.pid` exists, is not a zombie, and has the recorded start time.
bool ProcessAlive(const ProcessId& id);

// Sends `sig` to the process if it is still the one recorded (pidfd-based, so
// the check and the signal cannot race with pid reuse). OK if it is gone.
absl::Status SignalProcess(const ProcessId& id, int sig);

// Waits until the process is gone (exited, zombie or reaped) or `timeout`
// passes: DEADLINE_EXCEEDED then. OK at once if it is not alive.
absl::Status WaitProcessGone(const ProcessId& id, absl::Duration timeout);

// SIGKILL, then wait up to `timeout` for it to be gone.
absl::Status KillProcess(const ProcessId& id, absl::Duration timeout);

}  // namespace crisp
