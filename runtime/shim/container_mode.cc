// crisp-shim container: creates one container and stays as its parent.
//
//   crispd ──spawn (new session), plan on fd 3──▶ shim A ──fork──▶ shim B (setsid'd by A's session)
//                                                                    │ clone(NEWNS [|NEWPID])
//                                                                    ▼
//                                                                container C
//
// A reads the plan, forks B and waits for B's report ("created" with C's
// pid, or the failing step + errno), forwards it to crispd and exits, so that
// B is nobody's child but the nearest subreaper's: a crispd restart does not
// touch it. B creates C, owns C's stdio (pipes or a pty), writes the CRI log,
// serves ctl.sock in the shim dir (start, reopen-log), reaps C, records
// exit.json atomically and exits.
//
// C joins the pod's namespaces, builds its rootfs in its own mount namespace
// (overlayfs, /proc, /dev, /sys, the pod's files, CRI mounts), pivots into it,
// masks paths, becomes the user, drops capabilities, then waits for "start".
// On start it loads seccomp and execs; an exec failure is reported over a
// close-on-exec pipe, so B knows whether exec happened.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/capabilities.h"
#include "runtime/container_plan.h"
#include "runtime/cri_log.h"
#include "runtime/exit_record.h"
#include "runtime/seccomp_profile.h"
#include "runtime/shim/process_setup.h"
#include "runtime/shim/seccomp_load.h"
#include "runtime/shim/shim.h"
#include "runtime/shim/shim_util.h"
#include "runtime/stdio_frame.h"
#include "runtime/users.h"

namespace crisp::shim {
namespace {

constexpr int kPlanFd = 3;

// The oom_kill counter of a memory.oom_control (v1) or memory.events (v2) file.
long OomKills(const std::string& file) {
  if (file.empty()) return 0;
  std::string text = ReadSmallFile(file);
  size_t p = text.find("oom_kill ");
  if (p == std::string::npos) return 0;
  return std::strtol(text.c_str() + p + 9, nullptr, 10);
}

// Resolves `dest` (absolute, inside the container) under the rootfs fd
// without ever leaving it, creating missing directories (and the last
// component as a file when `file` is set). Returns an O_PATH fd of the
// target or -1 with errno set.
int OpenInRoot(int root_fd, const std::string& dest, bool file) {
  std::string rel = dest;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) return ::fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
  // Create parents one component at a time, each resolved inside the root.
  size_t pos = 0;
  for (;;) {
    size_t slash = rel.find('/', pos);
    bool last = slash == std::string::npos;
    std::string prefix = last ? rel : rel.substr(0, slash);
    OpenHow how = {O_PATH | O_CLOEXEC, 0, kResolveInRoot | kResolveNoMagiclinks};
    int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, prefix.c_str(), &how, sizeof how));
    if (fd < 0 && errno == ENOENT) {
      // Create it relative to its (resolved) parent.
      size_t cut = prefix.rfind('/');
      std::string parent = cut == std::string::npos ? "" : prefix.substr(0, cut);
      std::string name = cut == std::string::npos ? prefix : prefix.substr(cut + 1);
      int pfd = parent.empty() ? ::fcntl(root_fd, F_DUPFD_CLOEXEC, 3)
                               : static_cast<int>(::syscall(SYS_openat2, root_fd, parent.c_str(), &how, sizeof how));
      if (pfd < 0) return -1;
      int rc;
      if (last && file) {
        OpenHow chow = {O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644, 0};
        rc = static_cast<int>(::syscall(SYS_openat2, pfd, name.c_str(), &chow, sizeof chow));
        if (rc >= 0) ::close(rc), rc = 0;
      } else {
        rc = ::mkdirat(pfd, name.c_str(), 0755);
      }
      int e = errno;
      ::close(pfd);
      if (rc != 0 && e != EEXIST) {
        errno = e;
        return -1;
      }
      fd = static_cast<int>(::syscall(SYS_openat2, root_fd, prefix.c_str(), &how, sizeof how));
    }
    if (fd < 0) return -1;
    if (last) return fd;
    ::close(fd);
    pos = slash + 1;
  }
}

