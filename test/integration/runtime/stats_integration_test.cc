// Real kernel: CgroupManager::Stats on a live cgroup, ReadNetDev, DirUsage
// across a mount. Root only. Leaves no processes, mounts or cgroups behind.
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "gtest/gtest.h"
#include "runtime/cgroups.h"
#include "runtime/stats.h"
#include "test/testing/temp_dir.h"

namespace crisp::runtime {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// Child body: async-signal-safe calls only (we are a forked copy of a
// threaded process). Waits to be moved into the cgroup, burns ~200 ms of CPU,
// touches 50 MiB of anonymous memory, reports, and waits to be killed.
[[noreturn]] void Child(int go_fd, int ready_fd) {
  char c;
  if (::read(go_fd, &c, 1) != 1) ::_exit(1);
  timespec start, now;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
  volatile uint64_t x = 0;
  do {
    for (int i = 0; i < 100000; ++i) x = x + i;
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 200000000L);
  void* p = ::mmap(nullptr, 50 * kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) ::_exit(2);
  ::memset(p, 1, 50 * kMiB);
  if (::write(ready_fd, "r", 1) != 1) ::_exit(3);
  for (;;) ::pause();
}

TEST(StatsIntegration, LiveCgroupCounters) {
  ASSERT_EQ(::geteuid(), 0u) << "integration tests run as root";
  auto layout = CgroupLayout::Detect();
  ASSERT_TRUE(layout.ok()) << layout.status();
  CgroupManager m(*layout, NewFsCgroupWriter());
  const std::string parent = "/crisp-it-stats-" + RandomHex(4);
  const std::string path = parent + "/c";
  CgroupResources res;
  res.memory_limit = 256 * kMiB;
  res.pids_limit = 64;
  ASSERT_TRUE(m.Create(path, res).ok());

  int go[2], ready[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) Child(go[0], ready[1]);
  ::close(go[0]);
  ::close(ready[1]);
  bool reaped = false;
  absl::Cleanup cleanup = [&] {
    ::close(go[1]);
    ::close(ready[0]);
    if (!reaped) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    for (int i = 0; i < 50 && !m.Destroy(path).ok(); ++i) ::usleep(20000);
    (void)m.Destroy(parent);
  };

  ASSERT_TRUE(m.AddProcess(path, pid).ok());
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "child died before touching its memory";

  auto s = m.Stats(path);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->cpu);
  ASSERT_TRUE(s->cpu->usage_ns);
  EXPECT_GE(*s->cpu->usage_ns, 150'000'000u);
  ASSERT_TRUE(s->memory);
  EXPECT_GE(s->memory->usage_bytes, 50 * kMiB);
  EXPECT_GE(s->memory->working_set_bytes, 50 * kMiB);
  EXPECT_GE(s->memory->rss_bytes, 50 * kMiB);
  EXPECT_EQ(s->memory->limit_bytes, 256 * kMiB);
  ASSERT_TRUE(s->memory->available_bytes);
  EXPECT_EQ(*s->memory->available_bytes, 256 * kMiB - s->memory->working_set_bytes);
  EXPECT_GE(s->memory->pgfault, 50 * kMiB / 4096 / 2) << "one fault per page, or per THP";
  if (s->memory->oom_kill_count) {
    EXPECT_EQ(*s->memory->oom_kill_count, 0u);
  }
  ASSERT_TRUE(s->pids);
  EXPECT_GE(s->pids->current, 1u);
  EXPECT_EQ(s->pids->limit, 64u);
  if (!layout->v2) {
    EXPECT_TRUE(s->cpu->throttling) << "v1 cpu hierarchy has cpu.stat";
    EXPECT_FALSE(s->cpu_pressure) << "no PSI on v1";
  }

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  reaped = true;
  absl::Status d;
  for (int i = 0; i < 50; ++i) {
    d = m.Destroy(path);
    if (d.ok()) break;
    ::usleep(20000);
  }
  ASSERT_TRUE(d.ok()) << d;
  ASSERT_TRUE(m.Destroy(parent).ok());
  EXPECT_FALSE(m.Exists(parent));
  if (layout->v2) {
    EXPECT_FALSE(PathExists(JoinPath(layout->unified_root, parent)));
  } else {
    for (const auto& [ctrl, root] : layout->v1_roots)
      EXPECT_FALSE(PathExists(JoinPath(root, parent))) << ctrl;
  }
  EXPECT_EQ(m.Stats(path).status().code(), absl::StatusCode::kNotFound);
}

TEST(StatsIntegration, NetDevHasLoopback) {
  auto r = ReadNetDev(::getpid());
  ASSERT_TRUE(r.ok()) << r.status();
  bool lo = false;
  for (const auto& i : *r) lo |= i.name == "lo";
  EXPECT_TRUE(lo);
}

class DirUsageMount : public crisp::testing::TempDirTest {};

TEST_F(DirUsageMount, DoesNotCrossMountPoints) {
  const std::string mnt = JoinPath(dir_, "mnt");
  ASSERT_TRUE(MkdirAll(mnt).ok());
  auto before = DirUsage(dir_);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=16m"), 0) << strerror(errno);
  absl::Cleanup umount = [&] { ::umount2(mnt.c_str(), MNT_DETACH); };
  ASSERT_TRUE(WriteFileAtomic(mnt + "/f", std::string(4 * kMiB, 'x'), 0644, false).ok());
  auto after = DirUsage(dir_);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->inodes, before->inodes - 1) << "the mount point is skipped, its contents too";
  EXPECT_LT(after->bytes, 4 * kMiB);
}

}  // namespace
}  // namespace crisp::runtime
