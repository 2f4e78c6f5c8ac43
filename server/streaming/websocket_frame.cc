#include "server/streaming/websocket_frame.h"

#include <openssl/sha.h>

#include <cstring>

namespace crisp::streaming::ws {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// RFC 6455 1.3.
constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
}  // namespace

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += rest == 2 ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (size_t i = 0; i < in.size(); i += 4) {
    bool last = i + 4 == in.size();
    int pad = 0;
    if (last && in[i + 3] == '=') pad = in[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (int j = 0; j < 4; ++j) {
      int d = 0;
      if (j >= 4 - pad) {
        d = 0;
      } else {
        d = val(in[i + j]);
        if (d < 0) return false;
      }
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out->push_back(static_cast<char>((v >> 16) & 0xff));
    if (pad < 2) out->push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(v & 0xff));
  }
  return true;
}

std::string AcceptKey(std::string_view key) {
  std::string in(key);
  in.append(kGuid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string EncodeFrame(uint8_t opcode, std::string_view payload, bool fin, const uint8_t* mask) {
  std::string f;
  f.reserve(payload.size() + 14);
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (opcode & 0x0f)));
  uint8_t mask_bit = mask ? 0x80 : 0;
  uint64_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(mask_bit | n));
  } else if (n <= 0xffff) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  if (mask) {
    f.append(reinterpret_cast<const char*>(mask), 4);
    size_t start = f.size();
    f.append(payload);
    for (size_t i = 0; i < n; ++i) f[start + i] = static_cast<char>(f[start + i] ^ mask[i % 4]);
  } else {
    f.append(payload);
  }
  return f;
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xff));
  // A control frame's payload is at most 125 bytes (RFC 6455 5.5).
  p.append(reason.substr(0, 123));
  return p;
}

Decoder::Result Decoder::Fail(uint16_t code, std::string msg) {
  error_code_ = code;
  error_ = std::move(msg);
  return Result::kError;
}

Decoder::Result Decoder::Next(Message* out) {
  if (!error_.empty()) return Result::kError;
  for (;;) {
    size_t avail = buf_.size() - pos_;
    if (avail < 2) break;
    const auto* p = reinterpret_cast<const uint8_t*>(buf_.data() + pos_);
    bool fin = p[0] & 0x80;
    if (p[0] & 0x70) return Fail(kCloseProtocolError, "reserved bits set (no extension was negotiated)");
    uint8_t opcode = p[0] & 0x0f;
    bool masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (static_cast<uint64_t>(p[2]) << 8) | p[3];
      hdr = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      if (len >> 63) return Fail(kCloseProtocolError, "frame length has the most significant bit set");
      hdr = 10;
    }
    if (masked != expect_masked_) {
      return Fail(kCloseProtocolError,
                  expect_masked_ ? "client frame is not masked" : "server frame is masked");
    }
    bool control = opcode & 0x08;
    if (control) {
      if (opcode != kClose && opcode != kPing && opcode != kPong)
        return Fail(kCloseProtocolError, "unknown opcode");
      if (!fin || len > 125) return Fail(kCloseProtocolError, "fragmented or oversized control frame");
    } else if (opcode != kContinuation && opcode != kText && opcode != kBinary) {
      return Fail(kCloseProtocolError, "unknown opcode");
    }
    // Checked before the payload is buffered, so a peer cannot make us hold
    // more than max_message_ (plus one read) in memory.
    if (!control && len + message_.size() > max_message_) return Fail(kCloseTooBig, "message too big");
    size_t mask_len = masked ? 4 : 0;
    if (avail < hdr + mask_len + len) break;
    const uint8_t* key = p + hdr;
    std::string payload(reinterpret_cast<const char*>(p + hdr + mask_len), len);
    if (masked) {
      for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
    }
    pos_ += hdr + mask_len + len;
    if (control) {
      out->opcode = opcode;
      out->payload = std::move(payload);
      return Result::kMessage;
    }
    if (opcode == kContinuation) {
      if (!in_message_) return Fail(kCloseProtocolError, "continuation frame without a message");
      message_.append(payload);
    } else {
      if (in_message_) return Fail(kCloseProtocolError, "new message inside a fragmented message");
      message_opcode_ = opcode;
      message_ = std::move(payload);
      in_message_ = true;
    }
    if (fin) {
      in_message_ = false;
      out->opcode = message_opcode_;
      out->payload = std::move(message_);
      message_.clear();
      return Result::kMessage;
    }
  }
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return Result::kNeedMore;
}

}  // namespace crisp::streaming::ws
