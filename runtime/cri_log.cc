#include "runtime/cri_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

namespace crisp::runtime {
namespace {

constexpr long kNanosPerSecond = 1000000000L;

// Writes `v` as exactly `width` decimal digits (zero-padded) at `p`; `v` must fit.
char* PutDigits(char* p, long v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  return p + width;
}

// Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). Standard era-based
// computation: shift the year to start in March so that the leap day is the last day of a year.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);             // [0, 399]
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Reads exactly `width` digits at s[*pos] into *v and advances *pos.
bool ReadDigits(std::string_view s, size_t* pos, int width, int* v) {
  if (*pos + width > s.size()) return false;
  int r = 0;
  for (int i = 0; i < width; ++i) {
    char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    r = r * 10 + (c - '0');
  }
  *pos += width;
  *v = r;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

// Splits off the text before the first ' ' of *rest; false if there is no ' '.
bool NextField(std::string_view* rest, std::string_view* field) {
  size_t sp = rest->find(' ');
  if (sp == std::string_view::npos) return false;
  *field = rest->substr(0, sp);
  rest->remove_prefix(sp + 1);
  return true;
}

}  // namespace

const char* StreamName(Stream s) { return s == Stream::kStderr ? "stderr" : "stdout"; }

timespec RealtimeNow() {
  timespec t = {};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

std::string FormatCriTimestamp(timespec t) {
  // Normalize without overflow: tv_nsec is a long and may be anything an injected clock returns.
  t.tv_sec += t.tv_nsec / kNanosPerSecond;
  t.tv_nsec %= kNanosPerSecond;
  if (t.tv_nsec < 0) {
    t.tv_nsec += kNanosPerSecond;
    t.tv_sec -= 1;
  }
  struct tm tm = {};
  if (::gmtime_r(&t.tv_sec, &tm) == nullptr || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
    t = {};
    ::gmtime_r(&t.tv_sec, &tm);
  }
  char buf[32];
  char* p = PutDigits(buf, tm.tm_year + 1900, 4);
  *p++ = '-';
  p = PutDigits(p, tm.tm_mon + 1, 2);
  *p++ = '-';
  p = PutDigits(p, tm.tm_mday, 2);
  *p++ = 'T';
  p = PutDigits(p, tm.tm_hour, 2);
  *p++ = ':';
  p = PutDigits(p, tm.tm_min, 2);
  *p++ = ':';
  p = PutDigits(p, tm.tm_sec, 2);
  *p++ = '.';
  p = PutDigits(p, t.tv_nsec, 9);
  *p++ = 'Z';
  return std::string(buf, p);
}

CriLogWriter::CriLogWriter(Clock clock, size_t max_line_bytes)
    : clock_(clock ? std::move(clock) : Clock(RealtimeNow)), max_line_bytes_(max_line_bytes) {}

CriLogWriter::~CriLogWriter() = default;

int CriLogWriter::Open(const std::string& path) {
  if (fd_.valid()) return EBUSY;
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return errno;
  fd_.reset(fd);
  path_ = path;
  torn_ = false;
  return 0;
}

int CriLogWriter::Reopen() {
  if (path_.empty()) return EINVAL;
  // Open the new file before closing the old one so that a failure leaves us writing somewhere.
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return errno;
  fd_.reset(fd);
  // A torn record stays in the old file; the new one starts clean.
  torn_ = false;
  return 0;
}

void CriLogWriter::Close() { fd_.reset(); }

void CriLogWriter::AppendRecord(Stream s, char tag, std::string_view content) {
  std::string ts = FormatCriTimestamp(clock_());
  const char* name = StreamName(s);
  out_.reserve(out_.size() + ts.size() + 10 + content.size() + 1);
  out_.append(ts);
  out_.push_back(' ');
  out_.append(name);
  out_.push_back(' ');
  out_.push_back(tag);
  out_.push_back(' ');
  out_.append(content);
  out_.push_back('\n');
}

void CriLogWriter::AppendContent(Stream s, const char* data, size_t n) {
  std::string& line = buf_[Index(s)];
  if (max_line_bytes_ == 0) {
    line.append(data, n);
    return;
  }
  while (n > 0) {
    // Cut only when a byte beyond the limit has arrived: if the '\n' came next, the full buffer
    // would be one F record of exactly max bytes.
    if (line.size() >= max_line_bytes_) {
      AppendRecord(s, 'P', line);
      line.clear();
    }
    size_t take = std::min(n, max_line_bytes_ - line.size());
    line.append(data, take);
    data += take;
    n -= take;
  }
}

int CriLogWriter::Write(Stream s, const char* data, size_t n) {
  std::string& line = buf_[Index(s)];
  while (n > 0) {
    const char* nl = static_cast<const char*>(std::memchr(data, '\n', n));
    size_t len = nl ? static_cast<size_t>(nl - data) : n;
    AppendContent(s, data, len);
    if (nl == nullptr) break;
    AppendRecord(s, 'F', line);
    line.clear();
    data += len + 1;
    n -= len + 1;
  }
  return WriteOut();
}

int CriLogWriter::Flush(Stream s) {
  std::string& line = buf_[Index(s)];
  if (!line.empty()) AppendRecord(s, 'P', line);
  line.clear();
  return WriteOut();
}

int CriLogWriter::FlushAll() {
  for (Stream s : {Stream::kStdout, Stream::kStderr}) {
    std::string& line = buf_[Index(s)];
    if (!line.empty()) AppendRecord(s, 'P', line);
    line.clear();
  }
  return WriteOut();
}

int CriLogWriter::WriteOut() {
  if (out_.empty()) return 0;
  if (!fd_.valid()) {
    out_.clear();
    return EBADF;
  }
  if (torn_) out_.insert(out_.begin(), '\n');
  size_t done = 0;
  int err = 0;
  while (done < out_.size()) {
    ssize_t r = ::write(fd_.get(), out_.data() + done, out_.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (r == 0) {  // not expected from a regular file; do not spin
      err = EIO;
      break;
    }
    done += static_cast<size_t>(r);
  }
  // After a short write the file ends wherever the kernel stopped; if that is inside a record,
  // the next write must end that line first. If nothing was written, torn_ stays as it was.
  if (err == 0) {
    torn_ = false;
  } else if (done > 0) {
    torn_ = out_[done - 1] != '\n';
  }
  out_.clear();
  // Do not keep a huge buffer around after one big burst of output.
  if (out_.capacity() > 4 * (max_line_bytes_ ? max_line_bytes_ : kDefaultMaxLineBytes)) {
    out_.shrink_to_fit();
  }
  return err;
}

bool ParseRfc3339(std::string_view s, timespec* out) {
  size_t pos = 0;
  int year, month, day, hour, minute, second;
  if (!ReadDigits(s, &pos, 4, &year) || !Expect(s, &pos, '-') || !ReadDigits(s, &pos, 2, &month) ||
      !Expect(s, &pos, '-') || !ReadDigits(s, &pos, 2, &day) || !Expect(s, &pos, 'T') ||
      !ReadDigits(s, &pos, 2, &hour) || !Expect(s, &pos, ':') || !ReadDigits(s, &pos, 2, &minute) ||
      !Expect(s, &pos, ':') || !ReadDigits(s, &pos, 2, &second)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 || minute > 59 ||
      second > 59) {
    return false;
  }
  long nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (++digits > 9) return false;
      nanos = nanos * 10 + (s[pos] - '0');
      ++pos;
    }
    if (digits == 0) return false;
    for (int i = digits; i < 9; ++i) nanos *= 10;
  }
  int64_t offset_seconds = 0;
  if (pos < s.size() && s[pos] == 'Z') {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh, om;
    if (!ReadDigits(s, &pos, 2, &oh) || !Expect(s, &pos, ':') || !ReadDigits(s, &pos, 2, &om) || oh > 23 ||
        om > 59) {
      return false;
    }
    offset_seconds = sign * (oh * 3600 + om * 60);
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  int64_t secs = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
                 hour * 3600 + minute * 60 + second - offset_seconds;
  out->tv_sec = static_cast<time_t>(secs);
  out->tv_nsec = nanos;
  return true;
}

bool ParseCriLogLine(std::string_view line, CriLogRecord* rec) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (line.find('\n') != std::string_view::npos) return false;
  std::string_view rest = line;
  std::string_view ts, stream, tag;
  if (!NextField(&rest, &ts) || !NextField(&rest, &stream) || !NextField(&rest, &tag)) return false;
  if (!ParseRfc3339(ts, &rec->time)) return false;
  if (stream == "stdout") {
    rec->stream = Stream::kStdout;
  } else if (stream == "stderr") {
    rec->stream = Stream::kStderr;
  } else {
    return false;
  }
  std::string_view first_tag = tag.substr(0, tag.find(':'));
  if (first_tag == "P") {
    rec->partial = true;
  } else if (first_tag == "F") {
    rec->partial = false;
  } else {
    return false;
  }
  rec->timestamp.assign(ts);
  rec->content.assign(rest);
  return true;
}

}  // namespace crisp::runtime
