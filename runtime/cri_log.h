#pragma once
// The Kubernetes CRI container log format, written by crisp-shim:
//   <RFC3339Nano UTC timestamp> <stdout|stderr> <F|P> <content>\n
// F marks the end of a line (the newline itself is not content); P a part
// of a longer line: lines over max_line bytes are cut into P records, and
// what is left at the end of a stream without a newline is flushed as P too
// (kubelet joins P records with the following ones). Free of absl.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace crisp::runtime {

class CriLogWriter {
 public:
  enum class Stream { kStdout, kStderr };
  // ns since the epoch; tests inject a fixed clock.
  using Clock = std::function<int64_t()>;

  explicit CriLogWriter(size_t max_line = 16 * 1024, Clock clock = nullptr);
  ~CriLogWriter();
  CriLogWriter(const CriLogWriter&) = delete;
  CriLogWriter& operator=(const CriLogWriter&) = delete;

  // Opens (creating, appending) `path`, mode 0640. False with errno set.
  bool Open(const std::string& path);
  // Closes and opens the same path again (after the file was rotated away).
  bool Reopen();
  // Appends output of `stream`: complete lines become F records, long ones
  // P records; the rest waits for more. Without an open file, output is
  // dropped. False (errno set) if writing failed; the writer stays usable.
  bool Write(Stream stream, const char* data, size_t n);
  // Emits what is pending on `stream` as a P record (its end of output).
  bool Flush(Stream stream);
  bool FlushAll();

  // "2026-11-22T12:00:00.000000001Z".
  static std::string FormatTimestamp(int64_t ns);

 private:
  bool Emit(Stream stream, std::string_view content, bool partial);

  size_t max_line_;
  Clock clock_;
  std::string path_;
  int fd_ = -1;
  std::string pending_[2];
};

struct CriLogRecord {
  std::string timestamp;
  std::string stream;  // "stdout" or "stderr"
  bool partial = false;
  std::string content;
};

// Parses one line (without its newline). False if it is not a CRI log record.
bool ParseCriLogLine(std::string_view line, CriLogRecord* out);

}  // namespace crisp::runtime
