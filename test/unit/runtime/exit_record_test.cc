// Exit records: JSON round trip, atomic write, strict reading, wait-status mapping.
#include "runtime/exit_record.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/unit/runtime/plain_temp_dir.h"

namespace crisp::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ExitRecord Sample() {
  ExitRecord r;
  r.pid = 4242;
  r.start_time = 123456789;
  r.exit_code = 137;
  r.signal = 9;
  r.oom_killed = true;
  r.started_at_ns = 1475713029669794202;
  r.finished_at_ns = 1475713090000000001;
  r.message = "killed: \"quoted\", back\\slash, new\nline, unicode \xc3\xa9 \xe2\x9c\x93";
  return r;
}

void ExpectSame(const ExitRecord& got, const ExitRecord& want) {
  EXPECT_EQ(got.pid, want.pid);
  EXPECT_EQ(got.start_time, want.start_time);
  EXPECT_EQ(got.exit_code, want.exit_code);
  EXPECT_EQ(got.signal, want.signal);
  EXPECT_EQ(got.oom_killed, want.oom_killed);
  EXPECT_EQ(got.started_at_ns, want.started_at_ns);
  EXPECT_EQ(got.finished_at_ns, want.finished_at_ns);
  EXPECT_EQ(got.message, want.message);
}

class ExitRecordTest : public crisp::testing::PlainTempDirTest {
 protected:
  std::string Path() const { return dir_ + "/exit.json"; }

  // Writes `text` as the record file and reads it; returns the error ("" on success).
  std::string ReadError(const std::string& text, ExitRecord* rec = nullptr) {
    WriteText(Path(), text);
    ExitRecord scratch;
    std::string error;
    bool ok = ReadExitRecord(Path(), rec ? rec : &scratch, &error);
    if (ok) {
      EXPECT_EQ(error, "");
      return "";
    }
    EXPECT_NE(error, "");
    return error;
  }
};

TEST_F(ExitRecordTest, RoundTrip) {
  ExitRecord want = Sample();
  ASSERT_EQ(WriteExitRecord(Path(), want), 0);
  ExitRecord got;
  std::string error;
  ASSERT_TRUE(ReadExitRecord(Path(), &got, &error)) << error;
  ExpectSame(got, want);
}

TEST_F(ExitRecordTest, RoundTripOfExtremeValues) {
  ExitRecord want;
  want.pid = std::numeric_limits<int>::max();
  want.start_time = std::numeric_limits<uint64_t>::max();
  want.exit_code = 255;
  want.signal = 127;
  want.started_at_ns = std::numeric_limits<int64_t>::min();
  want.finished_at_ns = std::numeric_limits<int64_t>::max();
  ASSERT_EQ(WriteExitRecord(Path(), want), 0);
  ExitRecord got = Sample();
  std::string error;
  ASSERT_TRUE(ReadExitRecord(Path(), &got, &error)) << error;
  ExpectSame(got, want);
}

TEST_F(ExitRecordTest, InvalidUtf8InTheMessageIsReplacedNotFatal) {
  ExitRecord want = Sample();
  want.message = "bad \xff byte";
  ASSERT_EQ(WriteExitRecord(Path(), want), 0);
  ExitRecord got;
  std::string error;
  ASSERT_TRUE(ReadExitRecord(Path(), &got, &error)) << error;
  EXPECT_EQ(got.message, "bad \xef\xbf\xbd byte");  // U+FFFD
}

