// The streaming server: a TCP (optionally TLS) listener, the single-use token
// cache behind the Exec/Attach/PortForward URLs, the HTTP request head, and
// dispatch to the SPDY or WebSocket handler on the connection's own thread.
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/streaming/connection.h"
#include "server/streaming/http.h"
#include "server/streaming/streaming.h"

namespace crisp::streaming {

namespace {

std::shared_ptr<spdlog::logger> Log() { return Logger("streaming"); }

// A client has this long to complete TLS and send its request head.
constexpr absl::Duration kHeadTimeout = absl::Seconds(30);
constexpr size_t kRelayHighWater = 1 << 20;
// Connections (each a thread) served at once; more are closed on accept so a
// flood of idle clients cannot exhaust threads.
constexpr size_t kMaxConnections = 512;

enum class Kind { kExec, kAttach, kPortForward };

struct Pending {
  Kind kind;
  std::variant<RemoteCommandSession, PortForwardSession> session;
  absl::Time expiry;
};

// 16 random bytes as unpadded base64url: URL-safe, 22 characters.
absl::StatusOr<std::string> RandomToken() {
  unsigned char raw[16];
  size_t got = 0;
  while (got < sizeof(raw)) {
    ssize_t n = ::getrandom(raw + got, sizeof(raw) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom: ", strerror(errno)));
    }
    got += static_cast<size_t>(n);
  }
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string t;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : raw) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      t.push_back(kAlphabet[(acc >> (bits - 6)) & 63]);
      bits -= 6;
    }
  }
  if (bits > 0) t.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return t;
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

// Waits for `fd` to become ready for `events`; false on shutdown, deadline or
// error.
bool WaitFd(int fd, short events, int shutdown_fd, absl::Time deadline) {
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p[2] = {{fd, events, 0}, {shutdown_fd, POLLIN, 0}};
    int r = ::poll(p, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN)) return false;
    if (r > 0) return true;
  }
}

// Runs a non-blocking OpenSSL call until it completes. `op` returns the
// OpenSSL result (> 0 success).
template <typename Op>
int SslRetry(SSL* ssl, int fd, int shutdown_fd, absl::Time deadline, Op op) {
  for (;;) {
    int r = op();
    if (r > 0) return r;
    int err = SSL_get_error(ssl, r);
    short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0 || !WaitFd(fd, ev, shutdown_fd, deadline)) {
      ERR_clear_error();
      return r;
    }
  }
}

// The connection before it is handed to a handler: plain TCP or TLS.
class Transport {
 public:
  Transport(int fd, SSL* ssl, int shutdown_fd) : fd_(fd), ssl_(ssl), shutdown_fd_(shutdown_fd) {}

  // One read of up to n bytes; 0 on EOF/error/timeout.
  size_t Read(char* buf, size_t n, absl::Time deadline) {
    if (ssl_) {
      int r = SslRetry(ssl_, fd_, shutdown_fd_, deadline,
                       [&] { return SSL_read(ssl_, buf, static_cast<int>(n)); });
      return r > 0 ? static_cast<size_t>(r) : 0;
    }
    for (;;) {
      ssize_t r = ::recv(fd_, buf, n, 0);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno == EINTR) continue;
      if (errno != EAGAIN || !WaitFd(fd_, POLLIN, shutdown_fd_, deadline)) return 0;
    }
  }

  bool Write(absl::string_view data, absl::Time deadline) {
    if (!ssl_) return SendAll(fd_, data, shutdown_fd_, deadline - absl::Now());
    while (!data.empty()) {
      int r = SslRetry(ssl_, fd_, shutdown_fd_, deadline,
                       [&] { return SSL_write(ssl_, data.data(), static_cast<int>(data.size())); });
      if (r <= 0) return false;
      data.remove_prefix(static_cast<size_t>(r));
    }
    return true;
  }

  // Reads through the blank line ending the head. Bytes after it go to
  // *leftover. An error answer is written here (400/431) before returning.
  bool ReadHead(std::string* head, std::string* leftover, absl::Time deadline) {
    std::string buf;
    char chunk[4096];
    for (;;) {
      size_t end = buf.find("\r\n\r\n");
      if (end != std::string::npos && end + 4 <= kMaxRequestHead) {
        *head = buf.substr(0, end + 4);
        *leftover = buf.substr(end + 4);
        return true;
      }
      if (end != std::string::npos || buf.size() > kMaxRequestHead) {
        Write(HttpResponse(431, "Request Header Fields Too Large", "request head too large\n"), deadline);
        return false;
      }
      size_t n = Read(chunk, sizeof(chunk), deadline);
      if (n == 0) return false;
      buf.append(chunk, n);
    }
  }

 private:
  int fd_;
  SSL* ssl_;
  int shutdown_fd_;
};

