// TEMPORARY — DELETE THIS FILE WHEN server/streaming/spdy.cc LANDS.
//
// The SPDY/3.1 handlers are written on another branch. Until they are merged
// these stand-ins let the WebSocket branch link and answer SPDY upgrades
// honestly with 501, so a client falls back or fails clearly.
#include <sys/socket.h>

#include "server/streaming/connection.h"
#include "server/streaming/http.h"

namespace crisp::streaming {

namespace {
void NotImplemented(const UniqueFd& conn, const ConnectionOptions& options) {
  SendAll(conn.get(), HttpResponse(501, "Not Implemented", "SPDY streaming is not implemented yet\n"),
          options.shutdown_fd, absl::Seconds(10));
}
}  // namespace

void ServeSpdyRemoteCommand(UniqueFd conn, const HttpRequest&, const RemoteCommandSession&,
                            const ConnectionOptions& options) {
  NotImplemented(conn, options);
}

void ServeSpdyPortForward(UniqueFd conn, const HttpRequest&, const PortForwardSession&,
                          const ConnectionOptions& options) {
  NotImplemented(conn, options);
}

}  // namespace crisp::streaming
