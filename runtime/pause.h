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
// in a new session and outlives crispd; it is reparented to the nearest child
// subreaper (crispd, see Reaper::InstallSubreaper), which must reap it.
// On failure the error reads "pause: <step>: <strerror> (errno N)" and nothing
// is left running: INVALID_ARGUMENT when the plan itself is at fault (an
// unknown or rejected sysctl, a hostname the kernel refuses), DEADLINE_EXCEEDED
// if the shim does not report within 10 s, INTERNAL otherwise.
absl::StatusOr<ProcessId> StartPause(const std::string& shim_path, const PausePlan& plan);

}  // namespace crisp::runtime
