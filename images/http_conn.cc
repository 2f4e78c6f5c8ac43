#include "images/http_conn.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace crisp::images::http {
namespace {

using Clock = std::chrono::steady_clock;

// How long a blocked step sleeps before it looks at the cancel flag again.
constexpr auto kCancelPoll = std::chrono::milliseconds(100);

// When a step that starts now stalls.
Clock::time_point StallDeadline(const IoLimits& limits) {
  if (limits.stall_timeout <= absl::ZeroDuration() || limits.stall_timeout == absl::InfiniteDuration())
    return Clock::time_point::max();
  return Clock::now() + absl::ToChronoNanoseconds(limits.stall_timeout);
}

absl::Status Stalled(const IoLimits& limits, absl::string_view doing) {
  return absl::DeadlineExceededError(
      absl::StrCat("no data for ", absl::FormatDuration(limits.stall_timeout), " (stall timeout) ", doing));
}

absl::Status Cancelled() { return absl::CancelledError("cancelled"); }

std::string Errno(int err) { return std::strerror(err); }

// The reason of the newest OpenSSL error on this thread's queue ("" if none).
std::string OpenSslReason() {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) return "";
  const char* reason = ERR_reason_error_string(e);
  std::string out;
  if (reason != nullptr) {
    out = reason;
  } else {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  return out;
}

// A BIO on the connection's fd that sends with MSG_NOSIGNAL: OpenSSL's own
// socket BIO uses write(), which raises SIGPIPE when the server has gone.
int BioWrite(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  ssize_t n = ::send(static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b))), data,
                     static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EINTR) BIO_set_retry_write(b);
  return -1;
}

int BioRead(BIO* b, char* buf, int len) {
  BIO_clear_retry_flags(b);
  ssize_t n =
      ::recv(static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b))), buf, static_cast<size_t>(len), 0);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EINTR) BIO_set_retry_read(b);
  return -1;
}

long BioCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "crisp socket");
    if (m != nullptr) {
      BIO_meth_set_write(m, BioWrite);
      BIO_meth_set_read(m, BioRead);
      BIO_meth_set_ctrl(m, BioCtrl);
    }
    return m;
  }();
  return method;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

struct Address {
  sockaddr_storage addr;
  socklen_t len;
  int family;
};

// A getaddrinfo() running on its own thread. The thread owns a reference,
// so that a caller that gives up (cancel, stall) can leave it behind.
struct Lookup {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int rc = 0;
  int err = 0;  // errno, for EAI_SYSTEM
  addrinfo* res = nullptr;
  ~Lookup() {
    if (res != nullptr) ::freeaddrinfo(res);
  }
};

absl::StatusOr<std::vector<Address>> Resolve(const std::string& host, uint16_t port,
                                             Clock::time_point deadline, const IoLimits& limits) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  std::string service = std::to_string(port);
  auto lookup = std::make_shared<Lookup>();
  addrinfo numeric = hints;
  numeric.ai_flags |= AI_NUMERICHOST;
  if (::getaddrinfo(host.c_str(), service.c_str(), &numeric, &lookup->res) != 0) {
    lookup->res = nullptr;
    try {
      std::thread([lookup, host, service, hints] {
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
        int err = errno;
        std::lock_guard<std::mutex> l(lookup->mu);
        lookup->rc = rc;
        lookup->err = err;
        lookup->res = res;
        lookup->done = true;
        lookup->cv.notify_all();
      }).detach();
    } catch (const std::system_error& e) {
      return absl::UnavailableError(absl::StrCat("resolving ", host, ": cannot start a thread: ", e.what()));
    }
    std::unique_lock<std::mutex> l(lookup->mu);
    while (!lookup->done) {
      if (limits.Cancelled()) return Cancelled();
      auto now = Clock::now();
      if (now >= deadline) return Stalled(limits, absl::StrCat("resolving ", host));
      lookup->cv.wait_for(l, std::min<Clock::duration>(kCancelPoll, deadline - now));
    }
    if (lookup->rc != 0)
      return absl::UnavailableError(
          absl::StrCat("resolving ", host, ": ",
                       lookup->rc == EAI_SYSTEM ? Errno(lookup->err) : ::gai_strerror(lookup->rc)));
  }
  std::vector<Address> out;
  for (addrinfo* ai = lookup->res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a{};
    std::memcpy(&a.addr, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    a.family = ai->ai_family;
    out.push_back(a);
  }
  if (out.empty()) return absl::UnavailableError(absl::StrCat("resolving ", host, ": no address"));
  return out;
}

std::string AddressString(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = "?";
  const void* p = a.family == AF_INET
                      ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&a.addr)->sin_addr)
                      : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&a.addr)->sin6_addr);
  ::inet_ntop(a.family, p, buf, sizeof buf);
  return buf;
}

void SetSocketOptions(int fd) {
  int one = 1, idle = 60;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Dead peers are noticed on idle pooled connections too (curl's values).
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof idle);
}