TEST_F(ExitRecordTest, AtomicWriteLeavesOnlyTheRecord) {
  ExitRecord first = Sample();
  ASSERT_EQ(WriteExitRecord(Path(), first), 0);
  EXPECT_THAT(ListDir(dir_), ElementsAre("exit.json"));
  ExitRecord second = Sample();
  second.exit_code = 0;
  second.signal = 0;
  second.oom_killed = false;
  ASSERT_EQ(WriteExitRecord(Path(), second), 0);  // replaces the first one
  EXPECT_THAT(ListDir(dir_), ElementsAre("exit.json"));
  ExitRecord got;
  ASSERT_TRUE(ReadExitRecord(Path(), &got, nullptr));
  ExpectSame(got, second);
  struct stat st;
  ASSERT_EQ(::stat(Path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0600, 0600u);
}

TEST_F(ExitRecordTest, WritesAreJsonObjectsWithTheDocumentedKeys) {
  ASSERT_EQ(WriteExitRecord(Path(), Sample()), 0);
  std::string text = ReadText(Path());
  for (const char* key : {"\"pid\":4242", "\"start_time\":123456789", "\"exit_code\":137", "\"signal\":9",
                          "\"oom_killed\":true", "\"started_at_ns\":1475713029669794202",
                          "\"finished_at_ns\":1475713090000000001", "\"message\":"}) {
    EXPECT_THAT(text, HasSubstr(key));
  }
}

TEST_F(ExitRecordTest, WriteIntoMissingDirectoryFails) {
  EXPECT_EQ(WriteExitRecord(dir_ + "/gone/exit.json", Sample()), ENOENT);
  EXPECT_THAT(ListDir(dir_), IsEmpty());
}

TEST_F(ExitRecordTest, FailedRenameRemovesTheTempFile) {
  // A directory where the record should go: the temp file is written, the rename fails.
  ASSERT_EQ(::mkdir(Path().c_str(), 0755), 0);
  EXPECT_EQ(WriteExitRecord(Path(), Sample()), EISDIR);
  EXPECT_THAT(ListDir(dir_), ElementsAre("exit.json"));
  EXPECT_THAT(ListDir(Path()), IsEmpty());
}

TEST_F(ExitRecordTest, RelativePathsWork) {
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(::chdir(dir_.c_str()), 0);
  int rc = WriteExitRecord("exit.json", Sample());
  ExitRecord got;
  bool ok = ReadExitRecord("exit.json", &got, nullptr);
  ASSERT_EQ(::chdir(cwd), 0);
  EXPECT_EQ(rc, 0);
  EXPECT_TRUE(ok);
  EXPECT_EQ(got.pid, 4242);
}

TEST_F(ExitRecordTest, MissingFile) {
  ExitRecord got;
  std::string error;
  EXPECT_FALSE(ReadExitRecord(Path(), &got, &error));
  EXPECT_THAT(error, HasSubstr(Path()));
  EXPECT_THAT(error, HasSubstr("No such file or directory"));
  EXPECT_FALSE(ReadExitRecord(Path(), &got, nullptr));  // a null error is allowed
}

TEST_F(ExitRecordTest, GarbledFiles) {
  EXPECT_THAT(ReadError(""), HasSubstr("not valid JSON"));
  EXPECT_THAT(ReadError("{\"pid\": 1, \"exit_code\": 0, \"finished_at_ns\": 5"), HasSubstr("not valid JSON"));
  EXPECT_THAT(ReadError("\x01\x02garbage"), HasSubstr("not valid JSON"));
  EXPECT_THAT(ReadError("[1, 2, 3]"), HasSubstr("not a JSON object"));
  EXPECT_THAT(ReadError("42"), HasSubstr("not a JSON object"));
  EXPECT_THAT(ReadError("null"), HasSubstr("not a JSON object"));
  EXPECT_THAT(ReadError("{}"), HasSubstr(Path()));
}

TEST_F(ExitRecordTest, TooLargeFile) {
  EXPECT_THAT(ReadError(std::string(2 << 20, ' ')), HasSubstr("larger than"));
}

TEST_F(ExitRecordTest, RequiredKeys) {
  EXPECT_EQ(ReadError(R"({"pid": 1, "exit_code": 0, "finished_at_ns": 5})"), "");
  EXPECT_THAT(ReadError(R"({"exit_code": 0, "finished_at_ns": 5})"), HasSubstr("missing key \"pid\""));
  EXPECT_THAT(ReadError(R"({"pid": 1, "finished_at_ns": 5})"), HasSubstr("missing key \"exit_code\""));
  EXPECT_THAT(ReadError(R"({"pid": 1, "exit_code": 0})"), HasSubstr("missing key \"finished_at_ns\""));
}

TEST_F(ExitRecordTest, OptionalKeysDefaultAndUnknownKeysAreIgnored) {
  ExitRecord got = Sample();
  ASSERT_EQ(
      ReadError(R"({"pid": 7, "exit_code": 3, "finished_at_ns": 5, "from_the_future": {"x": [1]}})", &got),
      "");
  EXPECT_EQ(got.pid, 7);
  EXPECT_EQ(got.exit_code, 3);
  EXPECT_EQ(got.finished_at_ns, 5);
  EXPECT_EQ(got.start_time, 0u);
  EXPECT_EQ(got.signal, 0);
  EXPECT_FALSE(got.oom_killed);
  EXPECT_EQ(got.started_at_ns, 0);
  EXPECT_EQ(got.message, "");
}

TEST_F(ExitRecordTest, WrongTypesAreRejected) {
  const std::string base = R"("pid": 1, "exit_code": 0, "finished_at_ns": 5)";
  struct Case {
    std::string json;
    std::string want;
  };
  const std::vector<Case> cases = {
      {R"({"pid": "1", "exit_code": 0, "finished_at_ns": 5})", "\"pid\" is not an integer"},
      {R"({"pid": 1.0, "exit_code": 0, "finished_at_ns": 5})", "\"pid\" is not an integer"},
      {R"({"pid": 1, "exit_code": 1.5, "finished_at_ns": 5})", "\"exit_code\" is not an integer"},
      {R"({"pid": 1, "exit_code": null, "finished_at_ns": 5})", "\"exit_code\" is not an integer"},
      {R"({"pid": 1, "exit_code": 0, "finished_at_ns": "5"})", "\"finished_at_ns\" is not an integer"},
      {"{" + base + R"(, "signal": true})", "\"signal\" is not an integer"},
      {"{" + base + R"(, "started_at_ns": [1]})", "\"started_at_ns\" is not an integer"},
      {"{" + base + R"(, "start_time": -1})", "\"start_time\" is not a non-negative integer"},
      {"{" + base + R"(, "start_time": "12"})", "\"start_time\" is not a non-negative integer"},
      {"{" + base + R"(, "oom_killed": 1})", "\"oom_killed\" is not a boolean"},
      {"{" + base + R"(, "oom_killed": "true"})", "\"oom_killed\" is not a boolean"},
      {"{" + base + R"(, "message": 5})", "\"message\" is not a string"},
      {"{" + base + R"(, "message": null})", "\"message\" is not a string"},
  };
  for (const Case& c : cases) EXPECT_THAT(ReadError(c.json), HasSubstr(c.want)) << c.json;
}

TEST_F(ExitRecordTest, OutOfRangeValuesAreRejected) {
  const std::vector<std::string> cases = {
      R"({"pid": 0, "exit_code": 0, "finished_at_ns": 5})",
      R"({"pid": -3, "exit_code": 0, "finished_at_ns": 5})",
      R"({"pid": 2147483648, "exit_code": 0, "finished_at_ns": 5})",
      R"({"pid": 1, "exit_code": 256, "finished_at_ns": 5})",
      R"({"pid": 1, "exit_code": -1, "finished_at_ns": 5})",
      R"({"pid": 1, "exit_code": 0, "signal": 128, "finished_at_ns": 5})",
      R"({"pid": 1, "exit_code": 0, "finished_at_ns": 9223372036854775808})",
      R"({"pid": 1, "exit_code": 0, "finished_at_ns": 5, "started_at_ns": 18446744073709551615})",
  };
  for (const std::string& c : cases) EXPECT_THAT(ReadError(c), HasSubstr("out of range")) << c;
}

// Runs `child` in a forked process and returns its wait status (WUNTRACED: stops count too).
template <typename F>
int WaitStatusOf(F child, bool stop_then_kill = false) {
  pid_t pid = ::fork();
  if (pid == 0) {
    child();
    _exit(100);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WUNTRACED), pid);
  if (stop_then_kill) {
    // Collect the stop, then make sure the child does not outlive the test.
    int final_status;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &final_status, 0);
  }
  return status;
}

