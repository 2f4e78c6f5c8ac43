// Real kernel: pause processes in new namespaces, namespace pins, /dev/shm,
// v1/v2 cgroups. Root only. Every test kills what it started and leaves no
// mounts, processes or cgroups behind.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/proc.h"
#include "common/reaper.h"
#include "gtest/gtest.h"
#include "runtime/cgroups.h"
#include "runtime/namespaces.h"
#include "runtime/pause.h"

namespace crisp::runtime {
namespace {

class Env : public ::testing::Environment {
 public:
  // Orphaned pause processes are reparented to us and must be reaped by us:
  // PID 1 on the test machines does not reap.
  void SetUp() override {
    if (::geteuid() == 0) {
      ASSERT_TRUE(Reaper::InstallSubreaper().ok());
    }
  }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new Env);

std::string NsLink(int pid, const char* type) {
  char buf[128] = {};
  std::string p = pid ? absl::StrCat("/proc/", pid, "/ns/", type) : absl::StrCat("/proc/self/ns/", type);
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : "";
}

std::string StatusField(int pid, const std::string& key) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

// Live (non-zombie) processes whose parent is this test process: after
// StartPause only the pause process (reparented to us) may be there.
std::vector<int> OurChildren() {
  std::vector<int> out;
  for (const auto& d : ListDir("/proc").value_or(std::vector<std::string>{})) {
    if (d.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = ReadFile("/proc/" + d + "/stat");
    if (!stat.ok()) continue;
    // "pid (comm) state ppid ...": comm may contain spaces, so start after ')'.
    std::vector<std::string> f = absl::StrSplit(stat->substr(stat->rfind(')') + 2), ' ');
    if (f.size() > 1 && f[0] != "Z" && f[1] == std::to_string(::getpid())) out.push_back(std::stoi(d));
  }
  return out;
}

// Waits briefly for our children to be exactly `want` (zombies are reaped
// asynchronously by the reaper thread).
std::vector<int> WaitChildren(const std::vector<int>& want) {
  std::vector<int> got;
  for (int i = 0; i < 100; ++i) {
    got = OurChildren();
    if (got == want) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return got;
}

// Runs `fn` in a thread that has joined the namespace file `path`, which
// leaves the rest of the test process where it was.
template <typename F>
auto InNamespace(const std::string& path, int nstype, F fn) {
  decltype(fn()) result{};
  std::thread t([&] {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::unshare(CLONE_FS) != 0 || ::setns(fd, nstype) != 0) return;
    ::close(fd);
    result = fn();
  });
  t.join();
  return result;
}

// Runs a command to completion through the Reaper and returns its stdout.
std::string RunCommand(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "<pipe failed>";
  auto pid = Reaper::Spawn({.argv = argv, .stdout_fd = p[1]});
  ::close(p[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(p[0]);
  if (!pid.ok()) return "<spawn failed>";
  auto st = Reaper::Wait(*pid, absl::Seconds(10));
  if (!st.ok() || *st != 0) return "<command failed>";
  return out;
}

class PauseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  }
  void TearDown() override {
    for (auto& p : started_) EXPECT_TRUE(KillProcess(p, absl::Seconds(5)).ok());
    if (::geteuid() == 0) {
      EXPECT_TRUE(WaitChildren({}).empty()) << "processes left behind";
    }
  }
  ProcessId Start(const PausePlan& plan) {
    auto p = StartPause(CRISP_SHIM_PATH, plan);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    started_.push_back(*p);
    return *p;
  }
  std::vector<ProcessId> started_;
};

TEST_F(PauseTest, NewNamespacesHostnameNoCapabilities) {
  PausePlan plan;
  plan.hostname = "pod-host";
  plan.new_pid = true;
  ProcessId p = Start(plan);
  ASSERT_TRUE(ProcessAlive(p));
  EXPECT_EQ(WaitChildren({p.pid}), std::vector<int>{p.pid}) << "the shim exited; pause was reparented to us";
  for (const char* t : {"net", "ipc", "uts", "pid", "mnt"}) EXPECT_NE(NsLink(p.pid, t), NsLink(0, t)) << t;
  EXPECT_EQ(StatusField(p.pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "CapPrm"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "CapInh"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "CapBnd"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "CapAmb"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "NoNewPrivs"), "1");
  EXPECT_EQ(StatusField(p.pid, "Name"), "crisp-pause");
  EXPECT_EQ(StatusField(p.pid, "NSpid"), absl::StrCat(p.pid, "\t1")) << "PID 1 in its own PID namespace";
  EXPECT_NE(::getsid(p.pid), ::getsid(0)) << "in the shim's own session, not ours";

  std::string host = InNamespace(absl::StrCat("/proc/", p.pid, "/ns/uts"), CLONE_NEWUTS, [] {
    char b[256] = {};
    ::gethostname(b, sizeof b - 1);
    return std::string(b);
  });
  EXPECT_EQ(host, "pod-host");
  EXPECT_EQ(RunCommand({"/usr/bin/nsenter", "--uts", "--target", std::to_string(p.pid), "hostname"}),
            "pod-host\n");
  char ours[256] = {};
  ::gethostname(ours, sizeof ours - 1);
  EXPECT_NE(std::string(ours), "pod-host");

  // Its root is an empty, read-only tmpfs, the only mount in its namespace.
  auto names = ListDir(absl::StrCat("/proc/", p.pid, "/root"));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(names->empty());
  std::string mi = ReadFile(absl::StrCat("/proc/", p.pid, "/mountinfo")).value_or("");
  EXPECT_EQ(std::count(mi.begin(), mi.end(), '\n'), 1) << mi;
  EXPECT_NE(mi.find(" / / ro,"), std::string::npos) << mi;
  EXPECT_NE(mi.find(" - tmpfs "), std::string::npos) << mi;
  // Only stdio is open, and it is /dev/null.
  auto fds = ListDir(absl::StrCat("/proc/", p.pid, "/fd"));
  ASSERT_TRUE(fds.ok());
  std::sort(fds->begin(), fds->end());
  EXPECT_EQ(*fds, (std::vector<std::string>{"0", "1", "2"}));
  // (Its path reads "/null": /dev is outside its root now. Check the device.)
  struct stat fd1;
  ASSERT_EQ(::stat(absl::StrCat("/proc/", p.pid, "/fd/1").c_str(), &fd1), 0);
  EXPECT_TRUE(S_ISCHR(fd1.st_mode));
  EXPECT_EQ(fd1.st_rdev, makedev(1, 3));
}

TEST_F(PauseTest, SigtermStopsIt) {
  PausePlan plan;
  plan.new_pid = true;  // PID 1 ignores signals it has no handler for
  ProcessId p = Start(plan);
  ASSERT_TRUE(SignalProcess(p, SIGTERM).ok());
  EXPECT_TRUE(WaitProcessGone(p, absl::Seconds(5)).ok());
  started_.clear();
}

TEST_F(PauseTest, HostNamespacesAreShared) {
  PausePlan plan;
  plan.new_net = plan.new_ipc = plan.new_uts = false;
  ProcessId p = Start(plan);
  EXPECT_EQ(NsLink(p.pid, "net"), NsLink(0, "net"));
  EXPECT_EQ(NsLink(p.pid, "ipc"), NsLink(0, "ipc"));
  EXPECT_EQ(NsLink(p.pid, "uts"), NsLink(0, "uts"));
  EXPECT_EQ(NsLink(p.pid, "pid"), NsLink(0, "pid"));
  EXPECT_NE(NsLink(p.pid, "mnt"), NsLink(0, "mnt")) << "its empty root is private";
  EXPECT_EQ(StatusField(p.pid, "NSpid"), std::to_string(p.pid));
}

TEST_F(PauseTest, SysctlsApplyInsideOnly) {
  auto before = ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  ASSERT_TRUE(before.ok());
  ASSERT_NE(*before, "0\n") << "the host value must differ for this test to mean anything";
  PausePlan plan;
  plan.sysctls = {{"net/ipv4/ip_unprivileged_port_start", "0"}, {"kernel/shm_rmid_forced", "1"}};
  ProcessId p = Start(plan);
  std::string ns = absl::StrCat("/proc/", p.pid, "/ns/");
  // /proc/sys/net shows the reader's network namespace.
  EXPECT_EQ(
      InNamespace(ns + "net", CLONE_NEWNET,
                  [] { return ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").value_or("?"); }),
      "0\n");
  EXPECT_EQ(RunCommand({"/usr/bin/nsenter", "--net=" + ns + "net", "cat",
                        "/proc/sys/net/ipv4/ip_unprivileged_port_start"}),
            "0\n");
  EXPECT_EQ(InNamespace(ns + "ipc", CLONE_NEWIPC,
                        [] { return ReadFile("/proc/sys/kernel/shm_rmid_forced").value_or("?"); }),
            "1\n");
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").value_or(""), *before)
      << "host untouched";
}

TEST_F(PauseTest, BadSysctlFailsCleanly) {
  PausePlan plan;
  plan.sysctls = {{"net/ipv4/no_such_sysctl", "1"}};
  auto p = StartPause(CRISP_SHIM_PATH, plan);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(),
            "pause: sysctl net/ipv4/no_such_sysctl=1: No such file or directory (errno 2)");
  EXPECT_TRUE(WaitChildren({}).empty()) << "neither the shim nor the half-made pause process is left";

  plan.sysctls = {{"net/ipv4/ip_unprivileged_port_start", "not-a-number"}};
  p = StartPause(CRISP_SHIM_PATH, plan);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("(errno 22)"), std::string::npos) << p.status();
}

TEST_F(PauseTest, BadHostnameFailsCleanly) {
  PausePlan plan;
  plan.hostname = std::string(100, 'h');  // longer than HOST_NAME_MAX
  auto p = StartPause(CRISP_SHIM_PATH, plan);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(), "pause: sethostname: Invalid argument (errno 22)");
}

TEST_F(PauseTest, MissingShimIsAnError) {
  auto p = StartPause("/nonexistent/crisp-shim", PausePlan{});
  EXPECT_FALSE(p.ok());
}

TEST_F(PauseTest, ShimExitingWithoutReport) {
  // `false pause` exits 1 at once, reporting nothing.
  auto p = StartPause("/bin/false", PausePlan{});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(p.status().message().find("without a report"), std::string::npos) << p.status();
}

TEST_F(PauseTest, SilentShimTimesOutAndIsKilled) {
  char script[] = "/tmp/crisp-silent-shim.XXXXXX";
  int fd = ::mkstemp(script);
  ASSERT_GE(fd, 0);
  absl::Cleanup rm = [&] { ::unlink(script); };
  const std::string body = "#!/bin/sh\nexec sleep 60\n";
  ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  ::fchmod(fd, 0755);
  ::close(fd);
  absl::Time t0 = absl::Now();
  auto p = StartPause(script, PausePlan{});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kDeadlineExceeded) << p.status();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(20));
  EXPECT_TRUE(WaitChildren({}).empty()) << "the silent shim was killed";
}

