#include "images/content_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/status.h"

namespace crisp::images {
namespace {

absl::Status WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "writing blob");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", dir));
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

}  // namespace

BlobWriter::BlobWriter(std::string digest, int64_t size, std::string ingest_path, std::string final_path, UniqueFd fd,
                       std::string blobs_dir)
    : digest_(std::move(digest)),
      size_(size),
      ingest_path_(std::move(ingest_path)),
      final_path_(std::move(final_path)),
      blobs_dir_(std::move(blobs_dir)),
      fd_(std::move(fd)) {}

BlobWriter::~BlobWriter() {
  if (!done_) Discard();
}

void BlobWriter::Discard() {
  done_ = true;
  fd_.reset();
  ::unlink(ingest_path_.c_str());
}

absl::Status BlobWriter::Write(absl::string_view data) {
  if (verified_) return verdict_.ok() ? absl::FailedPreconditionError("blob writer already verified") : verdict_;
  if (done_) return absl::FailedPreconditionError(absl::StrCat("blob ", digest_, ": writer already finished"));
  if (size_ >= 0 && hash_.bytes() + data.size() > static_cast<uint64_t>(size_)) {
    Discard();
    verified_ = true;
    verdict_ = absl::DataLossError(
        absl::StrCat("blob ", digest_, ": registry sent more than the ", size_, " bytes the manifest declares"));
    return verdict_;
  }
  hash_.Update(data);
  absl::Status s = WriteAll(fd_.get(), data);
  if (!s.ok()) Discard();
  return Annotate(s, absl::StrCat("blob ", digest_));
}

absl::Status BlobWriter::Verify() {
  if (verified_) return verdict_;
  if (done_) return absl::FailedPreconditionError(absl::StrCat("blob ", digest_, ": writer already finished"));
  verified_ = true;
  if (size_ >= 0 && hash_.bytes() != static_cast<uint64_t>(size_)) {
    verdict_ = absl::DataLossError(
        absl::StrCat("blob ", digest_, ": size mismatch: got ", hash_.bytes(), " bytes, manifest declares ", size_));
  } else if (std::string got = hash_.Finish(); got != digest_) {
    verdict_ = absl::DataLossError(absl::StrCat("blob ", digest_, ": digest mismatch: content hashes to ", got));
  }
  if (!verdict_.ok()) Discard();
  return verdict_;
}

absl::Status BlobWriter::Commit(bool durable) {
  RETURN_IF_ERROR(Verify());
  if (done_) return absl::FailedPreconditionError(absl::StrCat("blob ", digest_, ": writer already finished"));
  if (durable && ::fsync(fd_.get()) != 0) {
    int err = errno;
    Discard();
    return ErrnoStatus(err, absl::StrCat("fsync blob ", digest_));
  }
  fd_.reset();
  if (::rename(ingest_path_.c_str(), final_path_.c_str()) != 0) {
    int err = errno;
    Discard();
    return ErrnoStatus(err, absl::StrCat("committing blob ", digest_));
  }
  done_ = true;
  return durable ? FsyncDir(blobs_dir_) : absl::OkStatus();
}

ContentStore::ContentStore(std::string dir) : dir_(std::move(dir)) {}

absl::Status ContentStore::Init() {
  RETURN_IF_ERROR(MkdirAll(blobs_dir(), 0700));
  RETURN_IF_ERROR(RemoveAll(ingest_dir()));
  return MkdirAll(ingest_dir(), 0700);
}

std::string ContentStore::BlobPath(absl::string_view digest) const {
  return absl::StrCat(blobs_dir(), "/", DigestHex(digest));
}

bool ContentStore::Has(absl::string_view digest) const {
  if (!ValidateDigest(digest).ok()) return false;
  struct stat st;
  return ::stat(BlobPath(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<uint64_t> ContentStore::Size(absl::string_view digest) const {
  RETURN_IF_ERROR(ValidateDigest(digest));
  struct stat st;
  if (::stat(BlobPath(digest).c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("blob ", digest));
  return static_cast<uint64_t>(st.st_size);
}

absl::StatusOr<std::string> ContentStore::Read(absl::string_view digest, size_t max_bytes) const {
  ASSIGN_OR_RETURN(uint64_t size, Size(digest));
  if (size > max_bytes)
    return absl::ResourceExhaustedError(absl::StrCat("blob ", digest, " is larger than ", max_bytes, " bytes"));
  ASSIGN_OR_RETURN(std::string data, ReadFile(BlobPath(digest)));
  if (Sha256Digest(data) != digest)
    return absl::DataLossError(absl::StrCat("blob ", digest, " in the content store is corrupt"));
  return data;
}

absl::Status ContentStore::Put(absl::string_view digest, absl::string_view data, bool durable) {
  if (Has(digest)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> w, Writer(digest, static_cast<int64_t>(data.size())));
  RETURN_IF_ERROR(w->Write(data));
  return w->Commit(durable);
}

absl::Status ContentStore::Sync() {
  UniqueFd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", dir_));
  if (::syncfs(fd.get()) != 0) return ErrnoStatus(errno, absl::StrCat("syncfs ", dir_));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlobWriter>> ContentStore::Writer(absl::string_view digest, int64_t size) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  std::string ingest = absl::StrCat(ingest_dir(), "/", DigestHex(digest), "-", RandomHex(8));
  UniqueFd fd(::open(ingest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("creating ", ingest));
  return std::unique_ptr<BlobWriter>(
      new BlobWriter(std::string(digest), size, std::move(ingest), BlobPath(digest), std::move(fd), blobs_dir()));
}

absl::Status ContentStore::Delete(absl::string_view digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (::unlink(BlobPath(digest).c_str()) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, absl::StrCat("removing blob ", digest));
  return absl::OkStatus();
}

}  // namespace crisp::images
