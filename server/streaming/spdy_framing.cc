#include "server/streaming/spdy_framing.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace crisp::streaming::spdy {
namespace {

void Put32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (24 - 8 * i)) & 0xff));
}
void Put16(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v >> 8));
  s->push_back(static_cast<char>(v & 0xff));
}
uint32_t Get32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string ControlHeader(ControlType type, uint8_t flags, uint32_t length) {
  std::string s;
  s.reserve(kFrameHeaderSize + length);
  Put16(&s, 0x8000 | kVersion);
  Put16(&s, static_cast<uint16_t>(type));
  Put32(&s, (static_cast<uint32_t>(flags) << 24) | length);
  return s;
}

absl::StatusOr<std::string> EncodeWithHeaders(HeaderCompressor& c, ControlType type, uint8_t flags,
                                              std::string prefix, const HeaderBlock& headers) {
  absl::StatusOr<std::string> block = c.Compress(headers);
  if (!block.ok()) return block.status();
  uint32_t length = static_cast<uint32_t>(prefix.size() + block->size());
  if (length > kMaxFrameLength) return absl::InvalidArgumentError("SPDY header block too large");
  std::string f = ControlHeader(type, flags, length);
  f += prefix;
  f += *block;
  return f;
}

}  // namespace

std::string_view HeaderValue(const HeaderBlock& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n == name) return std::string_view(v).substr(0, v.find('\0'));
  }
  return {};
}

bool FrameReader::Next(Frame* frame) {
  auto compact = [this] {
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return false;
  };
  if (error_ || buf_.size() - pos_ < kFrameHeaderSize) return compact();
  const char* p = buf_.data() + pos_;
  uint32_t first = Get32(p);
  uint32_t flags_length = Get32(p + 4);
  uint32_t length = flags_length & 0xffffff;
  if (buf_.size() - pos_ < kFrameHeaderSize + length) return compact();
  frame->control = (first & 0x80000000u) != 0;
  if (frame->control) {
    frame->version = static_cast<uint16_t>((first >> 16) & 0x7fff);
    frame->type = static_cast<uint16_t>(first & 0xffff);
    frame->stream_id = 0;
    if (frame->version != kVersion) {
      error_ = true;
      return false;
    }
  } else {
    frame->version = 0;
    frame->type = 0;
    frame->stream_id = first & 0x7fffffff;
  }
  frame->flags = static_cast<uint8_t>(flags_length >> 24);
  frame->payload.assign(p + kFrameHeaderSize, length);
  pos_ += kFrameHeaderSize + length;
  return true;
}

HeaderCompressor::HeaderCompressor() {
  // spdystream compresses at level 9; any level decodes the same.
  ok_ = deflateInit(&z_, Z_BEST_COMPRESSION) == Z_OK &&
        deflateSetDictionary(&z_, kHeaderDictionary, static_cast<uInt>(kHeaderDictionarySize)) == Z_OK;
}

HeaderCompressor::~HeaderCompressor() { deflateEnd(&z_); }

absl::StatusOr<std::string> HeaderCompressor::Compress(const HeaderBlock& headers) {
  if (!ok_) return absl::InternalError("zlib deflate context failed");
  std::string raw;
  Put32(&raw, static_cast<uint32_t>(headers.size()));
  for (const auto& [name, value] : headers) {
    Put32(&raw, static_cast<uint32_t>(name.size()));
    raw += name;
    Put32(&raw, static_cast<uint32_t>(value.size()));
    raw += value;
  }
  std::string out;
  z_.next_in = reinterpret_cast<Bytef*>(raw.data());
  z_.avail_in = static_cast<uInt>(raw.size());
  char buf[4096];
  // Z_SYNC_FLUSH ends the frame's block on a byte boundary without ending
  // the stream: the peer decodes it now and the context carries on.
  do {
    z_.next_out = reinterpret_cast<Bytef*>(buf);
    z_.avail_out = sizeof(buf);
    int rc = deflate(&z_, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      ok_ = false;
      return absl::InternalError(absl::StrCat("zlib deflate: ", rc));
    }
    out.append(buf, sizeof(buf) - z_.avail_out);
  } while (z_.avail_out == 0);
  return out;
}

