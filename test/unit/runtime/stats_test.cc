// Stats readers against fake cgroupfs trees in a temp dir, /proc/net/dev
// samples and small directory trees.
#include "runtime/stats.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "runtime/cgroups.h"
#include "test/testing/temp_dir.h"

namespace crisp::runtime {
namespace {

constexpr char kPath[] = "/kubepods/pod1/c1";

class StatsTree : public crisp::testing::TempDirTest {
 protected:
  // Writes control files of the cgroup kPath under `root` (relative to dir_).
  void Files(const std::string& root, std::vector<std::pair<std::string, std::string>> files) {
    std::string d = JoinPath(JoinPath(dir_, root), kPath);
    ASSERT_TRUE(MkdirAll(d).ok());
    for (const auto& [f, v] : files) ASSERT_TRUE(WriteFileAtomic(JoinPath(d, f), v, 0644, false).ok()) << f;
  }
  CgroupManager V2() {
    CgroupLayout l;
    l.v2 = true;
    l.unified_root = JoinPath(dir_, "unified");
    EXPECT_TRUE(MkdirAll(l.unified_root).ok());
    return CgroupManager(l, NewFsCgroupWriter());
  }
  CgroupManager V1(std::vector<std::string> ctrls) {
    CgroupLayout l;
    for (const auto& c : ctrls) {
      l.v1_roots[c] = JoinPath(dir_, c);
      EXPECT_TRUE(MkdirAll(JoinPath(dir_, c)).ok());
    }
    return CgroupManager(l, NewFsCgroupWriter());
  }
};

const char kV1MemoryStat[] =
    "cache 100\nrss 200\ninactive_file 999999\n"  // the non-hierarchical keys must not be used
    "total_cache 73728000\ntotal_rss 52428800\ntotal_rss_huge 0\ntotal_swap 4096\n"
    "total_pgfault 16203735\ntotal_pgmajfault 1347\ntotal_inactive_anon 0\n"
    "total_active_anon 81920\ntotal_inactive_file 20971520\ntotal_active_file 1871872\n";

TEST_F(StatsTree, V1EveryField) {
  CgroupManager m = V1({"cpu", "cpuacct", "memory", "pids", "devices"});
  Files("cpuacct", {{"cpuacct.usage", "1234567890\n"}});
  Files("cpu", {{"cpu.stat", "nr_periods 40\nnr_throttled 7\nthrottled_time 350000000\nnr_bursts 0\n"}});
  Files("memory", {{"memory.usage_in_bytes", "134217728\n"},
                   {"memory.stat", kV1MemoryStat},
                   {"memory.limit_in_bytes", "268435456\n"},
                   {"memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}});
  Files("pids", {{"pids.current", "5\n"}, {"pids.max", "100\n"}});
  auto s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->cpu);
  EXPECT_EQ(s->cpu->usage_ns, 1234567890u);
  EXPECT_FALSE(s->cpu->user_ns);
  EXPECT_FALSE(s->cpu->system_ns);
  ASSERT_TRUE(s->cpu->throttling);
  EXPECT_EQ(s->cpu->throttling->periods, 40u);
  EXPECT_EQ(s->cpu->throttling->throttled_periods, 7u);
  EXPECT_EQ(s->cpu->throttling->throttled_ns, 350000000u);
  ASSERT_TRUE(s->memory);
  const MemoryStats& mem = *s->memory;
  EXPECT_EQ(mem.usage_bytes, 134217728u);
  EXPECT_EQ(mem.working_set_bytes, 134217728u - 20971520u);
  EXPECT_EQ(mem.rss_bytes, 52428800u);
  EXPECT_EQ(mem.cache_bytes, 73728000u);
  EXPECT_EQ(mem.pgfault, 16203735u);
  EXPECT_EQ(mem.pgmajfault, 1347u);
  EXPECT_EQ(mem.limit_bytes, 268435456u);
  EXPECT_EQ(mem.available_bytes, 268435456u - (134217728u - 20971520u));
  EXPECT_EQ(mem.oom_kill_count, 3u);
  EXPECT_EQ(mem.swap_usage_bytes, 4096u);
  EXPECT_FALSE(mem.swap_limit_bytes);
  ASSERT_TRUE(s->pids);
  EXPECT_EQ(s->pids->current, 5u);
  EXPECT_EQ(s->pids->limit, 100u);
  EXPECT_FALSE(s->cpu_pressure || s->memory_pressure || s->io_pressure) << "no PSI on v1";
}

TEST_F(StatsTree, V1UnlimitedClampedAndOldKernel) {
  CgroupManager m = V1({"cpu", "cpuacct", "memory", "pids"});
  Files("cpuacct", {{"cpuacct.usage", "0\n"}});
  Files("cpu", {{"cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"}});
  // inactive_file larger than usage (it happens: the counters are not read
  // atomically) clamps the working set at 0. No oom_kill line (< 4.13), no
  // total_swap (no swap accounting).
  Files("memory", {{"memory.usage_in_bytes", "1000\n"},
                   {"memory.stat", "total_rss 10\ntotal_cache 20\ntotal_inactive_file 5000\n"},
                   {"memory.limit_in_bytes", "9223372036854771712\n"},
                   {"memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"}});
  Files("pids", {{"pids.current", "1\n"}, {"pids.max", "max\n"}});
  auto s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->memory);
  EXPECT_EQ(s->memory->working_set_bytes, 0u);
  EXPECT_FALSE(s->memory->limit_bytes) << "2^63 - page is unlimited";
  EXPECT_FALSE(s->memory->available_bytes);
  EXPECT_FALSE(s->memory->oom_kill_count);
  EXPECT_FALSE(s->memory->swap_usage_bytes);
  ASSERT_TRUE(s->pids);
  EXPECT_FALSE(s->pids->limit);

  // 2^62 exactly is unlimited too; just below is a limit.
  Files("memory", {{"memory.limit_in_bytes", "4611686018427387904\n"}});
  EXPECT_FALSE(m.Stats(kPath)->memory->limit_bytes);
  Files("memory", {{"memory.limit_in_bytes", "4611686018427383808\n"}});
  EXPECT_EQ(m.Stats(kPath)->memory->limit_bytes, 4611686018427383808u);
  EXPECT_EQ(m.Stats(kPath)->memory->available_bytes, 4611686018427383808u) << "working set 0";
}

TEST_F(StatsTree, V1MissingControllersAreAbsent) {
  // Only memory mounted; the cgroup is also missing from cpuacct when it is.
  CgroupManager m = V1({"memory", "cpuacct", "devices"});
  Files("memory", {{"memory.usage_in_bytes", "10\n"},
                   {"memory.stat", "total_inactive_file 0\n"},
                   {"memory.limit_in_bytes", "9223372036854771712\n"},
                   {"memory.oom_control", "oom_kill 0\n"}});
  auto s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->cpu);
  EXPECT_FALSE(s->pids);
  ASSERT_TRUE(s->memory);
  EXPECT_EQ(s->memory->working_set_bytes, 10u);

  // Present only in a hierarchy without counters: exists, nothing to report.
  ASSERT_TRUE(RemoveAll(JoinPath(dir_, "memory/kubepods")).ok());
  Files("devices", {});
  s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->cpu || s->memory || s->pids);

