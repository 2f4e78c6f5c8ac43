#pragma once
// Internal to the streaming server: what the HTTP layer hands to the SPDY and
// WebSocket protocol handlers after it has read a request for a valid token.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "server/streaming/streaming.h"

namespace crisp::streaming {

struct HttpRequest {
  std::string method;  // "GET", "POST"
  std::string path;    // "/exec/<token>" without the query
  // Query parameters in order (portforward over WebSocket repeats "port").
  std::vector<std::pair<std::string, std::string>> query;
  // Header names lower-cased; a repeated header keeps every value in order
  // (X-Stream-Protocol-Version, Sec-WebSocket-Protocol may repeat).
  std::multimap<std::string, std::string> headers;
  // Bytes the client sent after the request head (a client may start its
  // SPDY frames before it sees our 101).
  std::string leftover;
};

struct ConnectionOptions {
  absl::Duration idle_timeout = absl::Hours(4);
  // Becomes readable (eventfd) when the server shuts down: handlers return.
  int shutdown_fd = -1;
};

// Protocol handlers. Each runs on the connection's own thread, writes the
// upgrade response itself (101, or an HTTP error if the request cannot be
// served, e.g. no subprotocol in common), serves the stream until either side
// ends it, and returns. Both the connection and the process/ports side are
// closed on return; nothing keeps running.
void ServeSpdyRemoteCommand(UniqueFd conn, const HttpRequest& request, const RemoteCommandSession& session,
                            const ConnectionOptions& options);
void ServeSpdyPortForward(UniqueFd conn, const HttpRequest& request, const PortForwardSession& session,
                          const ConnectionOptions& options);
void ServeWebSocketRemoteCommand(UniqueFd conn, const HttpRequest& request, const RemoteCommandSession& session,
                                 const ConnectionOptions& options);
void ServeWebSocketPortForward(UniqueFd conn, const HttpRequest& request, const PortForwardSession& session,
                               const ConnectionOptions& options);

// The JSON metav1.Status that the v4/v5 remotecommand error stream carries
// when the command has ended: {"metadata":{},"status":"Success"} for exit 0;
// for non-zero: status Failure, reason NonZeroExitCode, details.causes
// [{reason: ExitCode, message: "<code>"}]; for a command that could not run
// (exit_code -1 from the shim): status Failure with `message`.
std::string ExitStatusJson(int exit_code, std::string_view message);

}  // namespace crisp::streaming