HeaderDecompressor::HeaderDecompressor() { ok_ = inflateInit(&z_) == Z_OK; }

HeaderDecompressor::~HeaderDecompressor() { inflateEnd(&z_); }

absl::StatusOr<HeaderBlock> HeaderDecompressor::Decompress(std::string_view compressed) {
  if (!ok_) return absl::InternalError("zlib inflate context failed");
  std::string raw;
  z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z_.avail_in = static_cast<uInt>(compressed.size());
  char buf[4096];
  while (true) {
    z_.next_out = reinterpret_cast<Bytef*>(buf);
    z_.avail_out = sizeof(buf);
    int rc = inflate(&z_, Z_SYNC_FLUSH);
    if (rc == Z_NEED_DICT) {
      if (inflateSetDictionary(&z_, kHeaderDictionary, static_cast<uInt>(kHeaderDictionarySize)) != Z_OK) {
        ok_ = false;
        return absl::InvalidArgumentError("SPDY header block: wrong zlib dictionary");
      }
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      ok_ = false;
      return absl::InvalidArgumentError(absl::StrCat("SPDY header block: zlib inflate: ", rc));
    }
    raw.append(buf, sizeof(buf) - z_.avail_out);
    if (raw.size() > (1u << 20)) {
      ok_ = false;
      return absl::InvalidArgumentError("SPDY header block larger than 1 MiB");
    }
    // Output room left over: inflate has taken all it can of this frame.
    if (z_.avail_out != 0) break;
  }
  if (z_.avail_in != 0) {
    ok_ = false;
    return absl::InvalidArgumentError("SPDY header block: trailing compressed bytes");
  }
  // Parse the name/value block.
  HeaderBlock headers;
  size_t pos = 0;
  auto read32 = [&](uint32_t* v) {
    if (raw.size() - pos < 4) return false;
    *v = Get32(raw.data() + pos);
    pos += 4;
    return true;
  };
  auto read_str = [&](std::string* s) {
    uint32_t n;
    if (!read32(&n) || raw.size() - pos < n) return false;
    s->assign(raw, pos, n);
    pos += n;
    return true;
  };
  uint32_t count;
  if (!read32(&count)) return absl::InvalidArgumentError("SPDY header block truncated");
  for (uint32_t i = 0; i < count; ++i) {
    std::string name, value;
    if (!read_str(&name) || !read_str(&value)) return absl::InvalidArgumentError("SPDY header block truncated");
    headers.emplace_back(std::move(name), std::move(value));
  }
  if (pos != raw.size()) return absl::InvalidArgumentError("SPDY header block: trailing bytes");
  return headers;
}

absl::StatusOr<std::string> EncodeSynStream(HeaderCompressor& c, uint32_t stream_id, uint32_t associated_id,
                                            uint8_t priority, uint8_t flags, const HeaderBlock& headers) {
  std::string prefix;
  Put32(&prefix, stream_id & 0x7fffffff);
  Put32(&prefix, associated_id & 0x7fffffff);
  prefix.push_back(static_cast<char>((priority & 0x7) << 5));
  prefix.push_back(0);  // credential slot
  return EncodeWithHeaders(c, ControlType::kSynStream, flags, std::move(prefix), headers);
}

absl::StatusOr<std::string> EncodeSynReply(HeaderCompressor& c, uint32_t stream_id, uint8_t flags,
                                           const HeaderBlock& headers) {
  std::string prefix;
  Put32(&prefix, stream_id & 0x7fffffff);
  return EncodeWithHeaders(c, ControlType::kSynReply, flags, std::move(prefix), headers);
}

absl::StatusOr<std::string> EncodeHeaders(HeaderCompressor& c, uint32_t stream_id, uint8_t flags,
                                          const HeaderBlock& headers) {
  std::string prefix;
  Put32(&prefix, stream_id & 0x7fffffff);
  return EncodeWithHeaders(c, ControlType::kHeaders, flags, std::move(prefix), headers);
}