// Mounts `m` inside the rootfs (C, before pivot_root).
void DoMount(int report, int root_fd, const runtime::PlanMount& m) {
  const std::string what = "mount " + m.destination;
  bool bind = m.type == "bind";
  bool src_is_file = false;
  if (bind) {
    struct stat st;
    if (::stat(m.source.c_str(), &st) != 0) Fail(report, what + ": source " + m.source, errno);
    src_is_file = !S_ISDIR(st.st_mode);
  }
  int fd = OpenInRoot(root_fd, m.destination, src_is_file);
  if (fd < 0) Fail(report, what + ": resolving the target in the rootfs", errno);
  std::string target = FdPath(fd);
  uint64_t flags = m.flags;
  if (bind) {
    if (::mount(m.source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      Fail(report, what + " (bind " + m.source + ")", errno);
    if (flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)) {
      // Reopen: the fd still points at the directory under the new mount.
      ::close(fd);
      fd = OpenInRoot(root_fd, m.destination, src_is_file);
      if (fd < 0) Fail(report, what + ": reopening", errno);
      target = FdPath(fd);
      if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | (flags & ~MS_REC), nullptr) != 0)
        Fail(report, what + ": remount with flags", errno);
    }
  } else {
    if (::mount(m.source.c_str(), target.c_str(), m.type.c_str(), flags, m.data.empty() ? nullptr : m.data.c_str()) !=
        0)
      Fail(report, what + " (" + m.type + ")", errno);
  }
  if (m.propagation != 0) {
    ::close(fd);
    fd = OpenInRoot(root_fd, m.destination, src_is_file);
    if (fd < 0 || ::mount(nullptr, FdPath(fd).c_str(), nullptr, m.propagation, nullptr) != 0)
      Fail(report, what + ": propagation", errno);
  }
  ::close(fd);
}

