// The layer extractor: normal archives (modes, owners, times, xattrs,
// links, devices, whiteouts) and hostile ones, which must fail or stay
// inside the layer directory, leaving everything outside unchanged.
#include "images/unpack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "images/digest.h"
#include "images/stream.h"
#include "test/testing/temp_dir.h"
#include "test/unit/images/test_support.h"

namespace crisp::images {
namespace {

using namespace crisp::images::tartest;  // NOLINT: test helpers

bool IsRoot() { return ::geteuid() == 0; }

class UnpackTest : public crisp::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    root_ = dir_ + "/root";
    outside_ = dir_ + "/outside";
    ASSERT_TRUE(MkdirAll(root_).ok());
    ASSERT_TRUE(MkdirAll(outside_ + "/sub").ok());
    ASSERT_TRUE(WriteFileAtomic(outside_ + "/victim", "original").ok());
    ASSERT_TRUE(WriteFileAtomic(outside_ + "/sub/other", "original too").ok());
    before_ = SnapshotTree(outside_);
  }

  absl::StatusOr<ExtractStats> Extract(const std::string& tar) {
    StringSource src(tar);
    ExtractOptions o;
    o.preserve_owner = IsRoot();
    return ExtractTar(src, root_, o);
  }

  // Nothing outside the layer dir changed: the sibling tree is identical
  // and nothing new appeared next to it.
  void ExpectOutsideUnchanged() {
    EXPECT_EQ(SnapshotTree(outside_), before_);
    auto names = ListDir(dir_);
    ASSERT_TRUE(names.ok());
    EXPECT_EQ(*names, (std::vector<std::string>{"outside", "root"}));
  }

  std::string Read(const std::string& rel) {
    auto s = ReadFile(root_ + "/" + rel);
    return s.ok() ? *s : "<" + std::string(s.status().message()) + ">";
  }

  std::string root_, outside_, before_;
};