  ASSERT_TRUE(RemoveAll(JoinPath(dir_, "devices/kubepods")).ok());
  EXPECT_EQ(m.Stats(kPath).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(m.Stats("/").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Stats("/kubepods/../x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StatsTree, V1CorruptFileIsAnError) {
  CgroupManager m = V1({"cpuacct"});
  Files("cpuacct", {{"cpuacct.usage", "12x\n"}});
  EXPECT_EQ(m.Stats(kPath).status().code(), absl::StatusCode::kInternal);
}

const char kV2MemoryStat[] =
    "anon 52428800\nfile 73728000\nkernel 1000\nsock 0\nshmem 0\nfile_mapped 0\n"
    "inactive_anon 52000000\nactive_anon 0\ninactive_file 20971520\nactive_file 1000\n"
    "pgfault 777\npgmajfault 3\nworkingset_refault_file 0\n";

TEST_F(StatsTree, V2EveryField) {
  CgroupManager m = V2();
  Files("unified",
        {{"cpu.stat",
          "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
          "nr_periods 20\nnr_throttled 4\nthrottled_usec 12345\nnr_bursts 0\nburst_usec 0\n"},
         {"memory.current", "134217728\n"},
         {"memory.stat", kV2MemoryStat},
         {"memory.max", "268435456\n"},
         {"memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n"},
         {"memory.swap.current", "8192\n"},
         {"memory.swap.max", "1048576\n"},
         {"pids.current", "7\n"},
         {"pids.max", "max\n"},
         {"cpu.pressure",
          "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=789\n"},
         {"memory.pressure",
          "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"},
         {"io.pressure",
          "some avg10=12.34 avg60=5.67 avg300=0.89 total=42\nfull avg10=1.00 avg60=2.00 avg300=3.00 total=41\n"}});
  auto s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->cpu);
  EXPECT_EQ(s->cpu->usage_ns, 1500000000u);
  EXPECT_EQ(s->cpu->user_ns, 1000000000u);
  EXPECT_EQ(s->cpu->system_ns, 500000000u);
  ASSERT_TRUE(s->cpu->throttling);
  EXPECT_EQ(s->cpu->throttling->periods, 20u);
  EXPECT_EQ(s->cpu->throttling->throttled_periods, 4u);
  EXPECT_EQ(s->cpu->throttling->throttled_ns, 12345000u);
  ASSERT_TRUE(s->memory);
  const MemoryStats& mem = *s->memory;
  EXPECT_EQ(mem.usage_bytes, 134217728u);
  EXPECT_EQ(mem.working_set_bytes, 134217728u - 20971520u);
  EXPECT_EQ(mem.rss_bytes, 52428800u);
  EXPECT_EQ(mem.cache_bytes, 73728000u);
  EXPECT_EQ(mem.pgfault, 777u);
  EXPECT_EQ(mem.pgmajfault, 3u);
  EXPECT_EQ(mem.limit_bytes, 268435456u);
  EXPECT_EQ(mem.available_bytes, 268435456u - (134217728u - 20971520u));
  EXPECT_EQ(mem.oom_kill_count, 1u) << "oom_kill, not oom or oom_group_kill";
  EXPECT_EQ(mem.swap_usage_bytes, 8192u);
  EXPECT_EQ(mem.swap_limit_bytes, 1048576u);
  ASSERT_TRUE(s->pids);
  EXPECT_EQ(s->pids->current, 7u);
  EXPECT_FALSE(s->pids->limit);
  ASSERT_TRUE(s->cpu_pressure);
  EXPECT_DOUBLE_EQ(s->cpu_pressure->some.avg10, 1.5);
  EXPECT_DOUBLE_EQ(s->cpu_pressure->some.avg60, 0.25);
  EXPECT_DOUBLE_EQ(s->cpu_pressure->some.avg300, 0.0);
  EXPECT_EQ(s->cpu_pressure->some.total_us, 123456u);
  ASSERT_TRUE(s->cpu_pressure->full);
  EXPECT_DOUBLE_EQ(s->cpu_pressure->full->avg10, 0.1);
  EXPECT_EQ(s->cpu_pressure->full->total_us, 789u);
  ASSERT_TRUE(s->memory_pressure);
  EXPECT_EQ(s->memory_pressure->some.total_us, 0u);
  ASSERT_TRUE(s->io_pressure);
  EXPECT_DOUBLE_EQ(s->io_pressure->some.avg10, 12.34);
  EXPECT_DOUBLE_EQ(s->io_pressure->some.avg60, 5.67);
  EXPECT_DOUBLE_EQ(s->io_pressure->some.avg300, 0.89);
  EXPECT_EQ(s->io_pressure->some.total_us, 42u);
  ASSERT_TRUE(s->io_pressure->full);
  EXPECT_DOUBLE_EQ(s->io_pressure->full->avg300, 3.0);
  EXPECT_EQ(s->io_pressure->full->total_us, 41u);
}

TEST_F(StatsTree, V2UnlimitedClampedAndMissingControllers) {
  CgroupManager m = V2();
  // Only the core cpu.stat keys (cpu controller not enabled), memory without
  // swap files, no pids controller, no PSI (CONFIG_PSI off).
  Files("unified", {{"cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"},
                    {"memory.current", "4096\n"},
                    {"memory.stat", "anon 0\nfile 0\ninactive_file 8192\n"},
                    {"memory.max", "max\n"},
                    {"memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"}});
  auto s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->cpu);
  EXPECT_EQ(s->cpu->usage_ns, 10000u);
  EXPECT_FALSE(s->cpu->throttling);
  ASSERT_TRUE(s->memory);
  EXPECT_EQ(s->memory->working_set_bytes, 0u) << "clamped";
  EXPECT_FALSE(s->memory->limit_bytes);
  EXPECT_FALSE(s->memory->available_bytes);
  EXPECT_EQ(s->memory->oom_kill_count, 0u);
  EXPECT_FALSE(s->memory->swap_usage_bytes);
  EXPECT_FALSE(s->memory->swap_limit_bytes);
  EXPECT_FALSE(s->pids);
  EXPECT_FALSE(s->cpu_pressure || s->memory_pressure || s->io_pressure);

  // A limit below the working set: nothing available, no wrap-around.
  Files("unified", {{"memory.max", "1000\n"}, {"memory.stat", "inactive_file 0\n"}});
  s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->memory->limit_bytes, 1000u);
  EXPECT_EQ(s->memory->available_bytes, 0u);

