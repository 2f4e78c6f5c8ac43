#include "runtime/seccomp_profile.h"

#include <sched.h>
#include <sys/socket.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "nlohmann/json.hpp"

namespace crisp::runtime {
namespace {

using Json = nlohmann::json;

constexpr std::pair<SeccompAction, const char*> kActionNames[] = {
    {SeccompAction::kKill, "SCMP_ACT_KILL"},
    {SeccompAction::kKillProcess, "SCMP_ACT_KILL_PROCESS"},
    {SeccompAction::kKillThread, "SCMP_ACT_KILL_THREAD"},
    {SeccompAction::kTrap, "SCMP_ACT_TRAP"},
    {SeccompAction::kErrno, "SCMP_ACT_ERRNO"},
    {SeccompAction::kTrace, "SCMP_ACT_TRACE"},
    {SeccompAction::kAllow, "SCMP_ACT_ALLOW"},
    {SeccompAction::kLog, "SCMP_ACT_LOG"},
};

constexpr std::pair<SeccompOp, const char*> kOpNames[] = {
    {SeccompOp::kNotEqual, "SCMP_CMP_NE"},           {SeccompOp::kLessThan, "SCMP_CMP_LT"},
    {SeccompOp::kLessEqual, "SCMP_CMP_LE"},          {SeccompOp::kEqualTo, "SCMP_CMP_EQ"},
    {SeccompOp::kGreaterEqual, "SCMP_CMP_GE"},       {SeccompOp::kGreaterThan, "SCMP_CMP_GT"},
    {SeccompOp::kMaskedEqual, "SCMP_CMP_MASKED_EQ"},
};

// Every architecture the runtime-spec names. Whether the linked libseccomp
// knows one is the loader's business (it reports it by name).
constexpr const char* kArchNames[] = {
    "SCMP_ARCH_X86",     "SCMP_ARCH_X86_64",   "SCMP_ARCH_X32",         "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",     "SCMP_ARCH_MIPS64",      "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",  "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",   "SCMP_ARCH_PPC64LE",  "SCMP_ARCH_S390",        "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",  "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",     "SCMP_ARCH_LOONGARCH64",
};

constexpr const char* kFlagNames[] = {
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
};

// A host architecture under its three spellings, and the compat
// architectures whose syscalls its processes can also make (a 64-bit x86
// kernel runs i386 and x32 binaries).
struct HostArch {
  const char* uname;  // `uname -m`
  const char* go;     // Docker's `arches` spelling (Go / libseccomp-golang)
  const char* scmp;   // OCI spelling
  std::vector<const char*> sub;
};

const std::vector<HostArch>& HostArches() {
  static const std::vector<HostArch> arches = {
      {"x86_64", "amd64", "SCMP_ARCH_X86_64", {"SCMP_ARCH_X86", "SCMP_ARCH_X32"}},
      {"aarch64", "arm64", "SCMP_ARCH_AARCH64", {"SCMP_ARCH_ARM"}},
      {"i686", "x86", "SCMP_ARCH_X86", {}},
      {"armv7l", "arm", "SCMP_ARCH_ARM", {}},
      {"ppc64le", "ppc64le", "SCMP_ARCH_PPC64LE", {}},
      {"s390x", "s390x", "SCMP_ARCH_S390X", {"SCMP_ARCH_S390"}},
      {"riscv64", "riscv64", "SCMP_ARCH_RISCV64", {}},
      {"loongarch64", "loong64", "SCMP_ARCH_LOONGARCH64", {}},
      {"mips64", "mips64", "SCMP_ARCH_MIPS64", {"SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"}},
  };
  return arches;
}

const HostArch* FindHostArch(const std::string& uname) {
  for (const HostArch& a : HostArches())
    if (uname == a.uname) return &a;
  return nullptr;
}

template <typename Enum, size_t N>
bool EnumFromName(const std::pair<Enum, const char*> (&table)[N], const std::string& name, Enum* out) {
  for (const auto& [value, text] : table) {
    if (name == text) {
      *out = value;
      return true;
    }
  }
  return false;
}

template <size_t N>
bool Contains(const char* const (&table)[N], const std::string& name) {
  return std::any_of(std::begin(table), std::end(table), [&](const char* t) { return name == t; });
}

bool Contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// "sys_admin" -> "CAP_SYS_ADMIN": CRI callers spell capabilities both ways.
std::string NormalizeCap(std::string cap) {
  for (char& c : cap) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (cap.rfind("CAP_", 0) != 0) cap = "CAP_" + cap;
  return cap;
}

// Docker's `includes` / `excludes`.
struct RuleFilter {
  std::vector<std::string> caps;    // normalized
  std::vector<std::string> arches;  // Go spelling, as written
  std::optional<std::pair<int, int>> min_kernel;
};

// A rule before Docker's conditions are applied.
struct ConditionalRule {
  SeccompSyscall rule;
  std::optional<RuleFilter> includes;
  std::optional<RuleFilter> excludes;
};

// `conditions` with the defaults filled in.
struct HostFacts {
  std::vector<std::string> caps;  // normalized
  std::string arch;               // uname spelling
  std::pair<int, int> kernel;
};

std::pair<int, int> HostKernel() {
  struct utsname u;
  if (uname(&u) != 0) return {0, 0};
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return {0, 0};
  return {major, minor};
}

HostFacts ResolveConditions(const SeccompConditions& c) {
  HostFacts f;
  for (const std::string& cap : c.capabilities) f.caps.push_back(NormalizeCap(cap));
  f.arch = c.arch.empty() ? NativeSeccompArch() : c.arch;
  f.kernel = c.kernel_major < 0 ? HostKernel() : std::pair<int, int>{c.kernel_major, c.kernel_minor};
  return f;
}

// Docker's arch lists name the host by its Go spelling; the uname spelling
// is accepted too so that hand-written profiles can say "x86_64".
bool ArchListMatches(const std::vector<std::string>& arches, const std::string& host) {
  const HostArch* h = FindHostArch(host);
  for (const std::string& a : arches) {
    if (a == host || (h != nullptr && a == h->go)) return true;
  }
  return false;
}

// Docker's semantics: an exclude drops the rule when ANY of its conditions
// hits (host arch listed, any listed cap held, kernel new enough); an include
// keeps it only when ALL hold (host arch listed, every cap held, kernel new
// enough).
bool RuleApplies(const ConditionalRule& r, const HostFacts& host) {
  if (r.excludes) {
    const RuleFilter& e = *r.excludes;
    if (!e.arches.empty() && ArchListMatches(e.arches, host.arch)) return false;
    for (const std::string& cap : e.caps)
      if (Contains(host.caps, cap)) return false;
    if (e.min_kernel && host.kernel >= *e.min_kernel) return false;
  }
  if (r.includes) {
    const RuleFilter& i = *r.includes;
    if (!i.arches.empty() && !ArchListMatches(i.arches, host.arch)) return false;
    for (const std::string& cap : i.caps)
      if (!Contains(host.caps, cap)) return false;
    if (i.min_kernel && host.kernel < *i.min_kernel) return false;
  }
  return true;
}

// ---- JSON reading with field paths in every message ----

class Reader {
 public:
  explicit Reader(std::string* error) : error_(error) {}

