#pragma once
// The framed stdio protocol between crispd and a process's crisp-shim, over a
// SOCK_STREAM unix socket: the container shim's attach.sock (Attach) and the
// socket of a `crisp-shim exec` (Exec, ExecSync). libc + libstdc++ only: the
// shim includes it.
//
// A frame is 1 byte type + 4 bytes big-endian payload length + payload.
//   crispd -> shim: kStdin (bytes for the process's stdin or terminal),
//                   kCloseStdin (empty: the process sees EOF on stdin),
//                   kResize (4 bytes: width, height as big-endian uint16).
//   shim -> crispd: kStdout, kStderr (output; a tty's output is kStdout),
//                   kExit (4 bytes big-endian int32 exit code, then an optional
//                   UTF-8 message when the process could not be run: exit code
//                   -1 and e.g. "executable file not found in $PATH: foo").
// After kExit the shim closes the socket. An attach.sock never sends kExit:
// it closes when the container's process has exited and its output drained.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace crisp::runtime {

enum class FrameType : uint8_t {
  kStdin = 0,
  kStdout = 1,
  kStderr = 2,
  kResize = 3,
  kCloseStdin = 4,
  kExit = 5,
};

inline constexpr size_t kFrameHeaderSize = 5;
// Larger payloads are a protocol error (writers chunk below this).
inline constexpr uint32_t kMaxFramePayload = 1u << 20;

inline void PutBe32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
}
inline uint32_t GetBe32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

inline std::string EncodeFrame(FrameType type, std::string_view payload) {
  std::string f(kFrameHeaderSize + payload.size(), '\0');
  f[0] = static_cast<char>(type);
  PutBe32(f.data() + 1, static_cast<uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(f.data() + kFrameHeaderSize, payload.data(), payload.size());
  return f;
}

inline std::string EncodeResize(uint16_t width, uint16_t height) {
  char p[4] = {static_cast<char>(width >> 8), static_cast<char>(width & 0xff), static_cast<char>(height >> 8),
               static_cast<char>(height & 0xff)};
  return EncodeFrame(FrameType::kResize, std::string_view(p, 4));
}

inline std::string EncodeExit(int32_t exit_code, std::string_view message = {}) {
  std::string p(4, '\0');
  PutBe32(p.data(), static_cast<uint32_t>(exit_code));
  p.append(message);
  return EncodeFrame(FrameType::kExit, p);
}

// Decodes a kResize payload; false if it is not 4 bytes.
inline bool DecodeResize(std::string_view p, uint16_t* width, uint16_t* height) {
  if (p.size() != 4) return false;
  *width = static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
  *height = static_cast<uint16_t>((static_cast<uint8_t>(p[2]) << 8) | static_cast<uint8_t>(p[3]));
  return true;
}

// Decodes a kExit payload; false if it is shorter than 4 bytes.
inline bool DecodeExit(std::string_view p, int32_t* exit_code, std::string* message) {
  if (p.size() < 4) return false;
  *exit_code = static_cast<int32_t>(GetBe32(p.data()));
  message->assign(p.substr(4));
  return true;
}

// Incremental decoder: Feed() bytes as they arrive, then take frames with
// Next() until it returns false. After a protocol error (unknown type,
// oversized frame) error() is true and Next() returns nothing more.
class FrameReader {
 public:
  void Feed(const char* data, size_t n) { buf_.append(data, n); }
  bool Next(FrameType* type, std::string* payload) {
    if (error_ || buf_.size() - pos_ < kFrameHeaderSize) return Compact();
    uint8_t t = static_cast<uint8_t>(buf_[pos_]);
    uint32_t len = GetBe32(buf_.data() + pos_ + 1);
    if (t > static_cast<uint8_t>(FrameType::kExit) || len > kMaxFramePayload) {
      error_ = true;
      return false;
    }
    if (buf_.size() - pos_ < kFrameHeaderSize + len) return Compact();
    *type = static_cast<FrameType>(t);
    payload->assign(buf_, pos_ + kFrameHeaderSize, len);
    pos_ += kFrameHeaderSize + len;
    return true;
  }
  bool error() const { return error_; }
  // Bytes received but not yet returned as frames.
  size_t pending() const { return buf_.size() - pos_; }

 private:
  bool Compact() {
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return false;
  }
  std::string buf_;
  size_t pos_ = 0;
  bool error_ = false;
};

}  // namespace crisp::runtime
