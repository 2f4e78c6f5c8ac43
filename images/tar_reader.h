#pragma once
// A streaming, pull-style tar reader for image layers. It replaces
// libarchive, of which crisp only ever used the tar reader (and which maps
// ~4 MiB of libraries into crispd).
//
// Accepted input is what Go's archive/tar (containerd's reader) accepts:
//   * v7, ustar (with the prefix field), star (prefix, atime), GNU (long
//     names 'L', long link targets 'K', atime, old sparse files 'S' with
//     extension blocks) and PAX: per-entry 'x' and global 'g' headers with
//     path, linkpath, size, uid, gid, uname, gname, mtime and atime (with
//     fractional seconds), SCHILY.xattr.*, LIBARCHIVE.xattr.* (url-encoded
//     name, base64 value), SCHILY.devmajor/devminor and the GNU.sparse.*
//     formats 0.0, 0.1 and 1.0. Unlike Go, global records do apply to the
//     entries that follow them, as POSIX says (GNU.sparse.* excepted).
//   * Numbers in octal (leading/trailing spaces and NULs) or GNU base-256;
//     the header checksum is checked both unsigned and signed (old tars).
//   * The archive ends with two zero blocks, a zero block and the end of
//     the stream, or the end of the stream exactly where a header would
//     start (as Go, GNU tar and libarchive accept). What follows the end
//     marker is ignored (some of it may sit unread in the reader's buffer):
//     the caller drains the source if it must.
//   * Entry types '0', '\0' (a directory when the name ends in '/'), '7'
//     (regular), '1' hardlink, '2' symlink, '3'/'4' devices, '5' dir, '6'
//     fifo. As in Go, types '1'-'6' carry no data whatever their size field
//     says. Any other type is an error naming it.
//
// Hostile input is INVALID_ARGUMENT with a message saying what and where
// (the stream offset of the header): PAX and GNU long-name headers and
// sparse maps over 1 MiB, all global records together over 1 MiB, bad
// checksums, unparsable or overflowing numbers, negative sizes, sparse maps
// that overlap, run past the file's size or do not add up to the stored
// data, and a stream that ends early. A failure of the ByteSource itself is
// returned unchanged. Errors are sticky: every later call returns the same.
#include <sys/types.h>
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/stream.h"

namespace crisp::images {

enum class TarType : char {
  kRegular = '0',
  kHardlink = '1',
  kSymlink = '2',
  kCharDevice = '3',
  kBlockDevice = '4',
  kDirectory = '5',
  kFifo = '6',
};

struct TarXattr {
  std::string name;
  std::string value;
};

// One entry, with every extension header (PAX, GNU long names, sparse
// maps) already applied.
struct TarHeader {
  TarType type = TarType::kRegular;
  std::string path;          // as stored: not cleaned, may be absolute or hold ".."
  std::string link;          // symlink target or hardlink target (an archive path)
  uint32_t mode = 0;         // permission bits incl. setuid/setgid/sticky (07777)
  int64_t uid = 0, gid = 0;  // as stored; may be out of uid_t's range
  std::string uname, gname;
  int64_t size = 0;  // regular files: the logical size (holes included); else 0
  struct timespec mtime = {0, 0};
  bool has_atime = false;
  struct timespec atime = {0, 0};
  int64_t dev_major = 0, dev_minor = 0;  // devices only; within 0..2^32-1
  std::vector<TarXattr> xattrs;          // names unique, never empty
  bool sparse = false;                   // data comes in chunks with holes between
};

// A piece of the current entry's data: `data` belongs at `offset` in the
// file. Empty `data` means the entry has no more.
struct TarChunk {
  int64_t offset = 0;
  absl::string_view data;
};

class TarReader {
 public:
  static constexpr size_t kDefaultBufferSize = size_t{1} << 20;
  // Largest PAX header, GNU long name/link or sparse map accepted, and the
  // bound on all global PAX records together.
  static constexpr size_t kMaxMetaBytes = size_t{1} << 20;