  bool Fail(const std::string& path, const std::string& what) {
    if (error_ != nullptr) *error_ = path + ": " + what;
    return false;
  }

  // Absent or null leaves `*out` untouched.
  bool String(const Json& obj, const char* key, const std::string& path, std::string* out) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return true;
    if (!it->is_string()) return Fail(Join(path, key), "must be a string");
    *out = it->get<std::string>();
    return true;
  }

  bool StringList(const Json& obj, const char* key, const std::string& path, std::vector<std::string>* out) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return true;
    const std::string p = Join(path, key);
    if (!it->is_array()) return Fail(p, "must be an array of strings");
    for (size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string()) return Fail(p + "[" + std::to_string(i) + "]", "must be a string");
      out->push_back((*it)[i].get<std::string>());
    }
    return true;
  }

  // A non-negative integer no larger than `max`.
  bool Uint(const Json& value, const std::string& path, uint64_t max, uint64_t* out) {
    if (value.is_number_unsigned()) {
      *out = value.get<uint64_t>();
    } else if (value.is_number_integer()) {
      return Fail(path, "must not be negative");
    } else {
      return Fail(path, "must be a non-negative integer");
    }
    if (*out > max)
      return Fail(path, std::to_string(*out) + " is out of range (max " + std::to_string(max) + ")");
    return true;
  }

  bool OptionalErrno(const Json& obj, const char* key, const std::string& path,
                     std::optional<uint32_t>* out) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return true;
    uint64_t v = 0;
    // The kernel carries the errno in the 16-bit SECCOMP_RET_DATA field.
    if (!Uint(*it, Join(path, key), 0xffff, &v)) return false;
    *out = static_cast<uint32_t>(v);
    return true;
  }

  bool Action(const Json& obj, const char* key, const std::string& path, SeccompAction* out) {
    std::string name;
    const std::string p = Join(path, key);
    if (obj.find(key) == obj.end()) return Fail(p, "is required");
    if (!String(obj, key, path, &name)) return false;
    if (name == "SCMP_ACT_NOTIFY")
      return Fail(p, "SCMP_ACT_NOTIFY is not supported (crisp has no seccomp agent)");
    if (!EnumFromName(kActionNames, name, out)) return Fail(p, "unknown action \"" + name + "\"");
    return true;
  }

  static std::string Join(const std::string& path, const char* key) {
    return path.empty() ? std::string(key) : path + "." + key;
  }

 private:
  std::string* error_;
};

