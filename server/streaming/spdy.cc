// The SPDY/3.1 protocol handlers of the streaming server: exec/attach
// (remotecommand, channel.k8s.io v1-v4) and portforward (portforward.k8s.io),
// behaving like kubelet's streaming server so that kubectl and crictl work
// against us. One thread per connection: a poll() loop over the connection,
// the process or TCP sockets and the shutdown eventfd; nothing outlives the
// call.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "runtime/stdio_frame.h"
#include "server/streaming/connection.h"
#include "server/streaming/http.h"
#include "server/streaming/spdy_framing.h"

namespace crisp::streaming {
namespace {

using runtime::FrameType;

constexpr size_t kReadChunk = 64 * 1024;
// Data frames we send carry at most this much (spdystream takes any size; a
// bound keeps one busy stream from delaying the others' frames for long).
constexpr size_t kMaxDataChunk = 32 * 1024;
// Beyond this many bytes queued towards one side we stop reading from the
// other: backpressure instead of unbounded memory.
constexpr size_t kMaxBuffered = 4 << 20;
// kubelet's default stream creation timeout: how long the client has to open
// the streams of an exec/attach (or both streams of a port-forward pair).
constexpr absl::Duration kStreamCreationTimeout = absl::Seconds(30);
// After the last frame, how long we wait for the client to take it and close.
constexpr absl::Duration kLingerTimeout = absl::Seconds(2);
// Acknowledge received data once this much has been consumed on a stream.
constexpr uint32_t kWindowUpdateThreshold = spdy::kInitialWindow / 2;

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int PollTimeoutMs(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  if (left > absl::Hours(1)) return 3600 * 1000;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}


// Every value of a request header, comma-separated lists split.
std::vector<std::string> HeaderValues(const HttpRequest& request, const std::string& name) {
  std::vector<std::string> values;
  auto [begin, end] = request.headers.equal_range(name);
  for (auto it = begin; it != end; ++it) {
    for (absl::string_view v : absl::StrSplit(it->second, ',')) {
      v = absl::StripAsciiWhitespace(v);
      if (!v.empty()) values.emplace_back(v);
    }
  }
  return values;
}

bool HasToken(const HttpRequest& request, const std::string& name, const char* token) {
  for (const std::string& v : HeaderValues(request, name)) {
    if (absl::EqualsIgnoreCase(v, token)) return true;
  }
  return false;
}

void WriteHttpError(int fd, int code, const std::string& reason, const std::string& message,
                    const std::vector<std::string>& accepted, const ConnectionOptions& options) {
  std::string body = absl::StrCat(message, "\n");  // like Go's http.Error
  std::string head = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\n",
                                  "Content-Type: text/plain; charset=utf-8\r\n", "X-Content-Type-Options: nosniff\r\n");
  for (const std::string& p : accepted) absl::StrAppend(&head, "X-Accepted-Stream-Protocol-Versions: ", p, "\r\n");
  absl::StrAppend(&head, "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  SendAll(fd, head, options.shutdown_fd, absl::Seconds(10));
}

// The upgrade handshake (kubelet's httpstream.Handshake + the SPDY response
// upgrader): picks the first protocol of `ours` that the client offers and
// answers 101, or answers an HTTP error and returns "".
std::string Upgrade(int fd, const HttpRequest& request, const std::vector<std::string>& ours,
                    const ConnectionOptions& options) {
  std::vector<std::string> offered = HeaderValues(request, "x-stream-protocol-version");
  if (offered.empty()) {
    WriteHttpError(fd, 400, "Bad Request", "unable to upgrade: X-Stream-Protocol-Version is required", {}, options);
    return "";
  }
  std::string chosen;
  for (const std::string& p : ours) {
    if (std::find(offered.begin(), offered.end(), p) != offered.end()) {
      chosen = p;
      break;
    }
  }
  if (chosen.empty()) {
    WriteHttpError(fd, 403, "Forbidden",
                   absl::StrCat("unable to upgrade: unable to negotiate protocol: client supports [",
                                absl::StrJoin(offered, " "), "], server accepts [", absl::StrJoin(ours, " "), "]"),
                   ours, options);
    return "";
  }
  if (!HasToken(request, "connection", "upgrade") || !HasToken(request, "upgrade", "spdy/3.1")) {
    WriteHttpError(fd, 400, "Bad Request", "unable to upgrade: missing upgrade headers in request", {}, options);
    return "";
  }
  std::string response = absl::StrCat(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ",
      chosen, "\r\n\r\n");
  if (!SendAll(fd, response, options.shutdown_fd, absl::Seconds(10))) return "";
  return chosen;
}

// The server side of one SPDY connection: frame I/O with an output buffer,
// the two header compression contexts, PING/SETTINGS/WINDOW_UPDATE, and the
// bookkeeping of which streams we have finished.
class Conn {
 public:
  Conn(UniqueFd fd, const HttpRequest& request, const ConnectionOptions& options)
      : fd_(std::move(fd)), options_(options) {
    SetNonBlocking(fd_.get());
    reader_.Feed(request.leftover.data(), request.leftover.size());
    Touch();
  }

