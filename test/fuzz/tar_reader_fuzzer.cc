// Fuzzes the tar reader alone, without the filesystem (so far more inputs
// a second than tar_fuzzer). The first byte picks the buffer size, the
// piece size the source hands out and the largest chunk asked for, so that
// every refill and boundary path is reached. Besides memory safety it
// checks the reader's contract: chunks stay inside the entry's size, go
// forward only, are contiguous for plain files; only files have data; and
// errors are sticky.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "images/stream.h"
#include "images/tar_reader.h"

namespace {

// Hands out the input at most `step` bytes a call.
class PieceSource : public crisp::images::ByteSource {
 public:
  PieceSource(const uint8_t* data, size_t size, size_t step) : data_(data), size_(size), step_(step) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min({n, step_, size_ - off_});
    std::memcpy(buf, data_ + off_, k);
    off_ += k;
    return k;
  }

 private:
  const uint8_t* data_;
  size_t size_, step_, off_ = 0;
};

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t knobs = data[0];
  static const size_t kBuffers[] = {512, 1000, 4096, size_t{1} << 20};
  static const size_t kSteps[] = {1, 7, 512, SIZE_MAX};
  static const size_t kChunks[] = {1, 100, 4096, SIZE_MAX};
  PieceSource src(data + 1, size - 1, kSteps[(knobs >> 2) & 3]);
  crisp::images::TarReader r(src, kBuffers[knobs & 3]);
  const size_t max_chunk = kChunks[(knobs >> 4) & 3];
  absl::Status err;
  while (err.ok()) {
    auto h = r.Next();
    if (!h.ok()) {
      err = h.status();
      break;
    }
    if (*h == nullptr) {
      auto again = r.Next();
      Check(again.ok() && *again == nullptr);
      return 0;
    }
    const crisp::images::TarHeader& hdr = **h;
    Check(hdr.size >= 0 && hdr.mode <= 07777);
    Check(hdr.type == crisp::images::TarType::kRegular || hdr.size == 0);
    int64_t next = 0;
    while (true) {
      auto c = r.Read(max_chunk);
      if (!c.ok()) {
        err = c.status();
        break;
      }
      if (c->data.empty()) break;
      Check(c->data.size() <= max_chunk);
      Check(c->offset >= next && (hdr.sparse || c->offset == next));
      Check(c->offset + static_cast<int64_t>(c->data.size()) <= hdr.size);
      next = c->offset + static_cast<int64_t>(c->data.size());
    }
  }
  // The source never fails here: every error is the reader's verdict, and
  // it sticks.
  Check(err.code() == absl::StatusCode::kInvalidArgument && !r.source_failed());
  Check(r.Next().status() == err && r.Read().status() == err);
  return 0;
}