class TempDirTest : public PauseTest {
 protected:
  void SetUp() override {
    PauseTest::SetUp();
    if (IsSkipped()) return;
    char t[] = "/tmp/crisp-rt-it.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    dir_ = t;
  }
  void TearDown() override {
    PauseTest::TearDown();
    if (dir_.empty()) return;
    // Even after a failed assertion: no mount may outlive the test.
    EXPECT_TRUE(UnpinNamespaces(JoinPath(dir_, "ns")).ok());
    EXPECT_TRUE(UnmountAndRemove(JoinPath(dir_, "shm")).ok());
    EXPECT_TRUE(RemoveAll(dir_).ok());
  }
  std::string dir_;
};

TEST_F(TempDirTest, PinnedNamespacesOutliveThePauseProcess) {
  PausePlan plan;
  plan.new_pid = true;
  ProcessId p = Start(plan);
  std::string ns = JoinPath(dir_, "ns");
  ASSERT_TRUE(PinNamespaces(p.pid, {"net", "ipc", "uts", "pid"}, ns).ok());
  std::string netns_id = NsLink(p.pid, "net");
  for (const char* t : {"net", "ipc", "uts", "pid"}) EXPECT_TRUE(IsNamespacePin(JoinPath(ns, t))) << t;
  EXPECT_FALSE(IsNamespacePin(dir_));
  EXPECT_FALSE(IsNamespacePin(JoinPath(dir_, "nope")));
  ASSERT_TRUE(KillProcess(p, absl::Seconds(5)).ok());
  started_.clear();
  // The namespace is still there, reachable through the pin, and joinable.
  struct stat st;
  ASSERT_EQ(::stat(JoinPath(ns, "net").c_str(), &st), 0);
  EXPECT_EQ(absl::StrCat("net:[", st.st_ino, "]"), netns_id);
  EXPECT_EQ(InNamespace(JoinPath(ns, "net"), CLONE_NEWNET,
                        [] {
                          char b[64] = {};
                          return ::readlink("/proc/thread-self/ns/net", b, sizeof b - 1) > 0 ? std::string(b)
                                                                                             : "";
                        }),
            netns_id);
  ASSERT_TRUE(UnpinNamespaces(ns).ok());
  EXPECT_FALSE(PathExists(ns));
  EXPECT_EQ(ReadFile("/proc/self/mountinfo").value_or("").find(ns), std::string::npos) << "no mount left";
  EXPECT_TRUE(UnpinNamespaces(ns).ok()) << "idempotent";
}