  int fd() const { return fd_.get(); }
  bool WantWrite() const { return !out_.empty(); }
  size_t buffered() const { return out_.size(); }
  void Touch() { last_activity_ = absl::Now(); }
  absl::Time IdleDeadline() const { return last_activity_ + options_.idle_timeout; }
  uint32_t last_stream_id() const { return last_stream_id_; }

  // Reads what the socket has; false when the peer has closed or failed.
  bool Read() {
    char buf[kReadChunk];
    while (true) {
      ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        reader_.Feed(buf, static_cast<size_t>(n));
        Touch();
        if (static_cast<size_t>(n) < sizeof(buf)) return true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
  }

  // Writes what the socket takes; false on a write error.
  bool Flush() {
    return FlushSome(fd_.get(), &out_);
  }

  // The next frame that the caller must handle itself (SYN_STREAM, DATA,
  // RST_STREAM, GOAWAY); the rest are handled here. Sets *error on a protocol
  // error (the connection is then unusable).
  bool Next(spdy::Frame* frame, bool* error) {
    *error = false;
    while (reader_.Next(frame)) {
      if (!frame->control) return true;
      switch (static_cast<spdy::ControlType>(frame->type)) {
        case spdy::ControlType::kSynStream:
        case spdy::ControlType::kRstStream:
        case spdy::ControlType::kGoAway:
          return true;
        case spdy::ControlType::kPing: {
          // The client's pings have odd ids; echo them. Ours would be even,
          // but we send none.
          absl::StatusOr<uint32_t> id = spdy::ParsePing(*frame);
          if (id.ok() && (*id & 1)) out_ += spdy::EncodePing(*id);
          break;
        }
        case spdy::ControlType::kSynReply:
        case spdy::ControlType::kHeaders:
          // Nothing to do with them, but their header blocks advance the
          // shared zlib context.
          if (!spdy::ParseStreamHeaders(*frame, decompressor_).ok()) {
            *error = true;
            return false;
          }
          break;
        default:
          // SETTINGS, WINDOW_UPDATE: we do not limit what we send by the
          // client's window (spdystream never sends WINDOW_UPDATE), and
          // unknown types are ignored as SPDY requires.
          break;
      }
    }
    *error = reader_.error();
    return false;
  }

  absl::StatusOr<spdy::SynStream> ParseSynStream(const spdy::Frame& frame) {
    absl::StatusOr<spdy::SynStream> s = spdy::ParseSynStream(frame, decompressor_);
    if (s.ok()) last_stream_id_ = std::max(last_stream_id_, s->stream_id);
    return s;
  }

  bool Reply(uint32_t id) {
    absl::StatusOr<std::string> f = spdy::EncodeSynReply(compressor_, id, 0, {});
    if (!f.ok()) return false;
    out_ += *f;
    open_.insert(id);
    return true;
  }

  void Reset(uint32_t id, uint32_t status) {
    out_ += spdy::EncodeRstStream(id, status);
    open_.erase(id);
  }

  // The client has reset `id`: send nothing more on it.
  void Drop(uint32_t id) {
    open_.erase(id);
    consumed_.erase(id);
  }

  // Queues `data` on stream `id` unless we have finished it.
  void Data(uint32_t id, std::string_view data) {
    if (!open_.contains(id)) return;
    while (!data.empty()) {
      size_t n = std::min(data.size(), kMaxDataChunk);
      out_ += spdy::EncodeData(id, 0, data.substr(0, n));
      data.remove_prefix(n);
    }
  }

  // Half-closes stream `id` (an empty data frame with FIN), once.
  void Fin(uint32_t id) {
    if (open_.erase(id) == 0) return;
    out_ += spdy::EncodeData(id, spdy::kFlagFin, {});
  }

  void FinAll() {
    for (uint32_t id : std::set<uint32_t>(open_)) Fin(id);
  }

  // The receiver side of flow control: acknowledge consumed data so that a
  // client that honours windows keeps sending past 64 KiB.
  void Consumed(uint32_t id, size_t n) {
    if (n == 0) return;
    for (uint32_t key : {id, 0u}) {  // the stream's window and (SPDY/3.1) the connection's
      uint32_t& c = consumed_[key];
      c += static_cast<uint32_t>(n);
      if (c >= kWindowUpdateThreshold) {
        out_ += spdy::EncodeWindowUpdate(key, c);
        c = 0;
      }
    }
  }
  void Forget(uint32_t id) { consumed_.erase(id); }

  // Ends the connection gracefully: GOAWAY after what is queued, then waits
  // (bounded) for the client to take it all and close, so that closing our
  // end with unread input does not reset the connection under the client's
  // last reads.
  void Finish() {
    out_ += spdy::EncodeGoAway(last_stream_id_, 0);
    absl::Time deadline = absl::Now() + kLingerTimeout;
    if (!SendAll(fd_.get(), out_, options_.shutdown_fd, deadline - absl::Now())) return;
    out_.clear();
    shutdown(fd_.get(), SHUT_WR);
    char buf[4096];
    while (true) {
      pollfd p[2] = {{fd_.get(), POLLIN, 0}, {options_.shutdown_fd, POLLIN, 0}};
      int rc = poll(p, options_.shutdown_fd >= 0 ? 2 : 1, PollTimeoutMs(deadline));
      if (rc <= 0 || (p[1].revents & POLLIN)) return;
      ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return;
    }
  }

 private:
  UniqueFd fd_;
  const ConnectionOptions& options_;
  spdy::FrameReader reader_;
  spdy::HeaderCompressor compressor_;
  spdy::HeaderDecompressor decompressor_;
  std::string out_;
  std::set<uint32_t> open_;  // replied to and not yet finished by us
  std::map<uint32_t, uint32_t> consumed_;
  uint32_t last_stream_id_ = 0;
  absl::Time last_activity_;
};

// ---------------------------------------------------------------------------
// remotecommand

enum class Kind { kError, kStdin, kStdout, kStderr, kResize, kOther };

Kind KindOf(std::string_view streamtype) {
  if (streamtype == "error") return Kind::kError;
  if (streamtype == "stdin") return Kind::kStdin;
  if (streamtype == "stdout") return Kind::kStdout;
  if (streamtype == "stderr") return Kind::kStderr;
  if (streamtype == "resize") return Kind::kResize;
  return Kind::kOther;
}

class RemoteCommand {
 public:
  RemoteCommand(UniqueFd conn, const HttpRequest& request, const RemoteCommandSession& session,
                const ConnectionOptions& options, int version)
      : conn_(std::move(conn), request, options), session_(session), options_(options), version_(version) {}

