#include "images/stream.h"

#include <isa-l/igzip_lib.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "images/digest.h"

namespace crisp::images {

absl::StatusOr<size_t> StringSource::Read(char* buf, size_t n) {
  size_t k = std::min(n, data_.size() - off_);
  std::memcpy(buf, data_.data() + off_, k);
  off_ += k;
  return k;
}

absl::StatusOr<size_t> FdSource::Read(char* buf, size_t n) {
  while (true) {
    ssize_t r = ::read(fd_, buf, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "reading blob");
    }
    if (hash_ != nullptr) hash_->Update(absl::string_view(buf, static_cast<size_t>(r)));
    return static_cast<size_t>(r);
  }
}

absl::Status BoundedPipe::Write(absl::string_view data) {
  std::unique_lock<std::mutex> l(mu_);
  while (!data.empty()) {
    cv_.wait(l, [&] { return read_closed_ || buffered_ < capacity_; });
    if (read_closed_) return absl::CancelledError("reader stopped reading");
    size_t k = std::min(data.size(), capacity_ - buffered_);
    chunks_.emplace_back(data.substr(0, k));
    buffered_ += k;
    data.remove_prefix(k);
    cv_.notify_all();
  }
  return absl::OkStatus();
}

void BoundedPipe::CloseWrite(absl::Status status) {
  std::lock_guard<std::mutex> l(mu_);
  write_closed_ = true;
  write_status_ = std::move(status);
  cv_.notify_all();
}

absl::StatusOr<size_t> BoundedPipe::Read(char* buf, size_t n) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return buffered_ > 0 || write_closed_; });
  if (write_closed_ && !write_status_.ok()) return write_status_;
  size_t done = 0;
  while (done < n && !chunks_.empty()) {
    std::string& c = chunks_.front();
    size_t k = std::min(n - done, c.size() - front_off_);
    std::memcpy(buf + done, c.data() + front_off_, k);
    done += k;
    front_off_ += k;
    buffered_ -= k;
    if (front_off_ == c.size()) {
      chunks_.pop_front();
      front_off_ = 0;
    }
  }
  cv_.notify_all();
  return done;
}

void BoundedPipe::CloseRead() {
  std::lock_guard<std::mutex> l(mu_);
  read_closed_ = true;
  chunks_.clear();
  buffered_ = 0;
  cv_.notify_all();
}

namespace {
constexpr size_t kInBuf = 256 * 1024;
enum class Kind { kUnknown, kNone, kGzip, kZstd };
}  // namespace

struct DecompressingSource::Impl {
  ByteSource* in;
  Sha256* hash;
  Kind kind = Kind::kUnknown;
  // Not value-initialised: zeroing it would fault in every page for nothing.
  std::unique_ptr<char[]> inbuf{new char[kInBuf]};
  size_t inbuf_size = kInBuf;
  size_t in_pos = 0, in_len = 0;
  bool in_eof = false;
  bool out_eof = false;
  // gzip through ISA-L's igzip: ~3x zlib's inflate speed on x86-64. It
  // parses the gzip header, checks the trailer's CRC32 and length itself.
  std::unique_ptr<inflate_state> gz;
  bool gz_member = false;  // inside a gzip member (some of it consumed)
  ZSTD_DCtx* zd = nullptr;
  size_t zstd_last = 0;  // last ZSTD_decompressStream hint; 0 = at a frame boundary

  ~Impl() {
    if (zd != nullptr) ZSTD_freeDCtx(zd);
  }

