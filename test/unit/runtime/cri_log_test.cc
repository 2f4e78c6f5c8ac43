// The CRI log writer and parser: record format, line buffering per stream, long-line cuts, EOF
// flush, reopen after rotation, write errors, timestamps.
#include "runtime/cri_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/unit/runtime/plain_temp_dir.h"

namespace crisp::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr timespec kBase = {1475713029, 669794202};  // 2016-10-06T00:17:09.669794202Z

// A clock that starts at kBase and advances 1 ns per reading, so every record has its own time.
struct FakeClock {
  timespec now = kBase;
  int readings = 0;
  Clock AsClock() {
    return [this] {
      timespec t = now;
      ++readings;
      if (++now.tv_nsec == 1000000000L) {
        now.tv_nsec = 0;
        ++now.tv_sec;
      }
      return t;
    };
  }
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The file's lines, each with its '\n'; a last line without '\n' is returned as is.
std::vector<std::string> RawLines(const std::string& path) {
  std::string text = ReadAll(path);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

// Every record of the file as "<stream> <tag> <content>"; a line that does not parse is a test
// failure and shows up as "UNPARSEABLE <line>".
std::vector<std::string> Records(const std::string& path) {
  std::vector<std::string> out;
  for (const std::string& line : RawLines(path)) {
    CriLogRecord r;
    if (line.back() != '\n' || !ParseCriLogLine(line, &r)) {
      ADD_FAILURE() << "unparseable line: " << line;
      out.push_back("UNPARSEABLE " + line);
      continue;
    }
    out.push_back(std::string(StreamName(r.stream)) + (r.partial ? " P " : " F ") + r.content);
  }
  return out;
}

// "0123456789abcdef0123..." of length n, so that every cut shows where it happened.
std::string Pattern(size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(kDigits[i % 16]);
  return s;
}

class CriLogTest : public crisp::testing::PlainTempDirTest {
 protected:
  std::string LogPath() const { return dir_ + "/0.log"; }
  FakeClock clock_;
};

// ---------------------------------------------------------------------------------------------
// Timestamps

TEST(CriTimestamp, FormatsUtcWithNineDigits) {
  EXPECT_EQ(FormatCriTimestamp(kBase), "2016-10-06T00:17:09.669794202Z");
  EXPECT_EQ(FormatCriTimestamp({0, 0}), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(FormatCriTimestamp({1475713029, 5}), "2016-10-06T00:17:09.000000005Z");
  EXPECT_EQ(FormatCriTimestamp({1475713029, 120000000}), "2016-10-06T00:17:09.120000000Z");
  // 2000-02-29T23:59:59Z: a leap day, last second of the day.
  EXPECT_EQ(FormatCriTimestamp({951868799, 999999999}), "2000-02-29T23:59:59.999999999Z");
}

TEST(CriTimestamp, NormalizesNanoseconds) {
  EXPECT_EQ(FormatCriTimestamp({1475713029, 1500000000}), "2016-10-06T00:17:10.500000000Z");
  EXPECT_EQ(FormatCriTimestamp({1475713029, -1}), "2016-10-06T00:17:08.999999999Z");
}

TEST(CriTimestamp, YearBeyond9999FallsBackToEpoch) {
  // 10000-01-01T00:00:00Z cannot be written with a four-digit year.
  EXPECT_EQ(FormatCriTimestamp({253402300800, 0}), "1970-01-01T00:00:00.000000000Z");
  // The last representable second still formats.
  EXPECT_EQ(FormatCriTimestamp({253402300799, 0}), "9999-12-31T23:59:59.000000000Z");
}

TEST(CriTimestamp, IgnoresLocalTimeZone) {
  const char* old = ::getenv("TZ");
  std::string saved = old ? old : "";
  ::setenv("TZ", "IST-5:30", 1);  // POSIX TZ string: no tzdata needed
  ::tzset();
  std::string got = FormatCriTimestamp(kBase);
  if (old) {
    ::setenv("TZ", saved.c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
  EXPECT_EQ(got, "2016-10-06T00:17:09.669794202Z");
}

// ---------------------------------------------------------------------------------------------
// Writer

TEST_F(CriLogTest, WritesExactRecordBytes) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "hello world\n"), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "oops\n"), 0);
  EXPECT_EQ(ReadAll(LogPath()),
            "2016-10-06T00:17:09.669794202Z stdout F hello world\n"
            "2016-10-06T00:17:09.669794203Z stderr F oops\n");
  EXPECT_EQ(clock_.readings, 2);
}

TEST_F(CriLogTest, InterleavedStreamsKeepTheirOwnLines) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "out one\nout tw"), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "err one\nerr "), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "o\n"), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "two\nerr three\n"), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "out three\n"), 0);
  EXPECT_THAT(Records(LogPath()),
              ElementsAre("stdout F out one", "stderr F err one", "stdout F out two", "stderr F err two",
                          "stderr F err three", "stdout F out three"));
  EXPECT_EQ(w.pending(Stream::kStdout), 0u);
  EXPECT_EQ(w.pending(Stream::kStderr), 0u);
}