  void Run() {
    absl::Time stream_deadline = absl::Now() + kStreamCreationTimeout;
    if (!HandleFrames()) return;  // frames that came with the request head
    while (true) {
      if (!opened_ && HaveStreams()) {
        opened_ = true;
        if (!Open()) return;
      }
      pollfd p[3];
      p[0] = {options_.shutdown_fd, POLLIN, 0};
      p[1] = {conn_.fd(), static_cast<short>((to_proc_.size() < kMaxBuffered ? POLLIN : 0) |
                                             (conn_.WantWrite() ? POLLOUT : 0)),
              0};
      p[2] = {-1, 0, 0};
      if (proc_.valid()) {
        p[2].fd = proc_.get();
        p[2].events = static_cast<short>((conn_.buffered() < kMaxBuffered ? POLLIN : 0) |
                                         (!to_proc_.empty() ? POLLOUT : 0));
      }
      absl::Time deadline = conn_.IdleDeadline();
      if (!opened_) deadline = std::min(deadline, stream_deadline);
      int rc = poll(p, 3, PollTimeoutMs(deadline));
      if (rc < 0 && errno != EINTR) return;
      if (p[0].revents & POLLIN) return;  // server shutting down
      absl::Time now = absl::Now();
      if (now >= conn_.IdleDeadline()) return;
      if (!opened_ && now >= stream_deadline) return;  // the client never set its streams up (like kubelet)
      if ((p[1].revents & POLLOUT) && !conn_.Flush()) return;
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        // The client going away ends the session; closing the process
        // socket (on return) ends an exec'd process.
        if (!conn_.Read() || !HandleFrames()) return;
      }
      if (proc_.valid() && (p[2].revents & POLLOUT)) WriteProc();
      if (proc_.valid() && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
        if (!ReadProc()) {
          Complete();
          return;
        }
      }
      if (!conn_.Flush()) return;
    }
  }

