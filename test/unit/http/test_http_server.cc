#include "test/unit/http/test_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace crisp::images::testing {
namespace {

UniqueFd ConnectLoopback(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  return fd;
}

bool SendAllFd(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string Response(int status, absl::string_view body, const std::vector<std::string>& headers) {
  std::string out = absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Length: ", body.size(), "\r\n");
  for (const std::string& h : headers) absl::StrAppend(&out, h, "\r\n");
  absl::StrAppend(&out, "\r\n", body);
  return out;
}

ssize_t ServerConn::Recv(char* buf, size_t n) {
  if (ssl_ != nullptr) return SSL_read(ssl_, buf, static_cast<int>(n));
  return ::recv(fd_, buf, n, 0);
}

bool ServerConn::Send(absl::string_view data) {
  if (ssl_ == nullptr) return SendAllFd(fd_, data);
  while (!data.empty()) {
    int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void ServerConn::WaitForClose(absl::Duration timeout) {
  pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  ::poll(p, 2, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
}

void ServerConn::Relay(int upstream, bool both_ways) {
  char buf[65536];
  for (;;) {
    pollfd p[3] = {
        {upstream, POLLIN, 0}, {stop_fd_, POLLIN, 0}, {fd_, static_cast<short>(both_ways ? POLLIN : 0), 0}};
    if (::poll(p, 3, 10000) <= 0 || p[1].revents) return;
    if (p[0].revents) {
      ssize_t n = ::recv(upstream, buf, sizeof buf, 0);
      if (n <= 0 || !SendAllFd(fd_, absl::string_view(buf, static_cast<size_t>(n)))) return;
    }
    if (p[2].revents) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0 || !SendAllFd(upstream, absl::string_view(buf, static_cast<size_t>(n)))) return;
    }
  }
}

bool ServerConn::ReadRequest(ServerRequest* r) {
  size_t end;
  while ((end = buffered_.find("\r\n\r\n")) == std::string::npos) {
    char buf[16384];
    ssize_t n = Recv(buf, sizeof buf);
    if (n <= 0) return false;
    buffered_.append(buf, static_cast<size_t>(n));
  }
  std::vector<std::string> lines = absl::StrSplit(buffered_.substr(0, end), "\r\n");
  std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
  if (first.size() != 3) return false;
  r->method = first[0];
  r->target = first[1];
  r->version = first[2];
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) return false;
    r->headers.emplace(absl::AsciiStrToLower(lines[i].substr(0, colon)),
                       std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  buffered_.erase(0, end + 4);
  size_t length = 0;
  if (r->Has("content-length") && !absl::SimpleAtoi(r->Header("content-length"), &length)) return false;
  while (buffered_.size() < length) {
    char buf[16384];
    ssize_t n = Recv(buf, sizeof buf);
    if (n <= 0) return false;
    buffered_.append(buf, static_cast<size_t>(n));
  }
  r->body = buffered_.substr(0, length);
  buffered_.erase(0, length);
  return true;
}

TestServer::TestServer(Handler handler, const crisp::testing::TestCerts* certs, const std::string& host)
    : handler_(std::move(handler)), host_(host) {
  if (certs != nullptr) {
    tls_ = SSL_CTX_new(TLS_server_method());
    if (tls_ == nullptr ||
        SSL_CTX_use_certificate_file(tls_, certs->server_cert.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(tls_, certs->server_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return;
  }
  bool v6 = absl::StrContains(host, ':');
  UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    if (::inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    if (::inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return;
    len = sizeof *a;
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd.get(), 64) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return;
  port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                   : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!stop_.valid()) return;
  listen_ = std::move(fd);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

TestServer::~TestServer() {
  if (stop_.valid()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    for (const auto& [number, fd] : open_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

std::string TestServer::Url(const std::string& path, const std::string& host) const {
  std::string h = host.empty() ? host_ : host;
  if (absl::StrContains(h, ':')) h = absl::StrCat("[", h, "]");
  return absl::StrCat(tls_ != nullptr ? "https" : "http", "://", h, ":", port_, path);
}

std::vector<ServerRequest> TestServer::requests() const {
  std::lock_guard<std::mutex> l(mu_);
  return requests_;
}

void TestServer::CloseConnections() {
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [number, fd] : open_) ::shutdown(fd, SHUT_RDWR);
  }
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (open_.empty()) return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void TestServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents) return;
    if (!p[0].revents) continue;
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    int number = ++accepts_;
    std::lock_guard<std::mutex> l(mu_);
    threads_.emplace_back([this, number, conn = std::make_shared<UniqueFd>(std::move(fd))] {
      Serve(std::move(*conn), number);
    });
  }
}

void TestServer::Serve(UniqueFd fd, int number) {
  {
    std::lock_guard<std::mutex> l(mu_);
    open_[number] = fd.get();
    if (stopping_) ::shutdown(fd.get(), SHUT_RDWR);
  }
  SSL* ssl = nullptr;
  if (tls_ != nullptr) {
    ssl = SSL_new(tls_);
    SSL_set_fd(ssl, fd.get());
  }
  if (ssl == nullptr || SSL_accept(ssl) == 1) {
    ServerConn c(fd.get(), ssl, stop_.get());
    for (int index = 1;; ++index) {
      ServerRequest r;
      if (!c.ReadRequest(&r)) break;
      r.connection = number;
      r.index = index;
      {
        std::lock_guard<std::mutex> l(mu_);
        requests_.push_back(r);
      }
      if (!handler_(r, c) || absl::EqualsIgnoreCase(r.Header("connection"), "close")) break;
    }
  }
  if (ssl != nullptr) SSL_free(ssl);
  std::lock_guard<std::mutex> l(mu_);
  open_.erase(number);
}

TestProxy::TestProxy(std::string require_auth)
    : require_auth_(std::move(require_auth)),
      server_([this](const ServerRequest& r, ServerConn& c) { return Handle(r, c); }) {}

bool TestProxy::Handle(const ServerRequest& r, ServerConn& c) {
  if (!require_auth_.empty() && r.Header("proxy-authorization") != require_auth_) {
    c.Send(Response(407, "", {"Proxy-Authenticate: Basic realm=\"test\""}));
    return false;
  }
  // Every host is 127.0.0.1: only the port counts.
  int port = 0;
  if (r.method == "CONNECT") {
    if (!absl::SimpleAtoi(r.target.substr(r.target.rfind(':') + 1), &port)) return false;
    UniqueFd up = ConnectLoopback(port);
    if (!up.valid()) {
      c.Send(Response(502, "no upstream"));
      return false;
    }
    c.Send("HTTP/1.1 200 Connection established\r\n\r\n");
    c.Relay(up.get(), true);
    return false;
  }
  absl::string_view rest = r.target;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    c.Send(Response(400, "not a proxy request"));
    return false;
  }
  absl::string_view authority = rest.substr(0, rest.find('/'));
  absl::string_view path = rest.substr(authority.size());
  if (!absl::SimpleAtoi(authority.substr(authority.rfind(':') + 1), &port)) return false;
  UniqueFd up = ConnectLoopback(port);
  if (!up.valid()) {
    c.Send(Response(502, "no upstream"));
    return false;
  }
  std::string fwd = absl::StrCat(r.method, " ", path.empty() ? "/" : path, " HTTP/1.1\r\n");
  for (const auto& [name, value] : r.headers)
    if (name != "proxy-authorization" && name != "connection")
      absl::StrAppend(&fwd, name, ": ", value, "\r\n");
  absl::StrAppend(&fwd, "connection: close\r\n\r\n", r.body);
  if (!SendAllFd(up.get(), fwd)) return false;
  c.Relay(up.get(), false);
  return true;
}

}  // namespace crisp::images::testing