TEST_F(CriLogTest, TimestampsAreTakenPerRecord) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "a\nb\nc\n"), 0);
  std::vector<std::string> lines = RawLines(LogPath());
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < lines.size(); ++i) {
    CriLogRecord r;
    ASSERT_TRUE(ParseCriLogLine(lines[i], &r));
    EXPECT_EQ(r.time.tv_sec, kBase.tv_sec);
    EXPECT_EQ(r.time.tv_nsec, kBase.tv_nsec + static_cast<long>(i));
  }
}

TEST_F(CriLogTest, LineSplitAcrossManyWrites) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  const std::string line = "hello, world";
  for (char c : line) ASSERT_EQ(w.Write(Stream::kStdout, &c, 1), 0);
  // Nothing is written until the line is complete.
  EXPECT_EQ(ReadAll(LogPath()), "");
  EXPECT_EQ(w.pending(Stream::kStdout), line.size());
  EXPECT_EQ(clock_.readings, 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "\n"), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F hello, world"));
}

TEST_F(CriLogTest, EmptyLinesAreFullRecordsWithEmptyContent) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "\n\nx\n\n"), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F ", "stdout F ", "stdout F x", "stdout F "));
  // The space after the tag is there even when the content is empty: kubelet requires it.
  EXPECT_EQ(RawLines(LogPath())[0], "2016-10-06T00:17:09.669794202Z stdout F \n");
}

TEST_F(CriLogTest, CarriageReturnIsKeptVerbatim) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "dos line\r\n\rprogress 50%\rprogress 100%\r\n"), 0);
  EXPECT_THAT(Records(LogPath()),
              ElementsAre("stdout F dos line\r", "stdout F \rprogress 50%\rprogress 100%\r"));
}

// Long lines: the expected records for a line of `n` bytes with max 8.
struct SplitCase {
  size_t length;
  std::vector<std::string> want;
};

TEST_F(CriLogTest, LongLinesAreCutIntoPartialRecords) {
  constexpr size_t kMax = 8;
  const std::string p = Pattern(3 * kMax + 5);
  const std::vector<SplitCase> cases = {
      {kMax - 1, {"stdout F " + p.substr(0, 7)}},
      {kMax, {"stdout F " + p.substr(0, 8)}},
      {kMax + 1, {"stdout P " + p.substr(0, 8), "stdout F " + p.substr(8, 1)}},
      {2 * kMax, {"stdout P " + p.substr(0, 8), "stdout F " + p.substr(8, 8)}},
      {3 * kMax + 5,
       {"stdout P " + p.substr(0, 8), "stdout P " + p.substr(8, 8), "stdout P " + p.substr(16, 8),
        "stdout F " + p.substr(24, 5)}},
  };
  // The cut must not depend on how the output was chunked by the pipe.
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{3}, size_t{kMax}, size_t{kMax + 1}}) {
    for (const SplitCase& c : cases) {
      SCOPED_TRACE("length " + std::to_string(c.length) + " chunk " + std::to_string(chunk));
      std::string path = dir_ + "/split-" + std::to_string(c.length) + "-" + std::to_string(chunk);
      CriLogWriter w(clock_.AsClock(), kMax);
      ASSERT_EQ(w.Open(path), 0);
      std::string data = p.substr(0, c.length) + "\n";
      size_t step = chunk == 0 ? data.size() : chunk;
      for (size_t i = 0; i < data.size(); i += step) {
        ASSERT_EQ(w.Write(Stream::kStdout, data.substr(i, step)), 0);
      }
      EXPECT_THAT(Records(path), ElementsAreArray(c.want));
      EXPECT_EQ(w.pending(Stream::kStdout), 0u);
    }
  }
}

