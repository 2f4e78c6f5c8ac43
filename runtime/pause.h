#pragma once
// Starting a pod's pause process through crisp-shim (pause mode).
#include <string>

#include "absl/status/statusor.h"
#include "common/proc.h"
#include "runtime/pause_plan.h"

namespace crisp::runtime {

// Spawns `shim_path pause`, sends the plan as JSON over a socketpair, and
// returns the pause process (in our PID namespace) once it has set up its
// namespaces, dropped its capabilities and is sleeping. The pause process is
// in a new session and outlives crispd. On failure the error names the step
// and errno reported by the shim, and nothing is left running.
absl::StatusOr<ProcessId> StartPause(const std::string& shim_path, const PausePlan& plan);

}  // namespace crisp::runtime
