#include "test/testing/spdy_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace crisp::testing {
namespace {

int PollMs(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

absl::Status SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SpdyClient>> SpdyClient::Connect(const std::string& host, uint16_t port,
                                                                 const std::string& path,
                                                                 const std::vector<std::string>& protocols,
                                                                 absl::Duration timeout, const std::string& method) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
  }
  UniqueFd fd;
  std::string error = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    UniqueFd s(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!s.valid()) continue;
    if (connect(s.get(), a->ai_addr, a->ai_addrlen) == 0) {
      fd = std::move(s);
      break;
    }
    error = std::strerror(errno);
  }
  freeaddrinfo(res);
  if (!fd.valid()) return absl::UnavailableError(absl::StrCat("connect ", host, ":", port, ": ", error));
  return Handshake(std::move(fd), path, protocols, /*send_request=*/true, timeout, method);
}

absl::StatusOr<std::unique_ptr<SpdyClient>> SpdyClient::Handshake(UniqueFd fd, const std::string& path,
                                                                  const std::vector<std::string>& protocols,
                                                                  bool send_request, absl::Duration timeout,
                                                                  const std::string& method) {
  std::unique_ptr<SpdyClient> c(new SpdyClient(std::move(fd)));
  if (send_request) {
    std::string req = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n",
                                   "Upgrade: SPDY/3.1\r\n");
    for (const std::string& p : protocols) absl::StrAppend(&req, "X-Stream-Protocol-Version: ", p, "\r\n");
    req += "\r\n";
    if (absl::Status s = SendAll(c->fd(), req); !s.ok()) return s;
  }
  if (absl::Status s = c->ReadResponse(timeout); !s.ok()) return s;
  return c;
}

absl::Status SpdyClient::ReadResponse(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  std::string buf;
  size_t end;
  char tmp[4096];
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, PollMs(deadline)) <= 0) return absl::DeadlineExceededError("no HTTP response");
    ssize_t n = recv(fd_.get(), tmp, sizeof(tmp), 0);
    if (n <= 0) return absl::UnavailableError("connection closed before the HTTP response");
    buf.append(tmp, static_cast<size_t>(n));
  }
  response_head_ = buf.substr(0, end);
  std::string rest = buf.substr(end + 4);
  std::vector<std::string> lines = absl::StrSplit(response_head_, "\r\n");
  std::vector<std::string> status = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status.size() < 2 || !absl::SimpleAtoi(status[1], &status_code_)) {
    return absl::InvalidArgumentError(absl::StrCat("bad status line: ", lines[0]));
  }
  size_t content_length = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    if (name == "x-stream-protocol-version") protocol_ = value;
    if (name == "content-length" && !absl::SimpleAtoi(value, &content_length)) content_length = 0;
  }
  if (status_code_ == 101) {
    reader_.Feed(rest.data(), rest.size());
    return absl::OkStatus();
  }
  while (rest.size() < content_length) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, PollMs(deadline)) <= 0) break;
    ssize_t n = recv(fd_.get(), tmp, sizeof(tmp), 0);
    if (n <= 0) break;
    rest.append(tmp, static_cast<size_t>(n));
  }
  response_body_ = rest;
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> SpdyClient::OpenStream(const spdy::HeaderBlock& headers, bool fin) {
  uint32_t id = next_id_;
  next_id_ += 2;
  absl::StatusOr<std::string> f =
      spdy::EncodeSynStream(compressor_, id, 0, 0, fin ? spdy::kFlagFin : 0, headers);
  if (!f.ok()) return f.status();
  streams_[id];
  if (absl::Status s = SendAll(fd_.get(), *f); !s.ok()) return s;
  return id;
}

absl::Status SpdyClient::Write(uint32_t id, std::string_view data, bool fin) {
  std::string out;
  do {
    size_t n = std::min<size_t>(data.size(), 16 * 1024);
    bool last = n == data.size();
    out += spdy::EncodeData(id, last && fin ? spdy::kFlagFin : 0, data.substr(0, n));
    data.remove_prefix(n);
  } while (!data.empty());
  return SendAll(fd_.get(), out);
}

absl::Status SpdyClient::Reset(uint32_t id, uint32_t status) {
  return SendAll(fd_.get(), spdy::EncodeRstStream(id, status));
}

absl::Status SpdyClient::Ping(uint32_t id) { return SendAll(fd_.get(), spdy::EncodePing(id)); }

absl::Status SpdyClient::GoAway() { return SendAll(fd_.get(), spdy::EncodeGoAway(0, 0)); }

