// cgroup logic against fake cgroupfs trees in temp dirs (v1 and v2), mountinfo
// parsing, and the pause plan wire format.
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "test/testing/temp_dir.h"
#include "runtime/cgroups.h"
#include "runtime/pause_plan.h"

namespace crisp::runtime {
namespace {

constexpr char kHybridMountinfo[] =
    "22 1 0:20 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "23 22 0:21 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "24 22 0:22 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "25 22 0:23 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "26 22 0:24 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "27 22 0:25 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "28 22 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(Mountinfo, HybridUsesV1) {
  CgroupLayout l = CgroupLayout::FromMountinfo(kHybridMountinfo);
  EXPECT_FALSE(l.v2);
  EXPECT_EQ(l.v1_roots.at("cpu"), "/sys/fs/cgroup/cpu");
  EXPECT_EQ(l.v1_roots.at("memory"), "/sys/fs/cgroup/memory");
  EXPECT_EQ(l.v1_roots.at("name=systemd"), "/sys/fs/cgroup/systemd");
  EXPECT_EQ(l.v1_roots.count("unified"), 0u);
}

TEST(Mountinfo, PureV2) {
  CgroupLayout l =
      CgroupLayout::FromMountinfo("30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  EXPECT_TRUE(l.v2);
  EXPECT_EQ(l.unified_root, "/sys/fs/cgroup");
  EXPECT_TRUE(l.v1_roots.empty());
}

TEST(Mountinfo, ComountedAndOptionalFields) {
  CgroupLayout l = CgroupLayout::FromMountinfo(
      "31 22 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n");
  EXPECT_EQ(l.v1_roots.at("cpu"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(l.v1_roots.at("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
}

TEST(Shares, WeightConversionTable) {
  EXPECT_EQ(CpuSharesToWeight(2), 1);
  EXPECT_EQ(CpuSharesToWeight(1024), 39);
  EXPECT_EQ(CpuSharesToWeight(262144), 10000);
  EXPECT_EQ(CpuSharesToWeight(1), 1) << "clamped to the minimum";
  EXPECT_EQ(CpuSharesToWeight(1 << 30), 10000) << "clamped to the maximum";
}

// A fake cgroupfs: directories in a temp dir; mkdir of a cgroup creates the
// control files the kernel would, so that writes to unknown files fail.
class FakeWriter : public CgroupWriter {
 public:
  explicit FakeWriter(std::vector<std::string> files) : files_(std::move(files)) {}
  absl::Status Mkdir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return absl::InternalError("mkdir " + dir);
    for (const auto& f : files_) (void)WriteFileAtomic(JoinPath(dir, f), "");
    if (fail_mkdir_ && dir.find(*fail_mkdir_) != std::string::npos) return absl::PermissionDeniedError("injected");
    return absl::OkStatus();
  }
  absl::Status Rmdir(const std::string& dir) override {
    (void)RemoveAll(dir);
    return absl::OkStatus();
  }
  absl::Status Write(const std::string& file, const std::string& value) override {
    if (!PathExists(file)) return absl::NotFoundError("no control file " + file);
    writes.push_back(file + "=" + value);
    return WriteFileAtomic(file, value);
  }
  absl::StatusOr<std::string> Read(const std::string& file) override { return ReadFile(file); }
  bool Exists(const std::string& path) override { return PathExists(path); }
  std::vector<std::string> writes;
  std::optional<std::string> fail_mkdir_;

 private:
  std::vector<std::string> files_;
};

class FakeTree : public crisp::testing::TempDirTest {
 protected:
  std::string Read(const std::string& rel) { return ReadFile(JoinPath(dir_, rel)).value_or("<missing>"); }
};

TEST_F(FakeTree, V2ResourcesMapToUnifiedFiles) {
  CgroupLayout l;
  l.v2 = true;
  l.unified_root = dir_;
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cgroup.subtree_control"), "").ok());
  auto* w = new FakeWriter({"cgroup.procs", "cgroup.subtree_control", "cpu.weight", "cpu.max", "cpuset.cpus",
                            "cpuset.mems", "memory.max", "memory.swap.max", "pids.max", "hugetlb.2MB.max",
                            "memory.high"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.cpu_shares = 1024;
  r.cpu_quota = 50000;
  r.cpu_period = 100000;
  r.cpuset_cpus = "0-1";
  r.memory_limit = 128 << 20;
  r.memory_swap_limit = 256 << 20;
  r.pids_limit = 0;
  r.hugepage_limits["2MB"] = 4 << 20;
  r.unified["memory.high"] = "100000000";
  ASSERT_TRUE(m.Create("/kubepods/pod1/sb", r).ok());
  EXPECT_EQ(Read("kubepods/pod1/sb/cpu.weight"), "39");
  EXPECT_EQ(Read("kubepods/pod1/sb/cpu.max"), "50000 100000");
  EXPECT_EQ(Read("kubepods/pod1/sb/cpuset.cpus"), "0-1");
  EXPECT_EQ(Read("kubepods/pod1/sb/memory.max"), absl::StrCat(128 << 20));
  EXPECT_EQ(Read("kubepods/pod1/sb/memory.swap.max"), absl::StrCat(128 << 20));
  EXPECT_EQ(Read("kubepods/pod1/sb/pids.max"), "max");
  EXPECT_EQ(Read("kubepods/pod1/sb/hugetlb.2MB.max"), absl::StrCat(4 << 20));
  EXPECT_EQ(Read("kubepods/pod1/sb/memory.high"), "100000000");
  EXPECT_NE(Read("kubepods/cgroup.subtree_control"), "") << "controllers enabled in the parent";

  CgroupResources unlimited;
  unlimited.cpu_quota = -1;
  unlimited.memory_limit = 0;
  ASSERT_TRUE(m.Update("/kubepods/pod1/sb", unlimited).ok());
  EXPECT_EQ(Read("kubepods/pod1/sb/cpu.max"), "max 100000");
  EXPECT_EQ(Read("kubepods/pod1/sb/memory.max"), "max");

  ASSERT_TRUE(m.AddProcess("/kubepods/pod1/sb", 4242).ok());
  EXPECT_EQ(Read("kubepods/pod1/sb/cgroup.procs"), "4242");
  ASSERT_TRUE(m.Destroy("/kubepods/pod1/sb").ok());
  EXPECT_FALSE(m.Exists("/kubepods/pod1/sb"));
  EXPECT_TRUE(m.Exists("/kubepods/pod1")) << "parents are not ours to remove";
  EXPECT_TRUE(m.Destroy("/kubepods/pod1/sb").ok()) << "idempotent";
}

TEST_F(FakeTree, V2RejectsEscapingUnifiedKeys) {
  CgroupLayout l;
  l.v2 = true;
  l.unified_root = dir_;
  CgroupManager m(l, std::make_unique<FakeWriter>(std::vector<std::string>{"cgroup.procs"}));
  CgroupResources r;
  r.unified["../../etc/passwd"] = "x";
  EXPECT_EQ(m.Create("/a", r).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(m.Exists("/a")) << "rolled back";
  EXPECT_EQ(m.Create("/a/../b", {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FakeTree, V1WritesEachControllerAndSeedsCpuset) {
  CgroupLayout l;
  for (const char* c : {"cpu", "cpuset", "memory", "pids"}) {
    l.v1_roots[c] = JoinPath(dir_, c);
    ASSERT_TRUE(MkdirAll(JoinPath(dir_, c)).ok());
  }
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cpuset/cpuset.cpus"), "0-3\n").ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cpuset/cpuset.mems"), "0\n").ok());
  auto* w = new FakeWriter({"cgroup.procs", "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuset.cpus",
                            "cpuset.mems", "memory.limit_in_bytes", "pids.max"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.cpu_shares = 256;
  r.cpu_quota = 20000;
  r.cpu_period = 100000;
  r.memory_limit = 64 << 20;
  r.pids_limit = 50;
  ASSERT_TRUE(m.Create("/crisp/sb", r).ok());
  EXPECT_EQ(Read("cpu/crisp/sb/cpu.shares"), "256");
  EXPECT_EQ(Read("cpu/crisp/sb/cpu.cfs_quota_us"), "20000");
  EXPECT_EQ(Read("cpu/crisp/sb/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(Read("memory/crisp/sb/memory.limit_in_bytes"), absl::StrCat(64 << 20));
  EXPECT_EQ(Read("pids/crisp/sb/pids.max"), "50");
  EXPECT_EQ(Read("cpuset/crisp/cpuset.cpus"), "0-3") << "a new cpuset cgroup inherits cpus";
  EXPECT_EQ(Read("cpuset/crisp/sb/cpuset.mems"), "0");
  ASSERT_TRUE(m.AddProcess("/crisp/sb", 7).ok());
  for (const char* c : {"cpu", "cpuset", "memory", "pids"}) EXPECT_EQ(Read(absl::StrCat(c, "/crisp/sb/cgroup.procs")), "7");
  CgroupResources none;
  none.cpu_quota = 0;
  ASSERT_TRUE(m.Update("/crisp/sb", none).ok());
  EXPECT_EQ(Read("cpu/crisp/sb/cpu.cfs_quota_us"), "-1") << "0 means unlimited";
}

TEST_F(FakeTree, CreateRollsBackOnFailure) {
  CgroupLayout l;
  for (const char* c : {"cpu", "memory"}) {
    l.v1_roots[c] = JoinPath(dir_, c);
    ASSERT_TRUE(MkdirAll(JoinPath(dir_, c)).ok());
  }
  // memory.limit_in_bytes missing: applying the limit fails after the dirs exist.
  auto* w = new FakeWriter({"cgroup.procs", "cpu.shares"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.memory_limit = 1 << 20;
  EXPECT_FALSE(m.Create("/crisp/sb", r).ok());
  EXPECT_FALSE(PathExists(JoinPath(dir_, "cpu/crisp"))) << "everything created was removed";
  EXPECT_FALSE(PathExists(JoinPath(dir_, "memory/crisp")));
}

TEST(PausePlan, JsonRoundTrip) {
  PausePlan p;
  p.new_net = false;
  p.new_pid = true;
  p.hostname = "h";
  p.sysctls = {{"net/ipv4/ip_forward", "1"}};
  auto back = ParsePausePlan(PausePlanToJson(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->new_net);
  EXPECT_TRUE(back->new_ipc);
  EXPECT_TRUE(back->new_pid);
  EXPECT_EQ(back->hostname, "h");
  EXPECT_EQ(back->sysctls.at("net/ipv4/ip_forward"), "1");
  EXPECT_FALSE(ParsePausePlan("nope").has_value());
  EXPECT_FALSE(ParsePausePlan("{\"hostname\": 5}").has_value());
}

}  // namespace
}  // namespace crisp::runtime
