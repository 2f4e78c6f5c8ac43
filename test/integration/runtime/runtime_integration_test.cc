// Real kernel: pause processes in new namespaces, namespace pins, /dev/shm,
// v1/v2 cgroups. Root only.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
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
  // Orphaned pause processes must be reaped by us: PID 1 may not reap here.
  void SetUp() override { ASSERT_TRUE(Reaper::InstallSubreaper().ok()); }
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

// Runs `fn` in a thread that has joined the namespace file `path`.
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

class PauseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  }
  void TearDown() override {
    for (auto& p : started_) {
      EXPECT_TRUE(KillProcess(p, absl::Seconds(5)).ok());
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
  for (const char* t : {"net", "ipc", "uts", "pid", "mnt"}) EXPECT_NE(NsLink(p.pid, t), NsLink(0, t)) << t;
  EXPECT_EQ(StatusField(p.pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "CapBnd"), "0000000000000000");
  EXPECT_EQ(StatusField(p.pid, "NoNewPrivs"), "1");
  EXPECT_EQ(StatusField(p.pid, "Name"), "crisp-pause");
  EXPECT_EQ(StatusField(p.pid, "NSpid"), absl::StrCat(p.pid, "\t1")) << "PID 1 in its own PID namespace";
  std::string host = InNamespace(absl::StrCat("/proc/", p.pid, "/ns/uts"), CLONE_NEWUTS, [] {
    char b[256] = {};
    ::gethostname(b, sizeof b - 1);
    return std::string(b);
  });
  EXPECT_EQ(host, "pod-host");
  // Its root is an empty directory.
  auto names = ListDir(absl::StrCat("/proc/", p.pid, "/root"));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(names->empty());
}

TEST_F(PauseTest, HostNamespacesAreShared) {
  PausePlan plan;
  plan.new_net = plan.new_ipc = plan.new_uts = false;
  ProcessId p = Start(plan);
  EXPECT_EQ(NsLink(p.pid, "net"), NsLink(0, "net"));
  EXPECT_EQ(NsLink(p.pid, "ipc"), NsLink(0, "ipc"));
  EXPECT_EQ(NsLink(p.pid, "uts"), NsLink(0, "uts"));
  EXPECT_EQ(NsLink(p.pid, "pid"), NsLink(0, "pid"));
}

TEST_F(PauseTest, SysctlsApplyInsideOnly) {
  auto before = ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  PausePlan plan;
  plan.sysctls = {{"net/ipv4/ip_unprivileged_port_start", "77"}, {"kernel/shm_rmid_forced", "1"}};
  ProcessId p = Start(plan);
  std::string ns = absl::StrCat("/proc/", p.pid, "/ns/");
  EXPECT_EQ(InNamespace(ns + "net", CLONE_NEWNET,
                        [] { return *ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); }),
            "77\n");
  EXPECT_EQ(InNamespace(ns + "ipc", CLONE_NEWIPC, [] { return *ReadFile("/proc/sys/kernel/shm_rmid_forced"); }),
            "1\n");
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").value_or(""), before.value_or("x"));
}

int CountPauses() {
  int n = 0;
  auto procs = ListDir("/proc");
  for (const auto& d : procs.value_or(std::vector<std::string>{})) {
    if (d.find_first_not_of("0123456789") != std::string::npos) continue;
    auto comm = ReadFile("/proc/" + d + "/comm");
    if (comm.ok() && *comm == "crisp-pause\n") ++n;
  }
  return n;
}

TEST_F(PauseTest, BadSysctlFailsCleanly) {
  int before = CountPauses();
  PausePlan plan;
  plan.sysctls = {{"net/ipv4/no_such_sysctl", "1"}};
  auto p = StartPause(CRISP_SHIM_PATH, plan);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("sysctl net/ipv4/no_such_sysctl"), std::string::npos) << p.status();
  EXPECT_NE(p.status().message().find("errno 2"), std::string::npos) << p.status();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(CountPauses(), before) << "no pause process left behind";
}

TEST_F(PauseTest, MissingShimIsAnError) {
  auto p = StartPause("/nonexistent/crisp-shim", PausePlan{});
  EXPECT_FALSE(p.ok());
}

class TempDirTest : public PauseTest {
 protected:
  void SetUp() override {
    PauseTest::SetUp();
    char t[] = "/tmp/crisp-rt-it.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    dir_ = t;
  }
  void TearDown() override {
    PauseTest::TearDown();
    EXPECT_TRUE(RemoveAll(dir_).ok());
  }
  std::string dir_;
};

