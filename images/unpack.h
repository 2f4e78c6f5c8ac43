#pragma once
// Safe extraction of one image layer (a tar stream) into a directory, with
// OCI whiteouts turned into overlayfs whiteouts.
//
// Safety: no entry may create, follow or overwrite anything outside the
// directory. Entry names are cleaned lexically (leading '/' dropped, ".."
// clamped at the root, as containerd does); every parent directory is
// resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_XDEV), so symlinks planted by earlier entries resolve inside
// the root; the last component is only ever touched with *at() calls that
// do not follow it; hardlink targets are resolved the same way. Where
// openat2 is missing (Linux < 5.6), parents are walked one component at a
// time with O_NOFOLLOW and a symlink in a parent fails the layer.
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/stream.h"

namespace crisp::images {

struct ExtractOptions {
  // chown every entry to its recorded uid/gid. Needs CAP_CHOWN; when false
  // everything is owned by the caller.
  bool preserve_owner = true;
  // Longest entry or link name accepted (PATH_MAX); longer ones are
  // INVALID_ARGUMENT, bounding what a hostile PAX header can make us do.
  size_t max_name_bytes = 4096;
};

struct ExtractStats {
  uint64_t entries = 0;        // tar entries processed
  uint64_t content_bytes = 0;  // apparent size of regular files (each inode once)
  uint64_t disk_bytes = 0;     // allocated blocks of what was created
  uint64_t inodes = 0;         // inodes created (hardlinks not counted)
};

// Extracts the tar stream `src` (already decompressed; any format
// TarReader reads, images/tar_reader.h) into the existing directory `dir`,
// preserving modes (incl. setuid/setgid/sticky), owners, mtimes, xattrs
// (except trusted.overlay.*, which would let a layer steer overlayfs),
// hardlinks, symlinks, device nodes, fifos and the holes of sparse files.
// `.wh.<name>` becomes a 0/0 character device <name>, `.wh..wh..opq` sets
// trusted.overlay.opaque=y on its directory, other `.wh..wh.*` entries are
// skipped. On error the directory is left half-populated: the caller
// extracts into a scratch directory and removes it. INVALID_ARGUMENT for a
// malformed or hostile archive (naming the entry), the source's error if
// reading failed, errno-mapped errors for filesystem failures.
absl::StatusOr<ExtractStats> ExtractTar(ByteSource& src, const std::string& dir, const ExtractOptions& opts);

enum class WhiteoutKind { kNone, kWhiteout, kOpaque, kMeta };
struct Whiteout {
  WhiteoutKind kind = WhiteoutKind::kNone;
  std::string target;  // for kWhiteout: the name being deleted
};

// Classifies a base name: ".wh..wh..opq" -> kOpaque, other ".wh..wh.*" ->
// kMeta (aufs bookkeeping, ignored), ".wh.<name>" -> kWhiteout of <name>,
// else kNone.
Whiteout ClassifyWhiteout(absl::string_view basename);

}  // namespace crisp::images