std::string EncodeRstStream(uint32_t stream_id, uint32_t status) {
  std::string f = ControlHeader(ControlType::kRstStream, 0, 8);
  Put32(&f, stream_id & 0x7fffffff);
  Put32(&f, status);
  return f;
}

std::string EncodeSettings(const std::vector<std::pair<uint32_t, uint32_t>>& id_values) {
  std::string f = ControlHeader(ControlType::kSettings, 0, static_cast<uint32_t>(4 + 8 * id_values.size()));
  Put32(&f, static_cast<uint32_t>(id_values.size()));
  for (const auto& [id, value] : id_values) {
    Put32(&f, id & 0xffffff);  // flags byte 0
    Put32(&f, value);
  }
  return f;
}

std::string EncodePing(uint32_t id) {
  std::string f = ControlHeader(ControlType::kPing, 0, 4);
  Put32(&f, id);
  return f;
}

std::string EncodeGoAway(uint32_t last_good_stream_id, uint32_t status) {
  std::string f = ControlHeader(ControlType::kGoAway, 0, 8);
  Put32(&f, last_good_stream_id & 0x7fffffff);
  Put32(&f, status);
  return f;
}

std::string EncodeWindowUpdate(uint32_t stream_id, uint32_t delta) {
  std::string f = ControlHeader(ControlType::kWindowUpdate, 0, 8);
  Put32(&f, stream_id & 0x7fffffff);
  Put32(&f, delta & 0x7fffffff);
  return f;
}

std::string EncodeData(uint32_t stream_id, uint8_t flags, std::string_view data) {
  std::string f;
  f.reserve(kFrameHeaderSize + data.size());
  Put32(&f, stream_id & 0x7fffffff);
  Put32(&f, (static_cast<uint32_t>(flags) << 24) | static_cast<uint32_t>(data.size() & 0xffffff));
  f.append(data);
  return f;
}

absl::StatusOr<SynStream> ParseSynStream(const Frame& f, HeaderDecompressor& d) {
  if (!f.control || f.type != static_cast<uint16_t>(ControlType::kSynStream) || f.payload.size() < 10) {
    return absl::InvalidArgumentError("malformed SYN_STREAM");
  }
  SynStream s;
  s.stream_id = Get32(f.payload.data()) & 0x7fffffff;
  s.associated_id = Get32(f.payload.data() + 4) & 0x7fffffff;
  s.priority = static_cast<uint8_t>(static_cast<uint8_t>(f.payload[8]) >> 5);
  s.flags = f.flags;
  absl::StatusOr<HeaderBlock> h = d.Decompress(std::string_view(f.payload).substr(10));
  if (!h.ok()) return h.status();
  s.headers = std::move(*h);
  if (s.stream_id == 0) return absl::InvalidArgumentError("SYN_STREAM for stream 0");
  return s;
}

absl::StatusOr<StreamHeaders> ParseStreamHeaders(const Frame& f, HeaderDecompressor& d) {
  if (!f.control || f.payload.size() < 4) return absl::InvalidArgumentError("malformed SYN_REPLY/HEADERS");
  StreamHeaders s;
  s.stream_id = Get32(f.payload.data()) & 0x7fffffff;
  s.flags = f.flags;
  absl::StatusOr<HeaderBlock> h = d.Decompress(std::string_view(f.payload).substr(4));
  if (!h.ok()) return h.status();
  s.headers = std::move(*h);
  return s;
}

absl::StatusOr<StreamIdValue> ParseStreamIdValue(const Frame& f) {
  if (!f.control || f.payload.size() != 8) return absl::InvalidArgumentError("malformed control frame");
  return StreamIdValue{Get32(f.payload.data()) & 0x7fffffff, Get32(f.payload.data() + 4)};
}

absl::StatusOr<uint32_t> ParsePing(const Frame& f) {
  if (!f.control || f.payload.size() != 4) return absl::InvalidArgumentError("malformed PING");
  return Get32(f.payload.data());
}

}  // namespace crisp::streaming::spdy
