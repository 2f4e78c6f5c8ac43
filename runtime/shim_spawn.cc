#include "runtime/shim_spawn.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp::runtime {

absl::StatusOr<SpawnedShim> SpawnShimWithPlan(const std::string& shim_path, const std::string& mode,
                                              const std::string& plan_json, const std::vector<int>& extra_fds) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return ErrnoStatus(errno, "socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  // A plan larger than the default socket buffer must still go in one record.
  int buf = static_cast<int>(plan_json.size() + 4096);
  ::setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  ::setsockopt(theirs.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  std::vector<int> fds = {theirs.get()};
  fds.insert(fds.end(), extra_fds.begin(), extra_fds.end());
  auto shim = Reaper::Spawn({.argv = {shim_path, mode}, .extra_fds = fds, .new_session = true});
  if (!shim.ok()) return Annotate(shim.status(), "starting crisp-shim");
  theirs.reset();
  if (::send(ours.get(), plan_json.data(), plan_json.size(), MSG_NOSIGNAL) < 0) {
    const int err = errno;
    if (err == EPIPE || err == ECONNRESET) {
      // The shim is already gone (it exited before reading its plan): say how it ended.
      auto st = Reaper::Wait(*shim, absl::Seconds(5));
      if (!st.ok()) {
        ::kill(*shim, SIGKILL);
        (void)Reaper::Wait(*shim, absl::Seconds(5));
      }
      return absl::InternalError(absl::StrCat("crisp-shim ", mode, " exited before reading its plan, without a report (",
                                              st.ok() ? DescribeWaitStatus(*st) : "still running", ")"));
    }
    absl::Status s = ErrnoStatus(err, "sending the plan to crisp-shim");
    ::kill(*shim, SIGKILL);
    (void)Reaper::Wait(*shim, absl::Seconds(5));
    return s;
  }
  return SpawnedShim{*shim, std::move(ours)};
}

absl::StatusOr<std::string> RunShimForReport(const std::string& shim_path, const std::string& mode,
                                             const std::string& plan_json, int timeout_ms) {
  auto spawned = SpawnShimWithPlan(shim_path, mode, plan_json);
  if (!spawned.ok()) return spawned.status();
  const pid_t* shim = &spawned->pid;
  UniqueFd& ours = spawned->plan_socket;
  auto reap = [&](bool kill_first) {
    if (kill_first) ::kill(*shim, SIGKILL);
    auto st = Reaper::Wait(*shim, absl::Seconds(5));
    if (!st.ok() && !kill_first) {
      ::kill(*shim, SIGKILL);
      st = Reaper::Wait(*shim, absl::Seconds(5));
    }
    return st;
  };
  struct pollfd p = {ours.get(), POLLIN, 0};
  int r;
  do r = ::poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  if (r == 0) {
    (void)reap(true);
    return absl::DeadlineExceededError(
        absl::StrCat("crisp-shim ", mode, " did not report within ", timeout_ms / 1000, "s"));
  }
  std::string report(1 << 16, '\0');
  ssize_t n = ::recv(ours.get(), report.data(), report.size(), 0);
  // The first shim process exits right after reporting.
  auto st = reap(false);
  if (n <= 0)
    return absl::InternalError(absl::StrCat("crisp-shim ", mode, " exited without a report (",
                                            st.ok() ? DescribeWaitStatus(*st) : "still running", ")"));
  report.resize(static_cast<size_t>(n));
  return report;
}

}  // namespace crisp::runtime
