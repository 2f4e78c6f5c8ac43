// Seccomp profiles: parsing (OCI and Docker formats), the wire format, the
// RuntimeDefault contents, and loading real filters into forked children
// (no root needed: the children set no_new_privs first).
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/seccomp_profile.h"
#include "runtime/shim/seccomp_load.h"

namespace crisp::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---- helpers ----

std::vector<std::string> AllNames(const SeccompProfile& p) {
  std::vector<std::string> out;
  for (const SeccompSyscall& s : p.syscalls) out.insert(out.end(), s.names.begin(), s.names.end());
  return out;
}

// Rules that mention `name`.
std::vector<SeccompSyscall> RulesFor(const SeccompProfile& p, const std::string& name) {
  std::vector<SeccompSyscall> out;
  for (const SeccompSyscall& s : p.syscalls)
    if (std::find(s.names.begin(), s.names.end(), name) != s.names.end()) out.push_back(s);
  return out;
}

// True if some rule allows `name` whatever its arguments.
bool AllowedUnconditionally(const SeccompProfile& p, const std::string& name) {
  for (const SeccompSyscall& s : RulesFor(p, name))
    if (s.action == SeccompAction::kAllow && s.args.empty()) return true;
  return false;
}

bool MentionedAtAll(const SeccompProfile& p, const std::string& name) { return !RulesFor(p, name).empty(); }

SeccompProfile MustParse(const std::string& json, const SeccompConditions& c = {}) {
  SeccompProfile p;
  std::string error;
  EXPECT_TRUE(ParseOciSeccompProfile(json, c, &p, &error)) << error;
  return p;
}

std::string ParseError(const std::string& json) {
  SeccompProfile p;
  std::string error;
  EXPECT_FALSE(ParseOciSeccompProfile(json, &p, &error)) << "parsed: " << json;
  return error;
}

// Runs `body` in a fork()ed child. The child reports through its exit code
// (0: every check held) and, for a failure, a message over a pipe, since
// nothing gtest-related may run once a filter is installed.
struct ChildResult {
  int status = 0;
  std::string message;
  bool Ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

ChildResult RunInChild(const std::function<std::string()>& body) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {-1, std::string("pipe2: ") + std::strerror(errno)};
  pid_t pid = fork();
  if (pid < 0) return {-1, std::string("fork: ") + std::strerror(errno)};
  if (pid == 0) {
    close(fds[0]);
    std::string failure = body();
    if (!failure.empty()) (void)!write(fds[1], failure.data(), failure.size());
    _exit(failure.empty() ? 0 : 1);
  }
  close(fds[1]);
  ChildResult r;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.message.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  while (waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
  }
  if (r.message.empty() && !r.Ok()) r.message = "child status " + std::to_string(r.status);
  return r;
}

