#include "test/testing/ws_client.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace crisp::testing {

namespace ws = streaming::ws;

namespace {

absl::StatusOr<int> Dial(const std::string& host, uint16_t port, absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &ai); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
  }
  int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = fd < 0 ? -1 : ::connect(fd, ai->ai_addr, ai->ai_addrlen);
  int err = errno;
  ::freeaddrinfo(ai);
  if (rc != 0) {
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", host, ":", port, ": ", strerror(err)));
  }
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

std::string RandomBytes(size_t n) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// TLS client context: no verification (self-signed test certificates).
absl::Status StartTls(int fd, SSL_CTX** ctx, SSL** ssl) {
  *ctx = SSL_CTX_new(TLS_client_method());
  if (!*ctx) return absl::InternalError("SSL_CTX_new");
  SSL_CTX_set_verify(*ctx, SSL_VERIFY_NONE, nullptr);
  *ssl = SSL_new(*ctx);
  if (!*ssl || SSL_set_fd(*ssl, fd) != 1 || SSL_connect(*ssl) != 1) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    ERR_clear_error();
    return absl::UnavailableError(absl::StrCat("TLS handshake: ", buf));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ParsedUrl> ParseUrl(const std::string& url) {
  ParsedUrl u;
  std::string_view rest = url;
  auto consume = [&rest](std::string_view prefix) {
    if (rest.substr(0, prefix.size()) != prefix) return false;
    rest.remove_prefix(prefix.size());
    return true;
  };
  if (consume("https://") || consume("wss://")) {
    u.tls = true;
  } else if (!consume("http://") && !consume("ws://")) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported URL: ", url));
  }
  size_t slash = rest.find('/');
  std::string_view hostport = rest.substr(0, slash);
  u.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon = hostport.rfind(':');
  if (colon == std::string_view::npos)
    return absl::InvalidArgumentError(absl::StrCat("URL without port: ", url));
  std::string_view host = hostport.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  u.host = std::string(host);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(std::string(hostport.substr(colon + 1)), &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in URL: ", url));
  }
  u.port = static_cast<uint16_t>(port);
  return u;
}

absl::StatusOr<std::string> RawHttp(const std::string& host, uint16_t port, std::string_view request,
                                    bool tls, absl::Duration timeout) {
  absl::StatusOr<int> fd = Dial(host, port, timeout);
  if (!fd.ok()) return fd.status();
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  auto cleanup = [&] {
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
    ::close(*fd);
  };
  if (tls) {
    if (absl::Status s = StartTls(*fd, &ctx, &ssl); !s.ok()) {
      cleanup();
      return s;
    }
  }
  bool sent =
      ssl ? SSL_write(ssl, request.data(), static_cast<int>(request.size())) ==
                static_cast<int>(request.size())
          : ::send(*fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
  if (!sent) {
    cleanup();
    return absl::UnavailableError("sending the request failed");
  }
  std::string out;
  absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  for (;;) {
    if (!(ssl && SSL_pending(ssl) > 0)) {
      pollfd p{*fd, POLLIN, 0};
      int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0 || ::poll(&p, 1, ms) <= 0) {
        cleanup();
        return absl::DeadlineExceededError(absl::StrCat("no end of response; got: ", out));
      }
    }
    int n = ssl ? SSL_read(ssl, buf, sizeof(buf)) : static_cast<int>(::recv(*fd, buf, sizeof(buf), 0));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  cleanup();
  return out;
}

absl::StatusOr<std::unique_ptr<WsClient>> WsClient::ConnectUrl(const std::string& url,
                                                               const std::vector<std::string>& protocols,
                                                               absl::Duration timeout) {
  absl::StatusOr<ParsedUrl> u = ParseUrl(url);
  if (!u.ok()) return u.status();
  return Connect(u->host, u->port, u->path, protocols, {u->tls, timeout});
}

absl::StatusOr<std::unique_ptr<WsClient>> WsClient::Connect(const std::string& host, uint16_t port,
                                                            const std::string& path,
                                                            const std::vector<std::string>& protocols,
                                                            WsConnectOptions options) {
  absl::StatusOr<int> fd = Dial(host, port, options.timeout);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<WsClient> c(new WsClient());
  c->fd_ = *fd;
  if (options.tls) {
    if (absl::Status s = StartTls(c->fd_, &c->ctx_, &c->ssl_); !s.ok()) return s;
  }
  std::string key = ws::Base64Encode(RandomBytes(16));
  std::string host_header = host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
  std::string req = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host_header, ":", port,
                                 "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
                                 "\r\nSec-WebSocket-Version: 13\r\n");
  if (!protocols.empty())
    absl::StrAppend(&req, "Sec-WebSocket-Protocol: ", absl::StrJoin(protocols, ","), "\r\n");
  req += "\r\n";
  if (absl::Status s = c->WriteAll(req); !s.ok()) return s;
  // Read the response head; whatever follows it is the first frames.
  std::string head;
  absl::Time deadline = absl::Now() + options.timeout;
  char buf[4096];
  size_t end;
  while ((end = head.find("\r\n\r\n")) == std::string::npos) {
    if (!(c->ssl_ && SSL_pending(c->ssl_) > 0)) {
      pollfd p{c->fd_, POLLIN, 0};
      int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0 || ::poll(&p, 1, ms) <= 0) return absl::DeadlineExceededError("no handshake response");
    }
    int n =
        c->ssl_ ? SSL_read(c->ssl_, buf, sizeof(buf)) : static_cast<int>(::recv(c->fd_, buf, sizeof(buf), 0));
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat("connection closed during the handshake; got: ", head));
    }
    head.append(buf, static_cast<size_t>(n));
  }
  std::string rest = head.substr(end + 4);
  head.resize(end);
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  if (lines.empty() || !absl::StartsWith(lines[0], "HTTP/1.1 101")) {
    return absl::FailedPreconditionError(
        absl::StrCat("handshake refused: ", lines.empty() ? head : lines[0]));
  }
  std::map<std::string, std::string> headers;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  if (headers["sec-websocket-accept"] != ws::AcceptKey(key)) {
    return absl::FailedPreconditionError("wrong Sec-WebSocket-Accept");
  }
  c->protocol_ = headers["sec-websocket-protocol"];
  if (!protocols.empty() && std::find(protocols.begin(), protocols.end(), c->protocol_) == protocols.end()) {
    return absl::FailedPreconditionError(absl::StrCat("server chose protocol \"", c->protocol_, "\""));
  }
  c->decoder_.Feed(rest.data(), rest.size());
  return c;
}

