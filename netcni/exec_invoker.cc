// The real CniInvoker: runs a plugin binary with pipes on stdin/stdout/stderr.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "netcni/cni.h"

namespace crisp::netcni {
namespace {

// Writing to the pipe of a plugin that exited without reading its stdin
// raises SIGPIPE, which would kill a process that does not ignore it (crispd
// does; tests and other embedders may not). Block it on this thread while we
// write, and swallow the one we caused.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

// Kills a child that must not outlive us and collects it.
void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  // SIGKILL cannot be ignored; the bound only protects against a process
  // stuck in uninterruptible sleep, which we then stop tracking.
  if (!Reaper::Wait(pid, absl::Seconds(10)).ok()) Reaper::Forget(pid);
}

}  // namespace

absl::StatusOr<CniInvoker::Result> RunCommand(const std::vector<std::string>& argv,
                                              const std::vector<std::string>& env, const std::string& stdin_data,
                                              absl::Duration timeout) {
    using Result = CniInvoker::Result;
    if (argv.empty()) return absl::InvalidArgumentError("no command to run");
    const std::string& plugin_path = argv[0];
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    UniqueFd in_r(in[0]), in_w(in[1]);
    if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    UniqueFd out_r(out[0]), out_w(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    UniqueFd err_r(err[0]), err_w(err[1]);
    const absl::Time deadline = absl::Now() + timeout;
    auto pid = Reaper::Spawn({.argv = argv,
                              .env = env,
                              .stdin_fd = in_r.get(),
                              .stdout_fd = out_w.get(),
                              .stderr_fd = err_w.get()});
    if (!pid.ok()) return pid.status();
    // Our copies of the child's ends must go, or we never see EOF.
    in_r.reset();
    out_w.reset();
    err_w.reset();
    for (int fd : {in_w.get(), out_r.get(), err_r.get()}) ::fcntl(fd, F_SETFL, O_NONBLOCK);

    SigpipeGuard sigpipe_guard;
    Result res;
    size_t written = 0;
    if (stdin_data.empty()) in_w.reset();
    // Feed stdin and drain both outputs together: a plugin that writes a lot
    // before reading all its input (or fills stderr) must not deadlock us.
    absl::Status failure;
    while (in_w || out_r || err_r) {
      struct pollfd fds[3];
      int n = 0;
      int idx_in = -1, idx_out = -1, idx_err = -1;
      if (in_w) {
        idx_in = n;
        fds[n++] = {in_w.get(), POLLOUT, 0};
      }
      if (out_r) {
        idx_out = n;
        fds[n++] = {out_r.get(), POLLIN, 0};
      }
      if (err_r) {
        idx_err = n;
        fds[n++] = {err_r.get(), POLLIN, 0};
      }
      int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1)));
      if (ms <= 0) {
        failure = absl::DeadlineExceededError(absl::StrCat(plugin_path, " did not finish within ",
                                                           absl::FormatDuration(timeout), " and was killed"));
        break;
      }
      int r = ::poll(fds, n, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        failure = ErrnoStatus(errno, "poll on plugin pipes");
        break;
      }
      if (idx_in >= 0 && fds[idx_in].revents) {
        ssize_t w = ::write(in_w.get(), stdin_data.data() + written, stdin_data.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        // EPIPE: the plugin closed stdin or exited; its exit status tells.
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size()) in_w.reset();
      }
      auto drain = [](UniqueFd& fd, std::string& sink) {
        char buf[16384];
        for (;;) {
          ssize_t k = ::read(fd.get(), buf, sizeof buf);
          if (k > 0) {
            sink.append(buf, static_cast<size_t>(k));
            continue;
          }
          if (k < 0 && errno == EINTR) continue;
          if (k < 0 && errno == EAGAIN) return;
          fd.reset();  // EOF or error
          return;
        }
      };
      if (idx_out >= 0 && fds[idx_out].revents) drain(out_r, res.stdout_data);
      if (idx_err >= 0 && fds[idx_err].revents) drain(err_r, res.stderr_data);
    }
    if (!failure.ok()) {
      KillAndReap(*pid);
      return failure;
    }
    // Both outputs are closed; the plugin is exiting (or daemonized a child
    // that closed them). Wait for what is left of the deadline.
    absl::Duration left = deadline - absl::Now();
    auto st = Reaper::Wait(*pid, std::max(left, absl::Milliseconds(1)));
    if (!st.ok()) {
      KillAndReap(*pid);
      if (absl::IsDeadlineExceeded(st.status()))
        return absl::DeadlineExceededError(absl::StrCat(plugin_path, " did not exit within ",
                                                        absl::FormatDuration(timeout), " and was killed"));
      return st.status();
    }
    if (WIFEXITED(*st)) {
      res.exit_code = WEXITSTATUS(*st);
    } else {
      res.exit_code = 128 + (WIFSIGNALED(*st) ? WTERMSIG(*st) : 0);  // as a shell reports it
      if (res.stderr_data.empty()) res.stderr_data = DescribeWaitStatus(*st);
    }
    return res;
}

namespace {

class ExecInvoker : public CniInvoker {
 public:
  absl::StatusOr<Result> Exec(const std::string& plugin_path, const std::vector<std::string>& env,
                              const std::string& stdin_data, absl::Duration timeout) override {
    return RunCommand({plugin_path}, env, stdin_data, timeout);
  }
};

}  // namespace

std::unique_ptr<CniInvoker> NewExecInvoker() { return std::make_unique<ExecInvoker>(); }

}  // namespace crisp::netcni