// In the child: fail with a message naming the check and errno.
#define CHILD_CHECK(cond)                                                                                   \
  do {                                                                                                      \
    int saved_errno_ = errno;                                                                               \
    if (!(cond)) return std::string("check failed: " #cond " (errno ") + std::strerror(saved_errno_) + ")"; \
  } while (0)

// Runs `call` with errno cleared; returns {result, errno}.
std::pair<long, int> Call(const std::function<long()>& call) {
  errno = 0;
  long rc = call();
  return {rc, errno};
}

// "Seccomp:" and "Seccomp_filters:" from /proc/self/status (-1 if absent).
std::pair<int, int> SeccompStatus() {
  std::ifstream in("/proc/self/status");
  std::string line;
  int mode = -1, filters = -1;
  while (std::getline(in, line)) {
    if (line.rfind("Seccomp:\t", 0) == 0) mode = std::atoi(line.c_str() + 9);
    if (line.rfind("Seccomp_filters:\t", 0) == 0) filters = std::atoi(line.c_str() + 17);
  }
  return {mode, filters};
}

std::string LoadOrMessage(const SeccompProfile& p) {
  std::string error;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return std::string("PR_SET_NO_NEW_PRIVS: ") + std::strerror(errno);
  if (!LoadSeccompProfile(p, &error)) return "LoadSeccompProfile: " + error;
  return "";
}

// mount(2) with bad pointers: EFAULT from copying the fs type when seccomp
// lets it through (for root and non-root alike, before any permission
// check), EPERM when the filter denies it.
long MountWithBadPointers() {
  return syscall(SYS_mount, reinterpret_cast<const char*>(1), reinterpret_cast<const char*>(1),
                 reinterpret_cast<const char*>(1), 0UL, nullptr);
}

constexpr int kKeyctlGetKeyringId = 0;      // KEYCTL_GET_KEYRING_ID
constexpr int kKeySpecSessionKeyring = -3;  // KEY_SPEC_SESSION_KEYRING

const std::vector<std::string> kAllCaps = {"CAP_CHOWN",
                                           "CAP_DAC_OVERRIDE",
                                           "CAP_DAC_READ_SEARCH",
                                           "CAP_FOWNER",
                                           "CAP_FSETID",
                                           "CAP_KILL",
                                           "CAP_SETGID",
                                           "CAP_SETUID",
                                           "CAP_SETPCAP",
                                           "CAP_LINUX_IMMUTABLE",
                                           "CAP_NET_BIND_SERVICE",
                                           "CAP_NET_BROADCAST",
                                           "CAP_NET_ADMIN",
                                           "CAP_NET_RAW",
                                           "CAP_IPC_LOCK",
                                           "CAP_IPC_OWNER",
                                           "CAP_SYS_MODULE",
                                           "CAP_SYS_RAWIO",
                                           "CAP_SYS_CHROOT",
                                           "CAP_SYS_PTRACE",
                                           "CAP_SYS_PACCT",
                                           "CAP_SYS_ADMIN",
                                           "CAP_SYS_BOOT",
                                           "CAP_SYS_NICE",
                                           "CAP_SYS_RESOURCE",
                                           "CAP_SYS_TIME",
                                           "CAP_SYS_TTY_CONFIG",
                                           "CAP_MKNOD",
                                           "CAP_LEASE",
                                           "CAP_AUDIT_WRITE",
                                           "CAP_AUDIT_CONTROL",
                                           "CAP_SETFCAP",
                                           "CAP_MAC_OVERRIDE",
                                           "CAP_MAC_ADMIN",
                                           "CAP_SYSLOG",
                                           "CAP_WAKE_ALARM",
                                           "CAP_BLOCK_SUSPEND",
                                           "CAP_AUDIT_READ",
                                           "CAP_PERFMON",
                                           "CAP_BPF",
                                           "CAP_CHECKPOINT_RESTORE"};

// ---- parsing: OCI format ----

TEST(ParseOci, ReadsEveryField) {
  SeccompProfile p = MustParse(R"({
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "listenerPath": "",
    "syscalls": [
      {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
      {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 18446744073709551615, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}]},
      {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
      {"names": ["getppid"], "action": "SCMP_ACT_LOG"}
    ]})");
  EXPECT_EQ(p.default_action, SeccompAction::kErrno);
  EXPECT_EQ(p.default_errno_ret, 1u);
  EXPECT_THAT(p.architectures, ElementsAre("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"));
  EXPECT_THAT(p.flags, ElementsAre("SECCOMP_FILTER_FLAG_LOG"));
  ASSERT_EQ(p.syscalls.size(), 5u);
  EXPECT_THAT(p.syscalls[0].names, ElementsAre("read", "write"));
  EXPECT_EQ(p.syscalls[0].action, SeccompAction::kAllow);
  EXPECT_FALSE(p.syscalls[0].errno_ret.has_value());
  EXPECT_EQ(p.syscalls[1].action, SeccompAction::kErrno);
  EXPECT_EQ(p.syscalls[1].errno_ret, 38u);
  ASSERT_EQ(p.syscalls[2].args.size(), 2u);
  EXPECT_EQ(p.syscalls[2].args[0], (SeccompArg{0, 8, 0, SeccompOp::kEqualTo}));
  EXPECT_EQ(p.syscalls[2].args[1], (SeccompArg{1, UINT64_MAX, 7, SeccompOp::kMaskedEqual}));
  EXPECT_EQ(p.syscalls[3].action, SeccompAction::kKillProcess);
  EXPECT_EQ(p.syscalls[4].action, SeccompAction::kLog);
}

