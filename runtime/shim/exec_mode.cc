// crisp-shim exec: runs one command inside a running container (Exec,
// ExecSync) and relays its stdio.
//
//   crispd ──spawn, plan on fd 3, stdio socket on fd 4──▶ shim E ──fork──▶ command X
//
// E opens the namespaces of the container's process (plan.exec_pid) while it
// holds a pidfd of it, so a recycled pid cannot send X elsewhere; it joins
// the PID namespace itself (that only affects its children) and forks X. X
// moves into the container's cgroups, joins its ipc/uts/net/cgroup/mount
// namespaces (which puts it at the container's root), becomes its user with
// its capabilities, no_new_privs and seccomp, and execs. E relays the framed
// stdio protocol (runtime/stdio_frame.h) on fd 4 until X exits, sends its
// exit code and exits. If crispd closes fd 4 first (the client went away,
// ExecSync timed out), E kills X's process group and exits.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/container_plan.h"
#include "runtime/shim/process_setup.h"
#include "runtime/shim/shim.h"
#include "runtime/shim/shim_util.h"
#include "runtime/stdio_frame.h"

namespace crisp::shim {
namespace {

constexpr int kPlanFd = 3;
constexpr int kStdioFd = 4;
// Client input waiting for the command to read it; beyond this we stop
// reading the socket until it drains.
constexpr size_t kMaxPendingInput = 1 << 20;

struct NsToJoin {
  int fd;
  int type;  // CLONE_NEW*
};

struct ChildSetup {
  std::vector<NsToJoin> ns;  // ipc, uts, net, cgroup, then mnt
  int report = -1;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
};

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

[[noreturn]] void ExecChild(const runtime::ContainerPlan& plan, const ChildSetup& cs) {
  const int report = cs.report;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);