 private:
  bool HaveStreams() const {
    const StdioOptions& o = session_.options;
    if (error_id_ == 0) return false;
    if (o.stdin && stdin_id_ == 0) return false;
    if (o.stdout && stdout_id_ == 0) return false;
    if (o.stderr && !o.tty && stderr_id_ == 0) return false;
    if (o.tty && version_ >= 3 && resize_id_ == 0) return false;
    return true;
  }

  // Handles the frames read so far; false when the session must end now.
  bool HandleFrames() {
    spdy::Frame f;
    bool error = false;
    while (conn_.Next(&f, &error)) {
      if (!f.control) {
        HandleData(f);
        continue;
      }
      switch (static_cast<spdy::ControlType>(f.type)) {
        case spdy::ControlType::kSynStream: {
          absl::StatusOr<spdy::SynStream> s = conn_.ParseSynStream(f);
          if (!s.ok()) return false;
          if (!conn_.Reply(s->stream_id)) return false;
          Kind kind = KindOf(spdy::HeaderValue(s->headers, "streamtype"));
          kinds_[s->stream_id] = kind;
          uint32_t* slot = nullptr;
          switch (kind) {
            case Kind::kError: slot = &error_id_; break;
            case Kind::kStdin: slot = &stdin_id_; break;
            case Kind::kStdout: slot = &stdout_id_; break;
            case Kind::kStderr: slot = &stderr_id_; break;
            case Kind::kResize: slot = &resize_id_; break;
            case Kind::kOther: break;
          }
          if (slot != nullptr && *slot == 0) *slot = s->stream_id;
          // A client with nothing to send opens its stream finished.
          if (s->flags & spdy::kFlagFin) EndOfInput(s->stream_id);
          break;
        }
        case spdy::ControlType::kRstStream: {
          absl::StatusOr<spdy::StreamIdValue> r = spdy::ParseStreamIdValue(f);
          if (!r.ok()) return false;
          EndOfInput(r->stream_id);
          conn_.Drop(r->stream_id);
          break;
        }
        case spdy::ControlType::kGoAway:
          // client-go sends GOAWAY when it closes the connection: it is done.
          return false;
        default:
          break;
      }
    }
    return !error;
  }