TEST_F(CriLogTest, DefaultMaxIs16KiB) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  const std::string p = Pattern(16 * 1024 + 1);
  ASSERT_EQ(w.Write(Stream::kStderr, p + "\n"), 0);
  EXPECT_THAT(Records(LogPath()),
              ElementsAre("stderr P " + p.substr(0, 16 * 1024), "stderr F " + p.substr(16 * 1024)));
}

TEST_F(CriLogTest, ZeroMaxMeansNoLimit) {
  CriLogWriter w(clock_.AsClock(), 0);
  ASSERT_EQ(w.Open(LogPath()), 0);
  const std::string p = Pattern(100000);
  ASSERT_EQ(w.Write(Stream::kStdout, p.substr(0, 40000)), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, p.substr(40000) + "\n"), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F " + p));
}

TEST_F(CriLogTest, FlushWritesTheLastLineAsPartial) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "done\nno newline at EOF"), 0);
  ASSERT_EQ(w.Flush(Stream::kStdout), 0);
  EXPECT_EQ(w.pending(Stream::kStdout), 0u);
  // A second flush (or a flush of an empty stream) writes nothing.
  ASSERT_EQ(w.Flush(Stream::kStdout), 0);
  ASSERT_EQ(w.Flush(Stream::kStderr), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F done", "stdout P no newline at EOF"));
}

TEST_F(CriLogTest, FlushOnlyTouchesItsStream) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "out"), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "err"), 0);
  ASSERT_EQ(w.Flush(Stream::kStderr), 0);
  EXPECT_EQ(w.pending(Stream::kStdout), 3u);
  ASSERT_EQ(w.Write(Stream::kStdout, "put\n"), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stderr P err", "stdout F output"));
}

TEST_F(CriLogTest, FlushAllFlushesBothStreams) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "tail of err"), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "tail of out"), 0);
  ASSERT_EQ(w.FlushAll(), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout P tail of out", "stderr P tail of err"));
  EXPECT_EQ(w.pending(Stream::kStdout), 0u);
  EXPECT_EQ(w.pending(Stream::kStderr), 0u);
}

TEST_F(CriLogTest, FlushAfterCutsWritesOnlyTheRest) {
  CriLogWriter w(clock_.AsClock(), 4);
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "abcdefghi"), 0);  // the cut happens as soon as byte 5 arrives
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout P abcd", "stdout P efgh"));
  ASSERT_EQ(w.Flush(Stream::kStdout), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout P abcd", "stdout P efgh", "stdout P i"));
}

TEST_F(CriLogTest, FlushOfExactlyMaxIsOnePartialRecord) {
  CriLogWriter w(clock_.AsClock(), 4);
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "abcd"), 0);
  EXPECT_EQ(ReadAll(LogPath()), "");
  ASSERT_EQ(w.Flush(Stream::kStdout), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout P abcd"));
}

