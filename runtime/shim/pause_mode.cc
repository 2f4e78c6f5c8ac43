// crisp-shim pause: creates a pod's pause process.
//
// The shim (started by crispd in a new session, plan on fd 3) clones the pause
// process into new namespaces, waits until it reports that its set-up is
// done, forwards its pid (as seen from crispd) or the failing step to crispd
// and exits. The pause process is then an orphan owned by the nearest
// subreaper (crispd, or init), holding the pod's namespaces and sleeping.
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "runtime/pause_plan.h"
#include "runtime/shim/shim.h"
#include "runtime/shim/shim_util.h"

namespace crisp::shim {
namespace {

constexpr int kPlanFd = 3;

struct SetupReport {
  int err;         // 0 = ready
  char step[120];  // what failed
};

[[noreturn]] void ChildFail(int report_fd, const std::string& step, int err) {
  SetupReport r = {};
  r.err = err ? err : EIO;
  std::snprintf(r.step, sizeof r.step, "%s", step.c_str());
  (void)!::write(report_fd, &r, sizeof r);
  _exit(1);
}

void OnTerm(int) { _exit(0); }
void OnChld(int) {
  int saved = errno;
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  errno = saved;
}

int ReadCapLastCap() {
  char buf[16] = {};
  int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 40;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? std::atoi(buf) : 40;
}

// Closes every fd >= `from` except `keep`.
void CloseFdsFrom(int from, int keep) {
  for (int fd = from; fd < keep; ++fd) ::close(fd);
  if (::syscall(SYS_close_range, keep + 1, ~0U, 0) == 0) return;
  // Kernels before 5.9: no close_range.
  long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = keep + 1; fd < (max > 0 ? max : 65536); ++fd) ::close(static_cast<int>(fd));
}

// Runs in the pause process: finishes its set-up and never returns.
[[noreturn]] void PauseMain(const runtime::PausePlan& plan, int report_fd) {
  // Until it reports ready, the pause process dies with the shim: if crispd
  // gives up on a stuck set-up and kills the shim, nothing is left behind.
  // Cleared before the report, since the pause process must outlive the shim
  // (and crispd). The shim can only die before this line by SIGKILL from
  // crispd's 10 s timeout, so the race is theoretical.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // A mask inherited from whoever started the shim would make SIGTERM useless.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  if (plan.new_uts && !plan.hostname.empty() &&
      ::sethostname(plan.hostname.data(), plan.hostname.size()) != 0)
    ChildFail(report_fd, "sethostname", errno);
  for (const auto& [path, value] : plan.sysctls) {
    if (path.find("..") != std::string::npos) ChildFail(report_fd, "sysctl " + path, EINVAL);
    if (!WriteControlFile("/proc/sys/" + path, value)) ChildFail(report_fd, "sysctl " + path + "=" + value, errno);
  }
  int last_cap = ReadCapLastCap();

  // stdio to /dev/null, every other fd closed but the report pipe.
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull < 0) ChildFail(report_fd, "open /dev/null", errno);
  for (int fd = 0; fd < 3; ++fd) ::dup2(devnull, fd);
  if (devnull > 2) ::close(devnull);
  CloseFdsFrom(3, report_fd);

  // An empty, read-only root: the pause process needs no files at all.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    ChildFail(report_fd, "make / private", errno);
  const char* mnt = nullptr;
  for (const char* c : {"/tmp", "/mnt", "/run"}) {
    if (::mount("pause", c, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0555") == 0) {
      mnt = c;
      break;
    }
  }
  if (!mnt) ChildFail(report_fd, "mount tmpfs root", errno);
  if (::chdir(mnt) != 0) ChildFail(report_fd, "chdir new root", errno);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) ChildFail(report_fd, "pivot_root", errno);
  if (::umount2(".", MNT_DETACH) != 0) ChildFail(report_fd, "detach old root", errno);
  if (::chdir("/") != 0) ChildFail(report_fd, "chdir /", errno);
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    ChildFail(report_fd, "remount root read-only", errno);

  ::prctl(PR_SET_NAME, "crisp-pause", 0, 0, 0);
  struct sigaction sa = {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = OnTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = OnChld;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  ::sigaction(SIGCHLD, &sa, nullptr);

  // Drop every capability: bounding set, ambient, then the process sets.
  for (int c = 0; c <= last_cap; ++c) {
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
      ChildFail(report_fd, "drop bounding cap", errno);
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &hdr, data) != 0) ChildFail(report_fd, "capset", errno);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ChildFail(report_fd, "no_new_privs", errno);

  if (::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) != 0) ChildFail(report_fd, "clear pdeathsig", errno);
  SetupReport ok = {};
  (void)!::write(report_fd, &ok, sizeof ok);
  ::close(report_fd);
  for (;;) ::pause();
}

bool Report(const std::string& json) {
  return ::send(kPlanFd, json.data(), json.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(json.size());
}

int ReportError(const std::string& step, int err) {
  nlohmann::json j = {{"error", err ? std::strerror(err) : "failed"}, {"step", step}, {"errno", err}};
  Report(j.dump());
  return 1;
}

}  // namespace

int PauseMode() {
  char buf[65536];
  ssize_t n = ::recv(kPlanFd, buf, sizeof buf, 0);
  if (n <= 0) return ReportError("reading the plan", n < 0 ? errno : EPIPE);
  auto plan = runtime::ParsePausePlan(std::string(buf, static_cast<size_t>(n)));
  if (!plan) return ReportError("parsing the plan", EINVAL);

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return ReportError("pipe", errno);
  unsigned long flags = CLONE_NEWNS;
  if (plan->new_net) flags |= CLONE_NEWNET;
  if (plan->new_ipc) flags |= CLONE_NEWIPC;
  if (plan->new_uts) flags |= CLONE_NEWUTS;
  if (plan->new_pid) flags |= CLONE_NEWPID;
  // A raw clone behaves like fork here (this process is single-threaded) and,
  // unlike unshare, puts the child itself into a new PID namespace.
  long pid = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid < 0) return ReportError("clone", errno);
  if (pid == 0) {
    ::close(pipefd[0]);
    ::close(kPlanFd);
    PauseMain(*plan, pipefd[1]);
  }
  ::close(pipefd[1]);
  SetupReport r = {};
  ssize_t got;
  do got = ::read(pipefd[0], &r, sizeof r);
  while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof r)) {
    ::kill(static_cast<pid_t>(pid), SIGKILL);
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return ReportError("pause process died during set-up", EIO);
  }
  if (r.err != 0) {
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return ReportError(r.step, r.err);
  }
  if (!Report(nlohmann::json{{"pid", pid}}.dump())) {
    // Nobody would ever learn this pid (crispd died or gave up): don't leak it.
    ::kill(static_cast<pid_t>(pid), SIGKILL);
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return 1;
  }
  return 0;
}

}  // namespace crisp::shim