bool ParseArg(Reader& r, const Json& j, const std::string& path, SeccompArg* out) {
  if (!j.is_object()) return r.Fail(path, "must be an object");
  auto index = j.find("index");
  if (index == j.end()) return r.Fail(path + ".index", "is required");
  uint64_t v = 0;
  // Syscalls take at most six arguments.
  if (!r.Uint(*index, path + ".index", 5, &v)) return false;
  out->index = static_cast<uint32_t>(v);
  auto value = j.find("value");
  if (value == j.end()) return r.Fail(path + ".value", "is required");
  if (!r.Uint(*value, path + ".value", UINT64_MAX, &out->value)) return false;
  auto two = j.find("valueTwo");
  if (two != j.end() && !two->is_null() && !r.Uint(*two, path + ".valueTwo", UINT64_MAX, &out->value_two))
    return false;
  if (j.find("op") == j.end()) return r.Fail(path + ".op", "is required");
  std::string op;
  if (!r.String(j, "op", path, &op)) return false;
  if (!EnumFromName(kOpNames, op, &out->op)) return r.Fail(path + ".op", "unknown operator \"" + op + "\"");
  return true;
}

bool ParseFilter(Reader& r, const Json& j, const std::string& path, RuleFilter* out) {
  if (!j.is_object()) return r.Fail(path, "must be an object");
  std::vector<std::string> caps;
  if (!r.StringList(j, "caps", path, &caps)) return false;
  for (std::string& c : caps) out->caps.push_back(NormalizeCap(std::move(c)));
  if (!r.StringList(j, "arches", path, &out->arches)) return false;
  std::string kernel;
  if (!r.String(j, "minKernel", path, &kernel)) return false;
  if (!kernel.empty()) {
    // "<kernel>.<major>", e.g. "4.8"; anything after is not allowed.
    int major = 0, minor = 0, consumed = 0;
    if (std::sscanf(kernel.c_str(), "%d.%d%n", &major, &minor, &consumed) != 2 ||
        consumed != static_cast<int>(kernel.size()) || major < 0 || minor < 0 || (major == 0 && minor == 0))
      return r.Fail(path + ".minKernel",
                    "invalid kernel version \"" + kernel + "\", expected \"<kernel>.<major>\"");
    out->min_kernel = std::pair<int, int>{major, minor};
  }
  return true;
}

