#pragma once
// Starting crisp-shim in a mode with a plan: one place for the socketpair,
// the spawn (new session), sending the plan and collecting the single report
// the first shim process sends before it exits.
#include <string>

#include "absl/status/statusor.h"

namespace crisp::runtime {

// Runs `<shim_path> <mode>` with the plan on fd 3 (a SEQPACKET socket) and
// returns the report it sends back within `timeout_ms` (the shim process is
// reaped; it is killed if it does not exit). DEADLINE_EXCEEDED without a
// report in time, INTERNAL if the shim exits without one.
absl::StatusOr<std::string> RunShimForReport(const std::string& shim_path, const std::string& mode,
                                             const std::string& plan_json, int timeout_ms);

}  // namespace crisp::runtime