TEST(ParseOci, EveryActionAndOperatorName) {
  for (const char* a : {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                        "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"}) {
    SeccompProfile p = MustParse(std::string(R"({"defaultAction": ")") + a + "\"}");
    EXPECT_STREQ(SeccompActionName(p.default_action), a);
  }
  for (const char* op : {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                         "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}) {
    SeccompProfile p =
        MustParse(std::string(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
        "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 3, "op": ")") +
                  op + "\"}]}]}");
    ASSERT_EQ(p.syscalls.size(), 1u);
    ASSERT_EQ(p.syscalls[0].args.size(), 1u);
    EXPECT_STREQ(SeccompOpName(p.syscalls[0].args[0].op), op);
    EXPECT_EQ(p.syscalls[0].args[0].index, 2u);
  }
}

TEST(ParseOci, ErrorsNameTheField) {
  EXPECT_THAT(ParseError("{\"defaultAction\": "), HasSubstr("invalid JSON"));
  EXPECT_THAT(ParseError("[]"), HasSubstr("must be a JSON object"));
  EXPECT_EQ(ParseError("{}"), "defaultAction: is required");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_NOPE"})"),
            "defaultAction: unknown action \"SCMP_ACT_NOPE\"");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                   {"names": ["write"], "action": "SCMP_ACT_FOO"}]})"),
            "syscalls[1].action: unknown action \"SCMP_ACT_FOO\"");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
      "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                            {"index": 1, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]})"),
            "syscalls[0].args[1].op: unknown operator \"SCMP_CMP_ALMOST\"");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
      "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})"),
            "syscalls[0].args[0].index: 6 is out of range (max 5)");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
      "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]})"),
            "syscalls[0].args[0].value: must not be negative");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
      "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1}]}]})"),
            "syscalls[0].args[0].op: is required");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
      "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"}]}]})"),
            "syscalls[0].args[0].value: must be a non-negative integer");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536})"),
            "defaultErrnoRet: 65536 is out of range (max 65535)");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]})"),
            "syscalls[0].names: must list at least one syscall");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]})"),
            "syscalls[0].action: is required");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": "read", "action": "SCMP_ACT_LOG"}]})"),
            "syscalls[0].names: must be an array of strings");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]})"),
            "architectures[0]: unknown architecture \"SCMP_ARCH_Z80\"");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]})"),
            "flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_FAST\"");
  EXPECT_THAT(ParseError(R"({"defaultAction": "SCMP_ACT_NOTIFY"})"),
              HasSubstr("SCMP_ACT_NOTIFY is not supported"));
}

// ---- parsing: Docker format ----

constexpr char kDockerProfile[] = R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "archMap": [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
  ],
  "syscalls": [
    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
    {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
    {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
    {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
    {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
    {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW",
     "includes": {"caps": ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]}},
    {"names": ["iopl"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}}
  ]
})";

SeccompConditions Host(std::vector<std::string> caps, std::string arch = "x86_64", int major = 5,
                       int minor = 10) {
  SeccompConditions c;
  c.capabilities = std::move(caps);
  c.arch = std::move(arch);
  c.kernel_major = major;
  c.kernel_minor = minor;
  return c;
}

TEST(ParseDocker, NoCapsOnX86_64) {
  SeccompProfile p = MustParse(kDockerProfile, Host({}));
  EXPECT_EQ(p.default_action, SeccompAction::kErrno);
  EXPECT_EQ(p.default_errno_ret, 1u);
  EXPECT_THAT(p.architectures, ElementsAre("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"));
  EXPECT_THAT(AllNames(p), ElementsAre("read", "write", "getpid", "clone", "arch_prctl", "ptrace"));
  ASSERT_EQ(RulesFor(p, "clone").size(), 1u);
  EXPECT_THAT(RulesFor(p, "clone")[0].args,
              ElementsAre(SeccompArg{0, 2114060288, 0, SeccompOp::kMaskedEqual}));
}

TEST(ParseDocker, CapsIncludeAndExclude) {
  EXPECT_THAT(AllNames(MustParse(kDockerProfile, Host({"CAP_SYS_ADMIN"}))),
              ElementsAre("read", "write", "getpid", "mount", "arch_prctl", "ptrace"));
  // Includes need every listed cap; spelling without CAP_ and in lower case is accepted.
  EXPECT_THAT(AllNames(MustParse(kDockerProfile, Host({"CAP_SYS_ADMIN", "sys_ptrace"}))),
              ElementsAre("read", "write", "getpid", "mount", "arch_prctl", "ptrace", "kcmp"));
  EXPECT_THAT(AllNames(MustParse(kDockerProfile, Host({"CAP_SYS_PTRACE"}))),
              ElementsAre("read", "write", "getpid", "clone", "arch_prctl", "ptrace"));
}

TEST(ParseDocker, ArchAndKernelConditions) {
  SeccompProfile p = MustParse(kDockerProfile, Host({}, "aarch64", 4, 4));
  EXPECT_THAT(p.architectures, ElementsAre("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"));
  EXPECT_THAT(AllNames(p), ElementsAre("read", "write", "getpid", "clone", "set_tls", "iopl"));
  // 4.10 >= 4.8 although "4.10" < "4.8" as text.
  EXPECT_THAT(AllNames(MustParse(kDockerProfile, Host({}, "aarch64", 4, 10))),
              ElementsAre("read", "write", "getpid", "clone", "set_tls", "ptrace", "iopl"));
  // An architecture absent from archMap: native only.
  EXPECT_TRUE(MustParse(kDockerProfile, Host({}, "riscv64")).architectures.empty());
}

TEST(ParseDocker, Errors) {
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]})"),
            "archMap: both \"architectures\" and \"archMap\" are set; use one of them");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]})"),
            "syscalls[0]: both \"name\" and \"names\" are set; use \"names\"");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]})"),
            "syscalls[0].includes.minKernel: invalid kernel version \"4\", expected \"<kernel>.<major>\"");
  EXPECT_EQ(ParseError(R"({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                    "excludes": {"caps": "CAP_SYS_ADMIN"}}]})"),
            "syscalls[0].excludes.caps: must be an array of strings");
}

