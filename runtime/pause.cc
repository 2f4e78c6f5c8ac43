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

namespace crisp::runtime {
namespace {
constexpr int kReportTimeoutMs = 10000;
}

absl::StatusOr<ProcessId> StartPause(const std::string& shim_path, const PausePlan& plan) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return ErrnoStatus(errno, "socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  auto shim = Reaper::Spawn({.argv = {shim_path, "pause"}, .extra_fds = {theirs.get()}, .new_session = true});
  if (!shim.ok()) return Annotate(shim.status(), "starting crisp-shim");
  theirs.reset();
  auto fail = [&](absl::Status s) -> absl::Status {
    ::kill(*shim, SIGKILL);
    (void)Reaper::Wait(*shim, absl::Seconds(5));
    return s;
  };

  std::string plan_json = PausePlanToJson(plan);
  if (::send(ours.get(), plan_json.data(), plan_json.size(), MSG_NOSIGNAL) < 0)
    return fail(ErrnoStatus(errno, "sending the plan to crisp-shim"));

  struct pollfd p = {ours.get(), POLLIN, 0};
  int r;
  do r = ::poll(&p, 1, kReportTimeoutMs);
  while (r < 0 && errno == EINTR);
  if (r == 0) return fail(absl::DeadlineExceededError("crisp-shim pause did not report within 10s"));
  char buf[4096];
  ssize_t n = ::recv(ours.get(), buf, sizeof buf, 0);
  // The shim (the intermediate process) exits right after reporting.
  auto st = Reaper::Wait(*shim, absl::Seconds(5));
  if (!st.ok()) {
    ::kill(*shim, SIGKILL);
    (void)Reaper::Wait(*shim, absl::Seconds(5));
  }
  if (n <= 0) {
    return absl::InternalError(absl::StrCat("crisp-shim pause exited without a report (",
                                            st.ok() ? DescribeWaitStatus(*st) : "still running", ")"));
  }
  nlohmann::json rep = nlohmann::json::parse(std::string(buf, static_cast<size_t>(n)), nullptr, false);
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