WsClient::~WsClient() { Disconnect(); }

void WsClient::Disconnect() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  ssl_ = nullptr;
  ctx_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status WsClient::WriteAll(std::string_view data) {
  if (fd_ < 0) return absl::FailedPreconditionError("disconnected");
  while (!data.empty()) {
    int n = ssl_ ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                 : static_cast<int>(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL));
    if (n <= 0) {
      if (!ssl_ && n < 0 && errno == EINTR) continue;
      return absl::UnavailableError("write failed");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status WsClient::SendRaw(std::string_view bytes) { return WriteAll(bytes); }

absl::Status WsClient::SendFrame(uint8_t opcode, std::string_view payload, bool fin) {
  std::string key = RandomBytes(4);
  return WriteAll(ws::EncodeFrame(opcode, payload, fin, reinterpret_cast<const uint8_t*>(key.data())));
}

absl::Status WsClient::SendChannel(uint8_t channel, std::string_view data) {
  if (base64()) {
    return SendFrame(ws::kText,
                     absl::StrCat(std::string(1, static_cast<char>('0' + channel)), ws::Base64Encode(data)));
  }
  std::string msg(1, static_cast<char>(channel));
  msg.append(data);
  return SendFrame(ws::kBinary, msg);
}

absl::Status WsClient::ReadSome(absl::Time deadline) {
  if (fd_ < 0) return absl::UnavailableError("disconnected");
  if (!(ssl_ && SSL_pending(ssl_) > 0)) {
    pollfd p{fd_, POLLIN, 0};
    int ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    int r = ::poll(&p, 1, ms);
    if (r == 0) return absl::DeadlineExceededError("timed out waiting for a message");
    if (r < 0) return absl::InternalError(strerror(errno));
  }
  char buf[16384];
  int n = ssl_ ? SSL_read(ssl_, buf, sizeof(buf)) : static_cast<int>(::recv(fd_, buf, sizeof(buf), 0));
  if (n <= 0) return absl::UnavailableError("connection closed");
  decoder_.Feed(buf, static_cast<size_t>(n));
  return absl::OkStatus();
}

absl::StatusOr<ws::Message> WsClient::ReadMessage(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    ws::Message m;
    auto r = decoder_.Next(&m);
    if (r == ws::Decoder::Result::kError) {
      return absl::DataLossError(absl::StrCat("bad frame from server: ", decoder_.error()));
    }
    if (r == ws::Decoder::Result::kMessage) {
      if (m.opcode == ws::kPing) (void)SendFrame(ws::kPong, m.payload);
      if (m.opcode == ws::kClose) {
        close_code_ = m.payload.size() >= 2
                          ? (static_cast<uint8_t>(m.payload[0]) << 8) | static_cast<uint8_t>(m.payload[1])
                          : 1005;
      }
      return m;
    }
    if (absl::Status s = ReadSome(deadline); !s.ok()) return s;
  }
}

absl::StatusOr<ChannelMessage> WsClient::ReadChannel(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<ws::Message> m = ReadMessage(deadline - absl::Now());
    if (!m.ok()) return m.status();
    if (m->opcode == ws::kClose) return absl::OutOfRangeError("server closed the stream");
    if (m->opcode != ws::kBinary && m->opcode != ws::kText) continue;
    if (m->payload.empty()) return absl::DataLossError("empty channel message");
    ChannelMessage c;
    c.channel = static_cast<uint8_t>(m->payload[0]);
    c.data = m->payload.substr(1);
    if (base64()) {
      c.channel = static_cast<uint8_t>(c.channel - '0');
      std::string raw;
      if (!ws::Base64Decode(c.data, &raw)) return absl::DataLossError("bad base64 from server");
      c.data = std::move(raw);
    }
    return c;
  }
}

