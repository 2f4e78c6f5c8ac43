#pragma once
// The Kubernetes CRI container log format, written by crisp-shim and read by kubelet
// (`kubectl logs`) and crispd.
//
// One record per line:
//
//   <timestamp> <stream> <tag> <content>\n
//
//   2016-10-06T00:17:09.669794202Z stdout F hello world
//
// * timestamp: RFC 3339 with nanoseconds. We always write UTC with exactly nine fractional digits and
//   "Z". containerd writes Go's time.RFC3339Nano in local time (trailing zeros trimmed, numeric
//   offset) and CRI-O writes nine digits with a numeric offset; kubelet parses all of them with
//   time.RFC3339Nano, so UTC is as valid and does not depend on the shim's TZ.
// * stream: "stdout" or "stderr".
// * tag: "F" when the record ends a line, "P" when the line goes on in the next record of the same
//   stream. (The format allows more ':'-separated tags after the first; nobody writes them, the
//   parser tolerates them as kubelet does.)
// * content: the line without its '\n'. Every other byte, '\r' included, is kept verbatim.
//
// Free of absl/spdlog/protobuf so that crisp-shim can link it.
#include <time.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "common/unique_fd.h"

namespace crisp::runtime {

// The two streams of a container. A tty container has only kStdout.
enum class Stream { kStdout, kStderr };

// "stdout" or "stderr".
const char* StreamName(Stream s);

// Where record timestamps come from: wall-clock time (CLOCK_REALTIME), injected so that tests get
// deterministic timestamps. Must not throw.
using Clock = std::function<timespec()>;

// clock_gettime(CLOCK_REALTIME); the default Clock.
timespec RealtimeNow();

// Formats `t` as "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" (UTC, always nine fractional digits). A tv_nsec
// outside [0, 1e9) is normalized into tv_sec first. Times whose year is outside 0000..9999 cannot
// be written in RFC 3339; they are formatted as the Unix epoch rather than as an unparseable string
// (a wall clock never gets there).
std::string FormatCriTimestamp(timespec t);

// Writes container output to a CRI log file.
//
// Output is buffered per stream until '\n' so that every record is a whole line (tag F). A line
// longer than the maximum is cut into P records of exactly `max_line_bytes` content bytes, followed
// by the F record of the remainder (1..max bytes): the same cut containerd makes, so
// "exactly max" is one F record and "max+1" is P(max) + F(1); a cut is made only once a byte past
// the maximum has arrived, so no empty F record ever follows a P record.
//
// At EOF of a stream the caller calls Flush(), which writes buffered content (a last line with no
// '\n') as a P record and nothing after it. That is what containerd's logger does at EOF
// (internal/cri/io/logger.go: content read before EOF with no newline is written with the partial
// tag), and kubelet prints such a record without adding a newline.
//
// Every Write/Flush call turns into at most one write(2) sequence (full-write loop, EINTR
// retried) of whole records to a file opened with O_APPEND. Errors are returned as errno, never
// thrown, and never stop the writer: the container's output must keep being drained even when the
// log disk is full. Records of a failed call are lost. If a failure leaves a torn record in the
// file (a short write followed by an error), the next successful write starts with '\n' so that
// only the torn record is unparseable, not the one after it.
//
// Not thread-safe: crisp-shim is single-threaded.
class CriLogWriter {
 public:
  static constexpr size_t kDefaultMaxLineBytes = 16 * 1024;

  // `max_line_bytes` == 0 means no limit (a line is buffered whole however long it is, as
  // containerd does for a non-positive max_container_log_line_size).
  explicit CriLogWriter(Clock clock = RealtimeNow, size_t max_line_bytes = kDefaultMaxLineBytes);
  CriLogWriter(const CriLogWriter&) = delete;
  CriLogWriter& operator=(const CriLogWriter&) = delete;
  // Closes the file. Buffered partial lines are NOT written: call FlushAll() first if they should
  // be (the shim does at EOF of the container's output).
  ~CriLogWriter();

  // Opens `path` with O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, mode 0640 (less the umask) if it is
  // created. Creates no directories. Returns 0 or errno; EBUSY if a file is already open.
  int Open(const std::string& path);

  // Opens the path given to Open() again and switches to it; for ReopenContainerLog after kubelet
  // rotated the file (renamed it away). On failure returns errno and keeps writing to the file that
  // was open before, if any. Buffered partial lines are kept and go to the new file. Returns EINVAL
  // if Open() was never called successfully.
  int Reopen();

  // Closes the file (no flush). Later writes fail with EBADF until Open()/Reopen().
  void Close();

  // Appends `n` bytes of `s`'s output. Every completed line is written as an F record (after any P
  // records its length requires); the rest stays buffered. The data is consumed even when the
  // write fails (EBADF if no file is open): returns 0 or the errno of the write.
  int Write(Stream s, const char* data, size_t n);
  int Write(Stream s, std::string_view data) { return Write(s, data.data(), data.size()); }

  // Writes `s`'s buffered content, if any, as a P record (see the class comment for why P).
  // Returns 0 (also when nothing was buffered) or errno; the buffer is emptied either way.
  int Flush(Stream s);

  // Flush(kStdout) then Flush(kStderr) in one write. Returns 0 or errno.
  int FlushAll();

  // Bytes of `s` buffered and not yet written.
  size_t pending(Stream s) const { return buf_[Index(s)].size(); }
  bool is_open() const { return fd_.valid(); }
  const std::string& path() const { return path_; }

 private:
  static size_t Index(Stream s) { return s == Stream::kStderr ? 1 : 0; }
  // Appends one record to out_.
  void AppendRecord(Stream s, char tag, std::string_view content);
  // Appends `n` bytes of line content to `s`'s buffer, cutting P records as the limit requires.
  void AppendContent(Stream s, const char* data, size_t n);
  // Writes out_ to the file and clears it. Returns 0 or errno.
  int WriteOut();

  Clock clock_;
  size_t max_line_bytes_;
  std::string path_;
  UniqueFd fd_;
  std::string buf_[2];  // per-stream content of the current unfinished line
  std::string out_;     // records of the current call, written with one write loop
  bool torn_ = false;   // the file ends in the middle of a record
};

// One parsed record.
struct CriLogRecord {
  std::string timestamp;  // as written, e.g. "2016-10-06T00:17:09.669794202Z"
  timespec time = {};     // `timestamp` as Unix time
  Stream stream = Stream::kStdout;
  bool partial = false;  // tag P
  std::string content;   // verbatim, without the record's '\n'
};

// Parses one record. `line` may end with the record's '\n' (one is stripped) and must contain no
// other '\n'. Accepts what kubelet accepts from any runtime: an RFC 3339 timestamp with 0..9
// fractional digits and "Z" or a numeric offset, stream stdout/stderr, a tag whose first
// ':'-separated part is F or P, then one space and the content (possibly empty). Returns false on
// anything else, leaving `*rec` unspecified.
bool ParseCriLogLine(std::string_view line, CriLogRecord* rec);

// Parses an RFC 3339 timestamp as described above into Unix time. Returns false if malformed or
// out of range (year 0000..9999, real month lengths and leap years; no leap second, as Go).
bool ParseRfc3339(std::string_view text, timespec* out);

}  // namespace crisp::runtime