bool ParseSyscall(Reader& r, const Json& j, const std::string& path, bool docker, ConditionalRule* out) {
  if (!j.is_object()) return r.Fail(path, "must be an object");
  SeccompSyscall& s = out->rule;
  if (!r.StringList(j, "names", path, &s.names)) return false;
  if (j.contains("name") || j.contains("includes") || j.contains("excludes")) {
    if (!docker) return r.Fail(path, "Docker profile fields (name/includes/excludes) are not allowed here");
  }
  std::string legacy_name;
  if (!r.String(j, "name", path, &legacy_name)) return false;
  if (!legacy_name.empty()) {
    if (!s.names.empty()) return r.Fail(path, "both \"name\" and \"names\" are set; use \"names\"");
    s.names.push_back(legacy_name);
  }
  if (s.names.empty()) return r.Fail(path + ".names", "must list at least one syscall");
  for (size_t i = 0; i < s.names.size(); ++i)
    if (s.names[i].empty()) return r.Fail(path + ".names[" + std::to_string(i) + "]", "must not be empty");
  if (!r.Action(j, "action", path, &s.action)) return false;
  if (!r.OptionalErrno(j, "errnoRet", path, &s.errno_ret)) return false;
  auto args = j.find("args");
  if (args != j.end() && !args->is_null()) {
    if (!args->is_array()) return r.Fail(path + ".args", "must be an array");
    for (size_t i = 0; i < args->size(); ++i) {
      SeccompArg a;
      if (!ParseArg(r, (*args)[i], path + ".args[" + std::to_string(i) + "]", &a)) return false;
      s.args.push_back(a);
    }
  }
  for (const char* key : {"includes", "excludes"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    RuleFilter f;
    if (!ParseFilter(r, *it, path + "." + key, &f)) return false;
    (std::strcmp(key, "includes") == 0 ? out->includes : out->excludes) = std::move(f);
  }
  return true;
}

bool ValidateNames(Reader& r, const SeccompProfile& p) {
  for (size_t i = 0; i < p.architectures.size(); ++i)
    if (!Contains(kArchNames, p.architectures[i]))
      return r.Fail("architectures[" + std::to_string(i) + "]",
                    "unknown architecture \"" + p.architectures[i] + "\"");
  for (size_t i = 0; i < p.flags.size(); ++i)
    if (!Contains(kFlagNames, p.flags[i]))
      return r.Fail("flags[" + std::to_string(i) + "]", "unknown flag \"" + p.flags[i] + "\"");
  return true;
}

// The one parser behind ParseOciSeccompProfile (docker = true) and
// SeccompProfileFromJson (docker = false).
bool Parse(const std::string& text, bool docker, const SeccompConditions& conditions, SeccompProfile* out,
           std::string* error) {
  Reader r(error);
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    if (error != nullptr) *error = std::string("invalid JSON: ") + e.what();
    return false;
  }
  if (!j.is_object()) return r.Fail("profile", "must be a JSON object");

  SeccompProfile p;
  if (!r.Action(j, "defaultAction", "", &p.default_action)) return false;
  if (!r.OptionalErrno(j, "defaultErrnoRet", "", &p.default_errno_ret)) return false;
  if (!r.StringList(j, "architectures", "", &p.architectures)) return false;
  if (!r.StringList(j, "flags", "", &p.flags)) return false;

  const HostFacts host = ResolveConditions(conditions);
  auto arch_map = j.find("archMap");
  if (arch_map != j.end() && !arch_map->is_null()) {
    if (!docker) return r.Fail("archMap", "Docker profile field not allowed here");
    if (!p.architectures.empty())
      return r.Fail("archMap", "both \"architectures\" and \"archMap\" are set; use one of them");
    if (!arch_map->is_array()) return r.Fail("archMap", "must be an array");
    const HostArch* h = FindHostArch(host.arch);
    for (size_t i = 0; i < arch_map->size(); ++i) {
      const Json& e = (*arch_map)[i];
      const std::string path = "archMap[" + std::to_string(i) + "]";
      if (!e.is_object()) return r.Fail(path, "must be an object");
      std::string arch;
      std::vector<std::string> sub;
      if (!r.String(e, "architecture", path, &arch) || !r.StringList(e, "subArchitectures", path, &sub))
        return false;
      // Only the host's entry counts; the others describe other machines.
      if (h == nullptr || arch != h->scmp || !p.architectures.empty()) continue;
      p.architectures.push_back(arch);
      p.architectures.insert(p.architectures.end(), sub.begin(), sub.end());
    }
  }
  if (!ValidateNames(r, p)) return false;

  auto syscalls = j.find("syscalls");
  if (syscalls != j.end() && !syscalls->is_null()) {
    if (!syscalls->is_array()) return r.Fail("syscalls", "must be an array");
    for (size_t i = 0; i < syscalls->size(); ++i) {
      ConditionalRule c;
      if (!ParseSyscall(r, (*syscalls)[i], "syscalls[" + std::to_string(i) + "]", docker, &c)) return false;
      if (RuleApplies(c, host)) p.syscalls.push_back(std::move(c.rule));
    }
  }
  *out = std::move(p);
  return true;
}