  void HandleData(const spdy::Frame& f) {
    auto it = kinds_.find(f.stream_id);
    if (it == kinds_.end()) return;
    conn_.Consumed(f.stream_id, f.payload.size());
    if (it->second == Kind::kStdin && session_.options.stdin && !stdin_closed_) {
      std::string_view data = f.payload;
      while (!data.empty()) {
        size_t n = std::min<size_t>(data.size(), 64 * 1024);
        to_proc_ += runtime::EncodeFrame(FrameType::kStdin, data.substr(0, n));
        data.remove_prefix(n);
      }
    } else if (it->second == Kind::kResize) {
      resize_buf_ += f.payload;
      ParseResizes();
    }
    if (f.flags & spdy::kFlagFin) EndOfInput(f.stream_id);
  }

  // The client will send nothing more on `id`.
  void EndOfInput(uint32_t id) {
    if (id == stdin_id_ && id != 0 && session_.options.stdin && !stdin_closed_) {
      stdin_closed_ = true;
      to_proc_ += runtime::EncodeFrame(FrameType::kCloseStdin, {});
    }
    conn_.Forget(id);
  }

  // client-go's resize stream is a sequence of JSON objects
  // {"Width":W,"Height":H}, one per terminal size change.
  void ParseResizes() {
    while (true) {
      size_t end = resize_buf_.find('}');
      if (end == std::string::npos) break;
      std::string one = resize_buf_.substr(0, end + 1);
      resize_buf_.erase(0, end + 1);
      nlohmann::json j = nlohmann::json::parse(one, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) continue;
      auto w = j.find("Width"), h = j.find("Height");
      if (w == j.end() || h == j.end() || !w->is_number_unsigned() || !h->is_number_unsigned()) continue;
      to_proc_ += runtime::EncodeResize(static_cast<uint16_t>(std::min<uint64_t>(w->get<uint64_t>(), 0xffff)),
                                        static_cast<uint16_t>(std::min<uint64_t>(h->get<uint64_t>(), 0xffff)));
    }
    if (resize_buf_.size() > 4096) resize_buf_.clear();  // not JSON objects: do not grow without bound
  }

  // Starts the process; false (after telling the client why) if it cannot.
  bool Open() {
    absl::StatusOr<UniqueFd> fd = session_.open ? session_.open() : absl::InternalError("no process to open");
    if (!fd.ok()) {
      std::string message(fd.status().message());
      conn_.Data(error_id_, version_ >= 4 ? ExitStatusJson(-1, message) : message);
      conn_.FinAll();
      conn_.Finish();
      return false;
    }
    proc_ = std::move(*fd);
    SetNonBlocking(proc_.get());
    return true;
  }

  void WriteProc() {
    if (FlushSome(proc_.get(), &to_proc_)) return;
    // The process side no longer reads (it has exited): its output and
    // exit status may still be on the way, so keep reading.
    to_proc_.clear();
    stdin_closed_ = true;
  }