// Bridges TLS on `tcp` to plaintext on `pair` until either side ends (or
// shutdown), so the protocol handlers only ever see a plain socket.
void RelayTls(SSL* ssl, int tcp, int pair, int shutdown_fd) {
  std::string from_tls, to_tls;
  bool tls_eof = false, pair_eof = false;
  size_t write_len = 0;  // an SSL_write to retry with the same length
  char buf[16 * 1024];
  for (;;) {
    bool want_tls_write = false;
    while (!tls_eof && from_tls.size() < kRelayHighWater) {
      int n = SSL_read(ssl, buf, sizeof(buf));
      if (n > 0) {
        from_tls.append(buf, static_cast<size_t>(n));
        continue;
      }
      int err = SSL_get_error(ssl, n);
      if (err == SSL_ERROR_WANT_WRITE) want_tls_write = true;
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) tls_eof = true;
      ERR_clear_error();
      break;
    }
    while (!from_tls.empty()) {
      ssize_t n = ::send(pair, from_tls.data(), from_tls.size(), MSG_NOSIGNAL);
      if (n > 0) {
        from_tls.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return;  // the handler is gone
    }
    if (tls_eof && from_tls.empty()) return;  // client gone: closing `pair` tells the handler
    while (!pair_eof && to_tls.size() < kRelayHighWater) {
      ssize_t n = ::recv(pair, buf, sizeof(buf), 0);
      if (n > 0) {
        to_tls.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) pair_eof = true;
      break;
    }
    while (!to_tls.empty()) {
      if (write_len == 0) write_len = std::min(to_tls.size(), sizeof(buf));
      int n = SSL_write(ssl, to_tls.data(), static_cast<int>(write_len));
      if (n > 0) {
        to_tls.erase(0, static_cast<size_t>(n));
        write_len = 0;
        continue;
      }
      int err = SSL_get_error(ssl, n);
      ERR_clear_error();
      if (err == SSL_ERROR_WANT_WRITE) {
        want_tls_write = true;
        break;
      }
      if (err == SSL_ERROR_WANT_READ) break;
      return;
    }
    if (pair_eof && to_tls.empty()) {
      SSL_shutdown(ssl);  // best effort close_notify
      return;
    }
    pollfd p[3] = {{tcp, 0, 0}, {pair, 0, 0}, {shutdown_fd, POLLIN, 0}};
    if (!tls_eof && from_tls.size() < kRelayHighWater) p[0].events |= POLLIN;
    if (want_tls_write) p[0].events |= POLLOUT;
    if (!pair_eof && to_tls.size() < kRelayHighWater) p[1].events |= POLLIN;
    if (!from_tls.empty()) p[1].events |= POLLOUT;
    int timeout = (SSL_pending(ssl) > 0 && from_tls.size() < kRelayHighWater) ? 0 : -1;
    int r = ::poll(p, 3, timeout);
    if (r < 0 && errno != EINTR) return;
    if (p[2].revents & POLLIN) return;
  }
}

