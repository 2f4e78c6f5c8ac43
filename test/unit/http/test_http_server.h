#pragma once
// In-test HTTP/1.1 servers on loopback for the HTTP transport's tests: a
// server (optionally TLS, from test/testing/test_certs.h) whose handler sees
// every request read on a connection and writes whatever bytes it likes, so
// that tests can send well-formed, odd and broken responses; and a
// forwarding proxy (absolute-form requests and CONNECT tunnels) that maps
// every host name to 127.0.0.1. One thread per connection; the destructor
// stops everything and joins every thread.
#include <openssl/ssl.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "test/testing/test_certs.h"

namespace crisp::images::testing {

struct ServerRequest {
  std::string method, target, version;
  std::multimap<std::string, std::string> headers;  // names lowercased
  std::string body;
  int connection = 0;  // which accepted connection (1, 2, ...) it came on
  int index = 0;       // its place on that connection (1, 2, ...)

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  bool Has(const std::string& name) const { return headers.count(name) > 0; }
};

// One accepted connection, as handlers see it.
class ServerConn {
 public:
  // Writes raw bytes; false once the client is gone.
  bool Send(absl::string_view data);
  // Waits until the client closes the connection or the server stops, at
  // most `timeout`. For handlers that stall.
  void WaitForClose(absl::Duration timeout);
  // Copies bytes from the plain socket `upstream` to the client (and, with
  // `both_ways`, from the client to `upstream`) until `upstream` ends (or
  // either side, with `both_ways`) or the server stops.
  void Relay(int upstream, bool both_ways);

 private:
  friend class TestServer;
  ServerConn(int fd, SSL* ssl, int stop_fd) : fd_(fd), ssl_(ssl), stop_fd_(stop_fd) {}
  // Reads the next request (head and Content-Length body); false at EOF.
  bool ReadRequest(ServerRequest* r);
  ssize_t Recv(char* buf, size_t n);

  int fd_;
  SSL* ssl_;
  int stop_fd_;
  std::string buffered_;
};

// Called for each request read on a connection, in order; writes the
// response with conn.Send. Returns false to close the connection.
using Handler = std::function<bool(const ServerRequest&, ServerConn&)>;

class TestServer {
 public:
  // Listens on `host` (127.0.0.1 or ::1) on a free port; TLS with `certs`
  // when given. Check ok() before use.
  explicit TestServer(Handler handler, const crisp::testing::TestCerts* certs = nullptr,
                      const std::string& host = "127.0.0.1");
  ~TestServer();

  bool ok() const { return listen_.valid(); }
  uint16_t port() const { return port_; }
  // "http(s)://<host>:<port><path>"; `host` may be any name for 127.0.0.1.
  std::string Url(const std::string& path, const std::string& host = "") const;
  // Connections accepted so far.
  int accepts() const { return accepts_.load(); }
  // Every request read so far, in arrival order.
  std::vector<ServerRequest> requests() const;
  // Closes every open connection from the server's side, as a server does
  // with idle keep-alive connections; waits until they are closed.
  void CloseConnections();

 private:
  void AcceptLoop();
  void Serve(UniqueFd fd, int number);

  Handler handler_;
  SSL_CTX* tls_ = nullptr;
  std::string host_;
  UniqueFd listen_;
  UniqueFd stop_;  // eventfd, readable once stopping
  uint16_t port_ = 0;
  std::atomic<int> accepts_{0};
  mutable std::mutex mu_;
  std::vector<ServerRequest> requests_;
  std::map<int, int> open_;  // connection number -> fd
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A forwarding HTTP proxy: "GET http://host:port/path" is sent on to
// 127.0.0.1:port as "GET /path" (with "Connection: close"), and the answer
// relayed; "CONNECT host:port" answers 200 and relays bytes both ways. With
// `require_auth` ("Basic ...") anything else gets 407.
class TestProxy {
 public:
  explicit TestProxy(std::string require_auth = "");
  bool ok() const { return server_.ok(); }
  uint16_t port() const { return server_.port(); }
  // Requests the proxy was sent: "GET http://... HTTP/1.1", "CONNECT
  // host:port HTTP/1.1", with their headers (Proxy-Authorization).
  std::vector<ServerRequest> requests() const { return server_.requests(); }

 private:
  bool Handle(const ServerRequest& r, ServerConn& c);
  std::string require_auth_;
  TestServer server_;
};

// "HTTP/1.1 <status> X\r\nContent-Length: <n>\r\n<headers>\r\n<body>";
// each header "Name: value".
std::string Response(int status, absl::string_view body, const std::vector<std::string>& headers = {});

}  // namespace crisp::images::testing
