#pragma once
// The socket side of the HTTP transport (images/http_transport.h): name
// resolution, non-blocking connects tried address by address, TLS on
// OpenSSL, and reads and writes that give up when no byte moves for the
// request's stall timeout or when its cancel flag is set (checked at least
// every 100 ms while blocked). Nothing here knows HTTP.
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace crisp::images::http {

// The limits every blocking step of one request runs under.
struct IoLimits {
  // DEADLINE_EXCEEDED when a step sees no byte move for this long (a
  // non-positive value: no limit). Name resolution and connecting count as
  // one step.
  absl::Duration stall_timeout = absl::Minutes(5);
  // CANCELLED as soon as this becomes true.
  const std::atomic<bool>* cancel = nullptr;

  bool Cancelled() const { return cancel != nullptr && cancel->load(std::memory_order_relaxed); }
};

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// TLS client contexts, one per (verify, CA file), built on first use and
// rebuilt when the CA file changes (size or mtime), so that a rotated CA
// needs no restart. Every context: TLS >= 1.2, ALPN "http/1.1", buffers
// released while a connection idles. Thread-safe.
class TlsContexts {
 public:
  // A context (the caller holds its own reference). With `verify`: the
  // system trust store (SSL_CTX_set_default_verify_paths) plus `ca_file`
  // when given; without: no verification at all (hosts configured as
  // insecure), `ca_file` ignored. FAILED_PRECONDITION when `ca_file` cannot
  // be read or holds no certificate.
  absl::StatusOr<SslCtxPtr> Get(bool verify, const std::string& ca_file);

 private:
  struct Entry {
    SslCtxPtr ctx;
    int64_t mtime_ns = 0;
    int64_t size = 0;
  };
  std::mutex mu_;
  std::map<std::pair<bool, std::string>, Entry> cache_;
};

// One TCP connection to a server or a proxy, TLS or not. Used by one request
// at a time (the pool hands it over whole). Non-blocking fd, CLOEXEC,
// TCP_NODELAY, SO_KEEPALIVE; writes never raise SIGPIPE.
class Conn {
 public:
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Resolves `host` (IP literals without a lookup; names with getaddrinfo
  // on a helper thread, so that a slow resolver still honours the limits)
  // and connects to its addresses in turn, each attempt getting an equal
  // share of what is left of one stall period. UNAVAILABLE when no address
  // answers (naming the last error), DEADLINE_EXCEEDED when every attempt
  // timed out, CANCELLED.
  static absl::StatusOr<std::unique_ptr<Conn>> Dial(const std::string& host, uint16_t port,
                                                    const IoLimits& limits);

  // TLS handshake over this connection with server name `host`: SNI unless
  // `host` is an IP address, and, when `ctx` verifies, the certificate
  // checked against `host` (DNS name, or IP address for IP literals).
  // UNAVAILABLE naming OpenSSL's reason ("certificate verify failed:
  // self-signed certificate").
  absl::Status StartTls(SSL_CTX* ctx, const std::string& host, const IoLimits& limits);

  // Waits for data and reads what is there: at least one byte, at most `n`
  // (with TLS, every record already received). 0 at the end of the stream.
  absl::StatusOr<size_t> Read(char* buf, size_t n, const IoLimits& limits);
  // Writes all of `data`.
  absl::Status Write(absl::string_view data, const IoLimits& limits);

  // For a pooled connection before reuse: false when the server closed it
  // or sent bytes nobody asked for (a TLS record without data, such as a
  // session ticket, is consumed and does not count).
  bool StillIdle();

  const std::string& peer() const { return peer_; }  // "host:port", for messages

 private:
  Conn(UniqueFd fd, std::string peer) : fd_(std::move(fd)), peer_(std::move(peer)) {}
  using Clock = std::chrono::steady_clock;
  // Waits until the fd is ready for `events`; the stall deadline is `deadline`.
  absl::Status Wait(short events, Clock::time_point deadline, const IoLimits& limits,
                    absl::string_view doing);
  // The UNAVAILABLE status for a failed OpenSSL call that returned `ret`.
  absl::Status TlsError(int ret, absl::string_view doing);

  UniqueFd fd_;
  SSL* ssl_ = nullptr;
  std::string peer_;
};

}  // namespace crisp::images::http
