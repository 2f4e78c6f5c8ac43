// Shared by the container and exec modes: see process_setup.h.
#include "runtime/shim/process_setup.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/capabilities.h"
#include "runtime/shim/seccomp_load.h"

namespace crisp::shim {

[[noreturn]] void Fail(int fd, const std::string& step, int err) {
  StepReport r = {};
  r.err = err ? err : EIO;
  std::snprintf(r.step, sizeof r.step, "%s", step.c_str());
  (void)!::write(fd, &r, sizeof r);
  _exit(127);
}

int64_t NowNs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Reads a small file inside the (pivoted) root; "" if absent.
std::string ReadSmallFile(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return out;
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && out.size() < (4u << 20)) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Looks up args[0] in the container's PATH (after pivot_root); "" if none.
std::string FindExecutable(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const std::string& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  size_t start = 0;
  for (;;) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir = ".";
    std::string cand = dir + "/" + name;
    struct stat st;
    if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(cand.c_str(), X_OK) == 0) return cand;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

void CloseFdsExcept(const std::vector<int>& keep) {
  int max = 3;
  for (int k : keep) max = std::max(max, k + 1);
  for (int fd = 3; fd < max; ++fd) {
    bool kept = false;
    for (int k : keep) kept |= k == fd;
    if (!kept) ::close(fd);
  }
  if (::syscall(SYS_close_range, max, ~0U, 0) != 0) {
    long lim = ::sysconf(_SC_OPEN_MAX);
    for (long fd = max; fd < (lim > 0 ? lim : 65536); ++fd) ::close(static_cast<int>(fd));
  }
}

std::optional<runtime::ContainerPlan> ReceivePlan(int fd, std::string* error) {
  // The size first (MSG_TRUNC reports the whole record), so that only what
  // is needed is allocated: every page touched costs here.
  char probe;
  ssize_t size = ::recv(fd, &probe, 1, MSG_PEEK | MSG_TRUNC);
  if (size <= 0 || size > (16 << 20)) {
    *error = std::string("reading the plan: ") + (size < 0 ? std::strerror(errno) : "no plan");
    return std::nullopt;
  }
  std::string buf(static_cast<size_t>(size), '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  if (n <= 0) {
    *error = std::string("reading the plan: ") + (n < 0 ? std::strerror(errno) : "no plan");
    return std::nullopt;
  }
  buf.resize(static_cast<size_t>(n));
  auto plan = runtime::ParseContainerPlan(buf);
  if (!plan) *error = "parsing the plan";
  return plan;
}

Identity BecomeUser(const runtime::ContainerPlan& plan, int report, runtime::ResolvedUser* user) {
  // The user, resolved in the container's own /etc/passwd and /etc/group.
  runtime::UserRequest ureq;
  ureq.run_as_user = plan.user.uid;
  ureq.run_as_username = plan.user.username;
  ureq.run_as_group = plan.user.gid;
  ureq.supplemental_groups = plan.user.supplemental_groups;
  ureq.image_user = plan.user.image_user;
  std::string error;
  if (!runtime::ResolveUser(ureq, ReadSmallFile("/etc/passwd"), ReadSmallFile("/etc/group"), user, &error))
    Fail(report, "resolving the user: " + error, EINVAL);

  // seccomp: as late as possible (right before exec) when no_new_privs lets
  // an unprivileged process install it; without no_new_privs installing it
  // needs CAP_SYS_ADMIN, so it goes in now, before capabilities are dropped
  // (runc's order). The rest of the set-up then runs under the filter.
  Identity id;
  const bool seccomp = !plan.privileged && !plan.seccomp_json.empty();
  if (seccomp && !runtime::SeccompProfileFromJson(plan.seccomp_json, &id.profile, &error))
    Fail(report, "seccomp profile: " + error, EINVAL);
  if (seccomp && !plan.no_new_privs && !runtime::LoadSeccompProfile(id.profile, &error))
    Fail(report, "loading seccomp: " + error, EINVAL);

  runtime::CapSets caps;
  caps.bounding = plan.caps.bounding;
  caps.effective = plan.caps.effective;
  caps.permitted = plan.caps.permitted;
  caps.inheritable = plan.caps.inheritable;
  caps.ambient = plan.caps.ambient;
  // The bounding set shrinks while we still have CAP_SETPCAP; the permitted
  // set is kept across the uid change; capset follows.
  if (!runtime::DropBoundingSet(caps, &error)) Fail(report, "capabilities: " + error, EPERM);
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) Fail(report, "PR_SET_KEEPCAPS", errno);
  if (::setgroups(user->additional_gids.size(), user->additional_gids.data()) != 0) Fail(report, "setgroups", errno);
  if (::setresgid(user->gid, user->gid, user->gid) != 0) Fail(report, "setgid", errno);
  if (::setresuid(user->uid, user->uid, user->uid) != 0) Fail(report, "setuid", errno);
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) Fail(report, "clearing PR_SET_KEEPCAPS", errno);
  if (!runtime::ApplyCapabilities(caps, &error)) Fail(report, "capabilities: " + error, EPERM);

  std::vector<std::string>& env = id.env;
  env = plan.env;
  bool has_home = false;
  for (const std::string& e : env) has_home |= e.rfind("HOME=", 0) == 0;
  if (!has_home) env.push_back("HOME=" + (user->home.empty() ? std::string("/") : user->home));
  id.seccomp = seccomp;
  return id;
}

[[noreturn]] void ExecCommand(const runtime::ContainerPlan& plan, const Identity& identity, int report) {
  if (::chdir(plan.cwd.c_str()) != 0) Fail(report, "chdir to the working directory " + plan.cwd, errno);
  std::string exe = FindExecutable(plan.args[0], identity.env);
  if (exe.empty()) Fail(report, "executable file \"" + plan.args[0] + "\" not found in $PATH", ENOENT);
  if (plan.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail(report, "no_new_privs", errno);
  std::string error;
  if (identity.seccomp && plan.no_new_privs && !runtime::LoadSeccompProfile(identity.profile, &error))
    Fail(report, "loading seccomp: " + error, EINVAL);
  std::vector<char*> argv, envp;
  for (const std::string& a : plan.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : identity.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  ::execve(exe.c_str(), argv.data(), envp.data());
  Fail(report, "exec " + exe, errno);
}

int OpenContainerPty(int root, int* slave, std::string* why) {
  OpenHow how = {O_RDWR | O_NOCTTY | O_CLOEXEC, 0, kResolveInRoot | kResolveNoMagiclinks};
  int master = static_cast<int>(::syscall(SYS_openat2, root, "dev/pts/ptmx", &how, sizeof how));
  if (master < 0) master = static_cast<int>(::syscall(SYS_openat2, root, "dev/ptmx", &how, sizeof how));
  int err = errno;
  if (master < 0) {
    *why = "opening the container's /dev/pts/ptmx: " + std::string(std::strerror(err));
    return -1;
  }
  struct statfs fs;
  int unlock = 0;
  if (::fstatfs(master, &fs) != 0 || fs.f_type != DEVPTS_SUPER_MAGIC || ::ioctl(master, TIOCSPTLCK, &unlock) != 0) {
    ::close(master);
    *why = "the container's /dev/pts/ptmx is not a devpts multiplexer";
    return -1;
  }
  *slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0) {
    *why = "opening the terminal's peer: " + std::string(std::strerror(errno));
    ::close(master);
    return -1;
  }
  return master;
}

}  // namespace crisp::shim
