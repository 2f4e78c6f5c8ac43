#include "images/unpack.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "images/tar_reader.h"

namespace crisp::images {
namespace {

std::atomic<bool> g_no_openat2{false};

int OpenAt2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = flags;
  how.resolve = resolve;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

// Removes `name` in `dirfd` whatever it is, recursing into directories
// without following symlinks. OK if it does not exist.
absl::Status RemoveAt(int dirfd, const std::string& name, int depth = 0) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, absl::StrCat("stat ", name));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT)
      return ErrnoStatus(errno, absl::StrCat("removing ", name));
    return absl::OkStatus();
  }
  if (depth > 512) return absl::InvalidArgumentError("directory tree too deep to remove");
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("opening ", name));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return ErrnoStatus(errno, absl::StrCat("opening ", name));
  }
  std::vector<std::string> children;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    children.emplace_back(e->d_name);
  }
  absl::Status s;
  for (const std::string& c : children) {
    s = RemoveAt(::dirfd(d), c, depth + 1);
    if (!s.ok()) break;
  }
  ::closedir(d);
  RETURN_IF_ERROR(s);
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, absl::StrCat("removing ", name));
  return absl::OkStatus();
}

class Extractor {
 public:
  Extractor(int rootfd, const ExtractOptions& opts)
      : rootfd_(rootfd), opts_(opts), euid_(::geteuid()), egid_(::getegid()), umask_(ReadUmask()) {}

  absl::StatusOr<ExtractStats> Run(ByteSource& src) {
    TarReader tar(src);
    while (true) {
      absl::StatusOr<const TarHeader*> e = tar.Next();
      if (!e.ok()) return TarError(tar, e.status(), "reading layer tar");
      if (*e == nullptr) break;
      stats_.entries++;
      RETURN_IF_ERROR(Entry(tar, **e));
    }
    RETURN_IF_ERROR(ApplyDirTimes());
    return stats_;
  }

 private:
  struct DirTime {
    std::vector<std::string> comps;
    struct timespec ts[2];
  };

  // The reader's verdict on the archive gets `what` in front; the stream's
  // own failure explains itself best and passes unchanged.
  static absl::Status TarError(const TarReader& tar, const absl::Status& s, absl::string_view what) {
    if (tar.source_failed()) return s;
    return Annotate(s, what);
  }

  // Lexical clean: drops "", "." and leading '/', clamps ".." at the root.
  absl::StatusOr<std::vector<std::string>> Clean(const std::string& name) {
    if (name.size() > opts_.max_name_bytes)
      return absl::InvalidArgumentError(
          absl::StrCat("entry name longer than ", opts_.max_name_bytes, " bytes"));
    std::vector<std::string> out;
    for (absl::string_view c : absl::StrSplit(name, '/')) {
      if (c.empty() || c == ".") continue;
      if (c == "..") {
        if (!out.empty()) out.pop_back();
        continue;
      }
      if (c.size() > 255) return absl::InvalidArgumentError("path component longer than 255 bytes");
      out.emplace_back(c);
    }
    return out;
  }

  static std::string Join(const std::vector<std::string>& comps, size_t n) {
    return absl::StrJoin(comps.begin(), comps.begin() + static_cast<long>(n), "/");
  }