TEST_F(UnpackTest, PreservesMetadata) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (chown, mknod, trusted xattrs)";
  TarEntry suid = File("bin/su", "#!/bin/sh\n", 04755);
  TarEntry owned = File("home/user/file", "data", 0640);
  owned.uid = 1000;
  owned.gid = 1001;
  owned.mtime = 1234567890;
  owned.mtime_nsec = 123456789;
  owned.xattrs = {{"user.crisp", "value"}, {"trusted.overlay.redirect", "/etc"}};
  TarEntry dir = Dir("home/user", 0750);
  dir.uid = 1000;
  dir.gid = 1001;
  dir.mtime = 1111111111;
  TarEntry sticky = Dir("tmp", 01777);
  TarEntry cdev;
  cdev.type = 'c';
  cdev.path = "dev/null";
  cdev.mode = 0666;
  cdev.dev_major = 1;
  cdev.dev_minor = 3;
  TarEntry fifo;
  fifo.type = 'p';
  fifo.path = "run/fifo";
  fifo.mode = 0600;
  TarEntry link = Symlink("bin/sh", "busybox");
  link.uid = 5;
  std::string tar = BuildTar({Dir("bin"), File("bin/busybox", std::string(100000, 'x'), 0755), link, suid,
                              Hardlink("bin/ls", "bin/busybox"), dir, owned, sticky, cdev, fifo,
                              File("sparse-ish", std::string(10, '\0'))});
  auto st = Extract(tar);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->entries, 11u);
  EXPECT_EQ(st->content_bytes, 100000u + 10 + 4 + 10);
  EXPECT_GT(st->inodes, 10u);
  EXPECT_GT(st->disk_bytes, 100000u);

  struct stat s;
  ASSERT_EQ(::lstat((root_ + "/bin/su").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 04755u);
  ASSERT_EQ(::lstat((root_ + "/home/user/file").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0640u);
  EXPECT_EQ(s.st_uid, 1000u);
  EXPECT_EQ(s.st_gid, 1001u);
  EXPECT_EQ(s.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(s.st_mtim.tv_nsec, 123456789);
  char buf[64];
  ssize_t n = ::lgetxattr((root_ + "/home/user/file").c_str(), "user.crisp", buf, sizeof buf);
  ASSERT_EQ(n, 5);
  EXPECT_EQ(std::string(buf, 5), "value");
  // A layer may not set overlayfs' own attributes.
  EXPECT_LT(::lgetxattr((root_ + "/home/user/file").c_str(), "trusted.overlay.redirect", buf, sizeof buf), 0);
  // Directory times are applied after their children were created.
  ASSERT_EQ(::lstat((root_ + "/home/user").c_str(), &s), 0);
  EXPECT_EQ(s.st_mtim.tv_sec, 1111111111);
  EXPECT_EQ(s.st_mode & 07777, 0750u);
  EXPECT_EQ(s.st_uid, 1000u);
  ASSERT_EQ(::lstat((root_ + "/tmp").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 01777u);
  // Hardlinks share the inode; symlinks keep their target and owner.
  struct stat a, b;
  ASSERT_EQ(::lstat((root_ + "/bin/busybox").c_str(), &a), 0);
  ASSERT_EQ(::lstat((root_ + "/bin/ls").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  char target[64] = {};
  ASSERT_EQ(::readlink((root_ + "/bin/sh").c_str(), target, sizeof target), 7);
  EXPECT_STREQ(target, "busybox");
  ASSERT_EQ(::lstat((root_ + "/bin/sh").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 5u);
  ASSERT_EQ(::lstat((root_ + "/dev/null").c_str(), &s), 0);
  EXPECT_TRUE(S_ISCHR(s.st_mode));
  EXPECT_EQ(major(s.st_rdev), 1u);
  EXPECT_EQ(minor(s.st_rdev), 3u);
  ASSERT_EQ(::lstat((root_ + "/run/fifo").c_str(), &s), 0);
  EXPECT_TRUE(S_ISFIFO(s.st_mode));
  EXPECT_EQ(Read("sparse-ish"), std::string(10, '\0'));
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, ModesSurviveTheUmaskAndSetgidParents) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (chown)";
  mode_t old = ::umask(027);
  TarEntry sgdir = Dir("sg", 02775);
  sgdir.gid = 1234;
  TarEntry inner = File("sg/f", "x", 0666);  // owned 0:0 in the archive
  TarEntry sub = Dir("sg/sub", 0777);
  auto st = Extract(
      BuildTar({File("open", "x", 0666), Dir("wide", 0777), sgdir, inner, sub, Symlink("sg/link", "f")}));
  ::umask(old);
  ASSERT_TRUE(st.ok()) << st.status();
  struct stat s;
  ASSERT_EQ(::lstat((root_ + "/open").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0666u);
  ASSERT_EQ(::lstat((root_ + "/wide").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0777u);
  ASSERT_EQ(::lstat((root_ + "/sg").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 02775u);
  EXPECT_EQ(s.st_gid, 1234u);
  // Without a chown these would inherit gid 1234 from the setgid parent.
  for (const char* p : {"sg/f", "sg/sub", "sg/link"}) {
    ASSERT_EQ(::lstat((root_ + "/" + p).c_str(), &s), 0) << p;
    EXPECT_EQ(s.st_gid, 0u) << p;
  }
  ASSERT_EQ(::lstat((root_ + "/sg/f").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0666u);
  ASSERT_EQ(::lstat((root_ + "/sg/sub").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0777u);
}

TEST_F(UnpackTest, WhiteoutsBecomeOverlayWhiteouts) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (mknod, trusted xattrs)";
  std::string tar = BuildTar({Dir("etc"), File("etc/.wh.passwd", ""), Dir("opq"), File("opq/new", "n"),
                              File("opq/.wh..wh..opq", ""), File("deep/dir/.wh.gone", ""),
                              File("etc/.wh..wh.plnk", ""), File(".wh.toplevel", "")});
  auto st = Extract(tar);
  ASSERT_TRUE(st.ok()) << st.status();
  struct stat s;
  for (const char* p : {"etc/passwd", "deep/dir/gone", "toplevel"}) {
    ASSERT_EQ(::lstat((root_ + "/" + p).c_str(), &s), 0) << p;
    EXPECT_TRUE(S_ISCHR(s.st_mode)) << p;
    EXPECT_EQ(s.st_rdev, makedev(0, 0)) << p;
  }
  EXPECT_FALSE(PathExists(root_ + "/etc/.wh.passwd"));
  EXPECT_FALSE(PathExists(root_ + "/etc/.wh..wh.plnk"));
  EXPECT_FALSE(PathExists(root_ + "/opq/.wh..wh..opq"));
  char v[4] = {};
  ASSERT_EQ(::lgetxattr((root_ + "/opq").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'y');
  EXPECT_EQ(Read("opq/new"), "n");  // the same layer's own files stay
  EXPECT_LT(::lgetxattr((root_ + "/etc").c_str(), "trusted.overlay.opaque", v, sizeof v), 0);
}

TEST(WhiteoutTest, Classify) {
  EXPECT_EQ(ClassifyWhiteout("file").kind, WhiteoutKind::kNone);
  EXPECT_EQ(ClassifyWhiteout(".whatever").kind, WhiteoutKind::kNone);
  Whiteout w = ClassifyWhiteout(".wh.passwd");
  EXPECT_EQ(w.kind, WhiteoutKind::kWhiteout);
  EXPECT_EQ(w.target, "passwd");
  EXPECT_EQ(ClassifyWhiteout(".wh..wh..opq").kind, WhiteoutKind::kOpaque);
  EXPECT_EQ(ClassifyWhiteout(".wh..wh.plnk").kind, WhiteoutKind::kMeta);
  EXPECT_EQ(ClassifyWhiteout(".wh.").kind, WhiteoutKind::kMeta);
  EXPECT_EQ(ClassifyWhiteout(".wh..").kind, WhiteoutKind::kMeta);
  EXPECT_EQ(ClassifyWhiteout(".wh...").kind, WhiteoutKind::kMeta);
  w = ClassifyWhiteout(".wh..hidden");
  EXPECT_EQ(w.kind, WhiteoutKind::kWhiteout);
  EXPECT_EQ(w.target, ".hidden");
}

TEST_F(UnpackTest, AbsolutePathsStayInside) {
  std::string abs = outside_ + "/victim";
  auto st = Extract(BuildTar({File(abs, "pwned"), File("/etc/crisp-test-abs", "x")}));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(Read(abs.substr(1)), "pwned");
  EXPECT_EQ(Read("etc/crisp-test-abs"), "x");
  EXPECT_FALSE(PathExists("/etc/crisp-test-abs"));
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, DotDotIsClampedAtTheRoot) {
  auto st =
      Extract(BuildTar({File("../outside/victim", "pwned"), File("a/../../../../outside/sub/other", "pwned"),
                        File("../../../../../../" + outside_.substr(1) + "/new", "pwned"), Dir("..")}));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(Read("outside/victim"), "pwned");
  EXPECT_EQ(Read("outside/sub/other"), "pwned");
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, SymlinkThenFileThroughItStaysInside) {
  for (const std::string& target :
       {outside_, std::string("../outside"), std::string("../../../../") + outside_}) {
    auto st = Extract(
        BuildTar({Symlink("evil", target), File("evil/victim", "pwned"), File("evil/planted", "pwned")}));
    // Either refused or written under the root; never outside.
    if (st.ok()) {
      EXPECT_FALSE(PathExists(outside_ + "/planted"));
    }
    ExpectOutsideUnchanged();
    ASSERT_TRUE(RemoveAll(root_).ok());
    ASSERT_TRUE(MkdirAll(root_).ok());
  }
  // A symlink to "/" makes later paths resolve inside the root.
  auto st = Extract(BuildTar({Symlink("up", "/"), File("up/" + outside_.substr(1) + "/victim", "pwned")}));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(Read(outside_.substr(1) + "/victim"), "pwned");
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, FileReplacesSymlinkInsteadOfWritingThroughIt) {
  auto st = Extract(BuildTar({Symlink("link", outside_ + "/victim"), File("link", "pwned")}));
  ASSERT_TRUE(st.ok()) << st.status();
  struct stat s;
  ASSERT_EQ(::lstat((root_ + "/link").c_str(), &s), 0);
  EXPECT_TRUE(S_ISREG(s.st_mode));
  EXPECT_EQ(Read("link"), "pwned");
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, HardlinkEscapesFail) {
  auto a = Extract(BuildTar({Hardlink("hl", "../outside/victim")}));
  EXPECT_FALSE(a.ok());
  auto b = Extract(BuildTar({Hardlink("hl", outside_ + "/victim")}));
  EXPECT_FALSE(b.ok());
  auto c = Extract(BuildTar({Symlink("s", outside_), Hardlink("hl", "s/victim")}));
  EXPECT_FALSE(c.ok());
  // A hardlink to a symlink links the symlink itself; writing the name
  // afterwards replaces it rather than writing through.
  auto d =
      Extract(BuildTar({Symlink("s2", outside_ + "/victim"), Hardlink("h2", "s2"), File("h2", "pwned")}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(Read("h2"), "pwned");
  // A hardlink to a directory is refused.
  auto e = Extract(BuildTar({Dir("d"), Hardlink("hd", "d")}));
  EXPECT_FALSE(e.ok());
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, SymlinkSwapMidArchiveStaysInside) {
  // The directory is replaced by a symlink pointing out, then used again.
  auto st = Extract(BuildTar({Dir("d"), File("d/a", "a"), Symlink("d", outside_), File("d/b", "pwned"),
                              File("d/victim", "pwned"), Dir("d/sub"), File("d/sub/other", "pwned")}));
  if (st.ok()) {
    EXPECT_FALSE(PathExists(outside_ + "/b"));
  }
  ExpectOutsideUnchanged();
  ASSERT_TRUE(RemoveAll(root_).ok());
  ASSERT_TRUE(MkdirAll(root_).ok());
  // Same through a relative link and a deeper parent that was cached.
  st = Extract(BuildTar({Dir("x"), Dir("x/y"), File("x/y/1", "1"), Symlink("x", "../outside"),
                         File("x/y/2", "pwned"), File("x/victim", "pwned")}));
  if (st.ok()) {
    EXPECT_FALSE(PathExists(outside_ + "/y"));
  }
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, HugePaxHeadersFailCleanly) {
  // A 1 MiB path through a PAX header.
  TarEntry long_path = File("short", "pwned");
  long_path.pax = {{"path", std::string(1 << 20, 'a')}};
  auto a = Extract(BuildTar({long_path}));
  EXPECT_FALSE(a.ok());
  if (!a.ok()) {
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
  }
  // A huge xattr value.
  TarEntry big_xattr = File("f", "x");
  big_xattr.pax = {{"SCHILY.xattr.user.big", std::string(4 << 20, 'v')}};
  auto b = Extract(BuildTar({big_xattr}));
  EXPECT_FALSE(b.ok());
  // A PAX header declaring far more data than the stream has.
  std::string tar = BuildTar({File("x", "y")});
  std::string hdr(512, '\0');
  std::memcpy(hdr.data(), "PaxHeaders/huge", 15);
  std::snprintf(hdr.data() + 100, 8, "%07o", 0644);
  std::snprintf(hdr.data() + 124, 12, "%011o", 07777777777);
  hdr[156] = 'x';
  std::memcpy(hdr.data() + 257, "ustar", 6);
  std::memcpy(hdr.data() + 263, "00", 2);
  std::memset(hdr.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : hdr) sum += c;
  std::snprintf(hdr.data() + 148, 8, "%06o", sum);
  hdr[155] = ' ';
  auto c = Extract(hdr + std::string(4096, '1'));
  EXPECT_FALSE(c.ok());
  // A long-but-legal path (PATH_MAX) through PAX works and stays inside.
  TarEntry ok_long = File("ignored", "deep");
  std::string p;
  while (p.size() < 3000) p += "component-0123456789/";
  p += "leaf";
  ok_long.pax = {{"path", p}};
  auto d = Extract(BuildTar({ok_long}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(Read(p), "deep");
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, GarbageAndTruncationFail) {
  EXPECT_FALSE(Extract(std::string(2048, 'x')).ok());
  std::string tar = BuildTar({File("a", std::string(5000, 'a'))});
  auto st = Extract(tar.substr(0, 1500));
  EXPECT_FALSE(st.ok());
  auto empty = Extract(BuildTar({}));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->entries, 0u);
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, ReplacingEntries) {
  auto st = Extract(
      BuildTar({Dir("a"), File("a/inner", "1"), File("a", "now a file"), File("b", "file"), Dir("b"),
                File("b/x", "x"), File("c", "first"), File("c", "second"), Dir("d", 0700), Dir("d", 0755)}));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(Read("a"), "now a file");
  EXPECT_EQ(Read("b/x"), "x");
  EXPECT_EQ(Read("c"), "second");
  struct stat s;
  ASSERT_EQ(::lstat((root_ + "/d").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0755u);
}

TEST_F(UnpackTest, RootEntryAppliesToTheLayerRoot) {
  auto st = Extract(BuildTar({Dir("./", 0711), File("./f", "x")}));
  ASSERT_TRUE(st.ok()) << st.status();
  struct stat s;
  ASSERT_EQ(::lstat(root_.c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0711u);
  EXPECT_FALSE(Extract(BuildTar({File(".", "x")})).ok());
  EXPECT_FALSE(Extract(BuildTar({Symlink("/", "/etc")})).ok());
}

TEST_F(UnpackTest, SparseFilesKeepTheirHoles) {
  // GNU PAX sparse 1.0: "hello" at 0, "world" at 3 MiB, a hole to 4 MiB.
  const int64_t size = 4 << 20, second = 3 << 20;
  std::string body = PadBlock(absl::StrCat("2\n0\n5\n", second, "\n5\n")) + "helloworld";
  std::string tar = PaxHeader({{"GNU.sparse.major", "1"},
                               {"GNU.sparse.minor", "0"},
                               {"GNU.sparse.name", "dir/sparse"},
                               {"GNU.sparse.realsize", std::to_string(size)}}) +
                    HeaderBlock("dir/GNUSparseFile.1/sparse", '0', static_cast<int64_t>(body.size())) +
                    PadBlock(body) + std::string(1024, '\0');
  auto st = Extract(tar);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->content_bytes, static_cast<uint64_t>(size));
  std::string want(static_cast<size_t>(size), '\0');
  want.replace(0, 5, "hello");
  want.replace(static_cast<size_t>(second), 5, "world");
  EXPECT_TRUE(Read("dir/sparse") == want);
  struct stat s;
  ASSERT_EQ(::lstat((root_ + "/dir/sparse").c_str(), &s), 0);
  EXPECT_EQ(s.st_size, size);
  EXPECT_LT(s.st_blocks * 512, 1 << 20) << "the holes were written out";
  EXPECT_FALSE(PathExists(root_ + "/dir/GNUSparseFile.1"));
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, GlobalPaxHeadersApply) {
  std::string tar = PaxHeader({{"mtime", "1234567890.5"}, {"comment", "from git archive"}}, 'g');
  std::string rest = BuildTar({File("a", "x"), Dir("d")});
  auto st = Extract(tar + rest);
  ASSERT_TRUE(st.ok()) << st.status();
  for (const char* p : {"a", "d"}) {
    struct stat s;
    ASSERT_EQ(::lstat((root_ + "/" + p).c_str(), &s), 0) << p;
    EXPECT_EQ(s.st_mtim.tv_sec, 1234567890) << p;
    EXPECT_EQ(s.st_mtim.tv_nsec, 500000000) << p;
  }
}

TEST_F(UnpackTest, UnknownTypesAndEarlyZeroBlocksFail) {
  // Entry types tar cannot restore are refused rather than made files.
  std::string dumpdir = HeaderBlock("d", 'D', 0) + std::string(1024, '\0');
  auto a = Extract(dumpdir);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("unsupported entry type 'D'"), absl::string_view::npos) << a.status();
  // A lone zero block followed by more entries is not an end of archive
  // that silently drops them (Go's reader refuses it too).
  std::string one = BuildTar({File("first", "1")});
  std::string two = BuildTar({File("second", "2")});
  auto b = Extract(one.substr(0, one.size() - 512) + two);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  ExpectOutsideUnchanged();
}

TEST_F(UnpackTest, StreamErrorsPassThroughUnchanged) {
  // A source that fails in the middle of a file's data.
  class Failing : public ByteSource {
   public:
    explicit Failing(std::string data) : data_(std::move(data)) {}
    absl::StatusOr<size_t> Read(char* buf, size_t n) override {
      if (off_ >= 3000) return absl::DataLossError("gzip: bad CRC");
      size_t k = std::min({n, size_t{1000}, data_.size() - off_});
      std::memcpy(buf, data_.data() + off_, k);
      off_ += k;
      return k;
    }

   private:
    std::string data_;
    size_t off_ = 0;
  };
  Failing src(BuildTar({File("f", std::string(10000, 'f'))}));
  ExtractOptions o;
  o.preserve_owner = IsRoot();
  auto st = ExtractTar(src, root_, o);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(st.status().message(), "layer entry \"f\": gzip: bad CRC");
  // The reader's own verdict is INVALID_ARGUMENT and says where it was.
  auto bad = Extract(BuildTar({File("g", std::string(10000, 'g'))}).substr(0, 3000));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message().find("layer entry \"g\": reading file data: tar archive truncated"), 0u)
      << bad.status();
}

// ---- streams -----------------------------------------------------------------

std::string ReadAll(ByteSource& s, size_t chunk = 4096, size_t max = SIZE_MAX) {
  std::string out(chunk, '\0'), all;
  while (all.size() < max) {
    auto n = s.Read(out.data(), out.size());
    if (!n.ok() || *n == 0) break;
    all.append(out.data(), *n);
  }
  return all;
}

TEST(StreamTest, DecompressesAndHashes) {
  std::string data;
  for (int i = 0; i < 20000; ++i) data += std::to_string(i * 7919) + "\n";
  for (const std::string& blob :
       {Gzip(data), Zstd(data), data, Gzip(data.substr(0, 1000)) + Gzip(data.substr(1000)),
        Zstd(data.substr(0, 5)) + Zstd(data.substr(5))}) {
    StringSource src(blob);
    Sha256 h;
    DecompressingSource d(&src, &h);
    EXPECT_EQ(ReadAll(d, 777), data);
    ASSERT_TRUE(d.Drain().ok());
    EXPECT_EQ(h.Finish(), Sha256Digest(data));
  }
}

TEST(StreamTest, CorruptOrTruncatedCompressionIsDataLoss) {
  std::string data(100000, 'z');
  for (const std::string& blob : {Gzip(data).substr(0, 50), Zstd(data).substr(0, 8)}) {
    StringSource src(blob);
    DecompressingSource d(&src, nullptr);
    absl::Status s = d.Drain();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
  std::string g = Gzip(data);
  g[20] ^= 0x55;
  StringSource src(g);
  DecompressingSource d(&src, nullptr);
  EXPECT_FALSE(d.Drain().ok());
}

// Hands out its data `step` bytes at a time, so that a decompressor's state
// crosses every kind of boundary (header, block, trailer, next member).
class TrickleSource : public ByteSource {
 public:
  TrickleSource(std::string data, size_t step) : data_(std::move(data)), step_(step) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min({n, step_, data_.size() - off_});
    std::memcpy(buf, data_.data() + off_, k);
    off_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t step_, off_ = 0;
};

TEST(StreamTest, GzipMembersPaddingAndSmallReads) {
  std::string data;
  for (int64_t i = 0; i < 30000; ++i) data += std::to_string(i * 104729) + (i % 7 ? " " : "\n");
  const std::string two = Gzip(data.substr(0, 70000)) + Gzip(data.substr(70000));
  for (const std::string& blob : {two, Gzip(data) + std::string(1024, '\0'), two + std::string(10, '\0')}) {
    for (size_t step : {size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20}) {
      TrickleSource src(blob, step);
      Sha256 h;
      DecompressingSource d(&src, &h);
      std::string got = ReadAll(d, step == 1 ? 3 : 65536, data.size() + 10);
      EXPECT_TRUE(got == data) << "blob " << blob.size() << " step " << step << " got " << got.size();
      ASSERT_TRUE(d.Drain().ok());
      EXPECT_EQ(h.Finish(), Sha256Digest(data));
    }
  }
}

TEST(StreamTest, GzipTrailerIsChecked) {
  std::string data(200000, 'q');
  for (size_t i = 0; i < data.size(); i += 3) data[i] = static_cast<char>('a' + i % 23);
  const std::string g = Gzip(data);
  std::string bad_crc = g, bad_len = g;
  bad_crc[g.size() - 8] ^= 0x01;  // CRC32 of the member
  bad_len[g.size() - 4] ^= 0x01;  // ISIZE of the member
  for (const std::string& blob : {bad_crc, bad_len, g.substr(0, g.size() - 8), g.substr(0, g.size() - 1)}) {
    TrickleSource src(blob, 1000);
    DecompressingSource d(&src, nullptr);
    absl::Status s = d.Drain();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
}

TEST(StreamTest, BoundedPipe) {
  BoundedPipe p(10);
  std::string got;
  std::thread reader([&] { got = ReadAll(p, 3); });
  std::string data;
  for (int i = 0; i < 1000; ++i) data += char('a' + i % 26);
  ASSERT_TRUE(p.Write(data).ok());
  p.CloseWrite(absl::OkStatus());
  reader.join();
  EXPECT_EQ(got, data);

  BoundedPipe q(4);
  std::thread writer([&] { EXPECT_EQ(q.Write(std::string(100, 'x')).code(), absl::StatusCode::kCancelled); });
  char buf[2];
  ASSERT_TRUE(q.Read(buf, 2).ok());
  q.CloseRead();
  writer.join();

  BoundedPipe e(4);
  e.CloseWrite(absl::DataLossError("bad"));
  EXPECT_EQ(e.Read(buf, 2).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace crisp::images