absl::Status WsClient::Close(uint16_t code, absl::Duration timeout) {
  if (!close_sent_) {
    close_sent_ = true;
    if (absl::Status s = SendFrame(ws::kClose, ws::ClosePayload(code)); !s.ok()) return s;
  }
  absl::Time deadline = absl::Now() + timeout;
  while (!close_code_) {
    absl::StatusOr<ws::Message> m = ReadMessage(deadline - absl::Now());
    if (!m.ok()) return m.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RemoteCommandClient>> RemoteCommandClient::Connect(
    const std::string& url, std::vector<std::string> protocols, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<WsClient>> c = WsClient::ConnectUrl(url, protocols, timeout);
  if (!c.ok()) return c.status();
  return std::make_unique<RemoteCommandClient>(std::move(*c));
}

absl::Status RemoteCommandClient::Resize(uint16_t width, uint16_t height) {
  return ws_->SendChannel(kResize, absl::StrCat("{\"Width\":", width, ",\"Height\":", height, "}"));
}

void RemoteCommandClient::Collect(const ChannelMessage& m) {
  if (m.channel == kStdout) out_.stdout += m.data;
  if (m.channel == kStderr) out_.stderr += m.data;
  if (m.channel == kError) out_.error += m.data;
}

absl::StatusOr<RemoteCommandClient::Output> RemoteCommandClient::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!out_.closed) {
    absl::StatusOr<ChannelMessage> m = ws_->ReadChannel(deadline - absl::Now());
    if (absl::IsOutOfRange(m.status())) {
      out_.closed = true;
      (void)ws_->Close();  // answer the close handshake
      break;
    }
    if (!m.ok()) return m.status();
    Collect(*m);
  }
  return out_;
}

absl::Status RemoteCommandClient::WaitForStdout(std::string_view want, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (out_.stdout.find(want) == std::string::npos) {
    absl::StatusOr<ChannelMessage> m = ws_->ReadChannel(deadline - absl::Now());
    if (!m.ok())
      return absl::Status(m.status().code(),
                          absl::StrCat(m.status().message(), "; stdout so far: ", out_.stdout));
    Collect(*m);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PortForwardClient>> PortForwardClient::Connect(
    const std::string& url, const std::vector<uint16_t>& ports, std::vector<std::string> protocols,
    absl::Duration timeout) {
  std::string full = url;
  for (size_t i = 0; i < ports.size(); ++i) {
    absl::StrAppend(&full, (i == 0 && url.find('?') == std::string::npos) ? "?" : "&", "port=", ports[i]);
  }
  absl::StatusOr<std::unique_ptr<WsClient>> c = WsClient::ConnectUrl(full, protocols, timeout);
  if (!c.ok()) return c.status();
  std::unique_ptr<PortForwardClient> pf(new PortForwardClient(std::move(*c), ports.size()));
  // Every channel first carries its port, little-endian.
  std::vector<bool> seen(2 * ports.size(), false);
  for (size_t i = 0; i < seen.size(); ++i) {
    absl::StatusOr<ChannelMessage> m = pf->ws_->ReadChannel(timeout);
    if (!m.ok()) return m.status();
    size_t ch = m->channel;
    if (ch >= seen.size() || seen[ch] || m->data.size() != 2) {
      return absl::DataLossError(absl::StrCat("unexpected initial message on channel ", ch));
    }
    uint16_t port =
        static_cast<uint16_t>(static_cast<uint8_t>(m->data[0]) | (static_cast<uint8_t>(m->data[1]) << 8));
    if (port != ports[ch / 2]) {
      return absl::DataLossError(
          absl::StrCat("channel ", ch, " announced port ", port, ", want ", ports[ch / 2]));
    }
    seen[ch] = true;
  }
  return pf;
}

absl::Status PortForwardClient::Pump(absl::Time deadline) {
  absl::StatusOr<ChannelMessage> m = ws_->ReadChannel(deadline - absl::Now());
  if (!m.ok()) return m.status();
  size_t i = m->channel / 2;
  if (i >= data_.size()) return absl::DataLossError(absl::StrCat("message on unknown channel ", m->channel));
  (m->channel % 2 == 0 ? data_[i] : errors_[i]) += m->data;
  return absl::OkStatus();
}

absl::StatusOr<std::string> PortForwardClient::Read(size_t index, size_t n, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (data_.at(index).size() < n) {
    if (absl::Status s = Pump(deadline); !s.ok()) return s;
  }
  return std::exchange(data_[index], std::string());
}

absl::StatusOr<std::string> PortForwardClient::ReadError(size_t index, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (errors_.at(index).empty()) {
    if (absl::Status s = Pump(deadline); !s.ok()) return s;
  }
  return std::exchange(errors_[index], std::string());
}

}  // namespace crisp::testing
