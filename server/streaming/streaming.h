#pragma once
// crisp's streaming server: the HTTP endpoint behind the URLs that the Exec,
// Attach and PortForward RPCs return (kubelet and crictl connect to it).
//
// crispd validates an Exec/Attach/PortForward request, then registers a
// session here and answers the URL. The session says how to reach the process
// (a callback that opens a framed stdio socket, runtime/stdio_frame.h) or the
// pod's ports (a callback that dials one); this library speaks HTTP, SPDY/3.1
// and WebSocket to the client and bridges the bytes. It knows nothing of
// containers.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace crisp::streaming {

struct StdioOptions {
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
  bool tty = false;  // then stderr is false: a terminal has one output
};

// Opens the process side of an Exec or Attach: a connected SOCK_STREAM socket
// speaking runtime/stdio_frame.h. For Exec this starts the command (so it is
// called once, when the client has connected and its streams are set up).
using OpenStdio = std::function<absl::StatusOr<UniqueFd>()>;

// Dials `port` on localhost inside the pod's network namespace: a connected
// TCP socket. Called once per forwarded connection (SPDY data stream /
// WebSocket port channel pair).
using DialPort = std::function<absl::StatusOr<UniqueFd>(uint16_t port)>;

struct RemoteCommandSession {
  StdioOptions options;
  OpenStdio open;
};

struct PortForwardSession {
  std::vector<uint16_t> ports;  // from the PortForwardRequest (may be empty)
  DialPort dial;
};

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: a random free port
  // TLS when both are set (PEM files).
  std::string tls_cert_file, tls_key_file;
  absl::Duration token_ttl = absl::Minutes(1);
  size_t max_tokens = 1000;
  absl::Duration idle_timeout = absl::Hours(4);  // a stream with no traffic this long is closed
};

class Server {
 public:
  // Binds and starts serving (its own threads). INVALID_ARGUMENT for bad
  // options, UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  virtual ~Server() = default;  // stops: closes the listener and every open stream, joins threads

  // Each returns the URL (http[s]://address:port/exec/<token> etc.) holding a
  // single-use random token valid for options.token_ttl. RESOURCE_EXHAUSTED
  // when max_tokens are outstanding.
  virtual absl::StatusOr<std::string> AddExec(RemoteCommandSession session) = 0;
  virtual absl::StatusOr<std::string> AddAttach(RemoteCommandSession session) = 0;
  virtual absl::StatusOr<std::string> AddPortForward(PortForwardSession session) = 0;

  // "address:port" actually bound.
  virtual std::string Endpoint() const = 0;
  // Streams being served right now (for tests and leak checks).
  virtual size_t ActiveStreams() const = 0;
};

}  // namespace crisp::streaming
