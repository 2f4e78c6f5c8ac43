// WebSocket (RFC 6455) remotecommand and portforward, as the kubelet's CRI
// streaming server speaks them (k8s.io/kubelet/pkg/cri/streaming and
// apimachinery's wsstream): every message carries one channel, its first byte
// (binary protocols) or first character '0'.. followed by base64 (the
// base64.* protocols).
//
// Each connection is served on the calling thread by one poll() loop over the
// client socket, the process (or forwarded ports) and shutdown_fd. Output is
// buffered per direction and a source is not read while the buffer it feeds
// is above kHighWater, so a slow reader throttles its writer instead of
// growing memory or blocking the loop.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "runtime/stdio_frame.h"
#include "server/streaming/connection.h"
#include "server/streaming/http.h"
#include "server/streaming/websocket_frame.h"

namespace crisp::streaming {

namespace {

using runtime::FrameType;

// Largest reassembled client message. kubectl sends stdin in 32 KiB pieces.
constexpr size_t kMaxMessage = 4 << 20;
constexpr size_t kHighWater = 1 << 20;
constexpr size_t kReadChunk = 32 * 1024;
// After our close frame, how long we wait for the client's (RFC 6455 7.1.1:
// the server should let the client close the TCP connection first).
constexpr absl::Duration kCloseWait = absl::Seconds(2);
constexpr absl::Duration kHandshakeWriteTimeout = absl::Seconds(10);

// remotecommand channels.
constexpr uint8_t kStdinChannel = 0, kStdoutChannel = 1, kStderrChannel = 2, kErrorChannel = 3,
                  kResizeChannel = 4;
// v5.channel.k8s.io: a message on this channel whose payload is one channel
// number closes that channel (the client's way to send EOF on stdin).
constexpr uint8_t kCloseChannel = 255;

constexpr absl::string_view kV5Binary = "v5.channel.k8s.io";
constexpr absl::string_view kV4Binary = "v4.channel.k8s.io";
constexpr absl::string_view kV4Base64 = "v4.base64.channel.k8s.io";
constexpr absl::string_view kV1Binary = "channel.k8s.io";
constexpr absl::string_view kV1Base64 = "base64.channel.k8s.io";

// What the kubelet accepts, remotecommand/websocket.go: "" (no
// Sec-WebSocket-Protocol header: binary framing, v1 status) and the
// channel.k8s.io family. v2/v3.channel.k8s.io are SPDY-only names; the kubelet
// does not offer them over WebSocket, so neither do we.
const std::vector<absl::string_view>& RemoteCommandProtocols() {
  static const auto* p =
      new std::vector<absl::string_view>{"", kV5Binary, kV4Binary, kV4Base64, kV1Binary, kV1Base64};
  return *p;
}
// portforward/websocket.go: "", v4.channel.k8s.io, v4.base64.channel.k8s.io.
const std::vector<absl::string_view>& PortForwardProtocols() {
  static const auto* p = new std::vector<absl::string_view>{"", kV4Binary, kV4Base64};
  return *p;
}

std::shared_ptr<spdlog::logger> Log() { return Logger("streaming"); }

bool IsBase64(absl::string_view protocol) { return protocol.find("base64.") != absl::string_view::npos; }

void Reject(int fd, int code, absl::string_view reason, absl::string_view body, int shutdown_fd) {
  SendAll(fd, HttpResponse(code, reason, absl::StrCat(body, "\n")), shutdown_fd, kHandshakeWriteTimeout);
}

// Validates the upgrade request, picks the subprotocol (the first the client
// lists that we support; none listed means "", as wsstream does) and writes
// the 101. On failure answers 400 and returns nullopt.
std::optional<std::string> Handshake(int fd, const HttpRequest& req,
                                     const std::vector<absl::string_view>& supported, int shutdown_fd) {
  auto bad = [&](absl::string_view why) -> std::optional<std::string> {
    Reject(fd, 400, "Bad Request", why, shutdown_fd);
    return std::nullopt;
  };
  if (req.method != "GET") return bad("websocket upgrade must be a GET");
  if (!absl::EqualsIgnoreCase(HeaderValue(req, "upgrade"), "websocket"))
    return bad("not a websocket upgrade");
  bool conn_upgrade = false;
  for (const auto& t : HeaderTokens(req, "connection")) conn_upgrade |= absl::EqualsIgnoreCase(t, "upgrade");
  if (!conn_upgrade) return bad("Connection header does not include upgrade");
  if (HeaderValue(req, "sec-websocket-version") != "13")
    return bad("unsupported Sec-WebSocket-Version (need 13)");
  std::string key = HeaderValue(req, "sec-websocket-key");
  std::string raw_key;
  if (!ws::Base64Decode(key, &raw_key) || raw_key.size() != 16)
    return bad("missing or malformed Sec-WebSocket-Key");
  std::vector<std::string> offered = HeaderTokens(req, "sec-websocket-protocol");
  if (offered.empty()) offered.emplace_back();
  std::optional<std::string> chosen;
  for (const auto& o : offered) {
    for (absl::string_view s : supported) {
      if (o == s) {
        chosen = o;
        break;
      }
    }
    if (chosen) break;
  }
  if (!chosen) {
    std::vector<std::string> names;
    for (absl::string_view s : supported) {
      if (!s.empty()) names.emplace_back(s);
    }
    return bad(
        absl::StrCat("requested protocol(s) are not supported; supported: ", absl::StrJoin(names, ", ")));
  }
  std::string resp =
      absl::StrCat("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
                   "Sec-WebSocket-Accept: ", ws::AcceptKey(key), "\r\n");
  if (!chosen->empty()) absl::StrAppend(&resp, "Sec-WebSocket-Protocol: ", *chosen, "\r\n");
  resp += "\r\n";
  if (!SendAll(fd, resp, shutdown_fd, kHandshakeWriteTimeout)) return std::nullopt;
  return chosen;
}

// One recv(). >0 bytes appended, 0 EOF, -1 nothing now, -2 error.
ssize_t RecvSome(int fd, std::string* in) {
  char buf[kReadChunk];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) in->append(buf, static_cast<size_t>(n));
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
  }
}