  // Memory controller not enabled: no memory.* files at all.
  for (const char* f : {"memory.current", "memory.stat", "memory.max", "memory.events"})
    ASSERT_TRUE(RemoveAll(JoinPath(JoinPath(dir_, "unified"), std::string(kPath) + "/" + f)).ok());
  s = m.Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->cpu);
  EXPECT_FALSE(s->memory);

  ASSERT_TRUE(RemoveAll(JoinPath(dir_, "unified/kubepods/pod1/c1")).ok());
  EXPECT_EQ(m.Stats(kPath).status().code(), absl::StatusCode::kNotFound);
}

TEST(Pressure, ParsesAndRejects) {
  auto p = ParsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->full) << "older kernels have no full line in cpu.pressure";
  EXPECT_FALSE(ParsePressure("").ok());
  EXPECT_FALSE(ParsePressure("some avg10=0.00 avg60=0.00 total=0\n").ok());
  EXPECT_FALSE(ParsePressure("some avg10=x avg60=0.00 avg300=0.00 total=0\n").ok());
  EXPECT_FALSE(ParsePressure("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").ok()) << "no some";
}

TEST(NetDev, ParsesRealLookingSample) {
  const char kSample[] =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
      "carrier compressed\n"
      "    lo: 11161668    2462    0    0    0     0          0         0 11161668    2462    0    0    0     0 "
      "      0          0\n"
      "  eth0:12345678901234    1555    3    4    5     6          7         8    83803    1149    9   10   11    "
      " 12      13         14\n"
      "veth1234abcd: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
  auto r = ParseNetDev(kSample);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].name, "lo");
  EXPECT_EQ((*r)[0].rx_bytes, 11161668u);
  EXPECT_EQ((*r)[0].tx_packets, 2462u);
  const InterfaceStats& e = (*r)[1];
  EXPECT_EQ(e.name, "eth0");
  EXPECT_EQ(e.rx_bytes, 12345678901234u) << "glued to the colon";
  EXPECT_EQ(e.rx_packets, 1555u);
  EXPECT_EQ(e.rx_errors, 3u);
  EXPECT_EQ(e.rx_dropped, 4u);
  EXPECT_EQ(e.tx_bytes, 83803u);
  EXPECT_EQ(e.tx_packets, 1149u);
  EXPECT_EQ(e.tx_errors, 9u);
  EXPECT_EQ(e.tx_dropped, 10u);
  const InterfaceStats& v = (*r)[2];
  EXPECT_EQ(v.name, "veth1234abcd");
  EXPECT_EQ(v.rx_bytes, 1u);
  EXPECT_EQ(v.rx_dropped, 4u);
  EXPECT_EQ(v.tx_bytes, 9u);
  EXPECT_EQ(v.tx_dropped, 12u);

  EXPECT_TRUE(ParseNetDev("")->empty());
  EXPECT_FALSE(ParseNetDev("eth0 1 2 3\n").ok()) << "no colon";
  EXPECT_FALSE(ParseNetDev("eth0: 1 2 3\n").ok()) << "too few counters";
  EXPECT_FALSE(ParseNetDev("eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n").ok());
  EXPECT_FALSE(ParseNetDev(": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n").ok()) << "no name";
}