TEST_F(TempDirTest, PinFailureUndoes) {
  ProcessId p = Start(PausePlan{});
  std::string ns = JoinPath(dir_, "ns");
  auto s = PinNamespaces(p.pid, {"net", "bogus"}, ns);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_FALSE(PathExists(ns)) << "the pin dir it created is gone too";
  EXPECT_EQ(PinNamespaces(p.pid, {"../net"}, ns).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile("/proc/self/mountinfo").value_or("").find(ns), std::string::npos);
}

TEST_F(TempDirTest, ShmMount) {
  std::string shm = JoinPath(dir_, "shm");
  ASSERT_TRUE(MountShm(shm, 8 << 20).ok());
  struct statfs fs;
  ASSERT_EQ(::statfs(shm.c_str(), &fs), 0);
  EXPECT_EQ(static_cast<uint64_t>(fs.f_blocks) * fs.f_bsize, 8u << 20);
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(shm.c_str(), &vfs), 0);
  EXPECT_EQ(vfs.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC), ST_NOSUID | ST_NODEV | ST_NOEXEC);
  struct stat st;
  ASSERT_EQ(::stat(shm.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  std::string mi = ReadFile("/proc/self/mountinfo").value_or("");
  size_t at = mi.find(" " + shm + " ");
  ASSERT_NE(at, std::string::npos);
  std::string line = mi.substr(at, mi.find('\n', at) - at);
  EXPECT_NE(line.find("size=8192k"), std::string::npos) << line;
  ASSERT_TRUE(UnmountAndRemove(shm).ok());
  EXPECT_FALSE(PathExists(shm));
  EXPECT_EQ(ReadFile("/proc/self/mountinfo").value_or("").find(shm), std::string::npos);
  EXPECT_TRUE(UnmountAndRemove(shm).ok()) << "idempotent";
  ASSERT_TRUE(MkdirAll(shm).ok());
  EXPECT_TRUE(UnmountAndRemove(shm).ok()) << "a plain directory is just removed";
  EXPECT_FALSE(PathExists(shm));
}

TEST_F(PauseTest, RealCgroupLifecycle) {
  auto layout = CgroupLayout::Detect();
  ASSERT_TRUE(layout.ok()) << layout.status();
  CgroupManager m(*layout, NewFsCgroupWriter());
  const std::string parent = "/crisp-it-" + RandomHex(4);
  const std::string path = parent + "/pod";
  absl::Cleanup cleanup = [&] {
    for (auto& p : started_) (void)KillProcess(p, absl::Seconds(5));
    started_.clear();
    for (int i = 0; i < 50 && !m.Destroy(path).ok(); ++i) absl::SleepFor(absl::Milliseconds(20));
    (void)m.Destroy(parent);
  };
  CgroupResources res;
  res.memory_limit = 64 << 20;
  res.memory_swap_limit = 128 << 20;
  res.cpu_shares = 512;
  res.cpu_quota = 50000;
  res.cpu_period = 100000;
  res.pids_limit = 100;
  ASSERT_TRUE(m.Create(path, res).ok());
  EXPECT_TRUE(m.Exists(path));
  ProcessId p = Start(PausePlan{});
  ASSERT_TRUE(m.AddProcess(path, p.pid).ok());
  std::string cg = ReadFile(absl::StrCat("/proc/", p.pid, "/cgroup")).value_or("");
  if (layout->v2) {
    EXPECT_NE(cg.find("0::" + path + "\n"), std::string::npos) << cg;
  } else {
    // In every hierarchy, including cpuset (seeded, or the write would fail) and name=systemd.
    for (const auto& [ctrl, root] : layout->v1_roots)
      EXPECT_NE(cg.find(ctrl + ":" + path + "\n"), std::string::npos) << ctrl << "\n" << cg;
    auto v1 = [&](const std::string& ctrl, const std::string& file) {
      return ReadFile(JoinPath(layout->v1_roots.at(ctrl), path + "/" + file)).value_or("<missing>");
    };
    EXPECT_EQ(v1("memory", "memory.limit_in_bytes"), absl::StrCat(64 << 20, "\n"));
    if (PathExists(JoinPath(layout->v1_roots.at("memory"), path + "/memory.memsw.limit_in_bytes"))) {
      EXPECT_EQ(v1("memory", "memory.memsw.limit_in_bytes"), absl::StrCat(128 << 20, "\n"));
    }
    EXPECT_EQ(v1("cpu", "cpu.shares"), "512\n");
    EXPECT_EQ(v1("cpu", "cpu.cfs_quota_us"), "50000\n");
    EXPECT_EQ(v1("pids", "pids.max"), "100\n");
    EXPECT_EQ(v1("cpuset", "cpuset.cpus"),
              ReadFile(JoinPath(layout->v1_roots.at("cpuset"), "cpuset.cpus")).value_or("?"));

    // Lower, then lift both limits: memsw must be moved on the right side of memory each time.
    res = {};
    res.memory_limit = 32 << 20;
    res.memory_swap_limit = 32 << 20;
    ASSERT_TRUE(m.Update(path, res).ok());
    EXPECT_EQ(v1("memory", "memory.limit_in_bytes"), absl::StrCat(32 << 20, "\n"));
    res = {};
    res.memory_limit = 0;
    res.cpu_quota = -1;
    ASSERT_TRUE(m.Update(path, res).ok());
    EXPECT_EQ(v1("memory", "memory.limit_in_bytes"), "9223372036854771712\n");
    EXPECT_EQ(v1("cpu", "cpu.cfs_quota_us"), "-1\n");
  }
  EXPECT_EQ(m.Destroy(path).code(), absl::StatusCode::kFailedPrecondition)
      << "busy while a process is inside";
  EXPECT_TRUE(m.Exists(path));
  ASSERT_TRUE(KillProcess(p, absl::Seconds(5)).ok());
  started_.clear();
  // The kernel drops a dead task from cgroup.procs once it is reaped.
  absl::Status s;
  for (int i = 0; i < 50; ++i) {
    s = m.Destroy(path);
    if (s.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(m.Destroy(parent).ok());
  EXPECT_FALSE(m.Exists(parent));
  EXPECT_TRUE(m.Destroy(parent).ok()) << "idempotent";
}

}  // namespace
}  // namespace crisp::runtime
