#pragma once
// Starting crisp-shim in a mode with a plan: one place for the socketpair,
// the spawn (new session), sending the plan and collecting the single report
// the first shim process sends before it exits.
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace crisp::runtime {

struct SpawnedShim {
  pid_t pid = -1;
  UniqueFd plan_socket;  // our end of fd 3 (SEQPACKET), the plan already sent
};

// Spawns `<shim_path> <mode>` in a new session with a SEQPACKET socket as
// fd 3 and `extra_fds` as fds 4, 5, ..., and sends `plan_json` on fd 3 as one
// record. The caller reaps the pid (Reaper::Wait / Forget).
absl::StatusOr<SpawnedShim> SpawnShimWithPlan(const std::string& shim_path, const std::string& mode,
                                              const std::string& plan_json, const std::vector<int>& extra_fds = {});

// Runs `<shim_path> <mode>` with the plan on fd 3 (a SEQPACKET socket) and
// returns the report it sends back within `timeout_ms` (the shim process is
// reaped; it is killed if it does not exit). DEADLINE_EXCEEDED without a
// report in time, INTERNAL if the shim exits without one.
absl::StatusOr<std::string> RunShimForReport(const std::string& shim_path, const std::string& mode,
                                             const std::string& plan_json, int timeout_ms);

}  // namespace crisp::runtime
