#pragma once
// Content-addressed blob store: <dir>/blobs/sha256/<hex>, written through
// <dir>/ingest so that a blob either is complete and verified or is absent.
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"
#include "images/digest.h"

namespace crisp::images {

class ContentStore;

// One blob being written. Bytes go to a private ingest file and are hashed
// on the way; Commit() verifies size and digest, fsyncs and renames the file
// into place. Destroying a writer that was not committed deletes its file,
// so every error path leaves the store clean.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends `data`. DATA_LOSS as soon as more than the expected size
  // arrives (a registry must not make us fill the disk).
  absl::Status Write(absl::string_view data);
  // Verifies that exactly the expected size arrived and its sha256 is the
  // expected digest: DATA_LOSS naming the digest otherwise, and the writer
  // is spent (its file removed). Ends writing; repeated calls return the
  // same verdict.
  absl::Status Verify();
  // Verify(), then rename the blob into place. With `durable`, the file and
  // the directory are fsync'd first; callers that commit many blobs at once
  // pass false and make them durable together (syncfs) before recording
  // anything that refers to them. Readers re-verify digests, so a blob torn
  // by a crash before that sync is detected, never used.
  absl::Status Commit(bool durable = true);
  uint64_t written() const { return hash_.bytes(); }

 private:
  friend class ContentStore;
  BlobWriter(std::string digest, int64_t size, std::string ingest_path, std::string final_path, UniqueFd fd,
             std::string blobs_dir);
  void Discard();

  std::string digest_;
  int64_t size_;
  std::string ingest_path_, final_path_, blobs_dir_;
  UniqueFd fd_;
  Sha256 hash_;
  bool done_ = false;
  bool verified_ = false;
  absl::Status verdict_;
};

class ContentStore {
 public:
  // `dir` is the image store root (<root>/images).
  explicit ContentStore(std::string dir);

  // Creates the directories and empties ingest/ (left-overs of a crash are
  // never trusted).
  absl::Status Init();

  // Absolute path of a blob (whether or not it exists).
  std::string BlobPath(absl::string_view digest) const;
  bool Has(absl::string_view digest) const;
  // Size of a present blob, NOT_FOUND otherwise.
  absl::StatusOr<uint64_t> Size(absl::string_view digest) const;
  // Reads a whole blob (manifests, configs) and re-verifies its digest, so
  // on-disk corruption is reported as DATA_LOSS rather than used.
  absl::StatusOr<std::string> Read(absl::string_view digest, size_t max_bytes) const;
  // Stores `data` as blob `digest` (verified). OK if it is already present.
  // `durable` as for BlobWriter::Commit.
  absl::Status Put(absl::string_view digest, absl::string_view data, bool durable = true);
  // Flushes everything written to the store's filesystem (syncfs).
  absl::Status Sync();
  // Starts writing blob `digest` of `size` bytes. Concurrent writers of the
  // same digest are allowed (each has its own ingest file; the last rename
  // wins with identical content).
  absl::StatusOr<std::unique_ptr<BlobWriter>> Writer(absl::string_view digest, int64_t size);
  // Removes a blob. OK if absent.
  absl::Status Delete(absl::string_view digest);

  const std::string& dir() const { return dir_; }
  std::string blobs_dir() const { return dir_ + "/blobs/sha256"; }
  std::string ingest_dir() const { return dir_ + "/ingest"; }

 private:
  std::string dir_;
};

}  // namespace crisp::images