// ---- RuntimeDefault as data ----

// Chains conditions onto the rule just added to a RuleList, so that the
// table below reads like a profile. Valid until the next RuleList::Add.
class RuleRef {
 public:
  explicit RuleRef(ConditionalRule* c) : c_(c) {}
  RuleRef Errno(uint32_t e) {
    c_->rule.errno_ret = e;
    return *this;
  }
  RuleRef Arg(uint32_t index, SeccompOp op, uint64_t value, uint64_t value_two = 0) {
    c_->rule.args.push_back({index, value, value_two, op});
    return *this;
  }
  RuleRef IfCap(const char* cap) {
    Includes().caps.push_back(cap);
    return *this;
  }
  RuleRef UnlessCap(const char* cap) {
    Excludes().caps.push_back(cap);
    return *this;
  }
  RuleRef IfArch(std::vector<std::string> arches) {
    Includes().arches = std::move(arches);
    return *this;
  }
  RuleRef UnlessArch(std::vector<std::string> arches) {
    Excludes().arches = std::move(arches);
    return *this;
  }
  RuleRef MinKernel(int major, int minor) {
    Includes().min_kernel = std::pair<int, int>{major, minor};
    return *this;
  }

 private:
  RuleFilter& Includes() { return c_->includes ? *c_->includes : c_->includes.emplace(); }
  RuleFilter& Excludes() { return c_->excludes ? *c_->excludes : c_->excludes.emplace(); }

  ConditionalRule* c_;
};

class RuleList {
 public:
  RuleRef Add(std::vector<std::string> names, SeccompAction action = SeccompAction::kAllow) {
    ConditionalRule& c = rules_.emplace_back();
    c.rule.names = std::move(names);
    c.rule.action = action;
    return RuleRef(&c);
  }
  std::vector<ConditionalRule> Take() { return std::move(rules_); }

 private:
  std::vector<ConditionalRule> rules_;
};

// Namespace-creating clone flags: without CAP_SYS_ADMIN a container may
// clone threads and processes but not new namespaces (user namespaces in
// particular are a large kernel attack surface).
constexpr uint64_t kCloneNamespaceFlags =
    CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;

// The socket rules exclude exactly AF_ALG (kernel crypto API) and AF_VSOCK
// (host/VM sockets) and let the one family between them through.
static_assert(AF_ALG == 38 && AF_VSOCK == 40, "socket family rules assume AF_ALG=38, AF_VSOCK=40");