  // Opens the directory made of the first `n` components, resolved inside
  // the root. With `create`, missing directories are made (0755, owned by
  // us, as tar does for parents it was not given).
  absl::StatusOr<UniqueFd> OpenDir(const std::vector<std::string>& comps, size_t n, bool create) {
    if (n == 0) {
      int fd = ::fcntl(rootfd_, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return ErrnoStatus(errno, "dup");
      return UniqueFd(fd);
    }
    if (g_no_openat2.load(std::memory_order_relaxed)) return OpenDirNoFollow(comps, n, create);
    constexpr uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    constexpr uint64_t kFlags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    std::string path = Join(comps, n);
    int fd = OpenAt2(rootfd_, path.c_str(), kFlags, kResolve);
    if (fd >= 0) return UniqueFd(fd);
    if (errno == ENOSYS) {
      g_no_openat2 = true;
      return OpenDirNoFollow(comps, n, create);
    }
    if (errno != ENOENT || !create) return ErrnoStatus(errno, absl::StrCat("opening directory ", path));
    // Create what is missing, one level at a time, each mkdirat() relative
    // to its resolved parent so that it cannot land outside the root.
    UniqueFd cur(::fcntl(rootfd_, F_DUPFD_CLOEXEC, 0));
    for (size_t i = 1; i <= n; ++i) {
      std::string prefix = Join(comps, i);
      int next = OpenAt2(rootfd_, prefix.c_str(), kFlags, kResolve);
      if (next < 0 && errno == ENOENT) {
        if (::mkdirat(cur.get(), comps[i - 1].c_str(), 0755) != 0 && errno != EEXIST)
          return ErrnoStatus(errno, absl::StrCat("creating directory ", prefix));
        stats_.inodes++;
        next = OpenAt2(rootfd_, prefix.c_str(), kFlags, kResolve);
      }
      if (next < 0) return ErrnoStatus(errno, absl::StrCat("opening directory ", prefix));
      cur.reset(next);
    }
    return cur;
  }

  // Fallback without openat2: every component must be a real directory.
  absl::StatusOr<UniqueFd> OpenDirNoFollow(const std::vector<std::string>& comps, size_t n, bool create) {
    UniqueFd cur(::fcntl(rootfd_, F_DUPFD_CLOEXEC, 0));
    for (size_t i = 0; i < n; ++i) {
      const char* c = comps[i].c_str();
      int next = ::openat(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT && create) {
        if (::mkdirat(cur.get(), c, 0755) != 0 && errno != EEXIST)
          return ErrnoStatus(errno, absl::StrCat("creating directory ", Join(comps, i + 1)));
        stats_.inodes++;
        next = ::openat(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (next < 0)
        return ErrnoStatus(errno, absl::StrCat("opening directory ", Join(comps, i + 1),
                                               " (symlinks in parent paths need openat2)"));
      cur.reset(next);
    }
    return cur;
  }

  // The parent directory of an entry; consecutive entries in the same
  // directory reuse one fd.
  absl::StatusOr<int> Parent(const std::vector<std::string>& comps) {
    std::string key = Join(comps, comps.size() - 1);
    if (cached_fd_ && key == cached_key_) return cached_fd_.get();
    ASSIGN_OR_RETURN(UniqueFd fd, OpenDir(comps, comps.size() - 1, true));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "stat parent directory");
    cached_setgid_ = (st.st_mode & S_ISGID) != 0;
    cached_fd_ = std::move(fd);
    cached_key_ = key;
    return cached_fd_.get();
  }

  // An entry at `path` may replace a directory the cached fd lives under.
  void InvalidateUnder(const std::vector<std::string>& comps) {
    if (!cached_fd_) return;
    std::string path = Join(comps, comps.size());
    if (cached_key_ == path || absl::StartsWith(cached_key_, path + "/")) {
      cached_fd_.reset();
      cached_key_.clear();
    }
  }

  absl::Status Owner(int fd, const char* name, int flags, const TarHeader& e) {
    if (!opts_.preserve_owner) return absl::OkStatus();
    int64_t uid = e.uid, gid = e.gid;
    if (uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe)
      return absl::InvalidArgumentError(absl::StrCat("uid/gid out of range: ", uid, "/", gid));
    int rc = name == nullptr ? ::fchown(fd, static_cast<uid_t>(uid), static_cast<gid_t>(gid))
                             : ::fchownat(fd, name, static_cast<uid_t>(uid), static_cast<gid_t>(gid), flags);
    if (rc != 0) return ErrnoStatus(errno, "chown");
    return absl::OkStatus();
  }

  static void Times(const TarHeader& e, struct timespec ts[2]) {
    ts[1] = e.mtime;
    ts[0] = e.has_atime ? e.atime : e.mtime;
  }

  absl::Status Xattrs(int fd, const TarHeader& e) {
    for (const TarXattr& x : e.xattrs) {
      // A layer must not be able to set overlayfs' own attributes
      // (opaque, redirect, metacopy): those would change what overlayfs
      // shows from other layers. Opaque dirs come from .wh..wh..opq only.
      if (absl::StartsWith(x.name, "trusted.overlay.")) continue;
      if (::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0) != 0) {
        if (errno == ENOTSUP || errno == EOPNOTSUPP) continue;
        return ErrnoStatus(errno, absl::StrCat("setting xattr ", x.name));
      }
    }
    return absl::OkStatus();
  }

  // Allocated size, estimated in 4 KiB blocks rather than asked with an
  // fstat per file (sparse files are over-counted).
  void CountDisk(uint64_t size) { stats_.disk_bytes += (size + 4095) / 4096 * 4096; }

  // A new entry gets our uid and gid (or its setgid parent's): chown only
  // when the archive wants something else.
  bool NeedChown(const TarHeader& e) const {
    return opts_.preserve_owner &&
           (e.uid != static_cast<int64_t>(euid_) || e.gid != static_cast<int64_t>(egid_) || cached_setgid_);
  }
  // Entries are created with perm & 0777, which the umask may cut and which
  // lacks the setuid/setgid/sticky bits: chmod only then.
  bool NeedChmod(mode_t perm) const { return (perm & 07000) != 0 || (perm & umask_) != 0; }

  static mode_t ReadUmask() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("Umask:", 0) == 0)
        return static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8));
    }
    return 0777;  // unknown: always chmod
  }

  // Runs `create`; if the name is taken, removes what is there (a directory
  // recursively) and runs it once more. Saves a stat for the common case of
  // a fresh name.
  template <typename F>
  absl::Status CreateFresh(int pfd, const char* leaf, F create, const char* what) {
    if (create() == 0) return absl::OkStatus();
    if (errno != EEXIST) return ErrnoStatus(errno, what);
    RETURN_IF_ERROR(RemoveAt(pfd, leaf));
    if (create() != 0) return ErrnoStatus(errno, what);
    return absl::OkStatus();
  }

  absl::Status Entry(TarReader& tar, const TarHeader& e) {
    absl::Status s = EntryImpl(tar, e);
    return Annotate(s, absl::StrCat("layer entry \"", absl::string_view(e.path).substr(0, 256), "\""));
  }

  absl::Status EntryImpl(TarReader& tar, const TarHeader& e) {
    ASSIGN_OR_RETURN(std::vector<std::string> comps, Clean(e.path));
    if (comps.empty()) return RootEntry(e);

    Whiteout wh = ClassifyWhiteout(comps.back());
    if (wh.kind != WhiteoutKind::kNone) return WhiteoutEntry(comps, wh, e);

    InvalidateUnder(comps);
    ASSIGN_OR_RETURN(int pfd, Parent(comps));
    const char* leaf = comps.back().c_str();
    mode_t perm = e.mode & 07777;

    if (e.type == TarType::kHardlink) {
      ASSIGN_OR_RETURN(std::vector<std::string> tcomps, Clean(e.link));
      if (tcomps.empty()) return absl::InvalidArgumentError("hardlink to the layer root");
      if (tcomps == comps) return absl::OkStatus();  // a link to itself: nothing to do
      ASSIGN_OR_RETURN(UniqueFd tparent, OpenDir(tcomps, tcomps.size() - 1, false));
      struct stat tst;
      if (::fstatat(tparent.get(), tcomps.back().c_str(), &tst, AT_SYMLINK_NOFOLLOW) != 0)
        return ErrnoStatus(errno, absl::StrCat("hardlink target ", Join(tcomps, tcomps.size())));
      if (S_ISDIR(tst.st_mode)) return absl::InvalidArgumentError("hardlink to a directory");
      // flags 0: a symlink target is linked itself, never followed.
      const char* tleaf = tcomps.back().c_str();
      return CreateFresh(
          pfd, leaf, [&] { return ::linkat(tparent.get(), tleaf, pfd, leaf, 0); }, "linking");
    }

    struct timespec ts[2];
    Times(e, ts);
    switch (e.type) {
      case TarType::kDirectory: {
        bool created = ::mkdirat(pfd, leaf, perm & 0777) == 0;
        if (!created) {
          if (errno != EEXIST) return ErrnoStatus(errno, "mkdir");
          struct stat st;
          if (::fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoStatus(errno, "stat");
          if (!S_ISDIR(st.st_mode)) {
            RETURN_IF_ERROR(RemoveAt(pfd, leaf));
            if (::mkdirat(pfd, leaf, perm & 0777) != 0) return ErrnoStatus(errno, "mkdir");
            created = true;
          }
        }
        if (created) {
          stats_.inodes++;
          CountDisk(4096);
        }
        // An existing directory takes the new metadata; a new one only what
        // creation did not already give it.
        bool chown = created ? NeedChown(e) : opts_.preserve_owner;
        bool chmod = created ? NeedChmod(perm) : true;
        bool xattrs = !e.xattrs.empty();
        if (chown || chmod || xattrs) {
          UniqueFd fd(::openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
          if (!fd) return ErrnoStatus(errno, "opening directory");
          if (chown) RETURN_IF_ERROR(Owner(fd.get(), nullptr, 0, e));
          if (chmod && ::fchmod(fd.get(), perm) != 0) return ErrnoStatus(errno, "chmod");
          if (xattrs) RETURN_IF_ERROR(Xattrs(fd.get(), e));
        }
        DirTime dt{comps, {ts[0], ts[1]}};
        dir_times_.push_back(std::move(dt));
        return absl::OkStatus();
      }
      case TarType::kRegular: {
        int raw = -1;
        RETURN_IF_ERROR(CreateFresh(
            pfd, leaf,
            [&] {
              raw = ::openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm & 0777);
              return raw < 0 ? -1 : 0;
            },
            "creating file"));
        UniqueFd fd(raw);
        stats_.inodes++;
        int64_t size = e.size;
        if (size > 0) RETURN_IF_ERROR(WriteData(tar, fd.get(), size));
        // chown before chmod: chown clears setuid/setgid.
        if (NeedChown(e)) RETURN_IF_ERROR(Owner(fd.get(), nullptr, 0, e));
        if (NeedChmod(perm) && ::fchmod(fd.get(), perm) != 0) return ErrnoStatus(errno, "chmod");
        RETURN_IF_ERROR(Xattrs(fd.get(), e));
        if (::futimens(fd.get(), ts) != 0) return ErrnoStatus(errno, "setting times");
        uint64_t usize = static_cast<uint64_t>(std::max<int64_t>(0, size));
        stats_.content_bytes += usize;
        CountDisk(usize);
        return absl::OkStatus();
      }
      case TarType::kSymlink: {
        const char* target = e.link.c_str();
        if (e.link.empty()) return absl::InvalidArgumentError("symlink without a target");
        if (e.link.size() > opts_.max_name_bytes)
          return absl::InvalidArgumentError("symlink target too long");
        RETURN_IF_ERROR(CreateFresh(
            pfd, leaf, [&] { return ::symlinkat(target, pfd, leaf); }, "symlink"));
        stats_.inodes++;
        if (NeedChown(e)) RETURN_IF_ERROR(Owner(pfd, leaf, AT_SYMLINK_NOFOLLOW, e));
        if (::utimensat(pfd, leaf, ts, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoStatus(errno, "setting times");
        return absl::OkStatus();
      }
      case TarType::kCharDevice:
      case TarType::kBlockDevice:
      case TarType::kFifo: {
        mode_t type = e.type == TarType::kFifo ? S_IFIFO : e.type == TarType::kCharDevice ? S_IFCHR : S_IFBLK;
        // The reader keeps device numbers within 32 bits.
        dev_t dev = makedev(static_cast<unsigned>(e.dev_major), static_cast<unsigned>(e.dev_minor));
        RETURN_IF_ERROR(CreateFresh(
            pfd, leaf, [&] { return ::mknodat(pfd, leaf, type | (perm & 0777), dev); }, "mknod"));
        stats_.inodes++;
        if (NeedChown(e)) RETURN_IF_ERROR(Owner(pfd, leaf, AT_SYMLINK_NOFOLLOW, e));
        // The node was just created by us and is not a symlink, so this
        // path-based chmod cannot be redirected.
        if (NeedChmod(perm) && ::fchmodat(pfd, leaf, perm, 0) != 0) return ErrnoStatus(errno, "chmod");
        if (::utimensat(pfd, leaf, ts, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoStatus(errno, "setting times");
        return absl::OkStatus();
      }
      case TarType::kHardlink:
        break;  // handled above
    }
    return absl::InvalidArgumentError(absl::StrCat("unsupported entry type ", static_cast<int>(e.type)));
  }

  // Writes the entry's data straight from the reader's buffer to where it
  // belongs in the file; a sparse file's holes are never written.
  absl::Status WriteData(TarReader& tar, int fd, int64_t size) {
    int64_t end = 0;
    while (true) {
      absl::StatusOr<TarChunk> chunk = tar.Read();
      if (!chunk.ok()) return TarError(tar, chunk.status(), "reading file data");
      if (chunk->data.empty()) break;
      const char* p = chunk->data.data();
      size_t len = chunk->data.size();
      off_t off = chunk->offset;
      while (len > 0) {
        ssize_t n = ::pwrite(fd, p, len, off);
        if (n < 0) {
          if (errno == EINTR) continue;
          return ErrnoStatus(errno, "writing file");
        }
        p += n;
        off += n;
        len -= static_cast<size_t>(n);
      }
      end = std::max<int64_t>(end, off);
    }
    // A sparse file may end in a hole.
    if (size > end && ::ftruncate(fd, size) != 0) return ErrnoStatus(errno, "truncating file");
    return absl::OkStatus();
  }

  absl::Status RootEntry(const TarHeader& e) {
    // "./" describes the layer root itself: keep its owner and mode, which
    // become those of "/" in the container. Anything else cannot replace it.
    if (e.type != TarType::kDirectory)
      return absl::InvalidArgumentError("entry would replace the layer root");
    RETURN_IF_ERROR(Owner(rootfd_, nullptr, 0, e));
    if (::fchmod(rootfd_, e.mode & 07777) != 0) return ErrnoStatus(errno, "chmod");
    RETURN_IF_ERROR(Xattrs(rootfd_, e));
    DirTime dt{{}, {}};
    Times(e, dt.ts);
    dir_times_.push_back(std::move(dt));
    return absl::OkStatus();
  }

  absl::Status WhiteoutEntry(const std::vector<std::string>& comps, const Whiteout& wh, const TarHeader& e) {
    if (wh.kind == WhiteoutKind::kMeta) return absl::OkStatus();
    ASSIGN_OR_RETURN(int pfd, Parent(comps));
    if (wh.kind == WhiteoutKind::kOpaque) {
      if (::fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) != 0)
        return ErrnoStatus(errno, "setting trusted.overlay.opaque");
      return absl::OkStatus();
    }
    std::vector<std::string> target = comps;
    target.back() = wh.target;
    InvalidateUnder(target);
    const char* name = wh.target.c_str();
    RETURN_IF_ERROR(CreateFresh(
        pfd, name, [&] { return ::mknodat(pfd, name, S_IFCHR | 0, makedev(0, 0)); },
        "creating whiteout device"));
    stats_.inodes++;
    struct timespec ts[2];
    Times(e, ts);
    if (::utimensat(pfd, wh.target.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
      return ErrnoStatus(errno, "setting times");
    return absl::OkStatus();
  }

  // Directory mtimes change whenever an entry lands in them, so they are
  // set once everything is in place. A directory removed by a later entry
  // is skipped.
  absl::Status ApplyDirTimes() {
    cached_fd_.reset();
    for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
      if (it->comps.empty()) {
        if (::futimens(rootfd_, it->ts) != 0) return ErrnoStatus(errno, "setting times of the layer root");
        continue;
      }
      auto pfd = OpenDir(it->comps, it->comps.size() - 1, false);
      if (!pfd.ok()) continue;
      struct stat st;
      const char* leaf = it->comps.back().c_str();
      if (::fstatat(pfd->get(), leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
      if (::utimensat(pfd->get(), leaf, it->ts, AT_SYMLINK_NOFOLLOW) != 0)
        return ErrnoStatus(errno, absl::StrCat("setting times of ", Join(it->comps, it->comps.size())));
    }
    return absl::OkStatus();
  }

  int rootfd_;
  ExtractOptions opts_;
  uid_t euid_;
  gid_t egid_;
  mode_t umask_;
  bool cached_setgid_ = false;  // the cached parent directory has S_ISGID
  ExtractStats stats_;
  UniqueFd cached_fd_;
  std::string cached_key_;
  std::vector<DirTime> dir_times_;
};

}  // namespace

Whiteout ClassifyWhiteout(absl::string_view base) {
  Whiteout w;
  if (!absl::StartsWith(base, ".wh.")) return w;
  if (base == ".wh..wh..opq") {
    w.kind = WhiteoutKind::kOpaque;
  } else if (absl::StartsWith(base, ".wh..wh.")) {
    w.kind = WhiteoutKind::kMeta;
  } else {
    absl::string_view t = base.substr(4);
    if (t.empty() || t == "." || t == "..") {
      w.kind = WhiteoutKind::kMeta;  // meaningless; never delete the directory itself
    } else {
      w.kind = WhiteoutKind::kWhiteout;
      w.target = std::string(t);
    }
  }
  return w;
}

absl::StatusOr<ExtractStats> ExtractTar(ByteSource& src, const std::string& dir, const ExtractOptions& opts) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return ErrnoStatus(errno, absl::StrCat("opening ", dir));
  Extractor x(root.get(), opts);
  return x.Run(src);
}

}  // namespace crisp::images