// The client side of a connection: decoding, channel codec, control frames.
class WsPeer {
 public:
  WsPeer(int fd, bool base64) : fd_(fd), base64_(base64), decoder_(/*expect_masked=*/true, kMaxMessage) {}

  void SendChannel(uint8_t channel, std::string_view data) {
    std::string msg;
    if (base64_) {
      msg.push_back(static_cast<char>('0' + channel));
      msg += ws::Base64Encode(data);
      out_ += ws::EncodeFrame(ws::kText, msg);
    } else {
      msg.push_back(static_cast<char>(channel));
      msg.append(data.data(), data.size());
      out_ += ws::EncodeFrame(ws::kBinary, msg);
    }
  }
  void SendClose(uint16_t code, std::string_view reason) {
    if (close_sent_) return;
    out_ += ws::EncodeFrame(ws::kClose, ws::ClosePayload(code, reason));
    close_sent_ = true;
    close_deadline_ = absl::Now() + kCloseWait;
  }

  // Reads once and decodes; channel messages go to *msgs. Updates state on
  // EOF, error, close.
  void Read(std::vector<std::pair<uint8_t, std::string>>* msgs) {
    std::string in;
    ssize_t n = RecvSome(fd_, &in);
    if (n == 0 || n == -2) {
      gone_ = true;
      return;
    }
    if (n > 0) Process(in, msgs);
  }