// Ordinary syscalls, allowed whatever the capabilities: files, memory,
// signals, time, IPC, networking, scheduling within the container's own
// limits. Names the local libseccomp or kernel does not know are skipped when
// loading.
// A table, packed by hand.
// clang-format off
constexpr const char* kAlwaysAllowed[] = {
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
    "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
    "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait",
    "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
    "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32",
    "getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount",
    "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
    "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
    "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open",
    "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64",
    "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat", "renameat2",
    "restart_syscall", "riscv_hwprobe", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
    "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
    "setuid32", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill",
    "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime",
    "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
};
// Syscalls the kernel guards with CAP_SYS_ADMIN (mounts, namespaces, host
// names, BPF, perf, quotas): allowed only to containers holding it.
constexpr const char* kSysAdminOnly[] = {
    "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
    "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount", "mount_setattr", "move_mount",
    "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
    "syslog", "umount", "umount2", "unshare",
};
// clang-format on

std::vector<ConditionalRule> RuntimeDefaultRules() {
  using enum SeccompOp;
  RuleList rules;
  rules.Add(std::vector<std::string>(std::begin(kAlwaysAllowed), std::end(kAlwaysAllowed)));
  // ptrace of one's own children is safe since 4.8 (seccomp re-checked after
  // a tracer changes the syscall).
  rules.Add({"process_vm_readv", "process_vm_writev", "ptrace"}).MinKernel(4, 8);
  rules.Add({"socket"}).Arg(0, kLessThan, AF_ALG);
  rules.Add({"socket"}).Arg(0, kEqualTo, AF_ALG + 1);
  rules.Add({"socket"}).Arg(0, kGreaterThan, AF_VSOCK);
  // personality(2): PER_LINUX, PER_LINUX32, UNAME26 variants and the query
  // value only; other personas re-enable odd legacy kernel paths.
  for (uint64_t persona : {0x0ull, 0x0008ull, 0x20000ull, 0x20008ull, 0xffffffffull})
    rules.Add({"personality"}).Arg(0, kEqualTo, persona);
  // Architecture-specific syscalls.
  rules.Add({"sync_file_range2", "swapcontext"}).IfArch({"ppc64le"});
  rules
      .Add({"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
            "set_tls"})
      .IfArch({"arm", "arm64"});
  rules.Add({"arch_prctl"}).IfArch({"amd64", "x32"});
  rules.Add({"modify_ldt"}).IfArch({"amd64", "x32", "x86"});
  rules.Add({"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"}).IfArch({"s390", "s390x"});
  rules.Add({"riscv_flush_icache"}).IfArch({"riscv64"});
  // Capability-guarded syscalls: allowed when the container holds the
  // capability the kernel would check anyway, denied otherwise so that a
  // kernel bug behind that check is not reachable.
  rules.Add({"open_by_handle_at"}).IfCap("CAP_DAC_READ_SEARCH");
  rules.Add(std::vector<std::string>(std::begin(kSysAdminOnly), std::end(kSysAdminOnly)))
      .IfCap("CAP_SYS_ADMIN");
  // s390 swaps clone's first two arguments.
  rules.Add({"clone"})
      .Arg(0, kMaskedEqual, kCloneNamespaceFlags, 0)
      .UnlessCap("CAP_SYS_ADMIN")
      .UnlessArch({"s390", "s390x"});
  rules.Add({"clone"})
      .Arg(1, kMaskedEqual, kCloneNamespaceFlags, 0)
      .IfArch({"s390", "s390x"})
      .UnlessCap("CAP_SYS_ADMIN");
  // clone3 passes its flags in memory, out of seccomp's reach: make it look
  // unimplemented so that libc falls back to the filtered clone.
  rules.Add({"clone3"}, SeccompAction::kErrno).Errno(ENOSYS).UnlessCap("CAP_SYS_ADMIN");
  rules.Add({"reboot"}).IfCap("CAP_SYS_BOOT");
  rules.Add({"chroot"}).IfCap("CAP_SYS_CHROOT");
  rules.Add({"delete_module", "init_module", "finit_module"}).IfCap("CAP_SYS_MODULE");
  rules.Add({"acct"}).IfCap("CAP_SYS_PACCT");
  rules.Add({"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"})
      .IfCap("CAP_SYS_PTRACE");
  rules.Add({"iopl", "ioperm"}).IfCap("CAP_SYS_RAWIO");
  rules.Add({"settimeofday", "stime", "clock_settime", "clock_settime64"}).IfCap("CAP_SYS_TIME");
  rules.Add({"vhangup"}).IfCap("CAP_SYS_TTY_CONFIG");
  rules.Add({"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}).IfCap("CAP_SYS_NICE");
  rules.Add({"syslog"}).IfCap("CAP_SYSLOG");
  rules.Add({"bpf"}).IfCap("CAP_BPF");
  rules.Add({"perf_event_open"}).IfCap("CAP_PERFMON");

  return rules.Take();
}

}  // namespace

const char* SeccompActionName(SeccompAction action) {
  for (const auto& [value, text] : kActionNames)
    if (value == action) return text;
  return "SCMP_ACT_UNKNOWN";
}

const char* SeccompOpName(SeccompOp op) {
  for (const auto& [value, text] : kOpNames)
    if (value == op) return text;
  return "SCMP_CMP_UNKNOWN";
}

const char* NativeSeccompArch() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#elif defined(__i386__)
  return "i686";
#elif defined(__arm__)
  return "armv7l";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#elif defined(__loongarch64)
  return "loongarch64";
#elif defined(__mips64)
  return "mips64";
#else
#error "crisp: unknown architecture for seccomp"
#endif
}