absl::Status SpdyClient::SendRaw(std::string_view bytes) { return SendAll(fd_.get(), bytes); }

void SpdyClient::ShutdownWrite() { shutdown(fd_.get(), SHUT_WR); }

absl::Status SpdyClient::HandleFrames() {
  spdy::Frame f;
  while (reader_.Next(&f)) {
    if (!f.control) {
      Stream& s = streams_[f.stream_id];
      s.data += f.payload;
      if (f.flags & spdy::kFlagFin) s.fin = true;
      continue;
    }
    switch (static_cast<spdy::ControlType>(f.type)) {
      case spdy::ControlType::kSynReply: {
        absl::StatusOr<spdy::StreamHeaders> h = spdy::ParseStreamHeaders(f, decompressor_);
        if (!h.ok()) return h.status();
        Stream& s = streams_[h->stream_id];
        s.replied = true;
        if (h->flags & spdy::kFlagFin) s.fin = true;
        break;
      }
      case spdy::ControlType::kHeaders: {
        absl::StatusOr<spdy::StreamHeaders> h = spdy::ParseStreamHeaders(f, decompressor_);
        if (!h.ok()) return h.status();
        break;
      }
      case spdy::ControlType::kSynStream: {
        absl::StatusOr<spdy::SynStream> s = spdy::ParseSynStream(f, decompressor_);
        if (!s.ok()) return s.status();
        break;
      }
      case spdy::ControlType::kRstStream: {
        absl::StatusOr<spdy::StreamIdValue> r = spdy::ParseStreamIdValue(f);
        if (!r.ok()) return r.status();
        Stream& s = streams_[r->stream_id];
        s.reset = true;
        s.reset_status = r->value;
        break;
      }
      case spdy::ControlType::kPing: {
        absl::StatusOr<uint32_t> id = spdy::ParsePing(f);
        if (!id.ok()) return id.status();
        pings_.push_back(*id);
        break;
      }
      case spdy::ControlType::kGoAway:
        goaway_ = true;
        break;
      case spdy::ControlType::kWindowUpdate: {
        absl::StatusOr<spdy::StreamIdValue> w = spdy::ParseStreamIdValue(f);
        if (!w.ok()) return w.status();
        window_updates_[w->stream_id] += w->value;
        break;
      }
      default:
        break;
    }
  }
  if (reader_.error()) return absl::InvalidArgumentError("SPDY framing error from the server");
  return absl::OkStatus();
}

absl::Status SpdyClient::PumpUntil(const std::function<bool()>& done, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (absl::Status s = HandleFrames(); !s.ok()) return s;
    if (done()) return absl::OkStatus();
    if (closed_) return absl::UnavailableError("the server closed the connection");
    pollfd p{fd_.get(), POLLIN, 0};
    int rc = poll(&p, 1, PollMs(deadline));
    if (rc == 0) return absl::DeadlineExceededError("timed out waiting for the server");
    if (rc < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    char buf[65536];
    ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      reader_.Feed(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      closed_ = true;
    }
  }
}

absl::Status SpdyClient::WaitReplied(uint32_t id, absl::Duration timeout) {
  return PumpUntil([&] { return Replied(id) || WasReset(id); }, timeout);
}

absl::StatusOr<std::string> SpdyClient::ReadAll(uint32_t id, absl::Duration timeout) {
  absl::Status s = PumpUntil([&] { return Finished(id) || WasReset(id); }, timeout);
  if (!s.ok() && !absl::IsUnavailable(s)) return s;
  return std::exchange(streams_[id].data, {});
}

absl::StatusOr<std::string> SpdyClient::ReadAtLeast(uint32_t id, size_t n, absl::Duration timeout) {
  absl::Status s = PumpUntil([&] { return streams_[id].data.size() >= n; }, timeout);
  if (!s.ok()) return s;
  return std::exchange(streams_[id].data, {});
}

absl::Status SpdyClient::WaitClosed(absl::Duration timeout) {
  absl::Status s = PumpUntil([] { return false; }, timeout);
  return closed_ ? absl::OkStatus() : s;
}

bool SpdyClient::Replied(uint32_t id) const {
  auto it = streams_.find(id);
  return it != streams_.end() && it->second.replied;
}
bool SpdyClient::Finished(uint32_t id) const {
  auto it = streams_.find(id);
  return it != streams_.end() && it->second.fin;
}
bool SpdyClient::WasReset(uint32_t id) const {
  auto it = streams_.find(id);
  return it != streams_.end() && it->second.reset;
}
uint32_t SpdyClient::ResetStatus(uint32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? 0 : it->second.reset_status;
}

