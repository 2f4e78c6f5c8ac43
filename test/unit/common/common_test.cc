#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/ids.h"
#include "common/proc.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/units.h"
#include "gtest/gtest.h"
#include "test/testing/temp_dir.h"

namespace crisp {
namespace {

using TempDir = crisp::testing::TempDirTest;

TEST_F(TempDir, AtomicWriteAndRead) {
  std::string p = JoinPath(dir_, "f.json");
  ASSERT_TRUE(WriteFileAtomic(p, "hello", 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(p, "world", 0600).ok());
  auto c = ReadFile(p);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, "world");
  struct stat st;
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto names = ListDir(dir_);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 1u) << "no temp file left behind";
}

TEST_F(TempDir, ReadMissingIsNotFound) {
  EXPECT_EQ(ReadFile(JoinPath(dir_, "nope")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TempDir, MkdirAllAndRemoveAllDoNotFollowSymlinks) {
  std::string outside = JoinPath(dir_, "outside");
  ASSERT_TRUE(MkdirAll(outside).ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(outside, "keep"), "x").ok());
  std::string tree = JoinPath(dir_, "a/b/c");
  ASSERT_TRUE(MkdirAll(tree).ok());
  ASSERT_EQ(::symlink(outside.c_str(), JoinPath(tree, "link").c_str()), 0);
  ASSERT_TRUE(RemoveAll(JoinPath(dir_, "a")).ok());
  EXPECT_FALSE(PathExists(JoinPath(dir_, "a")));
  EXPECT_TRUE(PathExists(JoinPath(outside, "keep")));
  EXPECT_TRUE(RemoveAll(JoinPath(dir_, "never-existed")).ok());
}

TEST(JoinPath, Slashes) {
  EXPECT_EQ(JoinPath("/a/", "/b"), "/a/b");
  EXPECT_EQ(JoinPath("/", "b"), "/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
}

TEST(Ids, HexAndUnique) {
  std::string a = NewId(), b = NewId();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(Units, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("64Mi"), 64ull << 20);
  EXPECT_EQ(*ParseByteSize("1k"), 1000u);
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("12XB").ok());
  EXPECT_FALSE(ParseByteSize("Mi").ok());
  EXPECT_FALSE(ParseByteSize("99999999999999999999Ti").ok());
}

TEST(Units, Durations) {
  EXPECT_EQ(*ParseDurationString("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationString("500ms"), absl::Milliseconds(500));
  EXPECT_FALSE(ParseDurationString("-1s").ok());
  EXPECT_FALSE(ParseDurationString("soon").ok());
}

TEST(Status, ErrnoMapping) {
  EXPECT_EQ(ErrnoStatus(ENOENT, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EEXIST, "x").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(ErrnoStatus(EIO, "reading y").message().find("reading y"), std::string::npos);
  EXPECT_EQ(Annotate(absl::NotFoundError("b"), "a").message(), "a: b");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "a").ok());
}

TEST(Reaper, SpawnWaitExitCode) {
  auto pid = Reaper::Spawn({.argv = {"/bin/sh", "-c", "exit 7"}});
  ASSERT_TRUE(pid.ok()) << pid.status();
  auto st = Reaper::Wait(*pid, absl::Seconds(10));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE(WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 7);
}

TEST(Reaper, PassesExtraFdsAndClosesOthers) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  // fd 3 in the child is the write end; the child lists its fds through it.
  auto pid = Reaper::Spawn({.argv = {"/bin/sh", "-c", "ls /proc/self/fd >&3"}, .extra_fds = {p[1]}});
  ASSERT_TRUE(pid.ok());
  ::close(p[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(p[0]);
  ASSERT_TRUE(Reaper::Wait(*pid).ok());
  // 0,1,2,3 and the fd ls opens for /proc/self/fd itself.
  EXPECT_EQ(out, "0\n1\n2\n3\n4\n");
}

TEST(Reaper, WaitTimesOut) {
  auto pid = Reaper::Spawn({.argv = {"/bin/sleep", "5"}});
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(Reaper::Wait(*pid, absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ::kill(*pid, SIGKILL);
  auto st = Reaper::Wait(*pid, absl::Seconds(5));
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(WIFSIGNALED(*st));
}

TEST(Proc, IdentityAndKill) {
  auto pid = Reaper::Spawn({.argv = {"/bin/sleep", "30"}});
  ASSERT_TRUE(pid.ok());
  auto start = ProcStartTime(*pid);
  ASSERT_TRUE(start.ok());
  ProcessId id{*pid, *start};
  EXPECT_TRUE(ProcessAlive(id));
  EXPECT_FALSE(ProcessAlive(ProcessId{*pid, *start + 1})) << "a different start time is a different process";
  EXPECT_TRUE(SignalProcess(ProcessId{*pid, *start + 1}, SIGKILL).ok());
  EXPECT_TRUE(ProcessAlive(id)) << "signal to a stale identity must not reach the new process";
  EXPECT_TRUE(KillProcess(id, absl::Seconds(5)).ok());
  ASSERT_TRUE(Reaper::Wait(*pid, absl::Seconds(5)).ok());
  EXPECT_FALSE(ProcessAlive(id));
}

}  // namespace
}  // namespace crisp
