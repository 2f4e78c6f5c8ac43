#pragma once
// crispd's side of `crisp-shim exec` (runtime/shim/exec_mode.cc): run one
// command in a running container, for Exec (streamed) and ExecSync.
#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "runtime/container_plan.h"

namespace crisp::runtime {

// Starts the command `plan.args` in the container whose process is
// `plan.exec_pid` (plan = the container's plan with args/tty/stdin_open of
// the exec). Returns the framed stdio socket (runtime/stdio_frame.h); closing
// it kills the command. The shim is reaped in the background.
absl::StatusOr<UniqueFd> StartExec(const std::string& shim_path, const ContainerPlan& plan);

struct ExecSyncResult {
  std::string stdout, stderr;
  int exit_code = 0;
};

// Runs the command to completion without stdin. Each output stream keeps at
// most `max_output` bytes (the rest is read and dropped). With a timeout,
// DEADLINE_EXCEEDED when it passes: the command and everything in its process
// group are killed and reaped first. FAILED_PRECONDITION if the command could
// not be run (e.g. "executable file not found"), naming why.
absl::StatusOr<ExecSyncResult> ExecSync(const std::string& shim_path, const ContainerPlan& plan,
                                        std::optional<absl::Duration> timeout, size_t max_output);

}  // namespace crisp::runtime