class ServerImpl : public Server {
 public:
  ServerImpl(const ServerOptions& options, UniqueFd listener, UniqueFd shutdown, SSL_CTX* ctx, uint16_t port)
      : options_(options),
        listener_(std::move(listener)),
        shutdown_(std::move(shutdown)),
        ctx_(ctx),
        host_(absl::StrContains(options.address, ':') ? absl::StrCat("[", options.address, "]")
                                                      : options.address),
        port_(port) {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~ServerImpl() override {
    uint64_t one = 1;
    // eventfd: once written it stays readable, so every poll() sees it.
    while (::write(shutdown_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    accept_thread_.join();
    listener_.reset();
    // The accept thread is gone, so conns_ no longer changes.
    for (auto& c : conns_) c->thread.join();
    conns_.clear();
    if (ctx_) SSL_CTX_free(ctx_);
  }

  absl::StatusOr<std::string> AddExec(RemoteCommandSession session) override {
    return Add(Kind::kExec, std::move(session), "exec");
  }
  absl::StatusOr<std::string> AddAttach(RemoteCommandSession session) override {
    return Add(Kind::kAttach, std::move(session), "attach");
  }
  absl::StatusOr<std::string> AddPortForward(PortForwardSession session) override {
    return Add(Kind::kPortForward, std::move(session), "portforward");
  }
  std::string Endpoint() const override { return absl::StrCat(host_, ":", port_); }
  size_t ActiveStreams() const override { return active_.load(); }

 private:
  struct ConnThread {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  absl::StatusOr<std::string> Add(Kind kind, std::variant<RemoteCommandSession, PortForwardSession> session,
                                  absl::string_view what) {
    absl::StatusOr<std::string> token = RandomToken();
    if (!token.ok()) return token.status();
    absl::Time now = absl::Now();
    std::lock_guard<std::mutex> lock(mu_);
    if (tokens_.size() >= options_.max_tokens) {
      for (auto it = tokens_.begin(); it != tokens_.end();) {
        it = it->second.expiry <= now ? tokens_.erase(it) : std::next(it);
      }
    }
    if (tokens_.size() >= options_.max_tokens) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many pending streaming requests (", options_.max_tokens, ")"));
    }
    tokens_[*token] = Pending{kind, std::move(session), now + options_.token_ttl};
    return absl::StrCat(ctx_ ? "https" : "http", "://", host_, ":", port_, "/", what, "/", *token);
  }

  // Takes the token out of the cache: each URL serves one connection.
  std::optional<Pending> Consume(Kind kind, const std::string& token) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tokens_.find(token);
    if (it == tokens_.end() || it->second.kind != kind) return std::nullopt;
    Pending p = std::move(it->second);
    tokens_.erase(it);
    if (p.expiry <= absl::Now()) return std::nullopt;
    return p;
  }

  void AcceptLoop() {
    for (;;) {
      pollfd p[2] = {{listener_.get(), POLLIN, 0}, {shutdown_.get(), POLLIN, 0}};
      int r = ::poll(p, 2, 1000);
      if (r < 0 && errno != EINTR) {
        Log()->error("streaming server: poll: {}", strerror(errno));
        return;
      }
      if (p[1].revents & POLLIN) return;
      Reap();
      if (!(p[0].revents & POLLIN)) continue;
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: back off instead of spinning on a readable listener.
          Log()->warn("streaming server: accept: {}", strerror(errno));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        continue;
      }
      std::lock_guard<std::mutex> lock(conns_mu_);
      if (conns_.size() >= kMaxConnections) {
        Log()->warn("streaming server: {} connections open, refusing another", conns_.size());
        ::close(fd);
        continue;
      }
      auto c = std::make_unique<ConnThread>();
      ConnThread* raw = c.get();
      conns_.push_back(std::move(c));
      raw->thread = std::thread([this, fd, raw] {
        Serve(UniqueFd(fd));
        raw->done.store(true);
      });
    }
  }

  // Joins connection threads that have finished.
  void Reap() {
    std::lock_guard<std::mutex> lock(conns_mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      if ((*it)->done.load()) {
        (*it)->thread.join();
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Serve(UniqueFd conn) {
    const int sd = shutdown_.get();
    absl::Time deadline = absl::Now() + kHeadTimeout;
    SSL* ssl = nullptr;
    if (ctx_) {
      ssl = SSL_new(ctx_);
      if (!ssl || SSL_set_fd(ssl, conn.get()) != 1 ||
          SslRetry(ssl, conn.get(), sd, deadline, [&] { return SSL_accept(ssl); }) <= 0) {
        Log()->debug("streaming server: TLS handshake failed: {}", OpenSslError());
        if (ssl) SSL_free(ssl);
        return;
      }
    }
    Transport transport(conn.get(), ssl, sd);
    ServeRequest(std::move(conn), ssl, transport, deadline);
    if (ssl) SSL_free(ssl);
  }

  void ServeRequest(UniqueFd conn, SSL* ssl, Transport& transport, absl::Time deadline) {
    const int sd = shutdown_.get();
    std::string head, leftover;
    if (!transport.ReadHead(&head, &leftover, deadline)) return;
    absl::StatusOr<HttpRequest> req = ParseRequestHead(head);
    if (!req.ok()) {
      transport.Write(HttpResponse(400, "Bad Request", absl::StrCat(req.status().message(), "\n")), deadline);
      return;
    }
    req->leftover = std::move(leftover);
    std::optional<Pending> pending;
    for (auto [prefix, kind] : {std::pair<absl::string_view, Kind>{"/exec/", Kind::kExec},
                                {"/attach/", Kind::kAttach},
                                {"/portforward/", Kind::kPortForward}}) {
      if (absl::StartsWith(req->path, prefix)) {
        pending = Consume(kind, req->path.substr(prefix.size()));
        break;
      }
    }
    if (!pending) {
      transport.Write(HttpResponse(404, "Not Found", "not found\n"), deadline);
      return;
    }
    std::string upgrade = HeaderValue(*req, "upgrade");
    bool websocket = absl::EqualsIgnoreCase(upgrade, "websocket");
    bool spdy = absl::EqualsIgnoreCase(upgrade, "SPDY/3.1");
    if (!websocket && !spdy) {
      transport.Write(
          HttpResponse(400, "Bad Request", "streaming requires an Upgrade to websocket or SPDY/3.1\n"),
          deadline);
      return;
    }
    ConnectionOptions copts{options_.idle_timeout, sd};
    auto run = [&](UniqueFd fd) {
      if (auto* rc = std::get_if<RemoteCommandSession>(&pending->session)) {
        if (websocket) {
          ServeWebSocketRemoteCommand(std::move(fd), *req, *rc, copts);
        } else {
          ServeSpdyRemoteCommand(std::move(fd), *req, *rc, copts);
        }
      } else {
        const auto& pf = std::get<PortForwardSession>(pending->session);
        if (websocket) {
          ServeWebSocketPortForward(std::move(fd), *req, pf, copts);
        } else {
          ServeSpdyPortForward(std::move(fd), *req, pf, copts);
        }
      }
    };
    ++active_;
    if (!ssl) {
      run(std::move(conn));
    } else {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
        Log()->warn("streaming server: socketpair: {}", strerror(errno));
      } else {
        UniqueFd ours(sv[0]);
        std::thread handler([&run, fd = sv[1]] { run(UniqueFd(fd)); });
        RelayTls(ssl, conn.get(), ours.get(), sd);
        ours.reset();  // the handler sees EOF if it is still running
        handler.join();
      }
    }
    --active_;
  }

  const ServerOptions options_;
  UniqueFd listener_;
  UniqueFd shutdown_;
  SSL_CTX* ctx_;
  const std::string host_;
  const uint16_t port_;
  std::atomic<size_t> active_{0};

  std::mutex mu_;
  std::map<std::string, Pending> tokens_;

  std::mutex conns_mu_;
  std::list<std::unique_ptr<ConnThread>> conns_;
  std::thread accept_thread_;  // last: started once everything above exists
};

absl::StatusOr<SSL_CTX*> MakeTlsContext(const ServerOptions& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpenSslError()));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, o.tls_cert_file.c_str()) != 1) {
    std::string e = OpenSslError();
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(absl::StrCat("TLS certificate ", o.tls_cert_file, ": ", e));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, o.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    std::string e = OpenSslError();
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", o.tls_key_file, ": ", e));
  }
  return ctx;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  if (options.token_ttl <= absl::ZeroDuration())
    return absl::InvalidArgumentError("token_ttl must be positive");
  if (options.max_tokens == 0) return absl::InvalidArgumentError("max_tokens must be positive");
  if (options.idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_timeout must be positive");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* ai = nullptr;
  std::string port = std::to_string(options.port);
  if (int rc = ::getaddrinfo(options.address.c_str(), port.c_str(), &hints, &ai); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("streaming address \"", options.address, "\": ", gai_strerror(rc)));
  }
  UniqueFd listener(::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  int one = 1;
  bool ok = listener.valid() &&
            ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            ::bind(listener.get(), ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(listener.get(), 128) == 0;
  int err = errno;
  ::freeaddrinfo(ai);
  if (!ok) {
    return absl::UnavailableError(
        absl::StrCat("streaming server: bind ", options.address, ":", options.port, ": ", strerror(err)));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return absl::InternalError(absl::StrCat("getsockname: ", strerror(errno)));
  }
  uint16_t bound = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  UniqueFd shutdown(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!shutdown.valid()) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  SSL_CTX* ctx = nullptr;
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<SSL_CTX*> c = MakeTlsContext(options);
    if (!c.ok()) return c.status();
    ctx = *c;
  }
  return std::unique_ptr<Server>(
      new ServerImpl(options, std::move(listener), std::move(shutdown), ctx, bound));
}

}  // namespace crisp::streaming