// poll() for one fd until ready, the deadline, or cancellation.
absl::Status WaitFd(int fd, short events, Clock::time_point deadline, const IoLimits& limits,
                    absl::string_view doing) {
  for (;;) {
    if (limits.Cancelled()) return Cancelled();
    auto now = Clock::now();
    if (now >= deadline) return Stalled(limits, doing);
    auto slice = std::min<Clock::duration>(kCancelPoll, deadline - now);
    int ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(slice).count());
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, ms);
    if (r > 0) return absl::OkStatus();  // POLLERR/POLLHUP too: the next call says what happened
    if (r < 0 && errno != EINTR) return absl::UnavailableError(absl::StrCat(doing, ": poll: ", Errno(errno)));
  }
}

}  // namespace

absl::StatusOr<SslCtxPtr> TlsContexts::Get(bool verify, const std::string& ca_file) {
  int64_t mtime_ns = 0, size = 0;
  bool with_ca = verify && !ca_file.empty();
  if (with_ca) {
    struct stat st;
    if (::stat(ca_file.c_str(), &st) != 0)
      return absl::FailedPreconditionError(absl::StrCat("CA file ", ca_file, ": ", Errno(errno)));
    mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    size = st.st_size;
  }
  std::lock_guard<std::mutex> l(mu_);
  auto key = std::make_pair(verify, with_ca ? ca_file : std::string());
  auto it = cache_.find(key);
  if (it == cache_.end() || it->second.mtime_ns != mtime_ns || it->second.size != size) {
    ERR_clear_error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (ctx == nullptr) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpenSslReason()));
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    // A server that closes without close_notify ends a read-to-close body;
    // Content-Length and chunked bodies still detect truncation themselves.
    SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
    // Fewer, larger reads from the socket for blob bodies.
    SSL_CTX_set_read_ahead(ctx.get(), 1);
    SSL_CTX_set_default_read_buffer_len(ctx.get(), 64 * 1024);
    static const unsigned char kAlpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn - 1);
    if (verify) {
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
      // No system store (a minimal image) leaves ca_file as the only trust.
      SSL_CTX_set_default_verify_paths(ctx.get());
      ERR_clear_error();
      if (with_ca && SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
        std::string why = OpenSslReason();
        ERR_clear_error();
        return absl::FailedPreconditionError(absl::StrCat("loading CA file ", ca_file, ": ", why));
      }
    } else {
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    }
    Entry& e = cache_[key];
    e.ctx = std::move(ctx);
    e.mtime_ns = mtime_ns;
    e.size = size;
    it = cache_.find(key);
  }
  SSL_CTX_up_ref(it->second.ctx.get());
  return SslCtxPtr(it->second.ctx.get());
}

Conn::~Conn() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIO; fd_ closes the socket
}

absl::StatusOr<std::unique_ptr<Conn>> Conn::Dial(const std::string& host, uint16_t port,
                                                 const IoLimits& limits) {
  std::string peer =
      absl::StrCat(host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host, ":", port);
  Clock::time_point deadline = StallDeadline(limits);
  auto addrs = Resolve(host, port, deadline, limits);
  if (!addrs.ok()) return addrs.status();
  std::string last_error;
  size_t timeouts = 0;
  for (size_t i = 0; i < addrs->size(); ++i) {
    const Address& a = (*addrs)[i];
    std::string what = IsIpLiteral(host) ? absl::StrCat("connecting to ", peer)
                                         : absl::StrCat("connecting to ", peer, " (", AddressString(a), ")");
    // Every address left gets an equal share of the time left.
    auto now = Clock::now();
    Clock::time_point attempt_deadline = deadline == Clock::time_point::max()
                                             ? deadline
                                             : now + (deadline - now) / static_cast<int>(addrs->size() - i);
    UniqueFd fd(::socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!fd.valid()) {
      last_error = absl::StrCat(what, ": socket: ", Errno(errno));
      continue;
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len) != 0) {
      if (errno != EINPROGRESS && errno != EINTR) {
        last_error = absl::StrCat(what, ": ", Errno(errno));
        continue;
      }
      absl::Status w = WaitFd(fd.get(), POLLOUT, attempt_deadline, limits, what);
      if (absl::IsCancelled(w)) return w;
      if (!w.ok()) {
        if (absl::IsDeadlineExceeded(w)) ++timeouts;
        last_error = std::string(w.message());
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        last_error = absl::StrCat(what, ": ", Errno(err));
        continue;
      }
    }
    SetSocketOptions(fd.get());
    return std::unique_ptr<Conn>(new Conn(std::move(fd), peer));
  }
  if (timeouts == addrs->size()) return Stalled(limits, absl::StrCat("connecting to ", peer));
  return absl::UnavailableError(last_error);
}

absl::Status Conn::Wait(short events, Clock::time_point deadline, const IoLimits& limits,
                        absl::string_view doing) {
  return WaitFd(fd_.get(), events, deadline, limits, doing);
}

