#pragma once
// The one place crisp starts child processes and reaps them.
//
// crispd is multithreaded, so it never forks without exec: children are
// started with posix_spawn (vfork-like, exec immediately). crispd is also a
// child subreaper, so processes that its shims orphan (pause processes,
// containers) are reparented to it; the reaper thread reaps every child with
// waitpid(-1) and hands the exit status to whoever spawned it. Nothing else in
// the process may call wait*() on children.
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crisp {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the path to exec.
  // Full environment of the child; if unset, the child inherits ours.
  std::optional<std::vector<std::string>> env;
  int stdin_fd = -1;   // -1: /dev/null
  int stdout_fd = -1;  // -1: /dev/null
  int stderr_fd = -1;  // -1: /dev/null
  // Passed to the child as fds 3, 4, ... in this order; every other fd is closed.
  std::vector<int> extra_fds;
  bool new_session = false;  // setsid() in the child
};

class Reaper {
 public:
  // Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER) and starts
  // the reaper. Call once from main().
  static absl::Status InstallSubreaper();

  // Starts a child. Its exit status must be collected with Wait() (or it is
  // dropped when Forget() is called).
  static absl::StatusOr<pid_t> Spawn(const SpawnOptions& opts);

  // Waits for a child started by Spawn() to exit and returns its wait status
  // (as from waitpid). DEADLINE_EXCEEDED if `timeout` passes first (the child
  // stays registered; call Wait again or Forget).
  static absl::StatusOr<int> Wait(pid_t pid, std::optional<absl::Duration> timeout = std::nullopt);

  // Stops tracking `pid`: its exit status will be discarded.
  static void Forget(pid_t pid);
};

// "exit status N" / "killed by signal N" for a wait status.
std::string DescribeWaitStatus(int status);

}  // namespace crisp