TEST(NetDev, ReadsOwnNamespace) {
  auto r = ReadNetDev(::getpid());
  ASSERT_TRUE(r.ok()) << r.status();
  bool lo = false;
  for (const auto& i : *r) lo |= i.name == "lo";
  EXPECT_TRUE(lo);
  EXPECT_EQ(ReadNetDev(-1).status().code(), absl::StatusCode::kNotFound);
}

class DiskUsageTest : public crisp::testing::TempDirTest {
 protected:
  uint64_t Blocks(const std::string& p) {
    struct stat st;
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
};

TEST_F(DiskUsageTest, CountsTreeOnceWithoutFollowingSymlinks) {
  const std::string root = JoinPath(dir_, "upper");
  ASSERT_TRUE(MkdirAll(root + "/a/b/c").ok());
  ASSERT_TRUE(MkdirAll(root + "/d").ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/a/f1", std::string(10000, 'x'), 0644, false).ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/a/b/c/f2", std::string(100000, 'y'), 0644, false).ok());
  ASSERT_EQ(::link((root + "/a/b/c/f2").c_str(), (root + "/d/hard").c_str()), 0);
  // A symlink to a big tree outside: only the link itself counts.
  const std::string outside = JoinPath(dir_, "outside");
  ASSERT_TRUE(MkdirAll(outside).ok());
  ASSERT_TRUE(WriteFileAtomic(outside + "/big", std::string(1 << 20, 'z'), 0644, false).ok());
  ASSERT_EQ(::symlink(outside.c_str(), (root + "/d/link").c_str()), 0);
  ASSERT_EQ(::symlink((outside + "/big").c_str(), (root + "/biglink").c_str()), 0);
  // Sparse: 1 GiB apparent size, one written page.
  {
    int fd = ::open((root + "/sparse").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, off_t{1} << 30), 0);
    ASSERT_EQ(::pwrite(fd, "data", 4, off_t{512} << 20), 4);
    ::close(fd);
  }

  uint64_t want = 0;
  for (const char* p : {"", "/a", "/a/b", "/a/b/c", "/d", "/a/f1", "/a/b/c/f2", "/d/link", "/biglink", "/sparse"})
    want += Blocks(root + p);
  auto u = DirUsage(root);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->inodes, 10u) << "5 dirs, f1, f2 (= hard), 2 symlinks, sparse";
  EXPECT_EQ(u->bytes, want);
  EXPECT_LT(u->bytes, uint64_t{1} << 20) << "neither the symlinked 1 MiB nor the sparse 1 GiB";
  EXPECT_GE(u->bytes, 100000u) << "f2 counted";

  EXPECT_EQ(DirUsage(JoinPath(dir_, "nope")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DirUsage(root + "/a/f1").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DiskUsageTest, DeepTreeIsIterative) {
  // Deeper than PATH_MAX allows as one path and than a recursive walk with
  // an fd per level would have fds for (ulimit -n 1024).
  const std::string root = JoinPath(dir_, "deep");
  ASSERT_TRUE(MkdirAll(root).ok());
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  constexpr int kDepth = 1100;
  for (int i = 0; i < kDepth; ++i) {
    ASSERT_EQ(::mkdirat(fd, "dddddddd", 0755), 0);
    int next = ::openat(fd, "dddddddd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(fd);
    ASSERT_GE(next, 0);
    fd = next;
  }
  ::close(fd);
  auto u = DirUsage(root);
  EXPECT_TRUE(u.ok()) << u.status();
  if (u.ok()) {
    EXPECT_EQ(u->inodes, kDepth + 1u);
  }

  // RemoveAll in TearDown holds an fd per level: flatten the chain first by
  // pulling each grandchild up to the top.
  int rfd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(rfd, 0);
  while (::renameat(rfd, "dddddddd/dddddddd", rfd, "next") == 0) {
    ASSERT_EQ(::unlinkat(rfd, "dddddddd", AT_REMOVEDIR), 0);
    ASSERT_EQ(::renameat(rfd, "next", rfd, "dddddddd"), 0);
  }
  ::close(rfd);
}

TEST_F(DiskUsageTest, FsUsageIdentifiesTheFilesystem) {
  auto f = FsUsage(dir_);
  ASSERT_TRUE(f.ok()) << f.status();
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(f->dev_major, major(st.st_dev));
  EXPECT_EQ(f->dev_minor, minor(st.st_dev));
  EXPECT_GT(f->capacity_bytes, 0u);
  EXPECT_LE(f->used_bytes, f->capacity_bytes);
  EXPECT_LE(f->available_bytes, f->capacity_bytes);
  EXPECT_EQ(f->inodes_used + f->inodes_free, f->inodes_total);
  EXPECT_EQ(FsUsage(JoinPath(dir_, "nope")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace crisp::runtime
