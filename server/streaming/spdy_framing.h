#pragma once
// SPDY/3.1 framing as Kubernetes clients speak it (github.com/moby/spdystream):
// frame encoders, an incremental frame reader, and the zlib name/value header
// block codec. Used by the streaming server's SPDY handlers (spdy.cc) and by
// the test client (test/testing/spdy_client.h); knows nothing of streams'
// meaning.
//
// Frame layout (all integers big-endian):
//   control: 1 bit 1 | 15 bits version (3) | 16 bits type | 8 bits flags | 24 bits length | payload
//   data:    1 bit 0 | 31 bits stream id | 8 bits flags | 24 bits length | payload
// Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a 32-bit count of
// (32-bit length, name, 32-bit length, value) entries, values of a repeated
// name joined by NUL, compressed with one zlib stream per direction for the
// whole connection, primed with the SPDY/3 dictionary and sync-flushed at the
// end of each frame. So every header block must be (de)compressed in frame
// order, including those of frames the receiver otherwise ignores.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace crisp::streaming::spdy {

extern const unsigned char kHeaderDictionary[];
extern const size_t kHeaderDictionarySize;

inline constexpr uint16_t kVersion = 3;
inline constexpr size_t kFrameHeaderSize = 8;
inline constexpr uint32_t kMaxFrameLength = (1u << 24) - 1;
// SPDY/3 initial flow-control window of a stream (and of the connection in 3.1).
inline constexpr uint32_t kInitialWindow = 64 * 1024;

enum class ControlType : uint16_t {
  kSynStream = 1,
  kSynReply = 2,
  kRstStream = 3,
  kSettings = 4,
  kPing = 6,
  kGoAway = 7,
  kHeaders = 8,
  kWindowUpdate = 9,
};

inline constexpr uint8_t kFlagFin = 0x01;             // control (SYN_*, HEADERS) and data frames
inline constexpr uint8_t kFlagUnidirectional = 0x02;  // SYN_STREAM

// RST_STREAM status codes.
inline constexpr uint32_t kRstProtocolError = 1;
inline constexpr uint32_t kRstInvalidStream = 2;
inline constexpr uint32_t kRstRefusedStream = 3;
inline constexpr uint32_t kRstCancel = 5;
inline constexpr uint32_t kRstInternalError = 6;

// Names lower-case; a value holding NUL bytes stands for several values.
using HeaderBlock = std::vector<std::pair<std::string, std::string>>;

// First value of `name` in `headers`, or "" if absent.
std::string_view HeaderValue(const HeaderBlock& headers, std::string_view name);

// One frame as read off the wire; control payloads are not yet parsed (see
// the Parse* functions below).
struct Frame {
  bool control = false;
  uint16_t version = 0;   // control
  uint16_t type = 0;      // control: a ControlType value
  uint32_t stream_id = 0; // data
  uint8_t flags = 0;
  std::string payload;
};

// Incremental frame reader: Feed() bytes, then Next() until it returns false.
// A frame longer than kMaxFrameLength cannot be expressed, so the only
// framing error is a control frame of a version other than 3.
class FrameReader {
 public:
  void Feed(const char* data, size_t n) { buf_.append(data, n); }
  bool Next(Frame* frame);
  bool error() const { return error_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  bool error_ = false;
};

// The compressing side of one direction of a connection.
class HeaderCompressor {
 public:
  HeaderCompressor();
  ~HeaderCompressor();
  HeaderCompressor(const HeaderCompressor&) = delete;
  HeaderCompressor& operator=(const HeaderCompressor&) = delete;
  // The compressed block, ending at a sync flush.
  absl::StatusOr<std::string> Compress(const HeaderBlock& headers);

 private:
  z_stream z_{};
  bool ok_ = false;
};

// The decompressing side of one direction of a connection.
class HeaderDecompressor {
 public:
  HeaderDecompressor();
  ~HeaderDecompressor();
  HeaderDecompressor(const HeaderDecompressor&) = delete;
  HeaderDecompressor& operator=(const HeaderDecompressor&) = delete;
  absl::StatusOr<HeaderBlock> Decompress(std::string_view compressed);

 private:
  z_stream z_{};
  bool ok_ = false;
};

// Encoders: each returns one complete frame.
absl::StatusOr<std::string> EncodeSynStream(HeaderCompressor& c, uint32_t stream_id, uint32_t associated_id,
                                            uint8_t priority, uint8_t flags, const HeaderBlock& headers);
absl::StatusOr<std::string> EncodeSynReply(HeaderCompressor& c, uint32_t stream_id, uint8_t flags,
                                           const HeaderBlock& headers);
absl::StatusOr<std::string> EncodeHeaders(HeaderCompressor& c, uint32_t stream_id, uint8_t flags,
                                          const HeaderBlock& headers);
std::string EncodeRstStream(uint32_t stream_id, uint32_t status);
std::string EncodeSettings(const std::vector<std::pair<uint32_t, uint32_t>>& id_values);
std::string EncodePing(uint32_t id);
std::string EncodeGoAway(uint32_t last_good_stream_id, uint32_t status);
std::string EncodeWindowUpdate(uint32_t stream_id, uint32_t delta);
// `data` must not exceed kMaxFrameLength.
std::string EncodeData(uint32_t stream_id, uint8_t flags, std::string_view data);

// Parsed control frames. Parsing a frame that carries a header block feeds
// the decompressor, so call it for every such frame in arrival order.
struct SynStream {
  uint32_t stream_id = 0;
  uint32_t associated_id = 0;
  uint8_t priority = 0;
  uint8_t flags = 0;
  HeaderBlock headers;
};
struct StreamHeaders {  // SYN_REPLY and HEADERS
  uint32_t stream_id = 0;
  uint8_t flags = 0;
  HeaderBlock headers;
};
struct StreamIdValue {  // RST_STREAM (status), WINDOW_UPDATE (delta), GOAWAY (last good id, status)
  uint32_t stream_id = 0;
  uint32_t value = 0;
};
absl::StatusOr<SynStream> ParseSynStream(const Frame& f, HeaderDecompressor& d);
absl::StatusOr<StreamHeaders> ParseStreamHeaders(const Frame& f, HeaderDecompressor& d);
absl::StatusOr<StreamIdValue> ParseStreamIdValue(const Frame& f);
absl::StatusOr<uint32_t> ParsePing(const Frame& f);

}  // namespace crisp::streaming::spdy