TEST_F(CriLogTest, ReopenAfterRotation) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "before rotation\npar"), 0);
  // kubelet rotates by renaming the file away, then asks for ReopenContainerLog.
  const std::string rotated = LogPath() + ".20240101-000000";
  ASSERT_EQ(::rename(LogPath().c_str(), rotated.c_str()), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "still to the old file\n"), 0);
  ASSERT_EQ(w.Reopen(), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "tial line\n"), 0);
  ASSERT_EQ(w.Write(Stream::kStderr, "after rotation\n"), 0);
  EXPECT_THAT(Records(rotated), ElementsAre("stdout F before rotation", "stderr F still to the old file"));
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F partial line", "stderr F after rotation"));
}

TEST_F(CriLogTest, FailedReopenKeepsTheOldFile) {
  ASSERT_EQ(::mkdir((dir_ + "/sub").c_str(), 0755), 0);
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(dir_ + "/sub/0.log"), 0);
  ASSERT_EQ(::rename((dir_ + "/sub").c_str(), (dir_ + "/moved").c_str()), 0);
  EXPECT_EQ(w.Reopen(), ENOENT);
  EXPECT_TRUE(w.is_open());
  ASSERT_EQ(w.Write(Stream::kStdout, "kept\n"), 0);
  EXPECT_THAT(Records(dir_ + "/moved/0.log"), ElementsAre("stdout F kept"));
}

TEST_F(CriLogTest, OpenCreatesTheFileWithMode0640AndNothingElse) {
  mode_t old = ::umask(022);
  CriLogWriter w(clock_.AsClock());
  int rc = w.Open(LogPath());
  int missing_rc = CriLogWriter().Open(dir_ + "/no/such/dir/0.log");
  ::umask(old);
  ASSERT_EQ(rc, 0);
  struct stat st;
  ASSERT_EQ(::stat(LogPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(missing_rc, ENOENT);
  EXPECT_NE(::access((dir_ + "/no").c_str(), F_OK), 0);
  EXPECT_EQ(w.Open(LogPath()), EBUSY);
}

TEST_F(CriLogTest, OpenAppendsToAnExistingFile) {
  {
    std::ofstream out(LogPath());
    out << "2016-10-06T00:00:00Z stdout F earlier\n";
  }
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "later\n"), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F earlier", "stdout F later"));
}

TEST_F(CriLogTest, WithoutAFileWritesFailButConsumeTheData) {
  CriLogWriter w(clock_.AsClock());
  EXPECT_EQ(w.Reopen(), EINVAL);
  EXPECT_EQ(w.Write(Stream::kStdout, "partial"), 0);  // nothing to write yet
  EXPECT_EQ(w.Write(Stream::kStdout, " line\nmore"), EBADF);
  EXPECT_EQ(w.pending(Stream::kStdout), 4u);
  ASSERT_EQ(w.Open(LogPath()), 0);
  w.Close();
  EXPECT_FALSE(w.is_open());
  EXPECT_EQ(w.Flush(Stream::kStdout), EBADF);
  EXPECT_EQ(w.pending(Stream::kStdout), 0u);
  // Reopen works after Close: the path is remembered.
  ASSERT_EQ(w.Reopen(), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "back\n"), 0);
  EXPECT_THAT(Records(LogPath()), ElementsAre("stdout F back"));
}

TEST_F(CriLogTest, WriteErrorsAreReturnedAndTheWriterGoesOn) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open("/dev/full"), 0);
  EXPECT_EQ(w.Write(Stream::kStdout, "abc"), 0);
  EXPECT_EQ(w.Write(Stream::kStdout, "\nnext"), ENOSPC);
  EXPECT_EQ(w.pending(Stream::kStdout), 4u);
  EXPECT_EQ(w.FlushAll(), ENOSPC);
  EXPECT_EQ(w.pending(Stream::kStdout), 0u);
}