// ---- wire format ----

SeccompProfile EverythingProfile() {
  SeccompProfile p;
  p.default_action = SeccompAction::kTrace;
  p.default_errno_ret = 65535;
  p.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X32"};
  p.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"};
  p.syscalls.push_back({{"read", "write"}, SeccompAction::kAllow, std::nullopt, {}});
  p.syscalls.push_back({{"mkdir"}, SeccompAction::kErrno, 0, {}});
  p.syscalls.push_back(
      {{"personality"},
       SeccompAction::kLog,
       std::nullopt,
       {{0, UINT64_MAX, 0, SeccompOp::kNotEqual}, {5, 1ull << 63, 3, SeccompOp::kMaskedEqual}}});
  p.syscalls.push_back({{"ptrace"}, SeccompAction::kKillThread, std::nullopt, {}});
  return p;
}

TEST(Wire, RoundTripIsExact) {
  for (const SeccompProfile& p :
       {EverythingProfile(), SeccompProfile{}, RuntimeDefaultProfile({}), RuntimeDefaultProfile(kAllCaps)}) {
    const std::string json = SeccompProfileToJson(p);
    SeccompProfile back;
    std::string error;
    ASSERT_TRUE(SeccompProfileFromJson(json, &back, &error)) << error << "\n" << json;
    EXPECT_EQ(back, p) << json;
    EXPECT_EQ(SeccompProfileToJson(back), json);
  }
}

