#pragma once
// A small single-threaded SPDY/3.1 client for tests, speaking to the
// streaming server the way client-go (kubectl, crictl) does: the HTTP upgrade,
// streams with headers, data, FIN, RST, PING. Nothing runs in the background:
// incoming frames are processed while a Pump*/Read* call waits.
//
// Unit tests hand the server handler one end of a socketpair and call
// Handshake(..., send_request=false) on the other; e2e tests Connect() to a
// real crispd's streaming URL (plain HTTP only).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "server/streaming/spdy_framing.h"

namespace crisp::testing {

namespace spdy = ::crisp::streaming::spdy;

class SpdyClient {
 public:
  // Connects over TCP and sends `<method> path` asking for SPDY/3.1 with
  // `protocols` as X-Stream-Protocol-Version values (in that order). crictl
  // and kubectl use POST; kubelet's server takes GET too.
  static absl::StatusOr<std::unique_ptr<SpdyClient>> Connect(const std::string& host, uint16_t port,
                                                             const std::string& path,
                                                             const std::vector<std::string>& protocols,
                                                             absl::Duration timeout = absl::Seconds(10),
                                                             const std::string& method = "POST");
  // Same over a connected socket. With send_request false only the response
  // is read (the test called the handler with a request it built itself).
  static absl::StatusOr<std::unique_ptr<SpdyClient>> Handshake(UniqueFd fd, const std::string& path,
                                                               const std::vector<std::string>& protocols,
                                                               bool send_request = true,
                                                               absl::Duration timeout = absl::Seconds(10),
                                                               const std::string& method = "POST");

  // The response: 101 when upgraded (then protocol() is the negotiated
  // X-Stream-Protocol-Version); otherwise the body is in response_body().
  int status_code() const { return status_code_; }
  const std::string& protocol() const { return protocol_; }
  const std::string& response_head() const { return response_head_; }
  const std::string& response_body() const { return response_body_; }
  int fd() const { return fd_.get(); }

  // Opens a stream (client ids are odd, increasing). Does not wait for the
  // SYN_REPLY: see Replied() / WaitReplied().
  absl::StatusOr<uint32_t> OpenStream(const spdy::HeaderBlock& headers, bool fin = false);
  absl::Status Write(uint32_t id, std::string_view data, bool fin = false);
  absl::Status Fin(uint32_t id) { return Write(id, {}, true); }
  absl::Status Reset(uint32_t id, uint32_t status = spdy::kRstCancel);
  absl::Status Ping(uint32_t id);
  absl::Status GoAway();
  absl::Status SendRaw(std::string_view bytes);
  // Half-closes the socket (the server sees EOF) or closes it.
  void ShutdownWrite();
  void Close() { fd_.reset(); }

  // Processes incoming frames until done() holds. DEADLINE_EXCEEDED on
  // timeout; UNAVAILABLE if the connection ends first (closed() then holds).
  absl::Status PumpUntil(const std::function<bool()>& done, absl::Duration timeout);
  absl::Status WaitReplied(uint32_t id, absl::Duration timeout);
  // Everything the server sends on `id` until it finishes (FIN or RST) the
  // stream or the connection ends.
  absl::StatusOr<std::string> ReadAll(uint32_t id, absl::Duration timeout);
  // Waits until at least `n` unread bytes are there and takes them all.
  absl::StatusOr<std::string> ReadAtLeast(uint32_t id, size_t n, absl::Duration timeout);
  // Waits for the server to close the connection.
  absl::Status WaitClosed(absl::Duration timeout);

  bool Replied(uint32_t id) const;
  bool Finished(uint32_t id) const;  // FIN from the server
  bool WasReset(uint32_t id) const;  // RST_STREAM from the server
  uint32_t ResetStatus(uint32_t id) const;
  bool closed() const { return closed_; }
  bool goaway_received() const { return goaway_; }
  const std::vector<uint32_t>& pings_received() const { return pings_; }
  // WINDOW_UPDATE deltas the server sent, summed per stream id (0: connection).
  const std::map<uint32_t, uint64_t>& window_updates() const { return window_updates_; }

 private:
  struct Stream {
    bool replied = false;
    bool fin = false;
    bool reset = false;
    uint32_t reset_status = 0;
    std::string data;
  };
  explicit SpdyClient(UniqueFd fd) : fd_(std::move(fd)) {}
  absl::Status ReadResponse(absl::Duration timeout);
  absl::Status HandleFrames();

  UniqueFd fd_;
  int status_code_ = 0;
  std::string protocol_, response_head_, response_body_;
  spdy::FrameReader reader_;
  spdy::HeaderCompressor compressor_;
  spdy::HeaderDecompressor decompressor_;
  std::map<uint32_t, Stream> streams_;
  uint32_t next_id_ = 1;
  bool closed_ = false;
  bool goaway_ = false;
  std::vector<uint32_t> pings_;
  std::map<uint32_t, uint64_t> window_updates_;
};

// remotecommand (exec/attach) the way client-go does it.
struct RemoteCommandOptions {
  bool stdin = false;
  bool stdout = true;
  bool stderr = true;
  bool tty = false;
  std::string stdin_data;   // written after the streams are set up
  bool close_stdin = true;  // then FIN on the stdin stream
  std::vector<std::pair<uint16_t, uint16_t>> resizes;  // (width, height) sent on the resize stream
  absl::Duration timeout = absl::Seconds(30);
};
struct RemoteCommandStreams {
  uint32_t error = 0, stdin = 0, stdout = 0, stderr = 0, resize = 0;
};
struct RemoteCommandResult {
  std::string stdout, stderr;
  std::string error;  // the error stream: a JSON Status on v4, text before
};
// Opens error, stdin, stdout, stderr (not with a tty), resize (tty) and waits
// for the replies. `resize_stream` false leaves resize out (v2 clients).
absl::StatusOr<RemoteCommandStreams> OpenRemoteCommandStreams(SpdyClient& client, const RemoteCommandOptions& options,
                                                              bool resize_stream = true);
// Opens the streams, sends stdin and resizes, and collects the output until
// the server has finished the error, stdout and stderr streams.
absl::StatusOr<RemoteCommandResult> RunRemoteCommand(SpdyClient& client, const RemoteCommandOptions& options);

// portforward: one forwarded connection is an error stream plus a data
// stream sharing a requestID.
struct PortForwardPair {
  uint32_t error = 0, data = 0;
};
absl::StatusOr<PortForwardPair> OpenPortForward(SpdyClient& client, uint16_t port, const std::string& request_id,
                                                absl::Duration timeout = absl::Seconds(10));

}  // namespace crisp::testing