  // Decodes bytes received from the client.
  void Process(std::string_view in, std::vector<std::pair<uint8_t, std::string>>* msgs) {
    if (in.empty() || close_received_) return;
    decoder_.Feed(in.data(), in.size());
    ws::Message m;
    for (;;) {
      auto r = decoder_.Next(&m);
      if (r == ws::Decoder::Result::kNeedMore) return;
      if (r == ws::Decoder::Result::kError) {
        Log()->debug("websocket: closing on protocol error: {}", decoder_.error());
        SendClose(decoder_.error_code(), decoder_.error());
        close_received_ = true;  // nothing more from this client is read
        return;
      }
      switch (m.opcode) {
        case ws::kPing:
          if (!close_sent_) out_ += ws::EncodeFrame(ws::kPong, m.payload);
          break;
        case ws::kPong:
          break;
        case ws::kClose:
          close_received_ = true;
          SendClose(ws::kCloseNormal, "");
          return;
        default: {
          // wsstream ignores empty messages and undecodable base64.
          if (m.payload.empty()) break;
          uint8_t ch = static_cast<uint8_t>(m.payload[0]);
          std::string data = m.payload.substr(1);
          if (base64_) {
            ch = static_cast<uint8_t>(ch - '0');
            std::string raw;
            if (!ws::Base64Decode(data, &raw)) {
              Log()->debug("websocket: dropping a message with invalid base64 on channel {}", ch);
              break;
            }
            data = std::move(raw);
          }
          msgs->emplace_back(ch, std::move(data));
        }
      }
    }
  }

  bool Flush() {
    if (!FlushSome(fd_, &out_)) gone_ = true;
    return !gone_;
  }

  // Served to the end: gone, or our close is flushed and the client's came
  // (or took too long).
  bool Finished() const {
    return gone_ || (close_sent_ && out_.empty() && (close_received_ || absl::Now() >= close_deadline_));
  }
  // Poll interest.
  short Events(bool want_input) const {
    short ev = 0;
    if (!gone_ && want_input) ev |= POLLIN;
    if (!out_.empty()) ev |= POLLOUT;
    return ev;
  }
  bool reading() const { return !gone_ && !close_received_; }
  bool closing() const { return close_sent_; }
  size_t pending_out() const { return out_.size(); }
  absl::Time close_deadline() const { return close_deadline_; }
  int fd() const { return fd_; }

 private:
  int fd_;
  bool base64_;
  ws::Decoder decoder_;
  std::string out_;
  bool gone_ = false;
  bool close_sent_ = false;
  bool close_received_ = false;
  absl::Time close_deadline_ = absl::InfiniteFuture();
};

// poll() timeout in ms until `t` (at least 0, capped so we re-check).
int MsUntil(absl::Time t) {
  absl::Duration d = t - absl::Now();
  if (d <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d) + 1, 60'000));
}

// The v1 (pre-v4) error channel carries only the message of a failure.
std::string V1StatusText(int exit_code, absl::string_view message) {
  if (exit_code == 0) return "";
  auto j = nlohmann::json::parse(ExitStatusJson(exit_code, std::string(message)), nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string())
    return j["message"].get<std::string>();
  return std::string(message);
}

}  // namespace