// A short write followed by an error leaves half a record in the file; the next record must still
// start on a line of its own.
TEST_F(CriLogTest, TornRecordIsTerminatedBeforeTheNextOne) {
  CriLogWriter w(clock_.AsClock());
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "first\n"), 0);
  struct stat st;
  ASSERT_EQ(::stat(LogPath().c_str(), &st), 0);

  // The file size limit makes write(2) stop 10 bytes into the next record, then fail with EFBIG.
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < static_cast<rlim_t>(st.st_size) + 10) {
    GTEST_SKIP() << "hard RLIMIT_FSIZE too low";
  }
  struct sigaction ign = {}, old_action;
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ign, &old_action), 0);
  struct rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(st.st_size) + 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &low), 0);
  int torn_rc = w.Write(Stream::kStdout, "second\n");
  int blocked_rc = w.Write(Stream::kStdout, "third\n");  // not even the '\n' fits
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  EXPECT_EQ(torn_rc, EFBIG);
  EXPECT_EQ(blocked_rc, EFBIG);

  ASSERT_EQ(w.Write(Stream::kStdout, "fourth\n"), 0);
  std::vector<std::string> lines = RawLines(LogPath());
  ASSERT_EQ(lines.size(), 3u) << ReadAll(LogPath());
  EXPECT_EQ(lines[1], "2016-10-06\n");  // the first 10 bytes of the torn record, then the fix
  CriLogRecord r;
  ASSERT_TRUE(ParseCriLogLine(lines[0], &r));
  EXPECT_EQ(r.content, "first");
  ASSERT_TRUE(ParseCriLogLine(lines[2], &r));
  EXPECT_EQ(r.content, "fourth");
}

TEST_F(CriLogTest, NullClockFallsBackToRealtime) {
  timespec before = RealtimeNow();
  CriLogWriter w(Clock{});
  ASSERT_EQ(w.Open(LogPath()), 0);
  ASSERT_EQ(w.Write(Stream::kStdout, "now\n"), 0);
  timespec after = RealtimeNow();
  std::vector<std::string> lines = RawLines(LogPath());
  ASSERT_EQ(lines.size(), 1u);
  CriLogRecord r;
  ASSERT_TRUE(ParseCriLogLine(lines[0], &r));
  EXPECT_GE(r.time.tv_sec, before.tv_sec);
  EXPECT_LE(r.time.tv_sec, after.tv_sec);
}

// ---------------------------------------------------------------------------------------------
// Parser

TEST(ParseCriLogLine, RoundTripsWhatTheWriterWrites) {
  for (timespec t : {kBase, timespec{0, 0}, timespec{951868799, 999999999}, timespec{4102444800, 1}}) {
    std::string ts = FormatCriTimestamp(t);
    CriLogRecord r;
    ASSERT_TRUE(ParseCriLogLine(ts + " stderr P a b  c\r\n", &r)) << ts;
    EXPECT_EQ(r.timestamp, ts);
    EXPECT_EQ(r.time.tv_sec, t.tv_sec) << ts;
    EXPECT_EQ(r.time.tv_nsec, t.tv_nsec) << ts;
    EXPECT_EQ(r.stream, Stream::kStderr);
    EXPECT_TRUE(r.partial);
    EXPECT_EQ(r.content, "a b  c\r");
  }
}

TEST(ParseCriLogLine, AcceptsOtherRuntimesTimestampsAndTags) {
  CriLogRecord r;
  // containerd: Go RFC3339Nano in local time, trailing zeros trimmed.
  ASSERT_TRUE(ParseCriLogLine("2016-10-06T02:17:09.6697942+02:00 stdout F x", &r));
  EXPECT_EQ(r.time.tv_sec, kBase.tv_sec);
  EXPECT_EQ(r.time.tv_nsec, 669794200);
  EXPECT_EQ(r.stream, Stream::kStdout);
  EXPECT_FALSE(r.partial);
  EXPECT_EQ(r.content, "x");
  // Negative offset crossing midnight back into the previous day; no fraction.
  ASSERT_TRUE(ParseCriLogLine("2016-10-05T19:47:09-04:30 stdout F y", &r));
  EXPECT_EQ(r.time.tv_sec, kBase.tv_sec);
  EXPECT_EQ(r.time.tv_nsec, 0);
  // Extra ':'-separated tags are tolerated (kubelet looks at the first one only).
  ASSERT_TRUE(ParseCriLogLine("2016-10-06T00:17:09Z stdout P:future:tags z", &r));
  EXPECT_TRUE(r.partial);
  EXPECT_EQ(r.content, "z");
  // Empty content.
  ASSERT_TRUE(ParseCriLogLine("2016-10-06T00:17:09Z stdout F \n", &r));
  EXPECT_EQ(r.content, "");
  // Before 1970.
  ASSERT_TRUE(ParseCriLogLine("1969-12-31T23:59:59.5Z stdout F old", &r));
  EXPECT_EQ(r.time.tv_sec, -1);
  EXPECT_EQ(r.time.tv_nsec, 500000000);
}