  // Forwards process output; false when the process side has ended.
  bool ReadProc() {
    char buf[kReadChunk];
    ssize_t n;
    do {
      n = recv(proc_.get(), buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;  // closed without kExit: an attach whose container has exited
    conn_.Touch();
    proc_reader_.Feed(buf, static_cast<size_t>(n));
    FrameType type;
    std::string payload;
    while (proc_reader_.Next(&type, &payload)) {
      switch (type) {
        case FrameType::kStdout:
          if (stdout_id_ != 0) conn_.Data(stdout_id_, payload);
          break;
        case FrameType::kStderr:
          if (stderr_id_ != 0) conn_.Data(stderr_id_, payload);
          break;
        case FrameType::kExit: {
          int32_t code;
          std::string message;
          if (!runtime::DecodeExit(payload, &code, &message)) {
            code = -1;
            message = "malformed exit status from the process";
          }
          exit_ = std::make_pair(code, std::move(message));
          return false;
        }
        default:
          break;
      }
    }
    if (proc_reader_.error()) {
      exit_ = std::make_pair(-1, std::string("protocol error on the process's stdio socket"));
      return false;
    }
    return true;
  }

  // The process side has ended: report the status the way kubelet does and
  // end the streams and the connection.
  void Complete() {
    proc_.reset();
    if (error_id_ != 0) {
      if (version_ >= 4) {
        // An attach ends without an exit status: kubelet reports Success.
        conn_.Data(error_id_, exit_ ? ExitStatusJson(exit_->first, exit_->second) : ExitStatusJson(0, ""));
      } else if (exit_ && exit_->first != 0) {
        conn_.Data(error_id_, exit_->first < 0
                                  ? exit_->second
                                  : absl::StrCat("command terminated with non-zero exit code: exit status ",
                                                 exit_->first));
      }
    }
    conn_.FinAll();
    conn_.Finish();
  }

  Conn conn_;
  const RemoteCommandSession& session_;
  const ConnectionOptions& options_;
  const int version_;
  std::map<uint32_t, Kind> kinds_;
  uint32_t error_id_ = 0, stdin_id_ = 0, stdout_id_ = 0, stderr_id_ = 0, resize_id_ = 0;
  bool opened_ = false;
  bool stdin_closed_ = false;
  UniqueFd proc_;
  runtime::FrameReader proc_reader_;
  std::string to_proc_;  // frames for the process; stdin typed before it starts waits here
  std::string resize_buf_;
  std::optional<std::pair<int32_t, std::string>> exit_;
};

// ---------------------------------------------------------------------------
// portforward

class PortForward {
 public:
  PortForward(UniqueFd conn, const HttpRequest& request, const PortForwardSession& session,
              const ConnectionOptions& options)
      : conn_(std::move(conn), request, options), session_(session), options_(options) {}

  void Run() {
    if (!HandleFrames()) return;  // frames that came with the request head
    while (true) {
      std::vector<pollfd> p;
      p.push_back({options_.shutdown_fd, POLLIN, 0});
      size_t to_tcp = 0;
      for (auto& [id, pair] : pairs_) to_tcp += pair.to_tcp.size();
      p.push_back({conn_.fd(),
                   static_cast<short>((to_tcp < kMaxBuffered ? POLLIN : 0) | (conn_.WantWrite() ? POLLOUT : 0)), 0});
      std::vector<std::string> polled;
      absl::Time deadline = conn_.IdleDeadline();
      for (auto& [id, pair] : pairs_) {
        if (!pair.tcp.valid()) {
          deadline = std::min(deadline, pair.deadline);
          continue;
        }
        short events = static_cast<short>((conn_.buffered() < kMaxBuffered ? POLLIN : 0) |
                                          (!pair.to_tcp.empty() ? POLLOUT : 0));
        p.push_back({pair.tcp.get(), events, 0});
        polled.push_back(id);
      }
      int rc = poll(p.data(), p.size(), PollTimeoutMs(deadline));
      if (rc < 0 && errno != EINTR) return;
      if (p[0].revents & POLLIN) return;
      absl::Time now = absl::Now();
      if (now >= conn_.IdleDeadline()) return;
      if ((p[1].revents & POLLOUT) && !conn_.Flush()) return;
      // TCP sides first: their pollfd entries refer to pairs that frame
      // handling below may remove.
      for (size_t i = 0; i < polled.size(); ++i) {
        auto it = pairs_.find(polled[i]);
        if (it == pairs_.end() || it->second.tcp.get() != p[i + 2].fd) continue;
        short revents = p[i + 2].revents;
        if (revents & POLLOUT) WriteTcp(it->second);
        if (pairs_.contains(polled[i]) && (revents & (POLLIN | POLLHUP | POLLERR))) ReadTcp(it->second);
      }
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!conn_.Read() || !HandleFrames()) return;  // the client has gone: the connection ends
      }
      // Pairs the client did not complete in time.
      for (auto it = pairs_.begin(); it != pairs_.end();) {
        Pair& pair = (it++)->second;
        if (!pair.tcp.valid() && now >= pair.deadline) {
          ClosePair(pair, absl::StrCat("timed out waiting for streams of request ", pair.request_id));
        }
      }
      if (!conn_.Flush()) return;
    }
  }

