#pragma once
// What `crisp-shim container` and `crisp-shim exec` do alike to a process
// they are about to exec in a container: report failed steps, become the
// container's user with its capabilities, then exec under no_new_privs and
// seccomp. libc only (plus libseccomp); runs in forked children.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/container_plan.h"
#include "runtime/seccomp_profile.h"
#include "runtime/users.h"

namespace crisp::shim {

// What a child reports about a failed step over its report pipe.
struct StepReport {
  int err;  // 0 = fine
  char step[240];
  // With the "ready" report (err 0): who the process runs as.
  uint32_t uid, gid, ngroups;
  uint32_t groups[64];
};

// Writes a StepReport for `step` to `fd` and _exit(127)s.
[[noreturn]] void Fail(int fd, const std::string& step, int err);

int64_t NowNs();

// Reads a small file (no symlink at the end); "" if absent.
std::string ReadSmallFile(const std::string& path);

std::string FdPath(int fd);

// Looks up `name` in the PATH of `env` (or the default PATH); "" if none.
std::string FindExecutable(const std::string& name, const std::vector<std::string>& env);

// Closes every fd >= 3 except `keep`.
void CloseFdsExcept(const std::vector<int>& keep);

// Receives the plan crispd sends as one SEQPACKET record on `fd`. nullopt
// with `error` set if it cannot be read or parsed.
std::optional<runtime::ContainerPlan> ReceivePlan(int fd, std::string* error);

// The state between becoming the user and exec.
struct Identity {
  std::vector<std::string> env;  // the plan's env + HOME if it had none
  runtime::SeccompProfile profile;
  bool seccomp = false;  // load `profile` before exec (if not loaded already)
};

// Resolves the plan's user in the container's /etc/passwd and /etc/group
// (the process must already see the container's root), loads seccomp now if
// no_new_privs is off (it then needs the capabilities about to go), shrinks
// the bounding set, switches uid/gid/groups and applies the capability sets.
// Fails through `report`.
Identity BecomeUser(const runtime::ContainerPlan& plan, int report, runtime::ResolvedUser* user);

// chdir to the plan's cwd, PATH lookup of args[0], no_new_privs, seccomp,
// execve. Fails through `report` (close-on-exec, so EOF there means exec'd).
[[noreturn]] void ExecCommand(const runtime::ContainerPlan& plan, const Identity& identity, int report);

// openat2(2)'s argument and resolve flags (not in glibc 2.36's headers).
struct OpenHow {
  uint64_t flags, mode, resolve;
};
constexpr uint64_t kResolveNoMagiclinks = 0x02;
constexpr uint64_t kResolveInRoot = 0x10;

// Opens a new pseudo-terminal in the devpts instance of the container whose
// root directory is open as `root` (O_PATH of "/proc/<pid>/root"), as runc does, so that the
// slave is /dev/pts/N *inside* the container (ttyname(), `tty`, sudo work
// there). The path is resolved inside that root (a container cannot point
// it elsewhere), and the result must be a devpts ptmx. Returns the master
// and sets *slave (both close-on-exec), or -1 with *why set.
int OpenContainerPty(int root, int* slave, std::string* why);

}  // namespace crisp::shim