void ServeWebSocketRemoteCommand(UniqueFd conn, const HttpRequest& request,
                                 const RemoteCommandSession& session, const ConnectionOptions& options) {
  SetNonBlocking(conn.get());
  std::optional<std::string> protocol =
      Handshake(conn.get(), request, RemoteCommandProtocols(), options.shutdown_fd);
  if (!protocol) return;
  const bool v4_status = *protocol == kV4Binary || *protocol == kV4Base64 || *protocol == kV5Binary;
  const bool v5 = *protocol == kV5Binary;
  const StdioOptions& stdio = session.options;
  WsPeer peer(conn.get(), IsBase64(*protocol));
  // The kubelet's "connection established" signal: an empty message on the
  // lowest writable channel (remotecommand/websocket.go).
  peer.SendChannel(stdio.stdout ? kStdoutChannel : stdio.stderr ? kStderrChannel : kErrorChannel, "");

  auto finish = [&](int exit_code, absl::string_view message) {
    std::string status =
        v4_status ? ExitStatusJson(exit_code, std::string(message)) : V1StatusText(exit_code, message);
    if (!status.empty()) peer.SendChannel(kErrorChannel, status);
    peer.SendClose(ws::kCloseNormal, "");
  };

  UniqueFd proc;
  if (!session.open) {
    finish(-1, "no process to connect to");
  } else if (auto p = session.open(); !p.ok()) {
    finish(-1, absl::StrCat("error executing command in container: ", p.status().message()));
  } else {
    proc = std::move(*p);
    SetNonBlocking(proc.get());
  }

  std::vector<std::pair<uint8_t, std::string>> msgs;
  std::string to_proc;
  runtime::FrameReader frames;
  bool proc_open = proc.valid();
  absl::Time idle_deadline = absl::Now() + options.idle_timeout;

  auto handle_client = [&](uint8_t ch, std::string& data) {
    switch (ch) {
      case kStdinChannel:
        if (stdio.stdin && proc_open && !data.empty()) {
          for (size_t off = 0; off < data.size(); off += runtime::kMaxFramePayload) {
            to_proc += runtime::EncodeFrame(FrameType::kStdin,
                                            std::string_view(data).substr(off, runtime::kMaxFramePayload));
          }
        }
        break;
      case kResizeChannel: {
        if (!stdio.tty || !proc_open) break;
        auto j = nlohmann::json::parse(data, nullptr, false);
        if (!j.is_object()) break;
        auto w = j.value("Width", nlohmann::json()), h = j.value("Height", nlohmann::json());
        if (!w.is_number_unsigned() || !h.is_number_unsigned()) break;
        to_proc += runtime::EncodeResize(static_cast<uint16_t>(w.get<uint64_t>()),
                                         static_cast<uint16_t>(h.get<uint64_t>()));
        break;
      }
      case kCloseChannel:
        if (v5 && data.size() == 1 && static_cast<uint8_t>(data[0]) == kStdinChannel && stdio.stdin &&
            proc_open) {
          to_proc += runtime::EncodeFrame(FrameType::kCloseStdin, "");
        }
        break;
      default:
        break;  // stdout/stderr/error are server-to-client only
    }
  };

  // A client may send its first frames right behind the upgrade request.
  peer.Process(request.leftover, &msgs);
  for (auto& [ch, data] : msgs) handle_client(ch, data);

  for (;;) {
    if (!peer.Flush() || peer.Finished()) break;
    if (proc_open && !FlushSome(proc.get(), &to_proc)) {
      proc_open = false;
      to_proc.clear();
      if (!peer.closing()) finish(-1, "error writing to the process: connection lost");
    }
    pollfd p[3] = {{conn.get(), peer.Events(peer.reading() && to_proc.size() < kHighWater), 0},
                   {options.shutdown_fd, POLLIN, 0},
                   {proc_open ? proc.get() : -1, 0, 0}};
    if (proc_open) {
      if (!peer.closing() && peer.pending_out() < kHighWater) p[2].events |= POLLIN;
      if (!to_proc.empty()) p[2].events |= POLLOUT;
    }
    absl::Time wake = peer.closing() ? peer.close_deadline() : idle_deadline;
    int r = ::poll(p, 3, MsUntil(wake));
    if (r < 0 && errno != EINTR) break;
    if (p[1].revents & POLLIN) {
      peer.SendClose(1001, "server shutting down");
      peer.Flush();
      break;
    }
    if (r == 0) {
      if (!peer.closing() && absl::Now() >= idle_deadline) {
        Log()->debug("websocket remotecommand: idle timeout");
        peer.SendClose(ws::kCloseNormal, "idle timeout");
      }
      continue;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      idle_deadline = absl::Now() + options.idle_timeout;
      msgs.clear();
      peer.Read(&msgs);
      for (auto& [ch, data] : msgs) handle_client(ch, data);
    }
    if (proc_open && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      idle_deadline = absl::Now() + options.idle_timeout;
      std::string in;
      ssize_t n = RecvSome(proc.get(), &in);
      if (n > 0) frames.Feed(in.data(), in.size());
      FrameType type;
      std::string payload;
      while (!peer.closing() && frames.Next(&type, &payload)) {
        switch (type) {
          case FrameType::kStdout:
            if (stdio.stdout) peer.SendChannel(kStdoutChannel, payload);
            break;
          case FrameType::kStderr:
            if (stdio.stderr) peer.SendChannel(kStderrChannel, payload);
            break;
          case FrameType::kExit: {
            int32_t code = -1;
            std::string message;
            if (!runtime::DecodeExit(payload, &code, &message))
              message = "malformed exit status from the shim";
            finish(code, message);
            break;
          }
          default:
            break;  // shim-bound types never come back
        }
      }
      if (!peer.closing() && frames.error()) finish(-1, "protocol error on the process stream");
      if (n == 0 || n == -2) {
        proc_open = false;
        to_proc.clear();
        // An attach socket just closes when the container's output is
        // drained: the kubelet reports that as success, so do we.
        if (!peer.closing()) finish(0, "");
      }
    }
  }
  // Returning closes the process socket: the shim sees the client is gone.
}

