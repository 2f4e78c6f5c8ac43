#pragma once
// Byte streams for layer unpacking: the network writes into a BoundedPipe,
// a DecompressingSource inflates and hashes what it reads, the tar
// extractor reads from that. Network, inflate and extraction then overlap.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crisp::images {

class Sha256;

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `n` bytes into `buf`; returns how many, 0 only at the end of
  // the stream. Blocks until at least one byte or the end is available.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;
};

// A source over a string (tests, small blobs).
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  std::string data_;
  size_t off_ = 0;
};

// Reads a file descriptor (not owned), hashing what it reads into `hash`
// (may be null).
class FdSource : public ByteSource {
 public:
  FdSource(int fd, Sha256* hash) : fd_(fd), hash_(hash) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  int fd_;
  Sha256* hash_;
};

// A single-producer single-consumer byte pipe holding at most `capacity`
// bytes: the writer blocks while it is full, the reader while it is empty.
class BoundedPipe : public ByteSource {
 public:
  explicit BoundedPipe(size_t capacity) : capacity_(capacity) {}

  // Appends `data`, blocking while the pipe is full. CANCELLED once the
  // reader has called CloseRead().
  absl::Status Write(absl::string_view data);
  // Ends the stream: the reader sees EOF after the buffered bytes if
  // `status` is OK, else `status` right away.
  void CloseWrite(absl::Status status);
  // Reader side: see ByteSource.
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  // The reader gives up: pending and future Write()s fail with CANCELLED.
  void CloseRead();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;
  size_t front_off_ = 0;
  size_t buffered_ = 0;
  bool write_closed_ = false;
  bool read_closed_ = false;
  absl::Status write_status_;
};

// Reads a possibly compressed stream and yields the uncompressed bytes,
// detecting the compression from the magic bytes (gzip, including
// multi-member files, or zstd; anything else passes through) and hashing
// the uncompressed bytes into `diff_hash` (may be null). At the end of the
// uncompressed stream it reads its input to the end, so that hashes of the
// compressed bytes taken upstream are complete.
class DecompressingSource : public ByteSource {
 public:
  DecompressingSource(ByteSource* in, Sha256* diff_hash);
  ~DecompressingSource() override;
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  // Reads (and hashes) everything left. Call after the consumer is done.
  absl::Status Drain();
  // "gzip", "zstd", "none" (after the first Read).
  const char* kind() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crisp::images