  // The cgroup files are host paths: before the mount namespace changes.
  for (const std::string& f : plan.cgroup_procs) {
    if (!WriteControlFile(f, "0")) Fail(report, "joining cgroup " + f, errno);
  }
  if (plan.oom_score_adj && !WriteControlFile("/proc/self/oom_score_adj", std::to_string(*plan.oom_score_adj)) &&
      errno != EACCES && errno != EPERM)
    Fail(report, "setting oom_score_adj", errno);
  for (const NsToJoin& n : cs.ns) {
    if (::setns(n.fd, n.type) != 0) Fail(report, "joining the container's namespaces", errno);
    ::close(n.fd);
  }
  for (const runtime::PlanRlimit& r : plan.rlimits) {
    struct rlimit rl = {r.soft, r.hard};
    if (::setrlimit(r.resource, &rl) != 0) Fail(report, "setrlimit " + std::to_string(r.resource), errno);
  }
  // Its own process group (and session): a timeout or a departed client
  // kills the command with everything it started.
  if (::setsid() < 0) Fail(report, "setsid", errno);
  if (plan.tty && ::ioctl(cs.stdout_fd, TIOCSCTTY, 0) != 0) Fail(report, "TIOCSCTTY", errno);
  if (::dup2(cs.stdin_fd, 0) < 0 || ::dup2(cs.stdout_fd, 1) < 0 || ::dup2(cs.stderr_fd, 2) < 0)
    Fail(report, "setting up stdio", errno);
  CloseFdsExcept({report});
  runtime::ResolvedUser user;
  Identity identity = BecomeUser(plan, report, &user);
  ExecCommand(plan, identity, report);
}

// Opens /proc/<pid>/ns/<name> if it differs from ours; -1 with errno 0 if
// it is the same namespace (nothing to join).
int OpenNsIfOther(int pid, const char* name) {
  std::string theirs = "/proc/" + std::to_string(pid) + "/ns/" + name;
  std::string ours = std::string("/proc/self/ns/") + name;
  struct stat a, b;
  if (::stat(theirs.c_str(), &a) != 0) return -1;
  if (::stat(ours.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
    errno = 0;
    return -1;
  }
  return ::open(theirs.c_str(), O_RDONLY | O_CLOEXEC);
}

class Exec {
 public:
  explicit Exec(runtime::ContainerPlan plan) : plan_(std::move(plan)) {}

  // Starts the command. "" on success, else why it could not run.
  std::string Start() {
    int pid = plan_.exec_pid;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) return std::string("the container's process is gone: ") + std::strerror(errno);
    ChildSetup cs;
    // The process's root (for a terminal): checked with the namespaces below.
    int root = plan_.tty ? ::open(("/proc/" + std::to_string(pid) + "/root").c_str(),
                                  O_PATH | O_DIRECTORY | O_CLOEXEC)
                         : -1;
    if (plan_.tty && root < 0) return std::string("opening the container's root: ") + std::strerror(errno);
    static const struct {
      const char* name;
      int type;
    } kNs[] = {{"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},    {"net", CLONE_NEWNET},
               {"cgroup", CLONE_NEWCGROUP}, {"mnt", CLONE_NEWNS}};
    for (const auto& n : kNs) {
      int fd = OpenNsIfOther(pid, n.name);
      if (fd < 0 && errno != 0) return std::string("opening the container's ") + n.name + " namespace: " + std::strerror(errno);
      if (fd >= 0) cs.ns.push_back({fd, n.type});
    }
    int pidns = OpenNsIfOther(pid, "pid");
    if (pidns < 0 && errno != 0) return std::string("opening the container's pid namespace: ") + std::strerror(errno);
    // Still the same process: the namespaces we opened are the container's.
    if (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0) return "the container's process is gone";
    ::close(pidfd);
    if (pidns >= 0) {
      if (::setns(pidns, CLONE_NEWPID) != 0) return std::string("joining the PID namespace: ") + std::strerror(errno);
      ::close(pidns);
    }

    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2];
    int slave = -1;
    if (::pipe2(rep, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    if (plan_.tty) {
      std::string why;
      master_ = OpenContainerPty(root, &slave, &why);
      ::close(root);
      if (master_ < 0) return why;
      cs.stdin_fd = cs.stdout_fd = cs.stderr_fd = slave;
      out_fd_ = master_;
      in_fd_ = plan_.stdin_open ? master_ : -1;
    } else {
      if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
        return std::string("pipe: ") + std::strerror(errno);
      if (plan_.stdin_open) {
        if (::pipe2(in, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
        cs.stdin_fd = in[0];
        in_fd_ = in[1];
      } else {
        cs.stdin_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      cs.stdout_fd = out[1];
      cs.stderr_fd = err[1];
      out_fd_ = out[0];
      err_fd_ = err[0];
    }
    cs.report = rep[1];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    sigfd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd_ < 0) return std::string("signalfd: ") + std::strerror(errno);

    pid_t x = ::fork();
    if (x < 0) return std::string("fork: ") + std::strerror(errno);
    if (x == 0) ExecChild(plan_, cs);
    pid_ = x;
    for (const NsToJoin& n : cs.ns) ::close(n.fd);
    for (int fd : {in[0], out[1], err[1], rep[1], slave, plan_.tty ? -1 : cs.stdin_fd}) {
      if (fd >= 0) ::close(fd);
    }
    // EOF: exec happened (the pipe is close-on-exec); a report: it failed.
    StepReport r = {};
    ssize_t n;
    do n = ::read(rep[0], &r, sizeof r);
    while (n < 0 && errno == EINTR);
    ::close(rep[0]);
    if (n == static_cast<ssize_t>(sizeof r)) {
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return std::string(r.step) + ": " + std::strerror(r.err);
    }
    if (in_fd_ >= 0 && in_fd_ != master_) ::fcntl(in_fd_, F_SETFL, O_NONBLOCK);
    return "";
  }

  // Relays stdio until the command exits (returns its exit frame sent) or
  // crispd goes away (kills the command).
  void Serve() {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    auto watch = [&](int fd, uint32_t events, int op) {
      struct epoll_event ev = {};
      ev.events = events;
      ev.data.fd = fd;
      ::epoll_ctl(ep, op, fd, &ev);
    };
    watch(sigfd_, EPOLLIN, EPOLL_CTL_ADD);
    watch(kStdioFd, EPOLLIN, EPOLL_CTL_ADD);
    watch(out_fd_, EPOLLIN, EPOLL_CTL_ADD);
    if (err_fd_ >= 0) watch(err_fd_, EPOLLIN, EPOLL_CTL_ADD);
    bool exited = false, reading_client = true;
    int status = 0;
    while (!exited || out_fd_ >= 0 || err_fd_ >= 0) {
      struct epoll_event evs[8];
      int n = ::epoll_wait(ep, evs, 8, exited ? 200 : -1);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 && exited) break;  // a daemonized grandchild holds the output open
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == sigfd_) {
          struct signalfd_siginfo si;
          while (::read(sigfd_, &si, sizeof si) > 0) {
          }
          int st;
          pid_t w;
          while ((w = ::waitpid(-1, &st, WNOHANG)) > 0) {
            if (w == pid_) exited = true, status = st;
          }
        } else if (fd == kStdioFd) {
          if (!FromClient()) return KillAndReap();
          if (pending_in_.size() > kMaxPendingInput && reading_client) {
            watch(kStdioFd, 0, EPOLL_CTL_MOD);
            reading_client = false;
          }
          if (!pending_in_.empty() && in_fd_ >= 0 && in_fd_ != master_) watch(in_fd_, EPOLLOUT, EPOLL_CTL_ADD);
        } else if (fd == in_fd_ && fd != master_) {
          FlushInput();
          if (pending_in_.empty() && in_fd_ >= 0) ::epoll_ctl(ep, EPOLL_CTL_DEL, in_fd_, nullptr);
          if (pending_in_.size() <= kMaxPendingInput && !reading_client) {
            watch(kStdioFd, EPOLLIN, EPOLL_CTL_MOD);
            reading_client = true;
          }
        } else if (fd == out_fd_ || fd == err_fd_) {
          int r = Relay(fd);
          if (r < 0) return KillAndReap();
          if (r == 0) {
            ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
            if (fd == master_) master_ = -1, in_fd_ = -1;
            ::close(fd);
            (fd == out_fd_ ? out_fd_ : err_fd_) = -1;
          }
        }
      }
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
    SendAll(kStdioFd, runtime::EncodeExit(code));
  }

 private:
  // Reads client frames. False when crispd closed the socket.
  bool FromClient() {
    char buf[32768];
    ssize_t n = ::recv(kStdioFd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    reader_.Feed(buf, static_cast<size_t>(n));
    runtime::FrameType type;
    std::string payload;
    while (reader_.Next(&type, &payload)) {
      if (type == runtime::FrameType::kStdin) {
        pending_in_ += payload;
      } else if (type == runtime::FrameType::kCloseStdin) {
        close_in_ = true;
      } else if (type == runtime::FrameType::kResize && master_ >= 0) {
        struct winsize ws = {};
        if (runtime::DecodeResize(payload, &ws.ws_col, &ws.ws_row)) ::ioctl(master_, TIOCSWINSZ, &ws);
      }
    }
    if (reader_.error()) return false;
    FlushInput();
    return true;
  }

  // Writes what the command can take now; closes its stdin once asked to and
  // everything before has been written.
  void FlushInput() {
    if (in_fd_ < 0) {
      pending_in_.clear();
      return;
    }
    while (!pending_in_.empty()) {
      ssize_t w = ::write(in_fd_, pending_in_.data(), pending_in_.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) return;
      if (w <= 0) {  // the command closed its stdin
        pending_in_.clear();
        break;
      }
      pending_in_.erase(0, static_cast<size_t>(w));
    }
    if (close_in_) {
      if (in_fd_ == master_) {
        // A terminal has no half-close: EOF is the line discipline's ^D.
        (void)!::write(master_, "\x04", 1);
      } else {
        ::close(in_fd_);
      }
      in_fd_ = -1;
      close_in_ = false;
    }
  }

  // Output → a frame to crispd. 1 relayed, 0 at EOF, -1 when crispd is gone.
  int Relay(int fd) {
    char buf[32768];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) return 0;  // EOF, or EIO from a pty whose last slave closed
    auto type = fd == err_fd_ ? runtime::FrameType::kStderr : runtime::FrameType::kStdout;
    return SendAll(kStdioFd, runtime::EncodeFrame(type, std::string_view(buf, static_cast<size_t>(n)))) ? 1 : -1;
  }

  void KillAndReap() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  runtime::ContainerPlan plan_;
  pid_t pid_ = -1;
  int sigfd_ = -1;
  int master_ = -1, in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
  std::string pending_in_;
  bool close_in_ = false;
  runtime::FrameReader reader_;
};

}  // namespace

int ExecMode() {
  std::string error;
  auto plan = ReceivePlan(kPlanFd, &error);
  ::close(kPlanFd);
  if (!plan || plan->exec_pid <= 0) {
    SendAll(kStdioFd, runtime::EncodeExit(-1, plan ? "the exec plan names no process" : error));
    return 1;
  }
  ::prctl(PR_SET_NAME, "crisp-shim-exec", 0, 0, 0);
  Exec exec(std::move(*plan));
  std::string err = exec.Start();
  if (!err.empty()) {
    SendAll(kStdioFd, runtime::EncodeExit(-1, err));
    return 1;
  }
  exec.Serve();
  return 0;
}

}  // namespace crisp::shim