namespace {

// Ports from the query: "port" repeats and each value may be a comma list
// (portforward/websocket.go NewV4Options).
absl::StatusOr<std::vector<uint16_t>> QueryPorts(const HttpRequest& request) {
  std::vector<uint16_t> ports;
  bool seen = false;
  for (const auto& [k, v] : request.query) {
    if (k != "port") continue;
    seen = true;
    if (v.empty()) return absl::InvalidArgumentError("query parameter \"port\" cannot be empty");
    for (absl::string_view s : absl::StrSplit(v, ',')) {
      uint32_t port = 0;
      if (!absl::SimpleAtoi(s, &port) || s.empty() || s[0] == '+' || s[0] == '-' || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("unable to parse \"", s, "\" as a port"));
      }
      if (port < 1) return absl::InvalidArgumentError(absl::StrCat("port \"", s, "\" must be > 0"));
      ports.push_back(static_cast<uint16_t>(port));
    }
  }
  if (!seen) return absl::InvalidArgumentError("query parameter \"port\" is required");
  return ports;
}

struct ForwardedPort {
  uint16_t port = 0;
  UniqueFd fd;
  std::string to_port;
  bool open = false;
};

}  // namespace

void ServeWebSocketPortForward(UniqueFd conn, const HttpRequest& request, const PortForwardSession& session,
                               const ConnectionOptions& options) {
  SetNonBlocking(conn.get());
  auto ports = QueryPorts(request);
  if (!ports.ok()) {
    Reject(conn.get(), 400, "Bad Request", ports.status().message(), options.shutdown_fd);
    return;
  }
  std::optional<std::string> protocol =
      Handshake(conn.get(), request, PortForwardProtocols(), options.shutdown_fd);
  if (!protocol) return;
  WsPeer peer(conn.get(), IsBase64(*protocol));
  std::vector<std::pair<uint8_t, std::string>> msgs;
  std::vector<ForwardedPort> fwd(ports->size());
  // Channel 2i is port i's data, 2i+1 its errors; each first carries the port
  // (2 bytes little-endian) so the client can match them up.
  for (size_t i = 0; i < fwd.size(); ++i) {
    fwd[i].port = (*ports)[i];
    char le[2] = {static_cast<char>(fwd[i].port & 0xff), static_cast<char>(fwd[i].port >> 8)};
    peer.SendChannel(static_cast<uint8_t>(2 * i), std::string_view(le, 2));
    peer.SendChannel(static_cast<uint8_t>(2 * i + 1), std::string_view(le, 2));
  }
  // The kubelet dials every port as soon as the stream is up.
  for (size_t i = 0; i < fwd.size(); ++i) {
    absl::StatusOr<UniqueFd> fd = session.dial
                                      ? session.dial(fwd[i].port)
                                      : absl::StatusOr<UniqueFd>(absl::UnavailableError("no dialer"));
    if (!fd.ok()) {
      peer.SendChannel(static_cast<uint8_t>(2 * i + 1),
                       absl::StrCat("error forwarding port ", fwd[i].port, ": ", fd.status().message()));
      continue;
    }
    fwd[i].fd = std::move(*fd);
    fwd[i].open = true;
    SetNonBlocking(fwd[i].fd.get());
  }
  auto all_closed = [&] {
    for (const auto& f : fwd) {
      if (f.open) return false;
    }
    return true;
  };
  // When every forwarded connection has ended the kubelet closes the stream.
  if (all_closed()) peer.SendClose(ws::kCloseNormal, "");

  auto handle_client = [&](uint8_t ch, std::string& data) {
    size_t i = ch / 2;
    // Only data channels carry client bytes; the error channels are ours.
    if (ch % 2 == 0 && i < fwd.size() && fwd[i].open) fwd[i].to_port += data;
  };
  peer.Process(request.leftover, &msgs);
  for (auto& [ch, data] : msgs) handle_client(ch, data);

  absl::Time idle_deadline = absl::Now() + options.idle_timeout;
  std::vector<pollfd> p;
  for (;;) {
    if (!peer.Flush() || peer.Finished()) break;
    size_t pending_to_ports = 0;
    for (auto& f : fwd) {
      if (f.open && !FlushSome(f.fd.get(), &f.to_port)) {
        f.open = false;
        f.fd.reset();
        f.to_port.clear();
      }
      pending_to_ports = std::max(pending_to_ports, f.to_port.size());
    }
    if (!peer.closing() && all_closed()) {
      peer.SendClose(ws::kCloseNormal, "");
      continue;
    }
    p.assign({{conn.get(), peer.Events(peer.reading() && pending_to_ports < kHighWater), 0},
              {options.shutdown_fd, POLLIN, 0}});
    for (auto& f : fwd) {
      short ev = 0;
      if (f.open && !peer.closing() && peer.pending_out() < kHighWater) ev |= POLLIN;
      if (f.open && !f.to_port.empty()) ev |= POLLOUT;
      p.push_back({f.open ? f.fd.get() : -1, ev, 0});
    }
    absl::Time wake = peer.closing() ? peer.close_deadline() : idle_deadline;
    int r = ::poll(p.data(), p.size(), MsUntil(wake));
    if (r < 0 && errno != EINTR) break;
    if (p[1].revents & POLLIN) {
      peer.SendClose(1001, "server shutting down");
      peer.Flush();
      break;
    }
    if (r == 0) {
      if (!peer.closing() && absl::Now() >= idle_deadline) peer.SendClose(ws::kCloseNormal, "idle timeout");
      continue;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      idle_deadline = absl::Now() + options.idle_timeout;
      msgs.clear();
      peer.Read(&msgs);
      for (auto& [ch, data] : msgs) handle_client(ch, data);
    }
    for (size_t i = 0; i < fwd.size(); ++i) {
      if (!fwd[i].open || !(p[2 + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      idle_deadline = absl::Now() + options.idle_timeout;
      std::string in;
      ssize_t n = RecvSome(fwd[i].fd.get(), &in);
      if (n > 0) peer.SendChannel(static_cast<uint8_t>(2 * i), in);
      if (n == 0 || n == -2) {
        // The pod side ended this connection.
        fwd[i].open = false;
        fwd[i].fd.reset();
        fwd[i].to_port.clear();
      }
    }
  }
}

}  // namespace crisp::streaming