// /dev: the default device nodes of a container (as runc creates them).
void PopulateDev(int report, int root_fd, bool privileged) {
  struct Dev {
    const char* name;
    unsigned major, minor;
  };
  static const Dev kDevs[] = {{"null", 1, 3}, {"zero", 1, 5},    {"full", 1, 7},
                              {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
  (void)privileged;
  int dev = OpenInRoot(root_fd, "/dev", false);
  if (dev < 0) Fail(report, "opening /dev", errno);
  int devfd = ::open(FdPath(dev).c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  ::close(dev);
  if (devfd < 0) Fail(report, "opening /dev", errno);
  for (const Dev& d : kDevs) {
    if (::mknodat(devfd, d.name, S_IFCHR | 0666, makedev(d.major, d.minor)) != 0 && errno != EEXIST)
      Fail(report, std::string("mknod /dev/") + d.name, errno);
    ::fchmodat(devfd, d.name, 0666, 0);
  }
  const char* links[][2] = {{"/proc/self/fd", "fd"},
                            {"/proc/self/fd/0", "stdin"},
                            {"/proc/self/fd/1", "stdout"},
                            {"/proc/self/fd/2", "stderr"},
                            {"pts/ptmx", "ptmx"},
                            {"/proc/kcore", "core"}};
  for (auto& l : links) {
    if (::symlinkat(l[0], devfd, l[1]) != 0 && errno != EEXIST) Fail(report, std::string("symlink /dev/") + l[1], errno);
  }
  for (const char* d : {"pts", "shm", "mqueue"}) {
    if (::mkdirat(devfd, d, 0755) != 0 && errno != EEXIST) Fail(report, std::string("mkdir /dev/") + d, errno);
  }
  ::close(devfd);
}

// Creates device node `d` inside the rootfs (parents made as needed).
void MakeDevice(int report, int root_fd, const runtime::PlanDevice& d) {
  const std::string what = "device " + d.path;
  size_t cut = d.path.rfind('/');
  if (cut == std::string::npos || cut + 1 >= d.path.size()) Fail(report, what + ": bad path", EINVAL);
  int dir = OpenInRoot(root_fd, cut == 0 ? "/" : d.path.substr(0, cut), false);
  if (dir < 0) Fail(report, what + ": resolving its directory", errno);
  int dfd = ::open(FdPath(dir).c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  ::close(dir);
  if (dfd < 0) Fail(report, what + ": opening its directory", errno);
  std::string name = d.path.substr(cut + 1);
  ::unlinkat(dfd, name.c_str(), 0);  // replaces a default node of the same name
  mode_t type = d.type == 'b' ? S_IFBLK : S_IFCHR;
  if (::mknodat(dfd, name.c_str(), type | (d.mode & 07777), makedev(d.major, d.minor)) != 0)
    Fail(report, what + ": mknod", errno);
  if (::fchownat(dfd, name.c_str(), d.uid, d.gid, AT_SYMLINK_NOFOLLOW) != 0 ||
      ::fchmodat(dfd, name.c_str(), d.mode & 07777, 0) != 0)
    Fail(report, what + ": owner and mode", errno);
  ::close(dfd);
}

struct ChildFds {
  int report = -1;  // C -> B: StepReport on failure (close-on-exec: EOF = exec'd)
  int start = -1;   // B -> C: one byte = go
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
};

// C: runs in the new mount (and maybe PID) namespace; never returns.
[[noreturn]] void ContainerMain(const runtime::ContainerPlan& plan, const ChildFds& fds) {
  const int report = fds.report;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);

  for (const char* type : {"ipc", "uts", "net"}) {
    auto it = plan.join_ns.find(type);
    if (it == plan.join_ns.end()) continue;
    int nfd = ::open(it->second.c_str(), O_RDONLY | O_CLOEXEC);
    if (nfd < 0) Fail(report, std::string("opening the pod's ") + type + " namespace " + it->second, errno);
    if (::setns(nfd, 0) != 0) Fail(report, std::string("joining the pod's ") + type + " namespace", errno);
    ::close(nfd);
  }
  // Our copy of the host's mounts: private unless a mount asked to see the
  // host's later mounts (slave) or to share its own with the host (shared).
  unsigned long root_prop = plan.root_propagation ? plan.root_propagation : (MS_REC | MS_PRIVATE);
  if (::mount(nullptr, "/", nullptr, root_prop, nullptr) != 0) Fail(report, "setting / propagation", errno);
  // pivot_root refuses a new root whose parent mount is shared: the rootfs
  // goes on a private bind of its own directory.
  if (::mount(plan.rootfs.c_str(), plan.rootfs.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
      ::mount(nullptr, plan.rootfs.c_str(), nullptr, MS_PRIVATE, nullptr) != 0)
    Fail(report, "making the rootfs mount point private", errno);

  // rootfs: overlayfs of the image layers + the container's upper dir.
  std::string opts = "lowerdir=";
  for (size_t i = 0; i < plan.lower_dirs.size(); ++i) opts += (i ? ":" : "") + plan.lower_dirs[i];
  if (plan.lower_dirs.size() == 1 && plan.upper_dir.empty()) opts += ":" + plan.lower_dirs[0];
  if (!plan.upper_dir.empty()) opts += ",upperdir=" + plan.upper_dir + ",workdir=" + plan.work_dir;
  if (::mount("overlay", plan.rootfs.c_str(), "overlay", 0, opts.c_str()) != 0)
    Fail(report, "mounting the overlay rootfs", errno);
  int root_fd = ::open(plan.rootfs.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (root_fd < 0) Fail(report, "opening the rootfs", errno);

  bool dev_done = false;
  for (const runtime::PlanMount& m : plan.mounts) {
    DoMount(report, root_fd, m);
    if (m.destination == "/dev" && !dev_done) {
      PopulateDev(report, root_fd, plan.privileged);
      dev_done = true;
    }
  }

  for (const runtime::PlanDevice& d : plan.devices) MakeDevice(report, root_fd, d);

  // pivot_root into the rootfs; the old root is detached. After
  // pivot_root(".", ".") the old root sits on top of the new one; "." in a
  // mount(2) call would name the new root, so we step onto the old one by fd
  // (runc's way) to make it a slave — detaching it must never unmount
  // anything on the host — without touching the container's own mounts.
  int old_root = ::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (old_root < 0) Fail(report, "opening the old root", errno);
  if (::fchdir(root_fd) != 0) Fail(report, "chdir rootfs", errno);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) Fail(report, "pivot_root", errno);
  if (::fchdir(old_root) != 0) Fail(report, "chdir to the old root", errno);
  if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) Fail(report, "old root rslave", errno);
  if (::umount2(".", MNT_DETACH) != 0) Fail(report, "detaching the old root", errno);
  ::close(old_root);
  if (::chdir("/") != 0) Fail(report, "chdir /", errno);
  ::close(root_fd);

  if (!plan.privileged) {
    for (const std::string& p : plan.masked_paths) {
      struct stat st;
      if (::stat(p.c_str(), &st) != 0) continue;
      int rc = S_ISDIR(st.st_mode) ? ::mount("tmpfs", p.c_str(), "tmpfs", MS_RDONLY, "size=0k")
                                   : ::mount("/dev/null", p.c_str(), nullptr, MS_BIND, nullptr);
      if (rc != 0) Fail(report, "masking " + p, errno);
    }
    for (const std::string& p : plan.readonly_paths) {
      if (::access(p.c_str(), F_OK) != 0) continue;
      if (::mount(p.c_str(), p.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
          ::mount(nullptr, p.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  nullptr) != 0)
        Fail(report, "making " + p + " read-only", errno);
    }
  }
  if (plan.readonly_rootfs &&
      ::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
    Fail(report, "remounting the rootfs read-only", errno);

  for (const runtime::PlanRlimit& r : plan.rlimits) {
    struct rlimit rl = {r.soft, r.hard};
    if (::setrlimit(r.resource, &rl) != 0) Fail(report, "setrlimit " + std::to_string(r.resource), errno);
  }

  // stdio, then every other fd but the report/start pipes is closed.
  if (plan.tty) {
    if (::setsid() < 0) Fail(report, "setsid", errno);
    if (::ioctl(fds.stdout_fd, TIOCSCTTY, 0) != 0) Fail(report, "TIOCSCTTY", errno);
  }
  if (::dup2(fds.stdin_fd, 0) < 0 || ::dup2(fds.stdout_fd, 1) < 0 || ::dup2(fds.stderr_fd, 2) < 0)
    Fail(report, "setting up stdio", errno);
  CloseFdsExcept({report, fds.start});

  runtime::ResolvedUser user;
  Identity identity = BecomeUser(plan, report, &user);

  // Set-up done; wait for StartContainer.
  StepReport ready = {};
  ready.uid = user.uid;
  ready.gid = user.gid;
  for (gid_t g : user.additional_gids) {
    if (ready.ngroups < 64) ready.groups[ready.ngroups++] = g;
  }
  if (::write(report, &ready, sizeof ready) != static_cast<ssize_t>(sizeof ready)) _exit(127);
  char go = 0;
  ssize_t n;
  do n = ::read(fds.start, &go, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1) _exit(127);  // the shim gave up on us (RemoveContainer before start)
  ::close(fds.start);
  ExecCommand(plan, identity, report);
}

// --- B: the long-lived shim ------------------------------------------------

// Sends `json` on a SEQPACKET socket.
bool SendMsg(int fd, const std::string& json) {
  return ::send(fd, json.data(), json.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(json.size());
}

std::string ErrorJson(const std::string& step, int err) {
  return nlohmann::json{{"error", err ? std::strerror(err) : "failed"}, {"step", step}, {"errno", err}}.dump();
}

class Shim {
 public:
  Shim(runtime::ContainerPlan plan) : plan_(std::move(plan)) {}

  // Creates C. Returns "" on success, else the error JSON for crispd.
  std::string Create() {
    int rep[2], start[2];
    if (::pipe2(rep, O_CLOEXEC) != 0 || ::pipe2(start, O_CLOEXEC) != 0) return ErrorJson("pipe", errno);
    ChildFds cf;
    cf.report = rep[1];
    cf.start = start[0];
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (plan_.tty) {
      int master, slave;
      if (::openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) return ErrorJson("openpty", errno);
      ::fcntl(master, F_SETFD, FD_CLOEXEC);
      ::fcntl(slave, F_SETFD, FD_CLOEXEC);
      out_fd_ = master;
      cf.stdin_fd = cf.stdout_fd = cf.stderr_fd = slave;
      tty_slave_ = slave;
    } else {
      if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return ErrorJson("pipe", errno);
      if (plan_.stdin_open) {
        if (::pipe2(in, O_CLOEXEC) != 0) return ErrorJson("pipe", errno);
        cf.stdin_fd = in[0];
        stdin_w_ = in[1];
      } else {
        cf.stdin_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      cf.stdout_fd = out[1];
      cf.stderr_fd = err[1];
      out_fd_ = out[0];
      err_fd_ = err[0];
    }
    if (!plan_.log_path.empty()) {
      if (int e = log_.Open(plan_.log_path); e != 0) return ErrorJson("opening the log " + plan_.log_path, e);
    }

    auto pid_it = plan_.join_ns.find("pid");
    if (pid_it != plan_.join_ns.end()) {
      int nfd = ::open(pid_it->second.c_str(), O_RDONLY | O_CLOEXEC);
      if (nfd < 0 || ::setns(nfd, CLONE_NEWPID) != 0) return ErrorJson("joining the pod's PID namespace", errno);
      ::close(nfd);
    }
    oom_before_ = OomKills(plan_.oom_events_file);
    // SIGCHLD stays blocked from here on (C unblocks it for itself), so an
    // exit before the event loop runs is still pending for the signalfd.
    sigfd_ = SignalFd();
    if (sigfd_ < 0) return ErrorJson("signalfd", errno);
    unsigned long flags = CLONE_NEWNS | (plan_.new_pid ? CLONE_NEWPID : 0);
    long pid = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid < 0) return ErrorJson("clone", errno);
    if (pid == 0) ContainerMain(plan_, cf);
    pid_ = static_cast<pid_t>(pid);
    ::close(rep[1]);
    ::close(start[0]);
    for (int fd : {in[0], out[1], err[1], cf.stdin_fd}) {
      if (fd >= 0 && fd != tty_slave_) ::close(fd);
    }
    report_r_ = rep[0];
    start_w_ = start[1];
    // Into the container's cgroup before it runs anything of the image.
    for (const std::string& f : plan_.cgroup_procs) {
      if (!WriteControlFile(f, std::to_string(pid_))) return Abort(ErrorJson("joining cgroup " + f, errno));
    }
    if (plan_.oom_score_adj) {
      // Lowering it below ours needs CAP_SYS_RESOURCE, which this machine may
      // deny: clamp to the current value as containerd's
      // restrict_oom_score_adj does (crispd clamps too; this is the backstop).
      std::string file = "/proc/" + std::to_string(pid_) + "/oom_score_adj";
      if (!WriteControlFile(file, std::to_string(*plan_.oom_score_adj)) && errno != EACCES && errno != EPERM)
        return Abort(ErrorJson("setting oom_score_adj", errno));
    }
    return WaitSetup();
  }

  // Runs the event loop until C exits; returns the shim's exit code.
  int Serve(int listen_fd, int attach_fd) {
    int sfd = sigfd_;
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    auto add = [&](int fd) {
      if (fd < 0) return;
      struct epoll_event ev = {};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    };
    add(sfd);
    add(listen_fd);
    add(attach_fd);
    add(out_fd_);
    add(err_fd_);
    bool exited = false;
    int status = 0;
    while (!exited || out_fd_ >= 0 || err_fd_ >= 0) {
      struct epoll_event evs[8];
      int n = ::epoll_wait(ep, evs, 8, exited ? 200 : -1);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 && exited) break;  // output drained (a grandchild may hold the pipe)
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == sfd) {
          struct signalfd_siginfo si;
          while (::read(sfd, &si, sizeof si) > 0) {
          }
          int st;
          pid_t w;
          while ((w = ::waitpid(-1, &st, WNOHANG)) > 0) {
            if (w == pid_) {
              exited = true;
              status = st;
              finished_at_ = NowNs();
            }
          }
        } else if (fd == listen_fd) {
          int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c >= 0) HandleCtl(c);
        } else if (fd == attach_fd) {
          int c = ::accept4(attach_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c >= 0) {
            clients_[c];
            add(c);
          }
        } else if (fd == out_fd_ || fd == err_fd_) {
          if (!Pump(fd)) {
            ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
            ::close(fd);
            (fd == out_fd_ ? out_fd_ : err_fd_) = -1;
          }
        } else if (!FromClient(fd)) {
          ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
          DropClient(fd);
        }
      }
    }
    log_.FlushAll();
    for (auto& [c, reader] : clients_) ::close(c);  // attached clients see EOF
    clients_.clear();
    runtime::ExitRecord rec;
    if (!runtime::ExitRecordFromWaitStatus(status, &rec)) rec.exit_code = 255;
    rec.pid = pid_;
    rec.started_at_ns = started_at_;
    rec.finished_at_ns = finished_at_ ? finished_at_ : NowNs();
    rec.oom_killed = OomKills(plan_.oom_events_file) > oom_before_;
    if (!start_error_.empty()) rec.message = start_error_;
    runtime::WriteExitRecord(plan_.shim_dir + "/exit.json", rec);
    return 0;
  }

  pid_t pid() const { return pid_; }
  const nlohmann::json& user() const { return user_; }

 private:
  std::string Abort(std::string error) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    return error;
  }

  // C sends exactly one StepReport before the start barrier: err 0 when its
  // set-up is done, else the failing step. EOF means it died.
  std::string WaitSetup() {
    struct pollfd p = {report_r_, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, 10000);
    while (r < 0 && errno == EINTR);
    if (r == 0) return Abort(ErrorJson("container set-up did not finish within 10s", ETIMEDOUT));
    StepReport rep = {};
    ssize_t n = ::read(report_r_, &rep, sizeof rep);
    if (n == static_cast<ssize_t>(sizeof rep) && rep.err == 0) {
      user_ = {{"uid", rep.uid}, {"gid", rep.gid}};
      user_["groups"] = std::vector<uint32_t>(rep.groups, rep.groups + std::min<uint32_t>(rep.ngroups, 64));
      return "";
    }
    ::waitpid(pid_, nullptr, 0);
    if (n != static_cast<ssize_t>(sizeof rep)) return ErrorJson("the container process died during set-up", EIO);
    return ErrorJson(rep.step, rep.err);
  }

  int SignalFd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    return ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  }

  // Copies what is readable from `fd` to the log. False at EOF/error.
  bool Pump(int fd) {
    char buf[32768];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) {
      log_.Flush(fd == err_fd_ ? runtime::Stream::kStderr : runtime::Stream::kStdout);
      return false;
    }
    log_.Write(fd == err_fd_ ? runtime::Stream::kStderr : runtime::Stream::kStdout, buf,
               static_cast<size_t>(n));
    ToClients(fd == err_fd_ ? 2 : 1, buf, static_cast<size_t>(n));
    return true;
  }

  // Attached clients get every output chunk as a kStdout/kStderr frame
  // (runtime/stdio_frame.h). A client that cannot take a frame at once loses
  // it (the log has everything).
  void ToClients(uint8_t stream, const char* data, size_t n) {
    if (clients_.empty()) return;
    std::string frame = runtime::EncodeFrame(static_cast<runtime::FrameType>(stream), std::string_view(data, n));
    for (auto& [c, reader] : clients_) (void)::send(c, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  // Frames from an attached client: stdin bytes go to the container's stdin
  // (or terminal), kResize sets the terminal size, kCloseStdin closes the
  // container's stdin if it is stdin_once. False at the client's EOF or a
  // protocol error.
  bool FromClient(int c) {
    char buf[32768];
    ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    runtime::FrameReader& reader = clients_[c];
    reader.Feed(buf, static_cast<size_t>(n));
    runtime::FrameType type;
    std::string payload;
    while (reader.Next(&type, &payload)) {
      if (type == runtime::FrameType::kStdin) {
        WriteStdin(payload);
      } else if (type == runtime::FrameType::kResize && plan_.tty && out_fd_ >= 0) {
        struct winsize ws = {};
        if (runtime::DecodeResize(payload, &ws.ws_col, &ws.ws_row)) ::ioctl(out_fd_, TIOCSWINSZ, &ws);
      } else if (type == runtime::FrameType::kCloseStdin) {
        CloseStdinOnce();
      }
    }
    return !reader.error();
  }

  void WriteStdin(const std::string& data) {
    int in = plan_.tty ? out_fd_ : stdin_w_;
    if (in < 0) return;  // no stdin: input is dropped
    size_t off = 0;
    while (off < data.size()) {
      ssize_t w = ::write(in, data.data() + off, data.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
  }

  // With stdin_once, the first client to end its stdin (or detach) closes
  // the container's stdin (it sees EOF), as kubelet's `stdinOnce` means.
  void CloseStdinOnce() {
    if (plan_.stdin_once && stdin_w_ >= 0) {
      ::close(stdin_w_);
      stdin_w_ = -1;
    }
  }

  void DropClient(int c) {
    ::close(c);
    clients_.erase(c);
    CloseStdinOnce();
  }

  void HandleCtl(int c) {
    struct pollfd p = {c, POLLIN, 0};
    char buf[4096];
    ssize_t n = ::poll(&p, 1, 2000) > 0 ? ::recv(c, buf, sizeof buf, 0) : -1;
    std::string reply;
    if (n > 0) {
      nlohmann::json req = nlohmann::json::parse(std::string(buf, static_cast<size_t>(n)), nullptr, false);
      std::string op = req.is_object() ? req.value("op", "") : "";
      if (op == "start") {
        reply = Start();
      } else if (op == "resize") {
        struct winsize ws = {};
        ws.ws_row = static_cast<unsigned short>(req.value("height", 0));
        ws.ws_col = static_cast<unsigned short>(req.value("width", 0));
        if (!plan_.tty || out_fd_ < 0) {
          reply = ErrorJson("the container has no terminal", ENOTTY);
        } else {
          reply = ::ioctl(out_fd_, TIOCSWINSZ, &ws) == 0 ? nlohmann::json{{"ok", true}}.dump()
                                                          : ErrorJson("resizing the terminal", errno);
        }
      } else if (op == "reopen") {
        int e = log_.Reopen();
        reply = e == 0 ? nlohmann::json{{"ok", true}}.dump() : ErrorJson("reopening the log", e);
      } else {
        reply = ErrorJson("unknown request", EINVAL);
      }
    }
    if (!reply.empty()) SendMsg(c, reply);
    ::close(c);
  }

  std::string Start() {
    if (start_w_ < 0) return ErrorJson("the container was started already", EALREADY);
    started_at_ = NowNs();
    char go = 1;
    ssize_t w = ::write(start_w_, &go, 1);
    ::close(start_w_);
    start_w_ = -1;
    if (w != 1) return ErrorJson("the container process is gone", ESRCH);
    // EOF on the report pipe = exec happened (close-on-exec); a report = it failed.
    StepReport rep = {};
    ssize_t n;
    do n = ::read(report_r_, &rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    ::close(report_r_);
    report_r_ = -1;
    if (tty_slave_ >= 0) {
      ::close(tty_slave_);
      tty_slave_ = -1;
    }
    if (n == static_cast<ssize_t>(sizeof rep)) {
      start_error_ = std::string(rep.step) + ": " + std::strerror(rep.err);
      return ErrorJson(rep.step, rep.err);
    }
    return nlohmann::json{{"ok", true}, {"started_at", started_at_}}.dump();
  }

  runtime::ContainerPlan plan_;
  runtime::CriLogWriter log_;
  pid_t pid_ = -1;
  int sigfd_ = -1;
  int report_r_ = -1, start_w_ = -1;
  int out_fd_ = -1, err_fd_ = -1, stdin_w_ = -1, tty_slave_ = -1;
  long oom_before_ = 0;
  int64_t started_at_ = 0, finished_at_ = 0;
  std::string start_error_;
  nlohmann::json user_;
  std::map<int, runtime::FrameReader> clients_;  // attached to attach.sock
};

int ReportError(const std::string& step, int err) {
  SendMsg(kPlanFd, ErrorJson(step, err));
  return 1;
}

}  // namespace

int ContainerMode() {
  std::string error;
  auto plan = ReceivePlan(kPlanFd, &error);
  if (!plan) return ReportError(error, EINVAL);

  // The control socket, created before B exists so that crispd can connect
  // as soon as it has the report.
  // Bound through /proc/self/fd/<dir>: sun_path holds 108 bytes, and the
  // shim dir of a crispd with a long --state path may be longer than that.
  int dirfd = ::open(plan->shim_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return ReportError("opening the shim dir " + plan->shim_dir, errno);
  std::string ctl = FdPath(dirfd) + "/ctl.sock";
  int lfd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, ctl.c_str(), ctl.size());
  ::unlink(ctl.c_str());
  if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 16) != 0)
    return ReportError("listening on " + plan->shim_dir + "/ctl.sock", errno);
  ::chmod(ctl.c_str(), 0600);
  // attach.sock: stream clients get the output (framed) and feed stdin.
  std::string att = FdPath(dirfd) + "/attach.sock";
  int afd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un aaddr = {};
  aaddr.sun_family = AF_UNIX;
  std::memcpy(aaddr.sun_path, att.c_str(), att.size());
  ::unlink(att.c_str());
  if (afd < 0 || ::bind(afd, reinterpret_cast<sockaddr*>(&aaddr), sizeof aaddr) != 0 || ::listen(afd, 16) != 0)
    return ReportError("listening on " + plan->shim_dir + "/attach.sock", errno);
  ::chmod(att.c_str(), 0600);
  ::close(dirfd);

  int rep[2];
  if (::pipe2(rep, O_CLOEXEC) != 0) return ReportError("pipe", errno);
  pid_t b = ::fork();
  if (b < 0) return ReportError("fork", errno);
  if (b == 0) {
    // B: detach from A (which exits), keep the plan socket only until the report.
    ::close(rep[0]);
    ::close(kPlanFd);
    int devnull = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) ::dup2(devnull, fd);
    if (devnull > 2) ::close(devnull);
    ::prctl(PR_SET_NAME, "crisp-shim", 0, 0, 0);
    // Orphans of the container (reparented daemons) are reaped here.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    Shim shim(std::move(*plan));
    std::string err = shim.Create();
    std::string msg =
        err.empty() ? nlohmann::json{{"pid", shim.pid()}, {"shim_pid", ::getpid()}, {"user", shim.user()}}.dump() : err;
    uint32_t len = static_cast<uint32_t>(msg.size());
    (void)!::write(rep[1], &len, sizeof len);
    (void)!::write(rep[1], msg.data(), msg.size());
    ::close(rep[1]);
    if (!err.empty()) _exit(1);
    _exit(shim.Serve(lfd, afd));
  }
  ::close(rep[1]);
  ::close(lfd);
  ::close(afd);
  uint32_t len = 0;
  std::string msg;
  if (::read(rep[0], &len, sizeof len) == sizeof len && len < (1u << 20)) {
    msg.resize(len);
    size_t got = 0;
    while (got < len) {
      ssize_t r = ::read(rep[0], msg.data() + got, len - got);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    msg.resize(got);
  }
  if (msg.empty()) return ReportError("the shim died while creating the container", EIO);
  if (!SendMsg(kPlanFd, msg)) {
    // Nobody will ever learn of this container: do not leak it.
    nlohmann::json j = nlohmann::json::parse(msg, nullptr, false);
    if (j.is_object() && j.contains("shim_pid")) ::kill(j["shim_pid"].get<int>(), SIGKILL);
    if (j.is_object() && j.contains("pid")) ::kill(j["pid"].get<int>(), SIGKILL);
    return 1;
  }
  return 0;
}

}  // namespace crisp::shim