TEST(ParseCriLogLine, RejectsMalformedLines) {
  const char* bad[] = {
      "",
      "\n",
      "2016-10-06T00:17:09.669794202Z",
      "2016-10-06T00:17:09.669794202Z stdout",
      "2016-10-06T00:17:09.669794202Z stdout F",  // no space after the tag
      "2016-10-06T00:17:09.669794202Z stdout F\n",
      "2016-10-06T00:17:09.669794202Z stdin F x",
      "2016-10-06T00:17:09.669794202Z STDOUT F x",
      "2016-10-06T00:17:09.669794202Z stdout X x",
      "2016-10-06T00:17:09.669794202Z stdout FP x",
      "2016-10-06T00:17:09.669794202Z stdout  F x",  // two spaces: empty stream field
      "2016-10-06T00:17:09.669794202Z stdout F two\nlines",
      "2016-10-06T00:17:09.669794202 stdout F no zone",
      "2016-10-06t00:17:09.669794202Z stdout F lowercase t",
      "2016-10-06T00:17:09.669794202z stdout F lowercase z",
      "2016-10-06 00:17:09.669794202Z stdout F space",
      "2016-10-06T00:17:09.Z stdout F empty fraction",
      "2016-10-06T00:17:09.6697942021Z stdout F ten digits",
      "2016-13-06T00:17:09Z stdout F month 13",
      "2016-00-06T00:17:09Z stdout F month 0",
      "2015-02-29T00:17:09Z stdout F not a leap year",
      "2016-04-31T00:17:09Z stdout F april 31",
      "2016-10-06T24:00:00Z stdout F hour 24",
      "2016-10-06T00:60:00Z stdout F minute 60",
      "2016-10-06T00:17:60Z stdout F leap second",
      "2016-10-06T00:17:09+0200 stdout F offset without colon",
      "2016-10-06T00:17:09+24:00 stdout F offset hour 24",
      "16-10-06T00:17:09Z stdout F short year",
      "2016-10-6T00:17:09Z stdout F short day",
      "2016-10-06T00:17:09Zjunk stdout F trailing",
      "hello world",
  };
  for (const char* line : bad) {
    CriLogRecord r;
    EXPECT_FALSE(ParseCriLogLine(line, &r)) << line;
  }
}

TEST(ParseRfc3339, LeapDaysAndCenturies) {
  timespec t;
  ASSERT_TRUE(ParseRfc3339("2000-02-29T00:00:00Z", &t));  // divisible by 400: leap
  EXPECT_EQ(t.tv_sec, 951782400);
  EXPECT_FALSE(ParseRfc3339("1900-02-29T00:00:00Z", &t));  // divisible by 100 only: not leap
  ASSERT_TRUE(ParseRfc3339("2024-02-29T12:00:00Z", &t));
  EXPECT_EQ(t.tv_sec, 1709208000);
  ASSERT_TRUE(ParseRfc3339("0000-01-01T00:00:00Z", &t));
  EXPECT_EQ(t.tv_sec, -62167219200);
  ASSERT_TRUE(ParseRfc3339("9999-12-31T23:59:59.999999999Z", &t));
  EXPECT_EQ(t.tv_sec, 253402300799);
  EXPECT_EQ(t.tv_nsec, 999999999);
}

}  // namespace
}  // namespace crisp::runtime