 private:
  struct Pair {
    std::string request_id;
    uint32_t data_id = 0, error_id = 0;
    uint16_t port = 0;
    UniqueFd tcp;
    std::string to_tcp;
    bool client_fin = false;  // the client has finished the data stream
    bool tcp_shut = false;    // and we have passed that on to the TCP socket
    absl::Time deadline;
  };

  bool HandleFrames() {
    spdy::Frame f;
    bool error = false;
    while (conn_.Next(&f, &error)) {
      if (!f.control) {
        HandleData(f);
        continue;
      }
      switch (static_cast<spdy::ControlType>(f.type)) {
        case spdy::ControlType::kSynStream: {
          absl::StatusOr<spdy::SynStream> s = conn_.ParseSynStream(f);
          if (!s.ok()) return false;
          HandleSynStream(*s);
          break;
        }
        case spdy::ControlType::kRstStream: {
          absl::StatusOr<spdy::StreamIdValue> r = spdy::ParseStreamIdValue(f);
          if (!r.ok()) return false;
          auto it = streams_.find(r->stream_id);
          if (it != streams_.end()) {
            conn_.Drop(r->stream_id);
            auto pair = pairs_.find(it->second);
            if (pair != pairs_.end()) ClosePair(pair->second, "");
          }
          break;
        }
        case spdy::ControlType::kGoAway:
          return false;
        default:
          break;
      }
    }
    return !error;
  }

  void HandleSynStream(const spdy::SynStream& s) {
    // Validation as kubelet's httpStreamReceived: a bad stream is reset.
    std::string_view type = spdy::HeaderValue(s.headers, "streamtype");
    uint32_t port = 0;
    if (!absl::SimpleAtoi(std::string(spdy::HeaderValue(s.headers, "port")), &port) || port < 1 || port > 65535 ||
        (type != "error" && type != "data")) {
      conn_.Reset(s.stream_id, spdy::kRstCancel);
      return;
    }
    std::string request_id(spdy::HeaderValue(s.headers, "requestid"));
    if (request_id.empty()) {
      // Old clients send no requestID; their pairs are consecutive streams,
      // the error stream first (kubelet guesses the same way).
      request_id = std::to_string(type == "error" ? s.stream_id : s.stream_id - 2);
    }
    Pair& pair = pairs_[request_id];
    uint32_t& slot = type == "error" ? pair.error_id : pair.data_id;
    if (slot != 0 || pair.tcp.valid()) {
      conn_.Reset(s.stream_id, spdy::kRstProtocolError);
      return;
    }
    if (!conn_.Reply(s.stream_id)) return;
    if (pair.request_id.empty()) {
      pair.request_id = request_id;
      pair.deadline = absl::Now() + kStreamCreationTimeout;
    }
    slot = s.stream_id;
    streams_[s.stream_id] = request_id;
    if (type == "data") pair.port = static_cast<uint16_t>(port);
    if (s.flags & spdy::kFlagFin) EndOfInput(pair, s.stream_id);
    if (pair.data_id != 0 && pair.error_id != 0) Dial(pair);
  }

  void Dial(Pair& pair) {
    absl::StatusOr<UniqueFd> fd =
        session_.dial ? session_.dial(pair.port) : absl::InternalError("port forwarding is not available");
    if (!fd.ok()) {
      ClosePair(pair, absl::StrCat("error forwarding port ", pair.port, ": ", fd.status().message()));
      return;
    }
    pair.tcp = std::move(*fd);
    SetNonBlocking(pair.tcp.get());
    MaybeShutTcp(pair);
  }

