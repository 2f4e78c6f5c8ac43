// cgroup logic against fake cgroupfs trees in temp dirs (v1 and v2), mountinfo
// parsing, and the pause plan wire format.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/cgroups.h"
#include "runtime/container_plan.h"
#include "runtime/namespaces.h"
#include "runtime/pause_plan.h"
#include "test/testing/temp_dir.h"

namespace crisp::runtime {
namespace {

using ::testing::ElementsAreArray;

// This VM: v1 controllers, a named systemd hierarchy, and an empty cgroup2
// at /sys/fs/cgroup/unified (systemd "hybrid").
constexpr char kHybridMountinfo[] =
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(Mountinfo, HybridUsesV1) {
  CgroupLayout l = CgroupLayout::FromMountinfo(kHybridMountinfo);
  EXPECT_FALSE(l.v2);
  EXPECT_TRUE(l.unified_root.empty());
  std::map<std::string, std::string> want;
  for (const char* c : {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"})
    want[c] = absl::StrCat("/sys/fs/cgroup/", c);
  want["name=systemd"] = "/sys/fs/cgroup/systemd";
  EXPECT_EQ(l.v1_roots, want);
}

TEST(CgroupFiles, ProcsAndOomFilesFollowTheLayout) {
  CgroupManager v1(CgroupLayout::FromMountinfo(kHybridMountinfo), NewFsCgroupWriter());
  auto procs = v1.ProcsFiles("/crisp/pod/c");
  EXPECT_EQ(procs.size(), 9u) << "8 controllers + name=systemd";
  EXPECT_NE(std::find(procs.begin(), procs.end(), "/sys/fs/cgroup/memory/crisp/pod/c/cgroup.procs"), procs.end());
  EXPECT_EQ(v1.OomEventsFile("/crisp/pod/c"), "/sys/fs/cgroup/memory/crisp/pod/c/memory.oom_control");
  EXPECT_TRUE(v1.ProcsFiles("/crisp/../x").empty());
  EXPECT_EQ(v1.OomEventsFile("/crisp/../x"), "");
  CgroupManager v2(CgroupLayout::FromMountinfo("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
                   NewFsCgroupWriter());
  EXPECT_EQ(v2.ProcsFiles("/a/b"), std::vector<std::string>{"/sys/fs/cgroup/a/b/cgroup.procs"});
  EXPECT_EQ(v2.OomEventsFile("/a/b"), "/sys/fs/cgroup/a/b/memory.events");
}

TEST(Mountinfo, PureV2) {
  CgroupLayout l =
      CgroupLayout::FromMountinfo("30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  EXPECT_TRUE(l.v2);
  EXPECT_EQ(l.unified_root, "/sys/fs/cgroup");
  EXPECT_TRUE(l.v1_roots.empty());
}

TEST(Mountinfo, V2AtTheRootWinsOverStrayV1Mounts) {
  CgroupLayout l = CgroupLayout::FromMountinfo(
      "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
      "41 1 0:40 / /run/old/cpu rw - cgroup cgroup rw,cpu\n");
  EXPECT_TRUE(l.v2);
  EXPECT_EQ(l.unified_root, "/sys/fs/cgroup");
  EXPECT_TRUE(l.v1_roots.empty());
}

TEST(Mountinfo, NamedOnlyV1WithCgroup2ElsewhereUsesV2) {
  // No v1 controller anywhere: whatever controllers exist are in the unified tree.
  CgroupLayout l = CgroupLayout::FromMountinfo(
      "39 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
      "40 30 0:37 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  EXPECT_TRUE(l.v2);
  EXPECT_EQ(l.unified_root, "/sys/fs/cgroup/unified");
  EXPECT_TRUE(l.v1_roots.empty());
}

TEST(Mountinfo, ComountedAndOptionalFields) {
  CgroupLayout l = CgroupLayout::FromMountinfo(
      "31 22 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct\n"
      "32 22 0:28 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n");
  EXPECT_FALSE(l.v2);
  EXPECT_EQ(l.v1_roots.at("cpu"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(l.v1_roots.at("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(l.v1_roots.at("net_prio"), "/sys/fs/cgroup/net_cls,net_prio");
  EXPECT_EQ(l.v1_roots.count("rw"), 0u);
}

TEST(Mountinfo, SkipsSubCgroupBindMountsAndKeepsTheFirstMount) {
  CgroupLayout l = CgroupLayout::FromMountinfo(
      "31 22 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "90 88 0:28 /kubepods/pod1 /var/lib/c1/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "91 88 0:28 / /mnt/memory\\040copy rw - cgroup cgroup rw,memory\n"
      "92 88 0:29 / /mnt/my\\040pids rw - cgroup cgroup rw,pids\n");
  EXPECT_EQ(l.v1_roots.at("memory"), "/sys/fs/cgroup/memory");
  EXPECT_EQ(l.v1_roots.at("pids"), "/mnt/my pids") << "octal escapes are decoded";
}

TEST(Mountinfo, NothingMounted) {
  CgroupLayout l = CgroupLayout::FromMountinfo("22 1 0:20 / / rw - ext4 /dev/vda1 rw\n");
  EXPECT_FALSE(l.v2);
  EXPECT_TRUE(l.v1_roots.empty());
}

TEST(Shares, WeightConversionTable) {
  // 1 + ((shares - 2) * 9999) / 262142, as in runc and Kubernetes.
  const std::vector<std::pair<int64_t, int64_t>> table = {
      {2, 1}, {3, 1}, {100, 4}, {512, 20}, {1024, 39}, {2048, 79}, {10000, 382}, {262144, 10000}};
  for (const auto& [shares, weight] : table) EXPECT_EQ(CpuSharesToWeight(shares), weight) << shares;
  EXPECT_EQ(CpuSharesToWeight(1), 1) << "clamped to the minimum";
  EXPECT_EQ(CpuSharesToWeight(1 << 30), 10000) << "clamped to the maximum";
  EXPECT_EQ(CpuSharesToWeight(0), 0) << "unset";
}

// A fake cgroupfs in a temp dir. Mkdir creates the control files the kernel
// would (so writes to unknown files fail), and models v2's
// cgroup.controllers / cgroup.subtree_control propagation. Every write is
// recorded as "<path relative to the tree>=<value>".
class FakeWriter : public CgroupWriter {
 public:
  FakeWriter(std::string tree, std::vector<std::string> files)
      : tree_(std::move(tree)), files_(std::move(files)) {}
  absl::Status Mkdir(const std::string& dir) override {
    if (fail_mkdir && dir.find(*fail_mkdir) != std::string::npos)
      return absl::PermissionDeniedError("injected");
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return absl::InternalError("mkdir " + dir);
    for (const auto& f : files_) (void)WriteFileAtomic(JoinPath(dir, f), "");
    std::string parent_subtree = JoinPath(dir, "../cgroup.subtree_control");
    if (PathExists(parent_subtree)) {
      (void)WriteFileAtomic(JoinPath(dir, "cgroup.controllers"), ReadFile(parent_subtree).value_or(""));
      (void)WriteFileAtomic(JoinPath(dir, "cgroup.subtree_control"), "");
    }
    return absl::OkStatus();
  }
  absl::Status Rmdir(const std::string& dir) override {
    (void)RemoveAll(dir);
    return absl::OkStatus();
  }
  absl::Status Write(const std::string& file, const std::string& value) override {
    if (!PathExists(file)) return absl::NotFoundError("no control file " + file);
    writes.push_back(file.substr(tree_.size() + 1) + "=" + value);
    if (absl::EndsWith(file, "/cgroup.subtree_control")) {
      // "+ctl": only controllers the cgroup has; the file accumulates them.
      std::string dir = file.substr(0, file.rfind('/'));
      std::vector<std::string> avail =
          absl::StrSplit(ReadFile(JoinPath(dir, "cgroup.controllers")).value_or(""), absl::ByAnyChar(" \n"),
                         absl::SkipEmpty());
      std::string ctl = value.substr(1);
      if (std::find(avail.begin(), avail.end(), ctl) == avail.end())
        return absl::InvalidArgumentError("unavailable");
      std::vector<std::string> on = absl::StrSplit(ReadFile(file).value_or(""), ' ', absl::SkipEmpty());
      if (std::find(on.begin(), on.end(), ctl) == on.end()) on.push_back(ctl);
      return WriteFileAtomic(file, absl::StrJoin(on, " "));
    }
    return WriteFileAtomic(file, value);
  }
  absl::StatusOr<std::string> Read(const std::string& file) override { return ReadFile(file); }
  bool Exists(const std::string& path) override { return PathExists(path); }

  std::vector<std::string> writes;
  std::optional<std::string> fail_mkdir;

 private:
  std::string tree_;
  std::vector<std::string> files_;
};

class FakeTree : public crisp::testing::TempDirTest {
 protected:
  std::string Read(const std::string& rel) { return ReadFile(JoinPath(dir_, rel)).value_or("<missing>"); }
  CgroupLayout V2Layout() {
    CgroupLayout l;
    l.v2 = true;
    l.unified_root = dir_;
    EXPECT_TRUE(WriteFileAtomic(JoinPath(dir_, "cgroup.controllers"), "cpuset cpu memory pids").ok());
    EXPECT_TRUE(WriteFileAtomic(JoinPath(dir_, "cgroup.subtree_control"), "").ok());
    return l;
  }
  CgroupLayout V1Layout(std::vector<std::string> ctrls) {
    CgroupLayout l;
    for (const auto& c : ctrls) {
      l.v1_roots[c] = JoinPath(dir_, c);
      EXPECT_TRUE(MkdirAll(JoinPath(dir_, c)).ok());
    }
    return l;
  }
};

const std::vector<std::string> kV2Files = {"cgroup.procs",    "cpu.weight", "cpu.max",         "cpuset.cpus",
                                           "cpuset.mems",     "memory.max", "memory.swap.max", "pids.max",
                                           "hugetlb.2MB.max", "memory.high"};

TEST_F(FakeTree, V2ResourcesMapToUnifiedFiles) {
  auto* w = new FakeWriter(dir_, kV2Files);
  CgroupManager m(V2Layout(), std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.cpu_shares = 1024;
  r.cpu_quota = 50000;
  r.cpu_period = 100000;
  r.cpuset_cpus = "0-1";
  r.cpuset_mems = "0";
  r.memory_limit = 128 << 20;
  r.memory_swap_limit = 256 << 20;
  r.pids_limit = 0;
  r.hugepage_limits["2MB"] = 4 << 20;
  r.unified["memory.high"] = "100000000";
  ASSERT_TRUE(m.Create("/kubepods/pod1/sb", r).ok());

  std::vector<std::string> want;
  for (const char* parent : {"", "kubepods/", "kubepods/pod1/"})
    for (const char* ctl : {"cpuset", "cpu", "memory", "pids"})
      want.push_back(absl::StrCat(parent, "cgroup.subtree_control=+", ctl));
  const std::string sb = "kubepods/pod1/sb/";
  for (const std::string& kv : std::vector<std::string>{
           "cpu.weight=39", "cpu.max=50000 100000", "cpuset.cpus=0-1", "cpuset.mems=0",
           absl::StrCat("memory.max=", 128 << 20), absl::StrCat("memory.swap.max=", 128 << 20),
           "pids.max=max", absl::StrCat("hugetlb.2MB.max=", 4 << 20), "memory.high=100000000"})
    want.push_back(sb + kv);
  EXPECT_THAT(w->writes, ElementsAreArray(want));
  EXPECT_EQ(Read("kubepods/pod1/cgroup.subtree_control"), "cpuset cpu memory pids");
  EXPECT_EQ(Read("kubepods/pod1/sb/cgroup.controllers"), "cpuset cpu memory pids");
  EXPECT_EQ(Read(sb + "cpu.weight"), "39");
  EXPECT_EQ(Read(sb + "memory.swap.max"), absl::StrCat(128 << 20)) << "swap alone = memory+swap - memory";

  w->writes.clear();
  CgroupResources unlimited;
  unlimited.cpu_quota = -1;
  unlimited.memory_limit = 0;
  unlimited.pids_limit = 10;
  ASSERT_TRUE(m.Update("/kubepods/pod1/sb", unlimited).ok());
  EXPECT_THAT(w->writes,
              ElementsAreArray({sb + "cpu.max=max 100000", sb + "memory.max=max", sb + "pids.max=10"}));

  w->writes.clear();
  ASSERT_TRUE(m.Update("/kubepods/pod1/sb", CgroupResources{}).ok());
  EXPECT_TRUE(w->writes.empty()) << "unset fields are left alone";

  ASSERT_TRUE(m.AddProcess("/kubepods/pod1/sb", 4242).ok());
  EXPECT_EQ(Read(sb + "cgroup.procs"), "4242");
  ASSERT_TRUE(m.Destroy("/kubepods/pod1/sb").ok());
  EXPECT_FALSE(m.Exists("/kubepods/pod1/sb"));
  EXPECT_TRUE(m.Exists("/kubepods/pod1")) << "parents are not ours to remove";
  EXPECT_TRUE(m.Destroy("/kubepods/pod1/sb").ok()) << "idempotent";
}

TEST_F(FakeTree, V2OnlyEnablesAvailableControllers) {
  auto* w = new FakeWriter(dir_, kV2Files);
  CgroupLayout l = V2Layout();
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cgroup.controllers"), "memory pids\n").ok());
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  ASSERT_TRUE(m.Create("/a", {}).ok());
  EXPECT_THAT(w->writes,
              ElementsAreArray({"cgroup.subtree_control=+memory", "cgroup.subtree_control=+pids"}));
  // Re-creating an existing cgroup re-enables (a no-op) and creates nothing.
  w->writes.clear();
  ASSERT_TRUE(m.Create("/a", {}).ok());
  EXPECT_EQ(w->writes.size(), 2u);
}

TEST_F(FakeTree, V2RejectsEscapingKeysAndPaths) {
  CgroupManager m(V2Layout(), std::make_unique<FakeWriter>(dir_, kV2Files));
  CgroupResources r;
  r.unified["../../etc/passwd"] = "x";
  EXPECT_EQ(m.Create("/a", r).code(), absl::StatusCode::kInvalidArgument);
  r.unified = {{"sub/memory.max", "1"}};
  EXPECT_EQ(m.Create("/a", r).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(m.Exists("/a")) << "nothing created";
  CgroupResources h;
  h.hugepage_limits["../2MB"] = 1;
  EXPECT_EQ(m.Create("/a", h).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Create("/a/../b", {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Create("/a/./b", {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Create("/", {}).code(), absl::StatusCode::kInvalidArgument) << "never the hierarchy root";
  EXPECT_EQ(m.Destroy("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AddProcess("//", 1).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(m.Create("/a", {}).ok());
  EXPECT_EQ(m.Update("/a", r).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FakeTree, V1WritesEachControllerAndSeedsCpuset) {
  CgroupLayout l = V1Layout({"cpu", "cpuset", "memory", "pids", "name=systemd"});
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cpuset/cpuset.cpus"), "0-3\n").ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cpuset/cpuset.mems"), "0\n").ok());
  auto* w = new FakeWriter(
      dir_, {"cgroup.procs", "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuset.cpus",
             "cpuset.mems", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "pids.max"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.cpu_shares = 256;
  r.cpu_quota = 20000;
  r.cpu_period = 100000;
  r.memory_limit = 64 << 20;
  r.memory_swap_limit = 128 << 20;
  r.pids_limit = 50;
  ASSERT_TRUE(m.Create("/crisp/sb", r).ok());
  const std::string memsw = absl::StrCat("memory/crisp/sb/memory.memsw.limit_in_bytes=", 128 << 20);
  EXPECT_THAT(w->writes, ElementsAreArray({
                             // a new cpuset cgroup inherits cpus and mems, level by level
                             std::string("cpuset/crisp/cpuset.cpus=0-3"),
                             std::string("cpuset/crisp/cpuset.mems=0"),
                             std::string("cpuset/crisp/sb/cpuset.cpus=0-3"),
                             std::string("cpuset/crisp/sb/cpuset.mems=0"),
                             std::string("cpu/crisp/sb/cpu.shares=256"),
                             std::string("cpu/crisp/sb/cpu.cfs_period_us=100000"),
                             std::string("cpu/crisp/sb/cpu.cfs_quota_us=20000"),
                             // memsw around memory: valid whether limits go up or down
                             memsw,
                             absl::StrCat("memory/crisp/sb/memory.limit_in_bytes=", 64 << 20),
                             memsw,
                             std::string("pids/crisp/sb/pids.max=50"),
                         }));
  EXPECT_TRUE(PathExists(JoinPath(dir_, "name=systemd/crisp/sb"))) << "named hierarchies get the cgroup too";

  w->writes.clear();
  ASSERT_TRUE(m.AddProcess("/crisp/sb", 7).ok());
  EXPECT_EQ(w->writes.size(), 5u);
  for (const char* c : {"cpu", "cpuset", "memory", "pids", "name=systemd"})
    EXPECT_EQ(Read(absl::StrCat(c, "/crisp/sb/cgroup.procs")), "7") << c;

  w->writes.clear();
  CgroupResources none;
  none.cpu_quota = 0;
  none.memory_limit = 0;
  ASSERT_TRUE(m.Update("/crisp/sb", none).ok());
  EXPECT_THAT(w->writes, ElementsAreArray({"cpu/crisp/sb/cpu.cfs_quota_us=-1",
                                           "memory/crisp/sb/memory.memsw.limit_in_bytes=-1",
                                           "memory/crisp/sb/memory.limit_in_bytes=-1",
                                           "memory/crisp/sb/memory.memsw.limit_in_bytes=-1"}))
      << "0 means unlimited; memsw is lifted too, or the kernel refuses the memory limit";

  w->writes.clear();
  CgroupResources unified;
  unified.unified["memory.high"] = "1";
  EXPECT_EQ(m.Update("/crisp/sb", unified).code(), absl::StatusCode::kInvalidArgument) << "v2 only";

  ASSERT_TRUE(m.Destroy("/crisp/sb").ok());
  EXPECT_FALSE(m.Exists("/crisp/sb"));
  EXPECT_TRUE(m.Destroy("/crisp/sb").ok()) << "idempotent";
}

TEST_F(FakeTree, V1WithoutMemswOrController) {
  CgroupLayout l = V1Layout({"memory"});
  auto* w = new FakeWriter(dir_, {"cgroup.procs", "memory.limit_in_bytes"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.memory_limit = 1 << 20;
  r.memory_swap_limit = 2 << 20;
  r.cpu_shares = 2;  // no cpu hierarchy: skipped
  r.pids_limit = 5;  // no pids hierarchy: skipped
  ASSERT_TRUE(m.Create("/x", r).ok());
  EXPECT_THAT(w->writes, ElementsAreArray({absl::StrCat("memory/x/memory.limit_in_bytes=", 1 << 20)}))
      << "swap accounting off: no memsw file, only the memory limit";
}

TEST_F(FakeTree, V1CpusetComountedWithCpuIsSeeded) {
  CgroupLayout l;
  l.v1_roots["cpu"] = l.v1_roots["cpuset"] = JoinPath(dir_, "cpu,cpuset");
  ASSERT_TRUE(MkdirAll(l.v1_roots["cpu"]).ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cpu,cpuset/cpuset.cpus"), "0\n").ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir_, "cpu,cpuset/cpuset.mems"), "0\n").ok());
  auto* w = new FakeWriter(dir_, {"cgroup.procs", "cpuset.cpus", "cpuset.mems"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  ASSERT_TRUE(m.Create("/p", {}).ok());
  EXPECT_THAT(w->writes, ElementsAreArray({"cpu,cpuset/p/cpuset.cpus=0", "cpu,cpuset/p/cpuset.mems=0"}));
  ASSERT_TRUE(m.AddProcess("/p", 9).ok());
  EXPECT_EQ(w->writes.size(), 3u) << "one cgroup.procs write for the shared hierarchy";
}

TEST_F(FakeTree, CreateRollsBackOnFailure) {
  CgroupLayout l = V1Layout({"cpu", "memory"});
  // memory.limit_in_bytes missing: applying the limit fails after the dirs exist.
  auto* w = new FakeWriter(dir_, {"cgroup.procs", "cpu.shares"});
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  CgroupResources r;
  r.memory_limit = 1 << 20;
  EXPECT_EQ(m.Create("/crisp/sb", r).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(PathExists(JoinPath(dir_, "cpu/crisp"))) << "everything created was removed";
  EXPECT_FALSE(PathExists(JoinPath(dir_, "memory/crisp")));
}

TEST_F(FakeTree, CreateRollsBackWhenAMkdirFailsAndKeepsWhatExisted) {
  CgroupLayout l = V1Layout({"cpu", "memory"});
  ASSERT_TRUE(MkdirAll(JoinPath(dir_, "cpu/crisp")).ok());  // someone else's parent
  auto* w = new FakeWriter(dir_, {"cgroup.procs"});
  w->fail_mkdir = "memory/crisp/sb";
  CgroupManager m(l, std::unique_ptr<CgroupWriter>(w));
  EXPECT_EQ(m.Create("/crisp/sb", {}).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(PathExists(JoinPath(dir_, "cpu/crisp"))) << "pre-existing parent kept";
  EXPECT_FALSE(PathExists(JoinPath(dir_, "cpu/crisp/sb")));
  EXPECT_FALSE(PathExists(JoinPath(dir_, "memory/crisp")));
}

TEST(PausePlan, JsonRoundTrip) {
  PausePlan p;
  p.new_net = false;
  p.new_pid = true;
  p.hostname = "h";
  p.sysctls = {{"net/ipv4/ip_forward", "1"}, {"kernel/shm_rmid_forced", "0"}};
  auto back = ParsePausePlan(PausePlanToJson(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->new_net);
  EXPECT_TRUE(back->new_ipc);
  EXPECT_TRUE(back->new_uts);
  EXPECT_TRUE(back->new_pid);
  EXPECT_EQ(back->hostname, "h");
  EXPECT_EQ(back->sysctls, p.sysctls);
  EXPECT_EQ(PausePlanToJson(*back), PausePlanToJson(p));

  auto defaults = ParsePausePlan("{}");
  ASSERT_TRUE(defaults.has_value());
  EXPECT_TRUE(defaults->new_net && defaults->new_ipc && defaults->new_uts);
  EXPECT_FALSE(defaults->new_pid);
  EXPECT_FALSE(ParsePausePlan("nope").has_value());
  EXPECT_FALSE(ParsePausePlan("[1]").has_value());
  EXPECT_FALSE(ParsePausePlan("{\"hostname\": 5}").has_value());
  EXPECT_FALSE(ParsePausePlan("{\"sysctls\": {\"a\": 1}}").has_value());
}

}  // namespace
}  // namespace crisp::runtime

namespace crisp::runtime {
namespace {

TEST(ContainerPlanJson, RoundTripsEveryField) {
  ContainerPlan p;
  p.id = "c1";
  p.join_ns = {{"net", "/run/crisp/ns/s/net"}, {"pid", "/run/crisp/ns/s/pid"}};
  p.new_pid = true;
  p.lower_dirs = {"/l/2", "/l/1"};
  p.upper_dir = "/c/upper";
  p.work_dir = "/c/work";
  p.rootfs = "/c/rootfs";
  p.readonly_rootfs = true;
  p.mounts = {{"bind", "/host", "/data", 1, "", 0x40000 | 0x4000}, {"proc", "proc", "/proc", 14, "", 0}};
  p.masked_paths = {"/proc/kcore"};
  p.readonly_paths = {"/proc/sys"};
  p.args = {"sh", "-c", "echo hi"};
  p.env = {"A=1", "B="};
  p.cwd = "/work";
  p.user.uid = 1000;
  p.user.gid = 2000;
  p.user.username = "nobody";
  p.user.supplemental_groups = {5, 6};
  p.user.image_user = "www-data";
  p.caps = {1, 2, 3, 4, 5};
  p.no_new_privs = false;
  p.privileged = true;
  p.seccomp_json = "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}";
  p.rlimits = {{7, 1024, 4096}};
  p.oom_score_adj = 500;
  p.cgroup_procs = {"/sys/fs/cgroup/memory/x/cgroup.procs"};
  p.oom_events_file = "/sys/fs/cgroup/memory/x/memory.oom_control";
  p.tty = true;
  p.stdin_open = true;
  p.stdin_once = true;
  p.log_path = "/var/log/pods/x/c/0.log";
  p.shim_dir = "/run/crisp/containers/c1";
  auto q = ParseContainerPlan(ContainerPlanToJson(p));
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(ContainerPlanToJson(*q), ContainerPlanToJson(p));
  EXPECT_EQ(q->mounts, p.mounts);
  EXPECT_EQ(q->user, p.user);
  EXPECT_EQ(q->caps, p.caps);
  EXPECT_EQ(q->rlimits, p.rlimits);
  EXPECT_EQ(q->oom_score_adj, std::optional<int>(500));
}

TEST(ContainerPlanJson, RejectsBrokenPlans) {
  EXPECT_FALSE(ParseContainerPlan("").has_value());
  EXPECT_FALSE(ParseContainerPlan("[]").has_value());
  ContainerPlan p;
  p.id = "c";
  p.lower_dirs = {"/l"};
  p.rootfs = "/r";
  p.shim_dir = "/s";
  p.args = {"/bin/true"};
  ASSERT_TRUE(ParseContainerPlan(ContainerPlanToJson(p)).has_value());
  p.args.clear();
  EXPECT_FALSE(ParseContainerPlan(ContainerPlanToJson(p)).has_value()) << "no command";
  auto j = nlohmann::json::parse(ContainerPlanToJson(p));
  j["args"] = {"/bin/true"};
  j["caps"]["bounding"] = "lots";
  EXPECT_FALSE(ParseContainerPlan(j.dump()).has_value()) << "wrong type";
  j.erase("caps");
  EXPECT_FALSE(ParseContainerPlan(j.dump()).has_value()) << "missing caps";
}

}  // namespace
}  // namespace crisp::runtime

namespace crisp::runtime {
namespace {

TEST(MountPropagationOf, LongestMountPointWins) {
  const std::string mi =
      "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
      "30 22 0:5 / /srv rw shared:3 - tmpfs tmpfs rw\n"
      "31 30 0:6 / /srv/slave rw master:3 - tmpfs tmpfs rw\n"
      "32 30 0:7 / /srv/both rw shared:4 master:3 - tmpfs tmpfs rw\n"
      "33 22 0:8 / /srvx rw - tmpfs tmpfs rw\n";
  EXPECT_EQ(MountPropagationOf(mi, "/tmp/x"), "private");
  EXPECT_EQ(MountPropagationOf(mi, "/srv"), "shared");
  EXPECT_EQ(MountPropagationOf(mi, "/srv/data/x"), "shared");
  EXPECT_EQ(MountPropagationOf(mi, "/srv/slave/d"), "slave");
  EXPECT_EQ(MountPropagationOf(mi, "/srv/both"), "shared");
  EXPECT_EQ(MountPropagationOf(mi, "/srvx/y"), "private") << "/srvx is not under /srv";
  EXPECT_EQ(MountPropagationOf("", "/a"), "private");
}

}  // namespace
}  // namespace crisp::runtime
