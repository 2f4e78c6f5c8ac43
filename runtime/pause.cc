#include "runtime/pause.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "runtime/shim_spawn.h"

namespace crisp::runtime {
namespace {
constexpr int kReportTimeoutMs = 10000;
}

absl::StatusOr<ProcessId> StartPause(const std::string& shim_path, const PausePlan& plan) {
  ASSIGN_OR_RETURN(std::string report, RunShimForReport(shim_path, "pause", PausePlanToJson(plan), kReportTimeoutMs));
  nlohmann::json rep = nlohmann::json::parse(report, nullptr, false);
  if (rep.is_discarded() || !rep.is_object())
    return absl::InternalError("crisp-shim pause sent a malformed report");
  if (rep.contains("error")) {
    int err = rep.value("errno", 0);
    std::string msg =
        absl::StrCat("pause: ", rep.value("step", std::string("?")), ": ",
                     rep.value("error", std::string("")), err ? absl::StrCat(" (errno ", err, ")") : "");
    // A sysctl the kernel does not know or rejects, or a hostname it refuses,
    // is the caller's mistake, not a runtime failure.
    std::string step = rep.value("step", std::string());
    bool bad_input = (step.rfind("sysctl", 0) == 0 && (err == ENOENT || err == EINVAL)) ||
                     (step == "sethostname" && err == EINVAL);
    return bad_input ? absl::InvalidArgumentError(msg) : absl::InternalError(msg);
  }
  int pid = rep.value("pid", 0);
  if (pid <= 0) return absl::InternalError("crisp-shim pause reported no pid");
  auto start = ProcStartTime(pid);
  if (!start.ok())
    return absl::InternalError(absl::StrCat("pause process ", pid, " vanished right after start"));
  return ProcessId{pid, *start};
}

}  // namespace crisp::runtime
