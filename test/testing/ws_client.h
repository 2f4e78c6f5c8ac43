#pragma once
// A small blocking WebSocket (RFC 6455) client for tests: unit tests of the
// streaming server and e2e tests against a real crispd. Speaks plain TCP or
// TLS (no certificate verification: tests use self-signed certificates) and
// the Kubernetes channel protocols (channel.k8s.io family, base64 variants).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/streaming/websocket_frame.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace crisp::testing {

struct WsConnectOptions {
  bool tls = false;
  absl::Duration timeout = absl::Seconds(10);  // for connecting and the handshake
};

struct ChannelMessage {
  uint8_t channel = 0;
  std::string data;
};

// Splits http[s]:// or ws[s]:// URLs into host (without brackets), port, path+query.
struct ParsedUrl {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  std::string path;  // with the query
};
absl::StatusOr<ParsedUrl> ParseUrl(const std::string& url);

// One raw HTTP exchange: sends `request` verbatim and reads until the server
// closes (or `timeout`); returns everything received.
absl::StatusOr<std::string> RawHttp(const std::string& host, uint16_t port, std::string_view request,
                                    bool tls, absl::Duration timeout = absl::Seconds(10));

class WsClient {
 public:
  // Upgrades GET `path` (with query). `protocols` go into
  // Sec-WebSocket-Protocol (none: header omitted). Fails unless the answer is
  // 101 with a correct Sec-WebSocket-Accept and, when protocols were offered,
  // one of them chosen. A non-101 answer's status line is in the error.
  static absl::StatusOr<std::unique_ptr<WsClient>> Connect(const std::string& host, uint16_t port,
                                                           const std::string& path,
                                                           const std::vector<std::string>& protocols,
                                                           WsConnectOptions options = {});
  static absl::StatusOr<std::unique_ptr<WsClient>> ConnectUrl(const std::string& url,
                                                              const std::vector<std::string>& protocols,
                                                              absl::Duration timeout = absl::Seconds(10));
  ~WsClient();

  const std::string& protocol() const { return protocol_; }
  bool base64() const { return protocol_.find("base64.") != std::string::npos; }
  int fd() const { return fd_; }

  // A masked frame (clients must mask).
  absl::Status SendFrame(uint8_t opcode, std::string_view payload, bool fin = true);
  // Bytes as they are (for malformed-frame tests).
  absl::Status SendRaw(std::string_view bytes);
  // A channel message in the negotiated codec (binary byte or base64 char).
  absl::Status SendChannel(uint8_t channel, std::string_view data);

  // The next message or control frame. Pings are answered (and returned).
  // DEADLINE_EXCEEDED on timeout, UNAVAILABLE when the connection ends.
  absl::StatusOr<streaming::ws::Message> ReadMessage(absl::Duration timeout);
  // The next data message decoded as a channel message, skipping control
  // frames. OUT_OF_RANGE when the server sent a close frame (close_code()).
  absl::StatusOr<ChannelMessage> ReadChannel(absl::Duration timeout);

  // Sends a close frame and waits for the server's.
  absl::Status Close(uint16_t code = streaming::ws::kCloseNormal, absl::Duration timeout = absl::Seconds(5));
  // Drops the TCP connection without a close handshake.
  void Disconnect();
  std::optional<uint16_t> close_code() const { return close_code_; }

 private:
  WsClient() = default;
  absl::Status WriteAll(std::string_view data);
  // One read into the decoder; false on EOF/error/timeout (status set).
  absl::Status ReadSome(absl::Time deadline);

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string protocol_;
  streaming::ws::Decoder decoder_{/*expect_masked=*/false, 64 << 20};
  bool close_sent_ = false;
  std::optional<uint16_t> close_code_;
};

// kubectl exec/attach over WebSocket.
class RemoteCommandClient {
 public:
  static constexpr uint8_t kStdin = 0, kStdout = 1, kStderr = 2, kError = 3, kResize = 4, kClose = 255;
  // Defaults to what client-go offers: v5 then v4.
  static absl::StatusOr<std::unique_ptr<RemoteCommandClient>> Connect(
      const std::string& url, std::vector<std::string> protocols = {"v5.channel.k8s.io", "v4.channel.k8s.io"},
      absl::Duration timeout = absl::Seconds(10));
  explicit RemoteCommandClient(std::unique_ptr<WsClient> ws) : ws_(std::move(ws)) {}

  absl::Status Stdin(std::string_view data) { return ws_->SendChannel(kStdin, data); }
  // v5.channel.k8s.io only: EOF on stdin.
  absl::Status CloseStdin() { return ws_->SendChannel(kClose, std::string(1, '\0')); }
  absl::Status Resize(uint16_t width, uint16_t height);

  struct Output {
    std::string stdout, stderr, error;  // concatenated channel payloads
    bool closed = false;                // the server sent its close frame
  };
  // Reads until the server closes (or timeout), collecting output.
  absl::StatusOr<Output> Wait(absl::Duration timeout = absl::Seconds(10));
  // Reads until `want` appears in the collected stdout.
  absl::Status WaitForStdout(std::string_view want, absl::Duration timeout = absl::Seconds(10));
  const Output& output() const { return out_; }
  WsClient& ws() { return *ws_; }

 private:
  void Collect(const ChannelMessage& m);
  std::unique_ptr<WsClient> ws_;
  Output out_;
};

// kubectl port-forward over WebSocket (v4.channel.k8s.io): channel 2i data,
// 2i+1 error for ports[i].
class PortForwardClient {
 public:
  // Appends ?port=..&port=.. to the URL and checks the server's initial
  // port messages on every channel.
  static absl::StatusOr<std::unique_ptr<PortForwardClient>> Connect(
      const std::string& url, const std::vector<uint16_t>& ports,
      std::vector<std::string> protocols = {"v4.channel.k8s.io"}, absl::Duration timeout = absl::Seconds(10));

  absl::Status Send(size_t index, std::string_view data) {
    return ws_->SendChannel(static_cast<uint8_t>(2 * index), data);
  }
  // Reads until at least `n` bytes arrived for port `index`, returns them all
  // (and forgets them).
  absl::StatusOr<std::string> Read(size_t index, size_t n, absl::Duration timeout = absl::Seconds(10));
  // Reads until an error message for port `index` arrives.
  absl::StatusOr<std::string> ReadError(size_t index, absl::Duration timeout = absl::Seconds(10));
  WsClient& ws() { return *ws_; }

 private:
  PortForwardClient(std::unique_ptr<WsClient> ws, size_t n) : ws_(std::move(ws)), data_(n), errors_(n) {}
  absl::Status Pump(absl::Time deadline);
  std::unique_ptr<WsClient> ws_;
  std::vector<std::string> data_, errors_;
};

}  // namespace crisp::testing