TEST(ExitRecordFromWaitStatus, ExitedProcess) {
  ExitRecord rec;
  rec.signal = 5;  // must be reset
  ASSERT_TRUE(ExitRecordFromWaitStatus(WaitStatusOf([] { _exit(3); }), &rec));
  EXPECT_EQ(rec.exit_code, 3);
  EXPECT_EQ(rec.signal, 0);
  ASSERT_TRUE(ExitRecordFromWaitStatus(WaitStatusOf([] { _exit(0); }), &rec));
  EXPECT_EQ(rec.exit_code, 0);
  // Exiting with 137 is not being killed: only `signal` tells them apart.
  ASSERT_TRUE(ExitRecordFromWaitStatus(WaitStatusOf([] { _exit(137); }), &rec));
  EXPECT_EQ(rec.exit_code, 137);
  EXPECT_EQ(rec.signal, 0);
}

TEST(ExitRecordFromWaitStatus, KilledProcess) {
  ExitRecord rec;
  ASSERT_TRUE(ExitRecordFromWaitStatus(WaitStatusOf([] { ::raise(SIGKILL); }), &rec));
  EXPECT_EQ(rec.exit_code, 137);
  EXPECT_EQ(rec.signal, SIGKILL);
  ASSERT_TRUE(ExitRecordFromWaitStatus(WaitStatusOf([] { ::raise(SIGTERM); }), &rec));
  EXPECT_EQ(rec.exit_code, 143);
  EXPECT_EQ(rec.signal, SIGTERM);
}

TEST(ExitRecordFromWaitStatus, StoppedProcessIsNotAnExit) {
  ExitRecord rec;
  rec.exit_code = 42;
  rec.signal = 0;
  int status = WaitStatusOf([] { ::raise(SIGSTOP); }, /*stop_then_kill=*/true);
  ASSERT_TRUE(WIFSTOPPED(status));
  EXPECT_FALSE(ExitRecordFromWaitStatus(status, &rec));
  EXPECT_EQ(rec.exit_code, 42);
  EXPECT_EQ(rec.signal, 0);
}

}  // namespace
}  // namespace crisp::runtime