  // Reads `src` (not owned) through a buffer of `buffer_size` bytes (at
  // least one block; smaller values are raised to 512).
  explicit TarReader(ByteSource& src, size_t buffer_size = kDefaultBufferSize);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Skips what is left of the current entry's data and reads the next
  // entry's headers. Returns the entry (valid until the next call), or
  // nullptr at the end of the archive (and on every call after it).
  absl::StatusOr<const TarHeader*> Next();

  // The next piece of the current entry's data, at most `max` bytes
  // (max > 0), pointing into the reader's buffer: valid until the next call
  // of Read or Next. Regular files only; other entries have no data.
  // Pieces come in increasing offset order; a sparse file's holes are left
  // out (the file's size is TarHeader::size), a plain file's pieces are
  // contiguous from 0.
  absl::StatusOr<TarChunk> Read(size_t max = SIZE_MAX);

  // Bytes of the stream consumed so far (where the next read would start).
  uint64_t offset() const;

  // Whether the sticky error is the ByteSource's own (passed unchanged)
  // rather than the reader's verdict on the archive.
  bool source_failed() const { return source_failed_; }

 private:
  struct Fragment {
    int64_t offset, length;
  };
  using Records = std::map<std::string, std::string>;

  // Makes at least `n` (<= buffer size) bytes available at pos_; returns
  // how many are, fewer only at the end of the stream.
  absl::StatusOr<size_t> Ensure(size_t n);
  // Consumes `n` bytes; the stream ending first is an error naming `what`.
  absl::Status Skip(uint64_t n, absl::string_view what);
  // Reads one whole block into `blk`; `what` names it in errors.
  absl::Status ReadBlock(char* blk, absl::string_view what);
  // Reads a meta entry's `size` bytes of data (and its padding).
  absl::StatusOr<std::string> ReadMeta(int64_t size, absl::string_view what);
  absl::StatusOr<const TarHeader*> NextImpl();
  absl::Status ParseRecords(absl::string_view data, Records* out) const;
  absl::Status MergeGlobal(const Records& recs);
  // Applies one PAX record to hdr_ (or to the numbers below).
  absl::Status ApplyRecord(const std::string& key, const std::string& value);
  absl::Status ReadOldGnuSparse(const char* blk);
  absl::Status ReadPaxSparse(const Records& recs);
  absl::Status CheckSparse();
  absl::Status Fail(absl::Status s);
  absl::Status Corrupt(absl::string_view msg) const;

  ByteSource& src_;
  const size_t cap_;
  std::unique_ptr<char[]> buf_;  // not zeroed: only what was read is looked at
  size_t pos_ = 0, end_ = 0;     // unread bytes are buf_[pos_, end_)
  uint64_t base_ = 0;            // stream offset of buf_[0]
  bool eof_ = false;             // the source returned 0
  bool done_ = false;            // end of archive reached
  bool source_failed_ = false;   // src_.Read returned an error
  absl::Status status_;          // sticky failure

  TarHeader hdr_;
  uint64_t hdr_offset_ = 0;      // stream offset of the current header block
  int64_t remaining_ = 0;        // physical data bytes of the entry not yet consumed
  int64_t pad_ = 0;              // padding after the data
  int64_t logical_ = 0;          // plain files: offset of the next byte
  std::vector<Fragment> frags_;  // sparse files: the data fragments
  size_t frag_ = 0;              // current fragment
  int64_t frag_done_ = 0;        // bytes of it already returned

  // Numbers of the entry being assembled, checked once all records are in.
  int64_t uid_ = 0, gid_ = 0, size_ = 0, dev_major_ = 0, dev_minor_ = 0;
  std::map<std::string, std::string> xattrs_;

  Records global_;  // 'g' records in force
  size_t global_bytes_ = 0;
};

}  // namespace crisp::images
