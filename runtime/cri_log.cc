#include "runtime/cri_log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace crisp::runtime {
namespace {

int64_t RealNow() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

CriLogWriter::CriLogWriter(size_t max_line, Clock clock)
    : max_line_(max_line ? max_line : 1), clock_(clock ? std::move(clock) : Clock(RealNow)) {}

CriLogWriter::~CriLogWriter() {
  if (fd_ >= 0) ::close(fd_);
}

bool CriLogWriter::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  return true;
}

bool CriLogWriter::Reopen() {
  if (path_.empty()) {
    errno = EBADF;
    return false;
  }
  return Open(path_);
}

std::string CriLogWriter::FormatTimestamp(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  long frac = static_cast<long>(ns % 1000000000);
  if (frac < 0) {
    frac += 1000000000;
    --secs;
  }
  struct tm tm;
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

bool CriLogWriter::Emit(Stream stream, std::string_view content, bool partial) {
  if (fd_ < 0) return true;
  std::string rec = FormatTimestamp(clock_());
  rec += stream == Stream::kStdout ? " stdout " : " stderr ";
  rec += partial ? "P " : "F ";
  rec.append(content);
  rec += '\n';
  return WriteAll(fd_, rec);
}

bool CriLogWriter::Write(Stream stream, const char* data, size_t n) {
  std::string& buf = pending_[stream == Stream::kStdout ? 0 : 1];
  buf.append(data, n);
  bool ok = true;
  size_t start = 0;
  for (;;) {
    size_t nl = buf.find('\n', start);
    size_t avail = (nl == std::string::npos ? buf.size() : nl) - start;
    if (avail >= max_line_ && !(nl != std::string::npos && avail == max_line_)) {
      ok &= Emit(stream, std::string_view(buf).substr(start, max_line_), true);
      start += max_line_;
      continue;
    }
    if (nl == std::string::npos) break;
    ok &= Emit(stream, std::string_view(buf).substr(start, nl - start), false);
    start = nl + 1;
  }
  buf.erase(0, start);
  return ok;
}

bool CriLogWriter::Flush(Stream stream) {
  std::string& buf = pending_[stream == Stream::kStdout ? 0 : 1];
  if (buf.empty()) return true;
  bool ok = Emit(stream, buf, true);
  buf.clear();
  return ok;
}

bool CriLogWriter::FlushAll() {
  bool a = Flush(Stream::kStdout);
  bool b = Flush(Stream::kStderr);
  return a && b;
}

bool ParseCriLogLine(std::string_view line, CriLogRecord* out) {
  size_t a = line.find(' ');
  if (a == std::string_view::npos || a == 0) return false;
  size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  std::string_view stream = line.substr(a + 1, b - a - 1);
  if (stream != "stdout" && stream != "stderr") return false;
  if (b + 2 > line.size() || (line[b + 1] != 'F' && line[b + 1] != 'P')) return false;
  if (b + 2 < line.size() && line[b + 2] != ' ') return false;
  out->timestamp = std::string(line.substr(0, a));
  out->stream = std::string(stream);
  out->partial = line[b + 1] == 'P';
  out->content = b + 3 <= line.size() ? std::string(line.substr(b + 3)) : "";
  return true;
}

}  // namespace crisp::runtime