  void HandleData(const spdy::Frame& f) {
    auto it = streams_.find(f.stream_id);
    if (it == streams_.end()) return;
    auto pit = pairs_.find(it->second);
    if (pit == pairs_.end()) return;
    Pair& pair = pit->second;
    conn_.Consumed(f.stream_id, f.payload.size());
    if (f.stream_id == pair.data_id && !pair.client_fin) pair.to_tcp += f.payload;
    if (f.flags & spdy::kFlagFin) EndOfInput(pair, f.stream_id);
  }

  void EndOfInput(Pair& pair, uint32_t id) {
    conn_.Forget(id);
    if (id != pair.data_id) return;  // the client never writes to the error stream
    pair.client_fin = true;
    MaybeShutTcp(pair);
  }

  // Passes the client's half-close on once its data has been written.
  void MaybeShutTcp(Pair& pair) {
    if (pair.client_fin && !pair.tcp_shut && pair.tcp.valid() && pair.to_tcp.empty()) {
      shutdown(pair.tcp.get(), SHUT_WR);
      pair.tcp_shut = true;
    }
  }

  void WriteTcp(Pair& pair) {
    if (!FlushSome(pair.tcp.get(), &pair.to_tcp)) {
      ClosePair(pair, absl::StrCat("error forwarding port ", pair.port, ": write: ", std::strerror(errno)));
      return;
    }
    MaybeShutTcp(pair);
  }

  void ReadTcp(Pair& pair) {
    char buf[kReadChunk];
    ssize_t n;
    do {
      n = recv(pair.tcp.get(), buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      ClosePair(pair, absl::StrCat("error forwarding port ", pair.port, ": read: ", std::strerror(errno)));
      return;
    }
    if (n == 0) {
      // The pod's side is done: like kubelet, that ends the forwarded connection.
      ClosePair(pair, "");
      return;
    }
    conn_.Touch();
    conn_.Data(pair.data_id, std::string_view(buf, static_cast<size_t>(n)));
  }

  // Ends a pair: the message (if any) on its error stream, FIN on both
  // streams, the TCP connection closed. Invalidates `pair`.
  void ClosePair(Pair& pair, std::string_view message) {
    if (pair.error_id != 0 && !message.empty()) conn_.Data(pair.error_id, message);
    for (uint32_t id : {pair.data_id, pair.error_id}) {
      if (id == 0) continue;
      conn_.Fin(id);
      conn_.Forget(id);
      streams_.erase(id);
    }
    pairs_.erase(std::string(pair.request_id));
  }

  Conn conn_;
  const PortForwardSession& session_;
  const ConnectionOptions& options_;
  std::map<std::string, Pair> pairs_;         // by request id
  std::map<uint32_t, std::string> streams_;  // stream id -> request id
};

}  // namespace

void ServeSpdyRemoteCommand(UniqueFd conn, const HttpRequest& request, const RemoteCommandSession& session,
                            const ConnectionOptions& options) {
  static const std::vector<std::string> kProtocols = {"v4.channel.k8s.io", "v3.channel.k8s.io",
                                                      "v2.channel.k8s.io", "channel.k8s.io"};
  std::string protocol = Upgrade(conn.get(), request, kProtocols, options);
  if (protocol.empty()) return;
  int version = protocol == kProtocols[0] ? 4 : protocol == kProtocols[1] ? 3 : protocol == kProtocols[2] ? 2 : 1;
  RemoteCommand(std::move(conn), request, session, options, version).Run();
}

void ServeSpdyPortForward(UniqueFd conn, const HttpRequest& request, const PortForwardSession& session,
                          const ConnectionOptions& options) {
  static const std::vector<std::string> kProtocols = {"portforward.k8s.io"};
  if (Upgrade(conn.get(), request, kProtocols, options).empty()) return;
  PortForward(std::move(conn), request, session, options).Run();
}

}  // namespace crisp::streaming
