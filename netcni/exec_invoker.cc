// The real CniInvoker: runs a plugin binary with pipes on stdin/stdout/stderr.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "netcni/cni.h"

namespace crisp::netcni {
namespace {

class ExecInvoker : public CniInvoker {
 public:
  absl::StatusOr<Result> Exec(const std::string& plugin_path, const std::vector<std::string>& env,
                              const std::string& stdin_data, absl::Duration timeout) override {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    UniqueFd in_r(in[0]), in_w(in[1]);
    if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    UniqueFd out_r(out[0]), out_w(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    UniqueFd err_r(err[0]), err_w(err[1]);
    auto pid = Reaper::Spawn({.argv = {plugin_path},
                              .env = env,
                              .stdin_fd = in_r.get(),
                              .stdout_fd = out_w.get(),
                              .stderr_fd = err_w.get()});
    if (!pid.ok()) return pid.status();
    in_r.reset();
    out_w.reset();
    err_w.reset();
    for (int fd : {in_w.get(), out_r.get(), err_r.get()}) ::fcntl(fd, F_SETFL, O_NONBLOCK);

    Result res;
    size_t written = 0;
    if (stdin_data.empty()) in_w.reset();
    absl::Time deadline = absl::Now() + timeout;
    bool timed_out = false;
    while (out_r || err_r) {
      struct pollfd fds[3];
      int n = 0;
      int idx_in = -1, idx_out = -1, idx_err = -1;
      if (in_w) { idx_in = n; fds[n++] = {in_w.get(), POLLOUT, 0}; }
      if (out_r) { idx_out = n; fds[n++] = {out_r.get(), POLLIN, 0}; }
      if (err_r) { idx_err = n; fds[n++] = {err_r.get(), POLLIN, 0}; }
      int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) { timed_out = true; break; }
      int r = ::poll(fds, n, static_cast<int>(ms));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) break;
      if (idx_in >= 0 && fds[idx_in].revents) {
        ssize_t w = ::write(in_w.get(), stdin_data.data() + written, stdin_data.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) in_w.reset();  // the plugin closed stdin: fine
        if (written == stdin_data.size()) in_w.reset();
      }
      auto drain = [](UniqueFd& fd, std::string& sink) {
        char buf[16384];
        for (;;) {
          ssize_t k = ::read(fd.get(), buf, sizeof buf);
          if (k > 0) { sink.append(buf, static_cast<size_t>(k)); continue; }
          if (k < 0 && (errno == EAGAIN || errno == EINTR)) return;
          fd.reset();  // EOF or error
          return;
        }
      };
      if (idx_out >= 0 && fds[idx_out].revents) drain(out_r, res.stdout_data);
      if (idx_err >= 0 && fds[idx_err].revents) drain(err_r, res.stderr_data);
    }
    if (timed_out) {
      ::kill(*pid, SIGKILL);
      (void)Reaper::Wait(*pid, absl::Seconds(10));
      return absl::DeadlineExceededError(
          absl::StrCat(plugin_path, " did not finish within ", absl::FormatDuration(timeout), " and was killed"));
    }
    absl::Duration left = deadline - absl::Now();
    auto st = Reaper::Wait(*pid, left > absl::ZeroDuration() ? left : absl::Milliseconds(1));
    if (!st.ok()) {
      ::kill(*pid, SIGKILL);
      (void)Reaper::Wait(*pid, absl::Seconds(10));
      return absl::DeadlineExceededError(absl::StrCat(plugin_path, " did not exit within ",
                                                      absl::FormatDuration(timeout), " and was killed"));
    }
    if (WIFEXITED(*st)) res.exit_code = WEXITSTATUS(*st);
    else res.exit_code = 128 + (WIFSIGNALED(*st) ? WTERMSIG(*st) : 0);
    return res;
  }
};

}  // namespace

std::unique_ptr<CniInvoker> NewExecInvoker() { return std::make_unique<ExecInvoker>(); }

}  // namespace crisp::netcni
