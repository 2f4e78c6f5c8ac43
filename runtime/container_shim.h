#pragma once
// crispd's side of a container's crisp-shim: start it with a plan, talk to
// it over its ctl.sock, read its exit record. See runtime/shim/container_mode.cc.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/proc.h"
#include "runtime/container_plan.h"
#include "runtime/exit_record.h"

namespace crisp::runtime {

struct ShimProcesses {
  ProcessId container;  // the container's init process (host pid)
  ProcessId shim;       // its long-lived crisp-shim parent
  // Who the container process runs as, as the shim resolved it.
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
};

// Starts `crisp-shim container` with `plan` and waits (up to 10 s) for the
// container to be created (set up and waiting for Start). The plan's
// shim_dir must exist. Errors name the failing step: INVALID_ARGUMENT for
// what the request got wrong (a user that does not exist, a bad seccomp
// profile), else INTERNAL/UNAVAILABLE.
absl::StatusOr<ShimProcesses> StartContainerShim(const std::string& shim_path, const ContainerPlan& plan);

// Lets the created container exec its process. Returns the start time (ns
// since the epoch). FAILED_PRECONDITION if it was started already; the exec
// error (e.g. "executable file not found") otherwise.
absl::StatusOr<int64_t> ShimStart(const std::string& shim_dir);

// Sets the terminal size of a tty container (FAILED... INTERNAL "no
// terminal" for one without).
absl::Status ShimResize(const std::string& shim_dir, int width, int height);

// Attach: `<shim_dir>/attach.sock` (SOCK_STREAM). A client receives every
// output chunk framed as 1 byte stream (1 stdout, 2 stderr) + 4 bytes
// big-endian length + the bytes, and what it sends goes to the container's
// stdin (or terminal). With stdin_once, the first client's disconnect closes
// the container's stdin.

// Makes the shim reopen the container's log file (after rotation).
absl::Status ShimReopenLog(const std::string& shim_dir);

// The shim's exit record (<shim_dir>/exit.json): NOT_FOUND if it has not
// written one (yet).
absl::StatusOr<ExitRecord> ReadShimExit(const std::string& shim_dir);

}  // namespace crisp::runtime