TEST(Wire, IsTheOciObject) {
  SeccompProfile p;
  p.default_action = SeccompAction::kErrno;
  p.default_errno_ret = 1;
  p.syscalls.push_back({{"mkdir"}, SeccompAction::kErrno, 38, {{1, 2, 0, SeccompOp::kGreaterEqual}}});
  EXPECT_EQ(
      SeccompProfileToJson(p),
      R"({"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[{"action":"SCMP_ACT_ERRNO",)"
      R"("args":[{"index":1,"op":"SCMP_CMP_GE","value":2,"valueTwo":0}],"errnoRet":38,"names":["mkdir"]}]})");
}

TEST(Wire, RejectsDockerFieldsAndGarbage) {
  SeccompProfile p;
  std::string error;
  EXPECT_FALSE(SeccompProfileFromJson(R"({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                    "includes": {"caps": ["CAP_SYS_ADMIN"]}}]})",
                                      &p, &error));
  EXPECT_THAT(error, HasSubstr("syscalls[0]: Docker profile fields"));
  EXPECT_FALSE(SeccompProfileFromJson(R"({"defaultAction": "SCMP_ACT_ERRNO", "archMap": []})", &p, &error));
  EXPECT_THAT(error, HasSubstr("archMap"));
  EXPECT_FALSE(SeccompProfileFromJson("not json", &p, &error));
  EXPECT_THAT(error, HasSubstr("invalid JSON"));
}

// ---- RuntimeDefault contents ----

TEST(RuntimeDefault, DeniesByDefaultWithEperm) {
  SeccompProfile p = RuntimeDefaultProfile({});
  EXPECT_EQ(p.default_action, SeccompAction::kErrno);
  EXPECT_EQ(p.default_errno_ret, EPERM);
#if defined(__x86_64__)
  EXPECT_THAT(p.architectures, ElementsAre("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"));
#endif
  EXPECT_GT(AllNames(p).size(), 300u);
}

TEST(RuntimeDefault, OrdinarySyscallsAllowed) {
  SeccompProfile p = RuntimeDefaultProfile({});
  for (const char* name : {"read", "write", "execve", "openat", "mmap", "futex", "exit_group", "rt_sigreturn",
                           "getpid", "wait4", "epoll_pwait", "setuid", "capset", "prctl"})
    EXPECT_TRUE(AllowedUnconditionally(p, name)) << name;
  // io_uring bypasses seccomp for the operations it performs: left out, as moby does.
  EXPECT_FALSE(MentionedAtAll(p, "io_uring_setup"));
#if defined(__x86_64__)
  EXPECT_TRUE(AllowedUnconditionally(p, "arch_prctl"));
  EXPECT_TRUE(AllowedUnconditionally(p, "modify_ldt"));
  EXPECT_FALSE(MentionedAtAll(p, "set_tls"));
#endif
}

TEST(RuntimeDefault, DangerousSyscallsNotAllowedWithoutCaps) {
  SeccompProfile p = RuntimeDefaultProfile({});
  for (const char* name : {"mount",   "umount2",     "unshare",     "setns",           "keyctl",
                           "add_key", "request_key", "kexec_load",  "kexec_file_load", "reboot",
                           "chroot",  "init_module", "bpf",         "perf_event_open", "open_by_handle_at",
                           "swapon",  "pivot_root",  "userfaultfd", "clock_settime",   "iopl",
                           "kcmp",    "syslog",      "acct",        "vhangup",         "mbind",
                           "fsopen",  "clone3"}) {
    EXPECT_FALSE(AllowedUnconditionally(p, name)) << name;
  }
  // Without a rule they hit the default ERRNO(EPERM); only clone/clone3 and the
  // arg-filtered calls have rules of their own.
  for (const char* name : {"mount", "unshare", "keyctl", "add_key", "kexec_load"})
    EXPECT_FALSE(MentionedAtAll(p, name)) << name;
}

TEST(RuntimeDefault, ArgumentFilters) {
  SeccompProfile p = RuntimeDefaultProfile({});
  std::vector<uint64_t> personas;
  for (const SeccompSyscall& s : RulesFor(p, "personality")) {
    ASSERT_EQ(s.action, SeccompAction::kAllow);
    ASSERT_EQ(s.args.size(), 1u);
    EXPECT_EQ(s.args[0].index, 0u);
    EXPECT_EQ(s.args[0].op, SeccompOp::kEqualTo);
    personas.push_back(s.args[0].value);
  }
  EXPECT_THAT(personas, ElementsAre(0x0, 0x0008, 0x20000, 0x20008, 0xffffffff));

  const uint64_t ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                            CLONE_NEWNET | CLONE_NEWCGROUP;
  std::vector<SeccompSyscall> clone = RulesFor(p, "clone");
#if !defined(__s390x__)
  ASSERT_EQ(clone.size(), 1u);
  EXPECT_EQ(clone[0].action, SeccompAction::kAllow);
  EXPECT_THAT(clone[0].args, ElementsAre(SeccompArg{0, ns_flags, 0, SeccompOp::kMaskedEqual}));
#endif
  std::vector<SeccompSyscall> clone3 = RulesFor(p, "clone3");
  ASSERT_EQ(clone3.size(), 1u);
  EXPECT_EQ(clone3[0].action, SeccompAction::kErrno);
  EXPECT_EQ(clone3[0].errno_ret, ENOSYS);

  std::vector<SeccompSyscall> socket = RulesFor(p, "socket");
  ASSERT_EQ(socket.size(), 3u);
  EXPECT_THAT(socket[0].args, ElementsAre(SeccompArg{0, AF_ALG, 0, SeccompOp::kLessThan}));
  EXPECT_THAT(socket[1].args, ElementsAre(SeccompArg{0, AF_ALG + 1, 0, SeccompOp::kEqualTo}));
  EXPECT_THAT(socket[2].args, ElementsAre(SeccompArg{0, AF_VSOCK, 0, SeccompOp::kGreaterThan}));
}

TEST(RuntimeDefault, SysAdminUnlocksMountAndNamespaces) {
  SeccompProfile p = RuntimeDefaultProfile({"CAP_SYS_ADMIN"});
  for (const char* name : {"mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf", "sethostname"})
    EXPECT_TRUE(AllowedUnconditionally(p, name)) << name;
  // The namespace-flag filter and the clone3 ENOSYS rule are gone.
  for (const SeccompSyscall& s : RulesFor(p, "clone")) EXPECT_TRUE(s.args.empty());
  for (const SeccompSyscall& s : RulesFor(p, "clone3")) EXPECT_EQ(s.action, SeccompAction::kAllow);
  // Still never: keyrings and kexec are not namespaced.
  for (const char* name : {"keyctl", "add_key", "kexec_load", "reboot"})
    EXPECT_FALSE(AllowedUnconditionally(p, name)) << name;
}

TEST(RuntimeDefault, EachCapabilityUnlocksItsGroup) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> groups = {
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_CHROOT", {"chroot"}},
      {"CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime"}},
      {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
      {"CAP_SYS_NICE", {"mbind", "set_mempolicy", "get_mempolicy"}},
      {"CAP_SYSLOG", {"syslog"}},
      {"CAP_BPF", {"bpf"}},
      {"CAP_PERFMON", {"perf_event_open"}},
      {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
  };
  const SeccompProfile none = RuntimeDefaultProfile({});
  for (const auto& [cap, names] : groups) {
    const SeccompProfile with = RuntimeDefaultProfile({cap});
    for (const std::string& name : names) {
      EXPECT_FALSE(AllowedUnconditionally(none, name)) << name;
      EXPECT_TRUE(AllowedUnconditionally(with, name)) << cap << " should allow " << name;
    }
    // A capability unlocks its own group only.
    EXPECT_FALSE(AllowedUnconditionally(with, "mount")) << cap;
    EXPECT_FALSE(AllowedUnconditionally(with, "keyctl")) << cap;
  }
}

// ---- loading into the kernel ----

TEST(Load, RuntimeDefaultFiltersTheRealKernel) {
  ChildResult r = RunInChild([]() -> std::string {
    auto [mode_before, filters_before] = SeccompStatus();
    // Baselines, so that the checks below can only pass because of our filter
    // (unless the test itself already runs under one, e.g. in a container).
    if (mode_before == 0) {
      auto [mrc, merr] = Call(MountWithBadPointers);
      CHILD_CHECK(mrc == -1 && merr == EFAULT);
      auto [krc, kerr] =
          Call([] { return syscall(SYS_keyctl, kKeyctlGetKeyringId, kKeySpecSessionKeyring, 0); });
      CHILD_CHECK(kerr != EPERM);
    }

    std::string failure = LoadOrMessage(RuntimeDefaultProfile({}));
    if (!failure.empty()) return failure;

    auto [mode, filters] = SeccompStatus();
    CHILD_CHECK(mode == 2);
    CHILD_CHECK(filters_before < 0 || filters == filters_before + 1);

    auto [k2rc, k2err] =
        Call([] { return syscall(SYS_keyctl, kKeyctlGetKeyringId, kKeySpecSessionKeyring, 0); });
    CHILD_CHECK(k2rc == -1 && k2err == EPERM);
    auto [urc, uerr] = Call([] { return static_cast<long>(unshare(CLONE_NEWUSER)); });
    CHILD_CHECK(urc == -1 && uerr == EPERM);
    auto [m2rc, m2err] = Call(MountWithBadPointers);
    CHILD_CHECK(m2rc == -1 && m2err == EPERM);
    auto [crc, cerr] = Call([] { return syscall(SYS_clone3, nullptr, 0); });
    CHILD_CHECK(crc == -1 && cerr == ENOSYS);
    // clone with a namespace flag: denied; a plain fork: fine.
    auto [nrc, nerr] = Call([] {
      long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
      if (rc == 0) _exit(0);
      return rc;
    });
    CHILD_CHECK(nrc == -1 && nerr == EPERM);
    pid_t child = fork();
    if (child == 0) _exit(7);
    int status = 0;
    CHILD_CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                WEXITSTATUS(status) == 7);
    // Threads: glibc tries clone3, gets ENOSYS and falls back to clone.
    pthread_t thread;
    CHILD_CHECK(pthread_create(
                    &thread, nullptr, [](void*) -> void* { return nullptr; }, nullptr) == 0);
    CHILD_CHECK(pthread_join(thread, nullptr) == 0);

    CHILD_CHECK(getpid() > 0 && syscall(SYS_getpid) == getpid());
    auto [prc, perr] = Call([] { return static_cast<long>(personality(0xffffffff)); });
    CHILD_CHECK(prc != -1);
    auto [p2rc, p2err] = Call([] { return static_cast<long>(personality(PER_BSD)); });
    CHILD_CHECK(p2rc == -1 && p2err == EPERM);
    int unix_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHILD_CHECK(unix_fd >= 0);
    close(unix_fd);
    auto [src, serr] = Call([] { return static_cast<long>(socket(AF_VSOCK, SOCK_STREAM, 0)); });
    CHILD_CHECK(src == -1 && serr == EPERM);
    auto [arc, aerr] = Call([] { return static_cast<long>(socket(AF_ALG, SOCK_SEQPACKET, 0)); });
    CHILD_CHECK(arc == -1 && aerr == EPERM);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

TEST(Load, RuntimeDefaultWithAllCapsLetsMountThrough) {
  ChildResult r = RunInChild([]() -> std::string {
    std::string failure = LoadOrMessage(RuntimeDefaultProfile(kAllCaps));
    if (!failure.empty()) return failure;
    auto [mrc, merr] = Call(MountWithBadPointers);
    CHILD_CHECK(mrc == -1 && merr == EFAULT);
    auto [crc, cerr] = Call([] { return syscall(SYS_clone3, nullptr, 0); });
    CHILD_CHECK(crc == -1 && cerr == EINVAL);  // reached the kernel: size 0 is invalid
    auto [krc, kerr] =
        Call([] { return syscall(SYS_keyctl, kKeyctlGetKeyringId, kKeySpecSessionKeyring, 0); });
    CHILD_CHECK(krc == -1 && kerr == EPERM);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

TEST(Load, LocalhostProfileErrnoRet) {
  char dir_template[] = "/tmp/crisp-seccomp-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  SeccompProfile p;
  std::string error;
  ASSERT_TRUE(ParseOciSeccompProfile(R"({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["mkdir", "crisp_no_such_syscall"],
                    "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})",
                                     &p, &error))
      << error;
  ChildResult r = RunInChild([&]() -> std::string {
    std::string failure = LoadOrMessage(p);
    if (!failure.empty()) return failure;
    const std::string a = dir + "/a", b = dir + "/b";
    auto [rc, err] = Call([&] { return syscall(SYS_mkdir, a.c_str(), 0755); });
    CHILD_CHECK(rc == -1 && err == ENOSYS);
    struct stat st;
    CHILD_CHECK(stat(a.c_str(), &st) != 0);
    // Only mkdir is filtered, not its *at sibling.
    CHILD_CHECK(syscall(SYS_mkdirat, AT_FDCWD, b.c_str(), 0755) == 0);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
  struct stat st;
  EXPECT_NE(stat((dir + "/a").c_str(), &st), 0);
  EXPECT_EQ(stat((dir + "/b").c_str(), &st), 0);
  rmdir((dir + "/b").c_str());
  rmdir(dir.c_str());
}

TEST(Load, ErrnoWithoutErrnoRetIsEperm) {
  SeccompProfile p;
  p.default_action = SeccompAction::kAllow;
  p.syscalls.push_back({{"getppid"}, SeccompAction::kErrno, std::nullopt, {}});
  ChildResult r = RunInChild([&]() -> std::string {
    std::string failure = LoadOrMessage(p);
    if (!failure.empty()) return failure;
    auto [rc, err] = Call([] { return syscall(SYS_getppid); });
    CHILD_CHECK(rc == -1 && err == EPERM);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

TEST(Load, KillProcessAction) {
  SeccompProfile p;
  p.default_action = SeccompAction::kAllow;
  p.syscalls.push_back({{"getppid"}, SeccompAction::kKillProcess, std::nullopt, {}});
  ChildResult r = RunInChild([&]() -> std::string {
    std::string failure = LoadOrMessage(p);
    if (!failure.empty()) return failure;
    syscall(SYS_getppid);
    return "getppid survived SCMP_ACT_KILL_PROCESS";
  });
  EXPECT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSYS) << r.status << " " << r.message;
}

TEST(Load, RepeatedArgumentIndexMeansOr) {
  // getpriority(which, who): deny which == PRIO_PROCESS or which == PRIO_PGRP;
  // AND'ed (libseccomp's own reading) it would never match.
  SeccompProfile p = MustParse(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
       "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
      {"names": ["setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 34,
       "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": 19, "op": "SCMP_CMP_EQ"}]}]})");
  ChildResult r = RunInChild([&]() -> std::string {
    std::string failure = LoadOrMessage(p);
    if (!failure.empty()) return failure;
    auto [r0, e0] = Call([] { return syscall(SYS_getpriority, PRIO_PROCESS, 0); });
    CHILD_CHECK(r0 == -1 && e0 == 33);
    auto [r1, e1] = Call([] { return syscall(SYS_getpriority, PRIO_PGRP, 0); });
    CHILD_CHECK(r1 == -1 && e1 == 33);
    auto [r2, e2] = Call([] { return syscall(SYS_getpriority, PRIO_USER, 0); });
    CHILD_CHECK(r2 >= 0);
    // Different indexes are AND'ed: only (PRIO_PROCESS, *, 19) is denied.
    auto [r3, e3] = Call([] { return syscall(SYS_setpriority, PRIO_PROCESS, 0, 19); });
    CHILD_CHECK(r3 == -1 && e3 == 34);
    auto [r5, e5] = Call([] { return syscall(SYS_setpriority, PRIO_PGRP, 0, 19); });
    CHILD_CHECK(!(r5 == -1 && e5 == 34));
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

TEST(Load, FlagsAndRedundantRules) {
  // A rule repeating the default action is skipped (libseccomp would refuse
  // it); the LOG and SPEC_ALLOW flags are accepted by this kernel.
  SeccompProfile p;
  p.default_action = SeccompAction::kAllow;
  p.flags = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"};
  p.syscalls.push_back({{"getpid"}, SeccompAction::kAllow, std::nullopt, {}});
  p.syscalls.push_back({{"getppid"}, SeccompAction::kErrno, 5, {}});
  ChildResult r = RunInChild([&]() -> std::string {
    std::string failure = LoadOrMessage(p);
    if (!failure.empty()) return failure;
    CHILD_CHECK(SeccompStatus().first == 2);
    auto [rc, err] = Call([] { return syscall(SYS_getppid); });
    CHILD_CHECK(rc == -1 && err == 5);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

TEST(Load, WithoutNoNewPrivsOrCapSysAdminFailsCleanly) {
  ChildResult r = RunInChild([]() -> std::string {
    const auto before = SeccompStatus();
    // Drop every capability (root or not) and do not set no_new_privs.
    __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    CHILD_CHECK(syscall(SYS_capset, &header, data) == 0);
    std::string error;
    CHILD_CHECK(!LoadSeccompProfile(RuntimeDefaultProfile({}), &error));
    CHILD_CHECK(error == "seccomp_load: Permission denied");
    CHILD_CHECK(SeccompStatus() == before);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

TEST(Load, RejectsWhatLibseccompCannotDo) {
  ChildResult r = RunInChild([]() -> std::string {
    const auto before = SeccompStatus();
    CHILD_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    SeccompProfile bad_arch;
    bad_arch.default_action = SeccompAction::kAllow;
    bad_arch.architectures = {"SCMP_ARCH_Z80"};
    std::string error;
    CHILD_CHECK(!LoadSeccompProfile(bad_arch, &error));
    CHILD_CHECK(error == "seccomp: architecture SCMP_ARCH_Z80 is not supported by this libseccomp");
    SeccompProfile bad_flag;
    bad_flag.default_action = SeccompAction::kAllow;
    bad_flag.flags = {"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"};
    CHILD_CHECK(!LoadSeccompProfile(bad_flag, &error));
    CHILD_CHECK(error.find("WAIT_KILLABLE_RECV is not supported") != std::string::npos);
    SeccompProfile bad_index;
    bad_index.default_action = SeccompAction::kAllow;
    bad_index.syscalls.push_back({{"read"}, SeccompAction::kErrno, 1, {{6, 0, 0, SeccompOp::kEqualTo}}});
    CHILD_CHECK(!LoadSeccompProfile(bad_index, &error));
    CHILD_CHECK(error.find("adding rule SCMP_ACT_ERRNO for read") != std::string::npos);
    // Nothing was installed by the failed attempts.
    CHILD_CHECK(SeccompStatus() == before);
    return "";
  });
  EXPECT_TRUE(r.Ok()) << r.message;
}

}  // namespace
}  // namespace crisp::runtime