  // Refills inbuf if it is empty. Returns false at EOF.
  absl::StatusOr<bool> Fill() {
    if (in_pos < in_len) return true;
    if (in_eof) return false;
    in_pos = in_len = 0;
    auto n = in->Read(inbuf.get(), inbuf_size);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      in_eof = true;
      return false;
    }
    in_len = *n;
    return true;
  }

  absl::Status Detect() {
    // Gather up to 4 bytes for the magic numbers.
    while (in_len - in_pos < 4 && !in_eof) {
      if (in_pos > 0) {
        std::memmove(inbuf.get(), inbuf.get() + in_pos, in_len - in_pos);
        in_len -= in_pos;
        in_pos = 0;
      }
      auto n = in->Read(inbuf.get() + in_len, inbuf_size - in_len);
      if (!n.ok()) return n.status();
      if (*n == 0) in_eof = true;
      in_len += *n;
    }
    const unsigned char* p = reinterpret_cast<const unsigned char*>(inbuf.get() + in_pos);
    size_t avail = in_len - in_pos;
    if (avail >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
      kind = Kind::kGzip;
      gz.reset(new inflate_state);
      isal_inflate_init(gz.get());
      gz->crc_flag = ISAL_GZIP;
    } else if (avail >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd) {
      kind = Kind::kZstd;
      zd = ZSTD_createDCtx();
      if (zd == nullptr) return absl::InternalError("ZSTD_createDCtx failed");
    } else {
      kind = Kind::kNone;
    }
    return absl::OkStatus();
  }

  static const char* IsalError(int rc) {
    switch (rc) {
      case ISAL_INVALID_BLOCK: return "invalid deflate block";
      case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
      case ISAL_INVALID_LOOKBACK: return "invalid distance";
      case ISAL_INVALID_WRAPPER: return "invalid gzip header";
      case ISAL_UNSUPPORTED_METHOD: return "unsupported compression method";
      case ISAL_INCORRECT_CHECKSUM: return "incorrect data check";
      case ISAL_NEED_DICT: return "needs a dictionary";
      default: return "corrupt data";
    }
  }

  absl::StatusOr<size_t> ReadGzip(char* buf, size_t n) {
    while (true) {
      auto more = Fill();
      if (!more.ok()) return more.status();
      if (!*more) {
        // EOF of the input: fine only between members.
        if (!gz_member) {
          out_eof = true;
          return 0;
        }
        return absl::DataLossError("gzip stream truncated");
      }
      inflate_state& st = *gz;
      st.next_in = reinterpret_cast<uint8_t*>(inbuf.get() + in_pos);
      st.avail_in = static_cast<uint32_t>(in_len - in_pos);
      st.next_out = reinterpret_cast<uint8_t*>(buf);
      st.avail_out = static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
      uint32_t out_before = st.avail_out;
      gz_member = true;
      int rc = isal_inflate(&st);
      in_pos = in_len - st.avail_in;
      size_t produced = out_before - st.avail_out;
      if (rc < 0) return absl::DataLossError(absl::StrCat("gzip: ", IsalError(rc)));
      if (st.block_state == ISAL_BLOCK_FINISH) {
        // Another gzip member may follow (pigz, concatenated files); any
        // other trailing bytes (zero padding) end the stream.
        auto more2 = Fill();
        if (!more2.ok()) return more2.status();
        if (*more2 && static_cast<unsigned char>(inbuf[in_pos]) == 0x1f) {
          isal_inflate_reset(&st);
          st.crc_flag = ISAL_GZIP;
          gz_member = false;
        } else {
          out_eof = true;
        }
        if (produced > 0 || out_eof) return produced;
        continue;
      }
      if (produced > 0) return produced;
    }
  }

  absl::StatusOr<size_t> ReadZstd(char* buf, size_t n) {
    while (true) {
      auto more = Fill();
      if (!more.ok()) return more.status();
      if (!*more) {
        if (zstd_last != 0) return absl::DataLossError("zstd stream truncated");
        out_eof = true;
        return 0;
      }
      ZSTD_inBuffer ib{inbuf.get() + in_pos, in_len - in_pos, 0};
      ZSTD_outBuffer ob{buf, n, 0};
      size_t rc = ZSTD_decompressStream(zd, &ob, &ib);
      in_pos += ib.pos;
      if (ZSTD_isError(rc)) return absl::DataLossError(absl::StrCat("zstd: ", ZSTD_getErrorName(rc)));
      zstd_last = rc;
      if (ob.pos > 0) return ob.pos;
    }
  }
};

DecompressingSource::DecompressingSource(ByteSource* in, Sha256* diff_hash) : impl_(std::make_unique<Impl>()) {
  impl_->in = in;
  impl_->hash = diff_hash;
}

DecompressingSource::~DecompressingSource() = default;

const char* DecompressingSource::kind() const {
  switch (impl_->kind) {
    case Kind::kGzip: return "gzip";
    case Kind::kZstd: return "zstd";
    case Kind::kNone: return "none";
    default: return "unknown";
  }
}

absl::StatusOr<size_t> DecompressingSource::Read(char* buf, size_t n) {
  Impl& im = *impl_;
  if (n == 0) return 0;
  if (im.kind == Kind::kUnknown) {
    if (absl::Status s = im.Detect(); !s.ok()) return s;
  }
  if (im.out_eof) return 0;
  absl::StatusOr<size_t> got;
  switch (im.kind) {
    case Kind::kGzip: got = im.ReadGzip(buf, n); break;
    case Kind::kZstd: got = im.ReadZstd(buf, n); break;
    default: {
      if (im.in_pos < im.in_len) {
        size_t k = std::min(n, im.in_len - im.in_pos);
        std::memcpy(buf, im.inbuf.get() + im.in_pos, k);
        im.in_pos += k;
        got = k;
      } else if (im.in_eof) {
        got = 0;
      } else {
        got = im.in->Read(buf, n);
      }
      if (got.ok() && *got == 0) im.out_eof = true;
    }
  }
  if (got.ok() && im.hash != nullptr) im.hash->Update(absl::string_view(buf, *got));
  return got;
}

absl::Status DecompressingSource::Drain() {
  std::unique_ptr<char[]> buf(new char[kInBuf]);
  while (true) {
    auto n = Read(buf.get(), kInBuf);
    if (!n.ok()) return n.status();
    if (*n == 0) break;
  }
  // Bytes after the compressed stream still count for the blob digest.
  Impl& im = *impl_;
  im.in_pos = im.in_len;
  while (!im.in_eof) {
    auto n = im.in->Read(im.inbuf.get(), im.inbuf_size);
    if (!n.ok()) return n.status();
    if (*n == 0) im.in_eof = true;
  }
  return absl::OkStatus();
}

}  // namespace crisp::images
