#include "common/reaper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/unique_fd.h"

extern char** environ;

namespace crisp {
namespace {

int g_wake_fd = -1;

void OnSigchld(int) {
  int saved = errno;
  uint64_t one = 1;
  ssize_t r = ::write(g_wake_fd, &one, sizeof one);
  (void)r;
  errno = saved;
}

struct Entry {
  bool exited = false;
  int status = 0;
};

class ReaperImpl {
 public:
  static ReaperImpl& Get() {
    static ReaperImpl* r = new ReaperImpl();  // never destroyed: the thread lives forever
    return *r;
  }

  std::mutex mu;
  std::condition_variable cv;
  std::map<pid_t, Entry> children;

  // Reaps every exited child. Called with `mu` held, so a Spawn() that holds
  // `mu` across posix_spawn and registration is never overtaken.
  void ReapLocked() {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      auto it = children.find(pid);
      if (it != children.end()) {
        it->second.exited = true;
        it->second.status = status;
      }
      // else: an orphan reparented to us (subreaper) or a forgotten child.
    }
    cv.notify_all();
  }

 private:
  ReaperImpl() {
    g_wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct sigaction sa = {};
    sa.sa_handler = OnSigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGCHLD, &sa, nullptr);
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    // The signal may be delivered to any thread; it only pokes the eventfd.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    for (;;) {
      struct pollfd p = {g_wake_fd, POLLIN, 0};
      ::poll(&p, 1, 1000);  // the timeout is a safety net for a lost wake-up
      uint64_t v;
      while (::read(g_wake_fd, &v, sizeof v) > 0) {
      }
      std::lock_guard<std::mutex> lock(mu);
      ReapLocked();
    }
  }
};

}  // namespace

absl::Status Reaper::InstallSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return ErrnoStatus(errno, "PR_SET_CHILD_SUBREAPER");
  ReaperImpl::Get();
  return absl::OkStatus();
}

absl::StatusOr<pid_t> Reaper::Spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  ReaperImpl& r = ReaperImpl::Get();

  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (opts.env) {
    for (const auto& e : *opts.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }

  // Move every fd the child gets above the target range first, so that the
  // dup2 sequence below cannot clobber a source with an earlier target.
  std::vector<UniqueFd> temps;
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return ErrnoStatus(errno, "opening /dev/null");
  const int base = 3 + static_cast<int>(opts.extra_fds.size()) + 16;
  auto lift = [&](int fd) -> absl::StatusOr<int> {
    int n = ::fcntl(fd < 0 ? devnull.get() : fd, F_DUPFD_CLOEXEC, base);
    if (n < 0) return ErrnoStatus(errno, "dup for spawn");
    temps.emplace_back(n);
    return n;
  };
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  auto cleanup = [&] {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  };
  int std_fds[3] = {opts.stdin_fd, opts.stdout_fd, opts.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    auto t = lift(std_fds[i]);
    if (!t.ok()) { cleanup(); return t.status(); }
    posix_spawn_file_actions_adddup2(&fa, *t, i);
  }
  for (size_t i = 0; i < opts.extra_fds.size(); ++i) {
    auto t = lift(opts.extra_fds[i]);
    if (!t.ok()) { cleanup(); return t.status(); }
    posix_spawn_file_actions_adddup2(&fa, *t, 3 + static_cast<int>(i));
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, 3 + static_cast<int>(opts.extra_fds.size()));

  sigset_t empty;
  sigemptyset(&empty);
  sigset_t all;
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  if (opts.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);

  pid_t pid = 0;
  int rc;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    rc = ::posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), opts.env ? envp.data() : environ);
    if (rc == 0) r.children[pid] = Entry{};
  }
  cleanup();
  if (rc != 0) return ErrnoStatus(rc, absl::StrCat("spawning ", opts.argv[0]));
  return pid;
}

absl::StatusOr<int> Reaper::Wait(pid_t pid, std::optional<absl::Duration> timeout) {
  ReaperImpl& r = ReaperImpl::Get();
  std::unique_lock<std::mutex> lock(r.mu);
  auto it = r.children.find(pid);
  if (it == r.children.end()) return absl::NotFoundError(absl::StrCat("process ", pid, " is not a tracked child"));
  // Reap synchronously once: the exit may have happened before the signal
  // handler's wake-up reaches the reaper thread.
  r.ReapLocked();
  auto done = [&] { return r.children[pid].exited; };
  if (timeout) {
    absl::Time deadline = absl::Now() + *timeout;
    while (!done()) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration())
        return absl::DeadlineExceededError(absl::StrCat("process ", pid, " did not exit within ",
                                                        absl::FormatDuration(*timeout)));
      r.cv.wait_for(lock, std::min(absl::ToChronoMilliseconds(left), std::chrono::milliseconds(50)));
      r.ReapLocked();
    }
  } else {
    while (!done()) {
      r.cv.wait_for(lock, std::chrono::milliseconds(50));
      r.ReapLocked();
    }
  }
  int status = r.children[pid].status;
  r.children.erase(pid);
  return status;
}

void Reaper::Forget(pid_t pid) {
  ReaperImpl& r = ReaperImpl::Get();
  std::lock_guard<std::mutex> lock(r.mu);
  r.children.erase(pid);
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

}  // namespace crisp