bool ParseOciSeccompProfile(const std::string& json, const SeccompConditions& conditions, SeccompProfile* out,
                            std::string* error) {
  return Parse(json, /*docker=*/true, conditions, out, error);
}

bool ParseOciSeccompProfile(const std::string& json, SeccompProfile* out, std::string* error) {
  return Parse(json, /*docker=*/true, SeccompConditions{}, out, error);
}

std::string SeccompProfileToJson(const SeccompProfile& p) {
  Json j = Json::object();
  j["defaultAction"] = SeccompActionName(p.default_action);
  if (p.default_errno_ret) j["defaultErrnoRet"] = *p.default_errno_ret;
  if (!p.architectures.empty()) j["architectures"] = p.architectures;
  if (!p.flags.empty()) j["flags"] = p.flags;
  Json calls = Json::array();
  for (const SeccompSyscall& s : p.syscalls) {
    Json c = {{"names", s.names}, {"action", SeccompActionName(s.action)}};
    if (s.errno_ret) c["errnoRet"] = *s.errno_ret;
    if (!s.args.empty()) {
      Json args = Json::array();
      for (const SeccompArg& a : s.args)
        args.push_back(
            {{"index", a.index}, {"value", a.value}, {"valueTwo", a.value_two}, {"op", SeccompOpName(a.op)}});
      c["args"] = std::move(args);
    }
    calls.push_back(std::move(c));
  }
  j["syscalls"] = std::move(calls);
  return j.dump();
}

bool SeccompProfileFromJson(const std::string& json, SeccompProfile* out, std::string* error) {
  return Parse(json, /*docker=*/false, SeccompConditions{}, out, error);
}

SeccompProfile RuntimeDefaultProfile(const std::vector<std::string>& effective_caps) {
  SeccompConditions conditions;
  conditions.capabilities = effective_caps;
  const HostFacts host = ResolveConditions(conditions);

  SeccompProfile p;
  p.default_action = SeccompAction::kErrno;
  p.default_errno_ret = EPERM;
  if (const HostArch* h = FindHostArch(host.arch)) {
    p.architectures.push_back(h->scmp);
    p.architectures.insert(p.architectures.end(), h->sub.begin(), h->sub.end());
  }
  for (ConditionalRule& r : RuntimeDefaultRules())
    if (RuleApplies(r, host)) p.syscalls.push_back(std::move(r.rule));
  return p;
}

}  // namespace crisp::runtime
