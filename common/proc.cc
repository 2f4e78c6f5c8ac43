#include "common/proc.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp {
namespace {

struct StatInfo {
  char state = '?';
  uint64_t start_time = 0;
};

absl::StatusOr<StatInfo> ReadStat(pid_t pid) {
  auto content = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!content.ok()) return absl::NotFoundError(absl::StrCat("process ", pid, " not found"));
  // comm may contain spaces and parens: fields resume after the last ')'.
  size_t p = content->rfind(')');
  if (p == std::string::npos || p + 2 >= content->size())
    return absl::InternalError(absl::StrCat("malformed /proc/", pid, "/stat"));
  std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(*content).substr(p + 2), ' ');
  // f[0] is field 3 (state); start time is field 22 -> f[19].
  if (f.size() < 20) return absl::InternalError(absl::StrCat("short /proc/", pid, "/stat"));
  StatInfo info;
  info.state = f[0].empty() ? '?' : f[0][0];
  if (!absl::SimpleAtoi(f[19], &info.start_time))
    return absl::InternalError(absl::StrCat("bad start time in /proc/", pid, "/stat"));
  return info;
}

UniqueFd PidfdOpen(pid_t pid) { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

}  // namespace

absl::StatusOr<uint64_t> ProcStartTime(pid_t pid) {
  ASSIGN_OR_RETURN(StatInfo info, ReadStat(pid));
  return info.start_time;
}

bool ProcessAlive(const ProcessId& id) {
  if (id.pid <= 0) return false;
  auto info = ReadStat(id.pid);
  return info.ok() && info->start_time == id.start_time && info->state != 'Z' && info->state != 'X';
}

absl::Status SignalProcess(const ProcessId& id, int sig) {
  if (id.pid <= 0) return absl::OkStatus();
  UniqueFd pidfd = PidfdOpen(id.pid);
  if (!pidfd) return errno == ESRCH ? absl::OkStatus() : ErrnoStatus(errno, "pidfd_open");
  // The pidfd pins the process: if it still has our start time now, the
  // signal goes to that same process.
  if (!ProcessAlive(id)) return absl::OkStatus();
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) != 0 && errno != ESRCH)
    return ErrnoStatus(errno, absl::StrCat("signalling process ", id.pid));
  return absl::OkStatus();
}

absl::Status WaitProcessGone(const ProcessId& id, absl::Duration timeout) {
  if (id.pid <= 0) return absl::OkStatus();
  UniqueFd pidfd = PidfdOpen(id.pid);
  if (!pidfd) return absl::OkStatus();
  if (!ProcessAlive(id)) return absl::OkStatus();
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms < 0) ms = 0;
    struct pollfd p = {pidfd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, ms);
    if (r > 0) return absl::OkStatus();
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(errno, "poll pidfd");
    return absl::DeadlineExceededError(absl::StrCat("process ", id.pid, " still running after ",
                                                    absl::FormatDuration(timeout)));
  }
}

absl::Status KillProcess(const ProcessId& id, absl::Duration timeout) {
  RETURN_IF_ERROR(SignalProcess(id, SIGKILL));
  return WaitProcessGone(id, timeout);
}

}  // namespace crisp