absl::Status Conn::TlsError(int ret, absl::string_view doing) {
  int saved_errno = errno;
  int err = SSL_get_error(ssl_, ret);
  std::string reason;
  long verify = SSL_get_verify_result(ssl_);
  if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) && verify != X509_V_OK) {
    reason = absl::StrCat("certificate verify failed: ", X509_verify_cert_error_string(verify));
  } else if (std::string r = OpenSslReason(); !r.empty()) {
    reason = r;
  } else if (err == SSL_ERROR_SYSCALL && saved_errno != 0) {
    reason = Errno(saved_errno);
  } else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
    reason = "connection closed by the peer";
  } else {
    reason = absl::StrCat("OpenSSL error ", err);
  }
  ERR_clear_error();
  return absl::UnavailableError(absl::StrCat(doing, ": ", reason));
}

absl::Status Conn::StartTls(SSL_CTX* ctx, const std::string& host, const IoLimits& limits) {
  std::string doing = absl::StrCat("TLS handshake with ", peer_);
  ERR_clear_error();
  BIO_METHOD* method = SocketBioMethod();
  ssl_ = method == nullptr ? nullptr : SSL_new(ctx);
  BIO* bio = ssl_ == nullptr ? nullptr : BIO_new(method);
  if (bio == nullptr) {
    std::string why = OpenSslReason();
    ERR_clear_error();
    return absl::InternalError(absl::StrCat(doing, ": ", why.empty() ? "out of memory" : why));
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd_.get())));
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);
  std::string name(absl::StripSuffix(host, "."));
  bool ip = IsIpLiteral(name);
  if (!ip) SSL_set_tlsext_host_name(ssl_, name.c_str());
  if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
    } else {
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl_, name.c_str());
    }
  }
  SSL_set_connect_state(ssl_);
  Clock::time_point deadline = StallDeadline(limits);
  for (;;) {
    if (limits.Cancelled()) return Cancelled();
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl_);
    if (r == 1) return absl::OkStatus();
    int err = SSL_get_error(ssl_, r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return TlsError(r, doing);
    RETURN_IF_ERROR(Wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, limits, doing));
    deadline = StallDeadline(limits);
  }
}

absl::StatusOr<size_t> Conn::Read(char* buf, size_t n, const IoLimits& limits) {
  std::string doing;  // built only when needed
  auto what = [&]() -> absl::string_view {
    if (doing.empty()) doing = absl::StrCat("reading from ", peer_);
    return doing;
  };
  Clock::time_point deadline = StallDeadline(limits);
  for (;;) {
    if (limits.Cancelled()) return Cancelled();
    short wait_for = POLLIN;
    if (ssl_ != nullptr) {
      size_t got = 0;
      ERR_clear_error();
      errno = 0;
      int r = SSL_read_ex(ssl_, buf, n, &got);
      if (r == 1) {
        // Whole records already received go along: larger chunks for the sink.
        size_t total = got;
        while (total < n && SSL_has_pending(ssl_) && SSL_read_ex(ssl_, buf + total, n - total, &got) == 1)
          total += got;
        ERR_clear_error();
        return total;
      }
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      if (err == SSL_ERROR_SYSCALL && errno == 0 && ERR_peek_error() == 0) return 0;
      if (err == SSL_ERROR_WANT_WRITE) {
        wait_for = POLLOUT;
      } else if (err != SSL_ERROR_WANT_READ) {
        return TlsError(r, what());
      }
    } else {
      ssize_t r = ::recv(fd_.get(), buf, n, 0);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return absl::UnavailableError(absl::StrCat(what(), ": ", Errno(errno)));
    }
    RETURN_IF_ERROR(Wait(wait_for, deadline, limits, what()));
  }
}

absl::Status Conn::Write(absl::string_view data, const IoLimits& limits) {
  std::string doing = absl::StrCat("writing to ", peer_);
  Clock::time_point deadline = StallDeadline(limits);
  while (!data.empty()) {
    if (limits.Cancelled()) return Cancelled();
    short wait_for = POLLOUT;
    if (ssl_ != nullptr) {
      size_t wrote = 0;
      ERR_clear_error();
      errno = 0;
      int r = SSL_write_ex(ssl_, data.data(), data.size(), &wrote);
      if (r == 1) {
        data.remove_prefix(wrote);
        deadline = StallDeadline(limits);
        continue;
      }
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_WANT_READ) {
        wait_for = POLLIN;
      } else if (err != SSL_ERROR_WANT_WRITE) {
        return TlsError(r, doing);
      }
    } else {
      ssize_t r = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (r >= 0) {
        data.remove_prefix(static_cast<size_t>(r));
        deadline = StallDeadline(limits);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return absl::UnavailableError(absl::StrCat(doing, ": ", Errno(errno)));
    }
    RETURN_IF_ERROR(Wait(wait_for, deadline, limits, doing));
  }
  return absl::OkStatus();
}

bool Conn::StillIdle() {
  pollfd p{fd_.get(), POLLIN, 0};
  int r = ::poll(&p, 1, 0);
  if (r == 0) return true;
  if (r < 0 || ssl_ == nullptr) return false;  // EOF, an error, or bytes nobody asked for
  char c;
  size_t got = 0;
  ERR_clear_error();
  int ret = SSL_peek_ex(ssl_, &c, 1, &got);
  bool idle = ret != 1 && SSL_get_error(ssl_, ret) == SSL_ERROR_WANT_READ;
  ERR_clear_error();
  return idle;
}

}  // namespace crisp::images::http
