#include "runtime/exec_shim.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/reaper.h"
#include "common/status.h"
#include "runtime/shim_spawn.h"
#include "runtime/stdio_frame.h"

namespace crisp::runtime {
namespace {

struct ExecShim {
  pid_t pid = -1;
  UniqueFd stdio;
};

absl::StatusOr<ExecShim> Spawn(const std::string& shim_path, const ContainerPlan& plan) {
  if (plan.exec_pid <= 0 || plan.args.empty()) return absl::InvalidArgumentError("exec: no process or no command");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return ErrnoStatus(errno, "socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  auto spawned = SpawnShimWithPlan(shim_path, "exec", ContainerPlanToJson(plan), {theirs.get()});
  if (!spawned.ok()) return spawned.status();
  return ExecShim{spawned->pid, std::move(ours)};
}

// Waits for the shim to exit after it sent its exit frame or we closed its
// socket (it kills the command first); a shim that hangs is killed.
void Reap(pid_t pid) {
  if (!Reaper::Wait(pid, absl::Seconds(5)).ok()) {
    ::kill(pid, SIGKILL);
    (void)Reaper::Wait(pid, absl::Seconds(5));
  }
}

}  // namespace

absl::StatusOr<UniqueFd> StartExec(const std::string& shim_path, const ContainerPlan& plan) {
  auto shim = Spawn(shim_path, plan);
  if (!shim.ok()) return shim.status();
  Reaper::Forget(shim->pid);
  return std::move(shim->stdio);
}

absl::StatusOr<ExecSyncResult> ExecSync(const std::string& shim_path, const ContainerPlan& plan,
                                        std::optional<absl::Duration> timeout, size_t max_output) {
  auto shim = Spawn(shim_path, plan);
  if (!shim.ok()) return shim.status();
  const absl::Time deadline = timeout ? absl::Now() + *timeout : absl::InfiniteFuture();
  ExecSyncResult result;
  FrameReader reader;
  std::string payload;
  FrameType type;
  bool done = false;
  std::string failure;
  while (!done) {
    int wait_ms = -1;
    if (timeout) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        shim->stdio.reset();  // the shim kills the command's process group
        Reap(shim->pid);
        return absl::DeadlineExceededError(
            absl::StrCat("command timed out after ", absl::FormatDuration(*timeout), " and was killed"));
      }
      wait_ms = static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
    }
    struct pollfd p = {shim->stdio.get(), POLLIN, 0};
    int r = ::poll(&p, 1, wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(shim->stdio.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the shim went away without an exit frame
    reader.Feed(buf, static_cast<size_t>(n));
    while (reader.Next(&type, &payload)) {
      std::string* out = type == FrameType::kStdout ? &result.stdout
                         : type == FrameType::kStderr ? &result.stderr
                                                      : nullptr;
      if (out) {
        out->append(payload, 0, std::min(payload.size(), max_output - std::min(max_output, out->size())));
      } else if (type == FrameType::kExit) {
        int32_t code = -1;
        if (!DecodeExit(payload, &code, &failure)) failure = "a malformed exit frame";
        result.exit_code = code;
        done = true;
      }
    }
    if (reader.error()) break;
  }
  shim->stdio.reset();
  auto st = Reaper::Wait(shim->pid, absl::Seconds(5));
  if (!st.ok()) Reap(shim->pid);
  if (!done)
    return absl::InternalError(absl::StrCat("crisp-shim exec ended without an exit code (",
                                            st.ok() ? DescribeWaitStatus(*st) : "killed", ")"));
  if (result.exit_code < 0) return absl::FailedPreconditionError(absl::StrCat("exec failed: ", failure));
  return result;
}

}  // namespace crisp::runtime
