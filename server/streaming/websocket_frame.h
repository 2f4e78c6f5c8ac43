#pragma once
// RFC 6455 framing, shared by the server's WebSocket handlers and the test
// client (test/testing/ws_client.h). Pure byte manipulation: no sockets.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace crisp::streaming::ws {

enum Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close status codes we send (RFC 6455 7.4.1).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseTooBig = 1009;

// A whole message after reassembly, or a control frame (which may arrive
// between the fragments of a message and is returned on its own).
struct Message {
  uint8_t opcode = kBinary;
  std::string payload;
};

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
std::string AcceptKey(std::string_view key);

// One frame. `mask` non-null: the client side (4 masking key bytes);
// servers send unmasked frames (RFC 6455 5.1).
std::string EncodeFrame(uint8_t opcode, std::string_view payload, bool fin = true,
                        const uint8_t* mask = nullptr);
// A close frame's payload: 2-byte status code + reason.
std::string ClosePayload(uint16_t code, std::string_view reason = {});

// Incremental decoder with reassembly of fragmented messages. The server
// requires masked frames (RFC 6455 5.1: a server MUST close on an unmasked
// client frame); the client requires unmasked ones.
class Decoder {
 public:
  enum class Result { kNeedMore, kMessage, kError };
  Decoder(bool expect_masked, size_t max_message)
      : expect_masked_(expect_masked), max_message_(max_message) {}

  void Feed(const char* data, size_t n) { buf_.append(data, n); }
  // kMessage fills *out; kError sets error() (then nothing more is decoded).
  Result Next(Message* out);
  const std::string& error() const { return error_; }
  // The close code to answer an error with (1002, or 1009 for too big).
  uint16_t error_code() const { return error_code_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  Result Fail(uint16_t code, std::string msg);
  bool expect_masked_;
  size_t max_message_;
  std::string buf_;
  size_t pos_ = 0;
  // A fragmented data message being reassembled (in_message_).
  bool in_message_ = false;
  uint8_t message_opcode_ = 0;
  std::string message_;
  std::string error_;
  uint16_t error_code_ = kCloseProtocolError;
};

// Standard base64 (RFC 4648 with padding), for the base64.channel.k8s.io
// protocols. Decode rejects anything malformed.
std::string Base64Encode(std::string_view in);
bool Base64Decode(std::string_view in, std::string* out);

}  // namespace crisp::streaming::ws