absl::StatusOr<RemoteCommandStreams> OpenRemoteCommandStreams(SpdyClient& client, const RemoteCommandOptions& options,
                                                              bool resize_stream) {
  RemoteCommandStreams ids;
  auto open = [&](const char* type, uint32_t* id) -> absl::Status {
    absl::StatusOr<uint32_t> s = client.OpenStream({{"streamtype", type}});
    if (!s.ok()) return s.status();
    *id = *s;
    return absl::OkStatus();
  };
  absl::Status s = open("error", &ids.error);
  if (s.ok() && options.stdin) s = open("stdin", &ids.stdin);
  if (s.ok() && options.stdout) s = open("stdout", &ids.stdout);
  if (s.ok() && options.stderr && !options.tty) s = open("stderr", &ids.stderr);
  if (s.ok() && options.tty && resize_stream) s = open("resize", &ids.resize);
  if (!s.ok()) return s;
  for (uint32_t id : {ids.error, ids.stdin, ids.stdout, ids.stderr, ids.resize}) {
    if (id == 0) continue;
    if (absl::Status w = client.WaitReplied(id, options.timeout); !w.ok()) return w;
  }
  return ids;
}

absl::StatusOr<RemoteCommandResult> RunRemoteCommand(SpdyClient& client, const RemoteCommandOptions& options) {
  absl::StatusOr<RemoteCommandStreams> ids = OpenRemoteCommandStreams(client, options);
  if (!ids.ok()) return ids.status();
  for (auto [w, h] : options.resizes) {
    if (ids->resize == 0) break;
    if (absl::Status s = client.Write(ids->resize, absl::StrCat("{\"Width\":", w, ",\"Height\":", h, "}\n"));
        !s.ok()) {
      return s;
    }
  }
  if (ids->stdin != 0) {
    if (!options.stdin_data.empty()) {
      if (absl::Status s = client.Write(ids->stdin, options.stdin_data); !s.ok()) return s;
    }
    if (options.close_stdin) {
      if (absl::Status s = client.Fin(ids->stdin); !s.ok()) return s;
    }
  }
  RemoteCommandResult result;
  absl::Time deadline = absl::Now() + options.timeout;
  // Read the outputs and the error stream as they come: collecting them in
  // the client's buffers while waiting for all of them to finish.
  absl::Status s = client.PumpUntil(
      [&] {
        for (uint32_t id : {ids->error, ids->stdout, ids->stderr}) {
          if (id != 0 && !client.Finished(id) && !client.WasReset(id)) return false;
        }
        return true;
      },
      deadline - absl::Now());
  if (!s.ok() && !absl::IsUnavailable(s)) return s;
  auto take = [&](uint32_t id, std::string* out) -> absl::Status {
    if (id == 0) return absl::OkStatus();
    absl::StatusOr<std::string> d = client.ReadAll(id, absl::Milliseconds(1));
    if (!d.ok() && !absl::IsDeadlineExceeded(d.status())) return d.status();
    if (d.ok()) *out = std::move(*d);
    return absl::OkStatus();
  };
  if (absl::Status t = take(ids->stdout, &result.stdout); !t.ok()) return t;
  if (absl::Status t = take(ids->stderr, &result.stderr); !t.ok()) return t;
  if (absl::Status t = take(ids->error, &result.error); !t.ok()) return t;
  return result;
}

absl::StatusOr<PortForwardPair> OpenPortForward(SpdyClient& client, uint16_t port, const std::string& request_id,
                                                absl::Duration timeout) {
  // client-go's order: the error stream first (which it never writes to),
  // then the data stream.
  PortForwardPair pair;
  std::string p = std::to_string(port);
  absl::StatusOr<uint32_t> e =
      client.OpenStream({{"streamtype", "error"}, {"port", p}, {"requestid", request_id}}, /*fin=*/true);
  if (!e.ok()) return e.status();
  pair.error = *e;
  absl::StatusOr<uint32_t> d = client.OpenStream({{"streamtype", "data"}, {"port", p}, {"requestid", request_id}});
  if (!d.ok()) return d.status();
  pair.data = *d;
  for (uint32_t id : {pair.error, pair.data}) {
    if (absl::Status s = client.WaitReplied(id, timeout); !s.ok()) return s;
    if (client.WasReset(id)) return absl::FailedPreconditionError(absl::StrCat("stream ", id, " was reset"));
  }
  return pair;
}

}  // namespace crisp::testing