TEST_F(TempDirTest, PinnedNamespacesOutliveThePauseProcess) {
  ProcessId p = Start(PausePlan{});
  std::string ns = JoinPath(dir_, "ns");
  ASSERT_TRUE(PinNamespaces(p.pid, {"net", "ipc", "uts"}, ns).ok());
  std::string netns_id = NsLink(p.pid, "net");
  EXPECT_TRUE(IsNamespacePin(JoinPath(ns, "net")));
  EXPECT_FALSE(IsNamespacePin(dir_));
  ASSERT_TRUE(KillProcess(p, absl::Seconds(5)).ok());
  started_.clear();
  // The namespace is still there, reachable through the pin.
  struct stat st;
  ASSERT_EQ(::stat(JoinPath(ns, "net").c_str(), &st), 0);
  EXPECT_EQ(absl::StrCat("net:[", st.st_ino, "]"), netns_id);
  ASSERT_TRUE(UnpinNamespaces(ns).ok());
  EXPECT_FALSE(PathExists(ns));
  EXPECT_TRUE(UnpinNamespaces(ns).ok()) << "idempotent";
}

TEST_F(TempDirTest, PinFailureUndoes) {
  ProcessId p = Start(PausePlan{});
  std::string ns = JoinPath(dir_, "ns");
  EXPECT_FALSE(PinNamespaces(p.pid, {"net", "bogus"}, ns).ok());
  EXPECT_FALSE(IsNamespacePin(JoinPath(ns, "net")));
  EXPECT_TRUE(UnpinNamespaces(ns).ok());
}

TEST_F(TempDirTest, ShmMount) {
  std::string shm = JoinPath(dir_, "shm");
  ASSERT_TRUE(MountShm(shm, 8 << 20).ok());
  struct statfs fs;
  ASSERT_EQ(::statfs(shm.c_str(), &fs), 0);
  EXPECT_EQ(static_cast<uint64_t>(fs.f_blocks) * fs.f_bsize, 8u << 20);
  struct stat st;
  ASSERT_EQ(::stat(shm.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  ASSERT_TRUE(UnmountAndRemove(shm).ok());
  EXPECT_FALSE(PathExists(shm));
  EXPECT_TRUE(UnmountAndRemove(shm).ok());
}

TEST_F(PauseTest, RealCgroupLifecycle) {
  auto layout = CgroupLayout::Detect();
  ASSERT_TRUE(layout.ok()) << layout.status();
  CgroupManager m(*layout, NewFsCgroupWriter());
  std::string parent = "/crisp-it-" + RandomHex(4);
  std::string path = parent + "/pod";
  CgroupResources res;
  res.memory_limit = 64 << 20;
  res.cpu_shares = 512;
  res.pids_limit = 100;
  ASSERT_TRUE(m.Create(path, res).ok());
  EXPECT_TRUE(m.Exists(path));
  ProcessId p = Start(PausePlan{});
  ASSERT_TRUE(m.AddProcess(path, p.pid).ok());
  std::string cg = *ReadFile(absl::StrCat("/proc/", p.pid, "/cgroup"));
  EXPECT_NE(cg.find(path), std::string::npos) << cg;
  if (!layout->v2) {
    std::string mem = layout->v1_roots.at("memory");
    EXPECT_EQ(*ReadFile(JoinPath(mem, path + "/memory.limit_in_bytes")), absl::StrCat(64 << 20, "\n"));
    res = {};
    res.memory_limit = 32 << 20;
    ASSERT_TRUE(m.Update(path, res).ok());
    EXPECT_EQ(*ReadFile(JoinPath(mem, path + "/memory.limit_in_bytes")), absl::StrCat(32 << 20, "\n"));
    EXPECT_EQ(*ReadFile(JoinPath(layout->v1_roots.at("pids"), path + "/pids.max")), "100\n");
  }
  EXPECT_EQ(m.Destroy(path).code(), absl::StatusCode::kFailedPrecondition) << "busy while a process is inside";
  ASSERT_TRUE(KillProcess(p, absl::Seconds(5)).ok());
  started_.clear();
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(m.Destroy(path).ok());
  ASSERT_TRUE(m.Destroy(parent).ok());
  EXPECT_FALSE(m.Exists(parent));
  EXPECT_TRUE(m.Destroy(parent).ok()) << "idempotent";
}

}  // namespace
}  // namespace crisp::runtime
