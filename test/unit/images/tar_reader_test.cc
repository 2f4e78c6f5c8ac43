// The tar reader on its own: every format it accepts, from our test writer,
// from raw headers and from GNU tar run at test time (all of v7, ustar, GNU,
// PAX, sparse files, xattrs, base-256 numbers), and hostile or truncated
// archives, which must fail with INVALID_ARGUMENT or yield a consistent
// prefix of the entries, never crash.
#include "images/tar_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/stream.h"
#include "test/testing/temp_dir.h"
#include "test/unit/images/test_support.h"

namespace crisp::images {
namespace {

namespace tt = crisp::images::tartest;
using ::testing::HasSubstr;

// Hands out `data` at most `step` bytes a call; with `fail_at`, fails with
// `error` once that many bytes were handed out.
class PieceSource : public ByteSource {
 public:
  PieceSource(std::string data, size_t step = SIZE_MAX, size_t fail_at = SIZE_MAX,
              absl::Status error = absl::OkStatus())
      : data_(std::move(data)), step_(step), fail_at_(fail_at), error_(std::move(error)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    if (off_ >= fail_at_) return error_;
    size_t k = std::min({n, step_, data_.size() - off_, fail_at_ - off_});
    std::memcpy(buf, data_.data() + off_, k);
    off_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t step_, fail_at_, off_ = 0;
  absl::Status error_;
};

struct Got {
  TarHeader h;
  std::string data;  // the logical content, holes as zeros
  std::vector<std::pair<int64_t, size_t>> chunks;
};

// Reads every entry and all of its data into `out` (an entry whose data
// fails is left out), checking the chunk contract on the way.
absl::Status ReadAll(ByteSource& src, std::vector<Got>* out, size_t buffer = TarReader::kDefaultBufferSize,
                     size_t max_chunk = SIZE_MAX) {
  TarReader r(src, buffer);
  while (true) {
    absl::StatusOr<const TarHeader*> h = r.Next();
    if (!h.ok()) return h.status();
    if (*h == nullptr) break;
    Got g;
    g.h = **h;
    int64_t next = 0;
    while (true) {
      absl::StatusOr<TarChunk> c = r.Read(max_chunk);
      if (!c.ok()) return c.status();
      if (c->data.empty()) break;
      size_t len = c->data.size();
      EXPECT_LE(len, max_chunk);
      EXPECT_GE(c->offset, next) << g.h.path << ": chunks must not go back or overlap";
      if (!g.h.sparse) {
        EXPECT_EQ(c->offset, next) << g.h.path << ": a plain file's chunks are contiguous";
      }
      EXPECT_LE(c->offset + static_cast<int64_t>(len), g.h.size) << g.h.path;
      if (c->offset + static_cast<int64_t>(len) > g.h.size) return absl::InternalError("chunk past the size");
      size_t off = static_cast<size_t>(c->offset);
      if (g.data.size() < off + len) g.data.resize(off + len, '\0');
      g.data.replace(off, len, c->data.data(), len);
      g.chunks.emplace_back(c->offset, len);
      next = c->offset + static_cast<int64_t>(len);
    }
    if (g.h.type != TarType::kRegular) {
      EXPECT_TRUE(g.chunks.empty()) << g.h.path;
    }
    if (g.h.size > (int64_t{1} << 30)) return absl::InternalError("size too large for a test");
    g.data.resize(static_cast<size_t>(g.h.size), '\0');
    out->push_back(std::move(g));
  }
  absl::StatusOr<const TarHeader*> again = r.Next();  // the end stays the end
  EXPECT_TRUE(again.ok() && *again == nullptr);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Got>> Read(const std::string& tar, size_t step = SIZE_MAX,
                                      size_t buffer = TarReader::kDefaultBufferSize) {
  PieceSource src(tar, step);
  std::vector<Got> out;
  RETURN_IF_ERROR(ReadAll(src, &out, buffer));
  return out;
}

// `tar` must be refused as malformed, saying `what`.
void ExpectInvalid(const std::string& tar, const std::string& what) {
  auto r = Read(tar);
  ASSERT_FALSE(r.ok()) << "accepted; wanted an error saying: " << what;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(what));
}

const std::string kEnd(1024, '\0');

std::string FileEntry(const std::string& name, const std::string& data, char type = '0') {
  return tt::HeaderBlock(name, type, static_cast<int64_t>(data.size())) + tt::PadBlock(data);
}

// Turns a ustar header into an old GNU one ("ustar  \0").
void MakeGnu(std::string& blk) {
  std::memcpy(blk.data() + 257, "ustar  ", 8);  // with its NUL
  tt::FixChecksum(blk);
}

// ---- our writer ------------------------------------------------------------

TEST(TarReaderTest, EveryTypeAndFieldFromOurWriter) {
  tt::TarEntry dir = tt::Dir("d", 0750);
  dir.uid = 1000;
  dir.gid = 1001;
  tt::TarEntry suid = tt::File("d/f", "hello", 04755);
  suid.mtime = 1234567890;
  suid.mtime_nsec = 5;
  tt::TarEntry cdev;
  cdev.type = 'c';
  cdev.path = "dev/null";
  cdev.mode = 0666;
  cdev.dev_major = 1;
  cdev.dev_minor = 3;
  tt::TarEntry bdev = cdev;
  bdev.type = 'b';
  bdev.path = "dev/sda";
  bdev.dev_major = 8;
  bdev.dev_minor = 1;
  tt::TarEntry fifo;
  fifo.type = 'p';
  fifo.path = "run/fifo";
  fifo.mode = 0600;
  tt::TarEntry xa = tt::File("x", "data");
  xa.xattrs = {{"user.a", "1"}, {"user.bin", std::string("\0\xff\n", 3)}};
  const std::string long150 = std::string(60, 'a') + "/" + std::string(89, 'b');
  const std::string long300 =
      std::string(100, 'c') + "/" + std::string(100, 'd') + "/" + std::string(98, 'e');
  tt::TarEntry big_ids = tt::File("ids", "");
  big_ids.uid = 3000000000;
  big_ids.gid = 4000000000;
  big_ids.mtime = -100;
  std::string tar = tt::BuildTar({dir, suid, tt::Symlink("d/s", "f"), tt::Hardlink("d/h", "d/f"), cdev, bdev,
                                  fifo, xa, tt::File(long150, "150"), tt::File(long300, "300"),
                                  tt::Symlink("longlink", std::string(200, 't')), big_ids});
  auto got = Read(tar);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 12u);
  const auto& g = *got;
  EXPECT_EQ(g[0].h.type, TarType::kDirectory);
  EXPECT_EQ(g[0].h.path, "d");
  EXPECT_EQ(g[0].h.mode, 0750u);
  EXPECT_EQ(g[0].h.uid, 1000);
  EXPECT_EQ(g[0].h.gid, 1001);
  EXPECT_EQ(g[0].h.size, 0);
  EXPECT_EQ(g[1].h.type, TarType::kRegular);
  EXPECT_EQ(g[1].h.mode, 04755u);
  EXPECT_EQ(g[1].data, "hello");
  EXPECT_EQ(g[1].h.mtime.tv_sec, 1234567890);
  EXPECT_EQ(g[1].h.mtime.tv_nsec, 5);
  EXPECT_FALSE(g[1].h.has_atime);
  EXPECT_EQ(g[2].h.type, TarType::kSymlink);
  EXPECT_EQ(g[2].h.link, "f");
  EXPECT_EQ(g[3].h.type, TarType::kHardlink);
  EXPECT_EQ(g[3].h.link, "d/f");
  EXPECT_EQ(g[4].h.type, TarType::kCharDevice);
  EXPECT_EQ(g[4].h.dev_major, 1);
  EXPECT_EQ(g[4].h.dev_minor, 3);
  EXPECT_EQ(g[5].h.type, TarType::kBlockDevice);
  EXPECT_EQ(g[5].h.dev_major, 8);
  EXPECT_EQ(g[6].h.type, TarType::kFifo);
  EXPECT_EQ(g[6].h.mode, 0600u);
  ASSERT_EQ(g[7].h.xattrs.size(), 2u);
  EXPECT_EQ(g[7].h.xattrs[0].name, "user.a");
  EXPECT_EQ(g[7].h.xattrs[0].value, "1");
  EXPECT_EQ(g[7].h.xattrs[1].name, "user.bin");
  EXPECT_EQ(g[7].h.xattrs[1].value, std::string("\0\xff\n", 3));
  EXPECT_EQ(g[8].h.path, long150);
  EXPECT_EQ(g[8].data, "150");
  EXPECT_EQ(g[9].h.path, long300);
  EXPECT_EQ(g[10].h.link, std::string(200, 't'));
  EXPECT_EQ(g[11].h.uid, 3000000000);
  EXPECT_EQ(g[11].h.gid, 4000000000);
  EXPECT_EQ(g[11].h.mtime.tv_sec, -100);
}

TEST(TarReaderTest, EndOfArchive) {
  std::string one = tt::BuildTar({tt::File("a", "x")});
  std::string body = one.substr(0, one.size() - 1024);
  for (const std::string& ok :
       {std::string(), kEnd, std::string(512, '\0'), body, body + std::string(512, '\0'),
        body + kEnd + "trailing junk is never looked at"}) {
    auto got = Read(ok);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->size(), ok.empty() || ok[0] == '\0' ? 0u : 1u);
  }
  // The reader stops right after the marker.
  PieceSource src(body + kEnd + std::string(4096, 'j'));
  TarReader r(src);
  ASSERT_TRUE(r.Next().ok());
  auto end = r.Next();
  ASSERT_TRUE(end.ok() && *end == nullptr);
  EXPECT_EQ(r.offset(), body.size() + 1024);

  ExpectInvalid(body + std::string(512, '\0') + body, "zero block followed by a header");
  ExpectInvalid(body + std::string(512, '\0') + std::string(100, '\0'), "truncated");
  ExpectInvalid(body + std::string(300, '\0'), "truncated");
}

// ---- header fields -------------------------------------------------------

TEST(TarReaderTest, ChecksumsAndNumericFields) {
  const std::string good = FileEntry("f", "abc") + kEnd;
  ASSERT_TRUE(Read(good).ok());
  std::string bad = good;
  bad[0] = 'g';  // checksum not updated
  ExpectInvalid(bad, "checksum");
  bad = good;
  std::memcpy(bad.data() + 148, "zz", 2);
  ExpectInvalid(bad, "checksum");

  // Old tars summed signed chars: bytes >= 0x80 make the two sums differ.
  std::string high = tt::HeaderBlock("\xe9t\xe9", '0', 3);
  tt::FixChecksum(high, /*signed_sum=*/true);
  auto got = Read(high + tt::PadBlock("abc") + kEnd);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].h.path, "\xe9t\xe9");

  // Octal forms: leading spaces, space or NUL terminated, no terminator.
  for (const char* size : {"         3 ", "3", "00000000003 ", "  3\0\0\0\0\0\0\0\0", "000000000003"}) {
    std::string h = tt::HeaderBlock("f", '0', 0);
    std::memset(h.data() + 124, 0, 12);
    std::memcpy(h.data() + 124, size, std::min<size_t>(12, std::strlen(size)));
    tt::FixChecksum(h);
    auto r = Read(h + tt::PadBlock("abc") + kEnd);
    ASSERT_TRUE(r.ok()) << "size field \"" << size << "\": " << r.status();
    EXPECT_EQ((*r)[0].data, "abc") << size;
  }
  for (const char* size : {"12a", "1 2", "9", "-1"}) {
    std::string h = tt::HeaderBlock("f", '0', 0);
    std::memset(h.data() + 124, 0, 12);
    std::memcpy(h.data() + 124, size, std::strlen(size));
    tt::FixChecksum(h);
    ExpectInvalid(h + tt::PadBlock("abc") + kEnd, "size field");
  }

  // GNU base-256: size, uid, a negative mtime; too large for int64: refused.
  std::string b = tt::HeaderBlock("f", '0', 0);
  tt::SetBase256(b, 124, 12, 3);
  tt::SetBase256(b, 108, 8, 3000000000);
  tt::SetBase256(b, 136, 12, -1000);
  tt::FixChecksum(b);
  got = Read(b + tt::PadBlock("abc") + kEnd);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].data, "abc");
  EXPECT_EQ((*got)[0].h.uid, 3000000000);
  EXPECT_EQ((*got)[0].h.mtime.tv_sec, -1000);
  std::string huge = tt::HeaderBlock("f", '0', 0);
  huge[124] = static_cast<char>(0x80);
  std::memset(huge.data() + 125, 0x7f, 11);
  tt::FixChecksum(huge);
  ExpectInvalid(huge + kEnd, "size field");
  std::string neg = tt::HeaderBlock("f", '0', 0);
  tt::SetBase256(neg, 124, 12, -1);
  tt::FixChecksum(neg);
  ExpectInvalid(neg + kEnd, "negative size");
  std::string mode = tt::HeaderBlock("f", '0', 0);
  std::memcpy(mode.data() + 100, "07x4", 4);
  tt::FixChecksum(mode);
  ExpectInvalid(mode + kEnd, "mode field");
  // Unused numeric fields must still parse (as in Go).
  std::string dev = tt::HeaderBlock("f", '0', 0);
  std::memcpy(dev.data() + 329, "zz", 2);
  tt::FixChecksum(dev);
  ExpectInvalid(dev + kEnd, "device number");
}

TEST(TarReaderTest, TypesAndTheirData) {
  for (char type : {'V', 'D', 'N', 'M', 'X', 'A', '8', '\x01'}) {
    std::string t = FileEntry("thing", "", type) + kEnd;
    auto r = Read(t);
    ASSERT_FALSE(r.ok()) << "type " << int(type);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("unsupported entry type"));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"thing\""));
  }
  ExpectInvalid(FileEntry("v", "", 'V') + kEnd, "'V'");
  ExpectInvalid(FileEntry("x", "", '\x01') + kEnd, "0x01");

  // '7' is a regular file; '\0' too, or a directory when the name ends in '/'.
  auto got = Read(FileEntry("c", "cont", '7') + FileEntry("old", "v7", '\0') +
                  FileEntry("olddir/", "", '\0') + kEnd);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].h.type, TarType::kRegular);
  EXPECT_EQ((*got)[0].data, "cont");
  EXPECT_EQ((*got)[1].h.type, TarType::kRegular);
  EXPECT_EQ((*got)[1].data, "v7");
  EXPECT_EQ((*got)[2].h.type, TarType::kDirectory);

  // Types '1'-'6' have no data whatever their size field says.
  std::string t;
  for (char type : {'1', '2', '3', '4', '5', '6'})
    t += tt::HeaderBlock(std::string("h") + type, type, 1000, 0644, "x");
  got = Read(t + FileEntry("after", "data") + kEnd);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 7u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ((*got)[i].h.size, 0) << i;
  }
  EXPECT_EQ((*got)[6].data, "data");

  // Device numbers beyond 32 bits are refused; the header's are replaced by
  // star's PAX records.
  std::string dev = tt::HeaderBlock("dev", '3', 0);
  tt::SetBase256(dev, 329, 8, int64_t{1} << 32);
  tt::FixChecksum(dev);
  ExpectInvalid(dev + kEnd, "device number");
  ExpectInvalid(tt::PaxHeader({{"SCHILY.devminor", "-1"}}) + tt::HeaderBlock("dev", '4', 0) + kEnd,
                "device number");
  got = Read(tt::PaxHeader({{"SCHILY.devmajor", "259"}, {"SCHILY.devminor", "65536"}}) +
             tt::HeaderBlock("dev", '4', 0) + kEnd);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].h.dev_major, 259);
  EXPECT_EQ((*got)[0].h.dev_minor, 65536);
}

TEST(TarReaderTest, PrefixAndTimeFieldsPerFormat) {
  // ustar: prefix + "/" + name.
  std::string us = tt::HeaderBlock("c", '0', 0);
  std::memcpy(us.data() + 345, "a/b", 3);
  std::memcpy(us.data() + 265, "user", 4);
  tt::FixChecksum(us);
  // v7 (no magic): the prefix area and user names are not fields.
  std::string v7 = us;
  std::memset(v7.data() + 257, 0, 8);
  tt::FixChecksum(v7);
  // star: a 131-byte prefix, then atime.
  std::string star = tt::HeaderBlock("c", '0', 0);
  std::memcpy(star.data() + 345, "p", 1);
  tt::SetOctal(star, 476, 12, 1600000000);
  std::memcpy(star.data() + 508, "tar", 4);
  tt::FixChecksum(star);
  // GNU: atime where the prefix would be.
  std::string gnu = tt::HeaderBlock("c", '0', 0);
  tt::SetOctal(gnu, 345, 12, 1500000000);
  MakeGnu(gnu);
  // GNU magic with a prefix in it (Go < 1.8 wrote those): read as a prefix.
  std::string go17 = tt::HeaderBlock("c", '0', 0);
  std::memcpy(go17.data() + 345, "x/y", 3);
  MakeGnu(go17);
  auto got = Read(us + v7 + star + gnu + go17 + kEnd);
  ASSERT_TRUE(got.ok()) << got.status();
  const auto& g = *got;
  EXPECT_EQ(g[0].h.path, "a/b/c");
  EXPECT_EQ(g[0].h.uname, "user");
  EXPECT_EQ(g[1].h.path, "c");
  EXPECT_EQ(g[1].h.uname, "");
  EXPECT_EQ(g[2].h.path, "p/c");
  EXPECT_TRUE(g[2].h.has_atime);
  EXPECT_EQ(g[2].h.atime.tv_sec, 1600000000);
  EXPECT_EQ(g[3].h.path, "c");
  EXPECT_TRUE(g[3].h.has_atime);
  EXPECT_EQ(g[3].h.atime.tv_sec, 1500000000);
  EXPECT_EQ(g[4].h.path, "x/y/c");
  EXPECT_FALSE(g[4].h.has_atime);
}

// ---- PAX -------------------------------------------------------------------

TEST(TarReaderTest, PaxRecords) {
  const std::string long300 = std::string(150, 'p') + "/" + std::string(149, 'q');
  std::string tar = tt::PaxHeader({{"path", long300},
                                   {"uid", "5000000000"},
                                   {"gid", "7"},
                                   {"uname", "alice"},
                                   {"gname", "staff"},
                                   {"mtime", "1700000000.123456789999"},
                                   {"atime", "-1.5"},
                                   {"size", "5"},
                                   {"comment", "ignored"},
                                   {"ctime", "not looked at"},
                                   {"hdrcharset", "BINARY"},
                                   {"SCHILY.xattr.user.a", std::string("v\0x", 3)},
                                   {"LIBARCHIVE.xattr.user.a", absl::Base64Escape("loses to SCHILY")},
                                   {"LIBARCHIVE.xattr.user.b%3Dc%", "YmluAP8"},  // "bin\0\xff", unpadded
                                   {"SCHILY.xattr.user.empty", ""}}) +
                    tt::HeaderBlock("short", '0', 0) + tt::PadBlock("12345") +
                    tt::PaxHeader({{"linkpath", std::string(120, 'l')}, {"path", ""}, {"mtime", "-0.25"}}) +
                    tt::HeaderBlock("link", '2', 0, 0777, "x") +
                    // A second 'x' replaces the first; NUL padding after records is fine.
                    tt::PaxHeader({{"path", "dropped"}}) +
                    FileEntry("PaxHeaders/y", tt::PaxRecord("uid", "3") + std::string(9, '\0'), 'x') +
                    tt::HeaderBlock("plain", '0', 0) + kEnd;
  auto got = Read(tar);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  const TarHeader& h = (*got)[0].h;
  EXPECT_EQ(h.path, long300);
  EXPECT_EQ(h.uid, 5000000000);
  EXPECT_EQ(h.gid, 7);
  EXPECT_EQ(h.uname, "alice");
  EXPECT_EQ(h.gname, "staff");
  EXPECT_EQ(h.mtime.tv_sec, 1700000000);
  EXPECT_EQ(h.mtime.tv_nsec, 123456789);
  EXPECT_TRUE(h.has_atime);
  EXPECT_EQ(h.atime.tv_sec, -2);
  EXPECT_EQ(h.atime.tv_nsec, 500000000);
  EXPECT_EQ((*got)[0].data, "12345");
  ASSERT_EQ(h.xattrs.size(), 3u);
  EXPECT_EQ(h.xattrs[0].name, "user.a");
  EXPECT_EQ(h.xattrs[0].value, std::string("v\0x", 3));
  EXPECT_EQ(h.xattrs[1].name, "user.b=c%");
  EXPECT_EQ(h.xattrs[1].value, std::string("bin\0\xff", 5));
  EXPECT_EQ(h.xattrs[2].name, "user.empty");
  EXPECT_EQ(h.xattrs[2].value, "");
  const TarHeader& l = (*got)[1].h;
  EXPECT_EQ(l.path, "link");  // an empty value keeps the header's field
  EXPECT_EQ(l.link, std::string(120, 'l'));
  EXPECT_EQ(l.mtime.tv_sec, -1);
  EXPECT_EQ(l.mtime.tv_nsec, 750000000);
  EXPECT_EQ((*got)[2].h.path, "plain");
  EXPECT_EQ((*got)[2].h.uid, 3);
}

TEST(TarReaderTest, MalformedPaxIsRefused) {
  auto with_data = [](const std::string& data) {
    return tt::HeaderBlock("PaxHeaders/f", 'x', static_cast<int64_t>(data.size())) + tt::PadBlock(data) +
           tt::HeaderBlock("f", '0', 0) + kEnd;
  };
  ExpectInvalid(with_data("abc"), "record length");
  ExpectInvalid(with_data("3 a=\n"), "record length");
  ExpectInvalid(with_data("99 a=b\n"), "record length");
  ExpectInvalid(with_data("+7 a=b\n"), "record length");
  ExpectInvalid(with_data("6 a=bc\n"), "newline");
  ExpectInvalid(with_data("6 abc\n"), "'='");
  ExpectInvalid(with_data("6 =bc\n"), "key");
  ExpectInvalid(with_data(tt::PaxRecord(std::string("a\0b", 3), "v")), "key");
  ExpectInvalid(with_data(tt::PaxRecord("path", std::string("a\0b", 3))), "NUL");
  ExpectInvalid(with_data(tt::PaxRecord("linkpath", std::string("\0", 1))), "NUL");
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{{"uid", "12x"},
                                                                             {"uid", "99999999999999999999"},
                                                                             {"gid", " 1"},
                                                                             {"size", "1e3"},
                                                                             {"mtime", "1.2x"},
                                                                             {"mtime", "x.5"},
                                                                             {"atime", "--1"},
                                                                             {"SCHILY.devmajor", "1.0"}}) {
    ExpectInvalid(with_data(tt::PaxRecord(k, v)), "bad PAX " + k);
  }
  ExpectInvalid(with_data(tt::PaxRecord("size", "-1")), "negative size");
  ExpectInvalid(with_data(tt::PaxRecord("SCHILY.xattr.", "v")), "without a name");
  ExpectInvalid(with_data(tt::PaxRecord("LIBARCHIVE.xattr.user.x", "!!!")), "LIBARCHIVE.xattr");
  ExpectInvalid(with_data(tt::PaxRecord("LIBARCHIVE.xattr.user%00x", "dg==")), "LIBARCHIVE.xattr");
  ExpectInvalid(with_data(tt::PaxRecord("GNU.sparse.numbytes", "1")), "out of order");

  // Size bounds: refused from the header alone, before reading the data.
  std::string big = tt::HeaderBlock("PaxHeaders/f", 'x', (1 << 20) + 1) + std::string(4096, '1');
  ExpectInvalid(big, "larger than the 1048576 allowed");
  ExpectInvalid(tt::HeaderBlock("././@LongLink", 'L', 2 << 20) + std::string(4096, 'a'), "GNU long name");
  std::string exact = tt::PaxRecord("comment", std::string((1 << 20) - 17, 'c'));
  ASSERT_EQ(exact.size(), size_t{1} << 20);
  EXPECT_TRUE(Read(with_data(exact)).ok());
  // An extension header must be followed by its entry.
  ExpectInvalid(tt::PaxHeader({{"path", "x"}}), "extension header");
  ExpectInvalid(tt::PaxHeader({{"path", "x"}}) + kEnd, "extension header");
  ExpectInvalid(FileEntry("././@LongLink", "name", 'L') + kEnd, "extension header");
}

TEST(TarReaderTest, GlobalHeadersApplyToWhatFollows) {
  std::string tar =
      tt::PaxHeader({{"uid", "7"},
                     {"mtime", "1.5"},
                     {"SCHILY.xattr.user.g", "1"},
                     {"comment", "git archive writes one of these"},
                     {"GNU.sparse.map", "0,1"}},
                    'g') +
      FileEntry("a", "") + tt::PaxHeader({{"uid", "9"}}) + FileEntry("b", "") + tt::PaxHeader({{"uid", ""}}) +
      FileEntry("c", "") +  // a local empty value: the header's 0
      tt::PaxHeader({{"uid", ""}, {"SCHILY.xattr.user.g", "2"}}, 'g') + FileEntry("d", "") + kEnd;
  auto got = Read(tar);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 4u);
  const auto& g = *got;
  EXPECT_EQ(g[0].h.uid, 7);
  EXPECT_EQ(g[0].h.mtime.tv_sec, 1);
  EXPECT_EQ(g[0].h.mtime.tv_nsec, 500000000);
  ASSERT_EQ(g[0].h.xattrs.size(), 1u);
  EXPECT_EQ(g[0].h.xattrs[0].value, "1");
  EXPECT_FALSE(g[0].h.sparse);
  EXPECT_EQ(g[1].h.uid, 9);
  EXPECT_EQ(g[1].h.xattrs.size(), 1u);
  EXPECT_EQ(g[2].h.uid, 0);
  EXPECT_EQ(g[2].h.mtime.tv_nsec, 500000000);
  EXPECT_EQ(g[3].h.uid, 0);  // the global uid was ended
  ASSERT_EQ(g[3].h.xattrs.size(), 1u);
  EXPECT_EQ(g[3].h.xattrs[0].value, "2");
  EXPECT_EQ(g[3].h.mtime.tv_sec, 1);

  // A bad global value fails the next entry; the global total is bounded.
  ExpectInvalid(tt::PaxHeader({{"gid", "x"}}, 'g') + FileEntry("a", "") + kEnd, "bad PAX gid");
  ExpectInvalid(tt::PaxHeader({{"SCHILY.xattr.user.big", std::string(70000, 'v')}}, 'g') + kEnd, "global");
  // A global header alone is a complete (empty) archive.
  auto only = Read(tt::PaxHeader({{"comment", "x"}}, 'g') + kEnd);
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_TRUE(only->empty());
}

TEST(TarReaderTest, GnuLongNamesAndLinks) {
  const std::string name(300, 'n'), target(400, 't');
  std::string tar = FileEntry("././@LongLink", name + std::string("\0garbage", 8), 'L') +
                    FileEntry("././@LongLink", target + std::string(1, '\0'), 'K') +
                    tt::HeaderBlock(name.substr(0, 100), '2', 0, 0777, target.substr(0, 100)) +
                    // The GNU name wins over a PAX path, as in Go.
                    tt::PaxHeader({{"path", "pax"}}) + FileEntry("././@LongLink", "gnu", 'L') +
                    FileEntry("short", "x") + kEnd;
  auto got = Read(tar);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].h.path, name);
  EXPECT_EQ((*got)[0].h.link, target);
  EXPECT_EQ((*got)[0].h.type, TarType::kSymlink);
  EXPECT_EQ((*got)[1].h.path, "gnu");
  EXPECT_EQ((*got)[1].data, "x");
}

// ---- sparse files ------------------------------------------------------------

struct Frag {
  int64_t offset, length;
};
constexpr int64_t kSparseSize = 10000;
const std::vector<Frag> kFrags = {{0, 100}, {4096, 200}, {kSparseSize, 0}};

std::string StoredData(const std::vector<Frag>& frags) {
  std::string s;
  for (size_t i = 0; i < frags.size(); ++i)
    s += std::string(static_cast<size_t>(frags[i].length), char('A' + i % 26));
  return s;
}

std::string Logical(const std::vector<Frag>& frags, int64_t size) {
  std::string s(static_cast<size_t>(size), '\0');
  for (size_t i = 0; i < frags.size(); ++i)
    std::fill_n(s.begin() + frags[i].offset, frags[i].length, char('A' + i % 26));
  return s;
}

// An old GNU sparse entry ('S'), with extension blocks as needed.
std::string OldGnuSparse(const std::string& name, const std::vector<Frag>& frags, int64_t size,
                         const std::string& data) {
  std::string h = tt::HeaderBlock(name, 'S', static_cast<int64_t>(data.size()));
  tt::SetOctal(h, 483, 12, size);
  std::string ext;
  size_t i = 0;
  for (; i < frags.size() && i < 4; ++i) {
    tt::SetOctal(h, 386 + i * 24, 12, frags[i].offset);
    tt::SetOctal(h, 398 + i * 24, 12, frags[i].length);
  }
  if (i < frags.size()) h[482] = 1;
  while (i < frags.size()) {
    std::string b(512, '\0');
    for (size_t j = 0; j < 21 && i < frags.size(); ++j, ++i) {
      tt::SetOctal(b, j * 24, 12, frags[i].offset);
      tt::SetOctal(b, j * 24 + 12, 12, frags[i].length);
    }
    if (i < frags.size()) b[504] = 1;
    ext += b;
  }
  MakeGnu(h);
  return h + ext + tt::PadBlock(data);
}

std::string SparseMapText(const std::vector<Frag>& frags) {
  std::string m = absl::StrCat(frags.size(), "\n");
  for (const Frag& f : frags) absl::StrAppend(&m, f.offset, "\n", f.length, "\n");
  return m;
}

std::string PaxSparse(const std::string& version, const std::vector<Frag>& frags, int64_t size,
                      const std::string& data) {
  std::vector<std::pair<std::string, std::string>> recs;
  std::string body = data;
  if (version == "1.0") {
    recs = {{"GNU.sparse.major", "1"},
            {"GNU.sparse.minor", "0"},
            {"GNU.sparse.name", "real/name"},
            {"GNU.sparse.realsize", std::to_string(size)}};
    body = tt::PadBlock(SparseMapText(frags)) + data;
  } else if (version == "0.1") {
    std::string map;
    for (const Frag& f : frags) absl::StrAppend(&map, map.empty() ? "" : ",", f.offset, ",", f.length);
    recs = {{"GNU.sparse.major", "0"},
            {"GNU.sparse.minor", "1"},
            {"GNU.sparse.name", "real/name"},
            {"GNU.sparse.size", std::to_string(size)},
            {"GNU.sparse.numblocks", std::to_string(frags.size())},
            {"GNU.sparse.map", map}};
  }
  std::string pax;
  if (version == "0.0") {
    // Repeated keys: written by hand since a map cannot hold them.
    std::string d = tt::PaxRecord("GNU.sparse.size", std::to_string(size)) +
                    tt::PaxRecord("GNU.sparse.numblocks", std::to_string(frags.size())) +
                    tt::PaxRecord("GNU.sparse.name", "real/name");
    for (const Frag& f : frags)
      d += tt::PaxRecord("GNU.sparse.offset", std::to_string(f.offset)) +
           tt::PaxRecord("GNU.sparse.numbytes", std::to_string(f.length));
    pax = tt::HeaderBlock("PaxHeaders/s", 'x', static_cast<int64_t>(d.size())) + tt::PadBlock(d);
  } else {
    pax = tt::PaxHeader(recs);
  }
  return pax + tt::HeaderBlock("GNUSparseFile.0/name", '0', static_cast<int64_t>(body.size())) +
         tt::PadBlock(body);
}

void ExpectSparse(const Got& g, const std::vector<Frag>& frags, int64_t size) {
  EXPECT_TRUE(g.h.sparse);
  EXPECT_EQ(g.h.type, TarType::kRegular);
  EXPECT_EQ(g.h.size, size);
  EXPECT_TRUE(g.data == Logical(frags, size)) << g.h.path;
  std::vector<std::pair<int64_t, size_t>> want, chunks;
  for (const Frag& f : frags)
    if (f.length > 0) want.emplace_back(f.offset, static_cast<size_t>(f.length));
  for (const auto& [off, len] : g.chunks) {  // small reads split fragments
    if (!chunks.empty() && chunks.back().first + static_cast<int64_t>(chunks.back().second) == off) {
      chunks.back().second += len;
    } else {
      chunks.emplace_back(off, len);
    }
  }
  EXPECT_EQ(chunks, want);
}

TEST(TarReaderTest, SparseFormats) {
  const std::string data = StoredData(kFrags);
  std::vector<Frag> many;
  for (int i = 0; i < 30; ++i) many.push_back({i * 1000, 10 + i});  // 4 + 21 + 5: two extension blocks
  std::string tar =
      OldGnuSparse("old", kFrags, kSparseSize, data) + OldGnuSparse("many", many, 40000, StoredData(many));
  for (const char* v : {"0.0", "0.1", "1.0"}) tar += PaxSparse(v, kFrags, kSparseSize, data);
  tar += FileEntry("after", "still in step") + kEnd;
  for (size_t step : {size_t{1}, size_t{100}, SIZE_MAX}) {
    auto got = Read(tar, step, step == 1 ? 512 : TarReader::kDefaultBufferSize);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 6u);
    EXPECT_EQ((*got)[0].h.path, "old");
    ExpectSparse((*got)[0], kFrags, kSparseSize);
    ExpectSparse((*got)[1], many, 40000);
    for (size_t i = 2; i < 5; ++i) {
      EXPECT_EQ((*got)[i].h.path, "real/name");
      ExpectSparse((*got)[i], kFrags, kSparseSize);
    }
    EXPECT_EQ((*got)[5].data, "still in step");
  }
  // An unknown version is read as a plain file, as Go does.
  auto odd = Read(tt::PaxHeader({{"GNU.sparse.major", "2"}, {"GNU.sparse.minor", "0"}}) +
                  FileEntry("f", "xy") + kEnd);
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_FALSE((*odd)[0].h.sparse);
  EXPECT_EQ((*odd)[0].data, "xy");
}

TEST(TarReaderTest, HostileSparseMaps) {
  const std::string data = StoredData(kFrags);
  auto both = [&](const std::vector<Frag>& frags, int64_t size, const std::string& stored,
                  const std::string& what) {
    SCOPED_TRACE(what);
    ExpectInvalid(OldGnuSparse("s", frags, size, stored) + kEnd, what);
    for (const char* v : {"0.0", "0.1", "1.0"}) {
      SCOPED_TRACE(v);
      ExpectInvalid(PaxSparse(v, frags, size, stored) + kEnd, what);
    }
  };
  both({{0, 100}, {50, 200}}, kSparseSize, data, "overlap");
  both({{4096, 200}, {0, 100}}, kSparseSize, data, "out of order");
  both({{0, 100}, {9950, 200}}, kSparseSize, data, "runs past the file size");
  both({{0, 100}, {4096, 150}}, kSparseSize, data, "holds 250 bytes of data but the entry stores 300");
  both({{0, 300}}, 200, data, "runs past the file size");
  // Base-256 or decimal numbers beyond what octal fields hold.
  ExpectInvalid(PaxSparse("0.1", {{int64_t{0x7fffffffffffffff}, 1}}, kSparseSize, "x") + kEnd, "runs past");
  ExpectInvalid(PaxSparse("1.0", {{-1, 1}}, kSparseSize, "x") + kEnd, "negative");
  ExpectInvalid(PaxSparse("0.1", kFrags, -5, data) + kEnd, "negative sparse file size");
  // Maps that do not match themselves.
  ExpectInvalid(tt::PaxHeader({{"GNU.sparse.major", "0"},
                               {"GNU.sparse.minor", "1"},
                               {"GNU.sparse.numblocks", "2"},
                               {"GNU.sparse.map", "0,1,5,1,9,1"}}) +
                    FileEntry("f", "abc") + kEnd,
                "numblocks");
  ExpectInvalid(tt::PaxHeader({{"GNU.sparse.map", "0,1,x,1"}, {"GNU.sparse.numblocks", "2"}}) +
                    FileEntry("f", "ab") + kEnd,
                "sparse map entry");
  ExpectInvalid(tt::PaxHeader({{"GNU.sparse.map", "0,1"}}) + FileEntry("f", "a") + kEnd, "numblocks");
  // 1.0 maps read from the data: running past it, absurd counts, garbage.
  std::string v1 = tt::PaxHeader({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}});
  ExpectInvalid(v1 + FileEntry("f", "100\n0\n1\n") + kEnd, "runs past the entry's data");
  ExpectInvalid(v1 + FileEntry("f", tt::PadBlock("99999999999\n")) + kEnd, "entry count");
  ExpectInvalid(v1 + FileEntry("f", tt::PadBlock("1\nx\n1\n")) + kEnd, "sparse map entry");
  ExpectInvalid(v1 + FileEntry("f", std::string(600, '7')) + kEnd, "runs past the entry's data");
  std::string endless = v1 + tt::HeaderBlock("f", '0', 4 << 20) + std::string(4 << 20, '7');
  ExpectInvalid(endless, "longer than 1048576");
  // Sparse records only make sense on files; 'S' only in GNU headers.
  ExpectInvalid(tt::PaxHeader({{"GNU.sparse.map", "0,0"}, {"GNU.sparse.numblocks", "1"}}) +
                    tt::HeaderBlock("d", '5', 0) + kEnd,
                "not a file");
  std::string s = OldGnuSparse("s", kFrags, kSparseSize, data);
  std::memcpy(s.data() + 257,
              "ustar\0"
              "00",
              8);
  tt::FixChecksum(s);
  ExpectInvalid(s + kEnd, "GNU magic");
  // Endless extension blocks are bounded.
  std::string h = tt::HeaderBlock("s", 'S', 0);
  h[482] = 1;
  MakeGnu(h);
  std::string ext(512, '\0');
  ext[504] = 1;
  std::string chain = h;
  for (int i = 0; i < 2100; ++i) chain += ext;
  ExpectInvalid(chain, "longer than 1048576");
}

// ---- robustness ----------------------------------------------------------------

// A small archive touching every kind of header: PAX, global, GNU long
// name, sparse (in-data map and extension blocks), multi-block data.
std::string Mixed() {
  std::vector<Frag> many;
  for (int i = 0; i < 8; ++i) many.push_back({i * 700, 3 + i});
  std::string s = tt::BuildTar({tt::Dir("dir"), tt::File("dir/one", std::string(1000, '1')),
                                tt::File(std::string(120, 'L'), "long"), tt::Symlink("dir/s", "one"),
                                tt::File("big", std::string(3000, 'b'))});
  s.resize(s.size() - 1024);
  s += tt::PaxHeader({{"mtime", "5"}}, 'g') + FileEntry("././@LongLink", std::string(200, 'G'), 'L') +
       FileEntry("gnu", "gnu data") + PaxSparse("1.0", kFrags, kSparseSize, StoredData(kFrags)) +
       OldGnuSparse("old", many, 6000, StoredData(many)) + FileEntry("last", "") + kEnd;
  return s;
}

TEST(TarReaderTest, EveryTruncationFailsOrYieldsAPrefix) {
  const std::string tar = Mixed();
  auto full = Read(tar);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(full->size(), 9u);
  size_t ok_prefixes = 0;
  for (size_t n = 0; n < tar.size(); ++n) {
    for (size_t step : {SIZE_MAX, size_t{509}}) {
      PieceSource src(tar.substr(0, n), step);
      std::vector<Got> got;
      absl::Status s = ReadAll(src, &got, step == SIZE_MAX ? TarReader::kDefaultBufferSize : 700);
      // Whatever was read is exactly what the whole archive holds there.
      ASSERT_LE(got.size(), full->size()) << n;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].h.path, (*full)[i].h.path) << n;
        ASSERT_TRUE(got[i].data == (*full)[i].data) << n << " " << got[i].h.path;
      }
      if (s.ok()) {
        // Only a cut exactly between entries (or in the end marker) can pass
        // as a whole archive.
        ok_prefixes += step == SIZE_MAX;
        EXPECT_EQ(n % 512, 0u) << n;
      } else {
        ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << n << ": " << s;
        EXPECT_THAT(std::string(s.message()), HasSubstr("truncated")) << n;
      }
    }
  }
  // The cuts that pass: empty, after each of the 9 entries, after the
  // global header, and between the two blocks of the end marker.
  EXPECT_EQ(ok_prefixes, 1u + 9u + 1u + 1u);
}

TEST(TarReaderTest, PieceSizesAndBufferSizesDoNotMatter) {
  const std::string tar = Mixed();
  auto want = Read(tar);
  ASSERT_TRUE(want.ok()) << want.status();
  for (size_t step : {size_t{1}, size_t{7}, size_t{511}, size_t{512}, size_t{513}, size_t{4096}, SIZE_MAX}) {
    for (size_t buffer : {size_t{1}, size_t{512}, size_t{1000}, size_t{1} << 20}) {
      for (size_t max_chunk : {size_t{1}, size_t{333}, SIZE_MAX}) {
        if (step == 1 && max_chunk == 1 && buffer > 1000) continue;  // slow and adds nothing
        PieceSource src(tar, step);
        std::vector<Got> got;
        absl::Status s = ReadAll(src, &got, buffer, max_chunk);
        ASSERT_TRUE(s.ok()) << step << "/" << buffer << "/" << max_chunk << ": " << s;
        ASSERT_EQ(got.size(), want->size());
        for (size_t i = 0; i < got.size(); ++i) {
          EXPECT_EQ(got[i].h.path, (*want)[i].h.path);
          EXPECT_TRUE(got[i].data == (*want)[i].data) << got[i].h.path;
          EXPECT_EQ(got[i].h.mtime.tv_sec, (*want)[i].h.mtime.tv_sec);
        }
      }
    }
  }
}

TEST(TarReaderTest, SourceErrorsPassThroughUnchangedAndStick) {
  const std::string tar = Mixed();
  for (size_t fail_at : {size_t{0}, size_t{100}, size_t{512}, size_t{1600}, size_t{5000}, tar.size() - 10}) {
    PieceSource src(tar, 1000, fail_at, absl::DataLossError("boom"));
    TarReader r(src, 512);
    absl::Status s;
    while (s.ok()) {
      auto h = r.Next();
      if (!h.ok()) {
        s = h.status();
        break;
      }
      ASSERT_NE(*h, nullptr) << "the failure was never seen";
      while (true) {
        auto c = r.Read();
        if (!c.ok()) {
          s = c.status();
          break;
        }
        if (c->data.empty()) break;
      }
    }
    EXPECT_EQ(s, absl::DataLossError("boom")) << fail_at;
    EXPECT_TRUE(r.source_failed());
    EXPECT_EQ(r.Next().status(), absl::DataLossError("boom"));
    EXPECT_EQ(r.Read().status(), absl::DataLossError("boom"));
  }
  // The reader's own verdicts stick too, and are not the source's.
  PieceSource src(std::string(1024, 'x'));
  TarReader r(src);
  absl::Status first = r.Next().status();
  EXPECT_EQ(first.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(r.source_failed());
  EXPECT_EQ(r.Next().status(), first);
}

TEST(TarReaderTest, BigFilesStreamInChunksOrAreSkipped) {
  std::string big(24 << 20, '\0');
  for (size_t i = 0; i < big.size(); i += 4096) std::snprintf(big.data() + i, 32, "block %zu", i / 4096);
  const std::string tar = tt::BuildTar({tt::File("big", big), tt::File("small", "after the big one")});
  {
    PieceSource src(tar);
    TarReader r(src);
    auto h = r.Next();
    ASSERT_TRUE(h.ok() && *h != nullptr);
    EXPECT_EQ((*h)->size, static_cast<int64_t>(big.size()));
    size_t chunks = 0, at = 0;
    bool same = true;
    while (true) {
      auto c = r.Read();
      ASSERT_TRUE(c.ok()) << c.status();
      if (c->data.empty()) break;
      EXPECT_LE(c->data.size(), TarReader::kDefaultBufferSize);
      EXPECT_EQ(c->offset, static_cast<int64_t>(at));
      same = same && c->data == absl::string_view(big).substr(at, c->data.size());
      at += c->data.size();
      ++chunks;
    }
    EXPECT_TRUE(same);
    EXPECT_EQ(at, big.size());
    EXPECT_GE(chunks, 24u);
    auto next = r.Next();
    ASSERT_TRUE(next.ok() && *next != nullptr);
    EXPECT_EQ((*next)->path, "small");
  }
  // Unread data is skipped by Next, whole or after a partial read.
  for (size_t read_first : {size_t{0}, size_t{1000}}) {
    PieceSource src(tar, 65536);
    TarReader r(src, 4096);
    ASSERT_TRUE(r.Next().ok());
    if (read_first > 0) {
      auto c = r.Read(read_first);
      ASSERT_TRUE(c.ok());
      EXPECT_EQ(c->data.size(), read_first);
    }
    auto next = r.Next();
    ASSERT_TRUE(next.ok() && *next != nullptr) << next.status();
    EXPECT_EQ((*next)->path, "small");
    auto c = r.Read();
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->data, "after the big one");
  }
}

// ---- GNU tar -------------------------------------------------------------------

class TarReaderGnuTarTest : public crisp::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (std::system("tar --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "GNU tar is not installed";
    src_ = dir_ + "/src";
    ASSERT_TRUE(MkdirAll(src_).ok());
  }

  // Runs GNU tar on src_ with `flags` and returns the archive.
  std::string Tar(const std::string& flags, const std::string& what = ".") {
    std::string out = dir_ + "/out.tar";
    std::string cmd = absl::StrCat("tar ", flags, " --sort=name -C '", src_, "' -cf '", out, "' ", what,
                                   " 2>'", dir_, "/tar.err'");
    int rc = std::system(cmd.c_str());
    auto err = ReadFile(dir_ + "/tar.err");
    EXPECT_EQ(rc, 0) << cmd << ": " << (err.ok() ? *err : "");
    auto data = ReadFile(out);
    EXPECT_TRUE(data.ok());
    return data.ok() ? *data : "";
  }

  void Write(const std::string& rel, const std::string& data, mode_t mode = 0644) {
    ASSERT_TRUE(WriteFileAtomic(src_ + "/" + rel, data, mode, false).ok()) << rel;
    ASSERT_EQ(::chmod((src_ + "/" + rel).c_str(), mode), 0);
  }

  // Every entry against the file it came from.
  void CompareWithDisk(const std::vector<Got>& got, bool names, bool nsec, bool ids = true) {
    std::set<std::string> seen;
    for (const Got& g : got) {
      std::string rel = g.h.path;
      if (absl::StartsWith(rel, "./")) rel = rel.substr(2);
      while (!rel.empty() && rel.back() == '/') rel.pop_back();
      SCOPED_TRACE(rel);
      seen.insert(rel);
      std::string p = rel.empty() ? src_ : src_ + "/" + rel;
      struct stat st;
      ASSERT_EQ(::lstat(p.c_str(), &st), 0);
      EXPECT_EQ(g.h.mode, st.st_mode & 07777);
      if (ids) {
        EXPECT_EQ(g.h.uid, 4321);
        EXPECT_EQ(g.h.gid, 8765);
      }
      if (names) {
        EXPECT_EQ(g.h.uname, "crisp");
        EXPECT_EQ(g.h.gname, "crispg");
      }
      if (!S_ISLNK(st.st_mode) && g.h.type != TarType::kHardlink) {
        EXPECT_EQ(g.h.mtime.tv_sec, st.st_mtim.tv_sec);
        if (nsec) {
          EXPECT_EQ(g.h.mtime.tv_nsec, st.st_mtim.tv_nsec);
        }
      }
      switch (g.h.type) {
        case TarType::kRegular: {
          ASSERT_TRUE(S_ISREG(st.st_mode));
          EXPECT_EQ(g.h.size, st.st_size);
          auto content = ReadFile(p);
          ASSERT_TRUE(content.ok());
          EXPECT_TRUE(g.data == *content);
          break;
        }
        case TarType::kHardlink: {
          struct stat t;
          std::string target = g.h.link;
          if (absl::StartsWith(target, "./")) target = target.substr(2);
          ASSERT_EQ(::lstat((src_ + "/" + target).c_str(), &t), 0) << target;
          EXPECT_EQ(t.st_ino, st.st_ino);
          break;
        }
        case TarType::kSymlink: {
          ASSERT_TRUE(S_ISLNK(st.st_mode));
          char buf[4096];
          ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
          EXPECT_EQ(g.h.link, std::string(buf, n > 0 ? static_cast<size_t>(n) : 0));
          break;
        }
        case TarType::kDirectory:
          EXPECT_TRUE(S_ISDIR(st.st_mode));
          break;
        case TarType::kFifo:
          EXPECT_TRUE(S_ISFIFO(st.st_mode));
          break;
        default:
          ADD_FAILURE() << "unexpected type " << static_cast<char>(g.h.type);
      }
    }
    seen_ = seen;
  }

  std::string src_;
  std::set<std::string> seen_;
};

TEST_F(TarReaderGnuTarTest, EveryFormat) {
  ASSERT_TRUE(MkdirAll(src_ + "/sub").ok());
  ASSERT_EQ(::chmod((src_ + "/sub").c_str(), 0750), 0);
  std::string rnd;
  uint32_t x = 12345;
  for (int i = 0; i < 100000; ++i) rnd.push_back(static_cast<char>((x = x * 1103515245 + 12345) >> 24));
  for (size_t n : {0, 1, 511, 512, 513}) Write(absl::StrCat("f", n), rnd.substr(0, n));
  Write("sub/random", rnd);
  Write("suid", "#!/bin/sh\n", 04755);
  ASSERT_EQ(::symlink("sub/random", (src_ + "/sym").c_str()), 0);
  ASSERT_EQ(::link((src_ + "/f1").c_str(), (src_ + "/hard").c_str()), 0);
  ASSERT_EQ(::mkfifo((src_ + "/fifo").c_str(), 0600), 0);
  // A 99-byte member name "./v…" (v7's limit), a 150-byte one (ustar's prefix) and a
  // 300-byte one (GNU long names, PAX path).
  const std::string n99 = std::string(97, 'v');
  const std::string n150 = std::string(70, 'u') + "/" + std::string(79, 'w');
  const std::string n300 = std::string(100, 'x') + "/" + std::string(100, 'y') + "/" + std::string(98, 'z');
  Write(n99, "99");
  ASSERT_TRUE(MkdirAll(src_ + "/" + std::string(70, 'u')).ok());
  Write(n150, "150");
  ASSERT_TRUE(MkdirAll(src_ + "/" + std::string(100, 'x') + "/" + std::string(100, 'y')).ok());
  Write(n300, "300");
  ASSERT_EQ(::symlink(n300.c_str(), (src_ + "/longsym").c_str()), 0);
  // Times with nanoseconds, for PAX.
  struct timespec ts[2] = {{1600000000, 111111111}, {1600000001, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (src_ + "/f513").c_str(), ts, 0), 0);

  const std::string owner = "--owner=crisp:4321 --group=crispg:8765";
  struct Case {
    const char* format;
    std::string excludes;
    bool names, nsec;
  };
  const std::string no_long = absl::StrCat("--exclude=./", std::string(100, 'x'), " --exclude=./longsym");
  for (const Case& c :
       {Case{"v7", no_long + " --exclude=./fifo --exclude=./" + std::string(70, 'u'), false, false},
        Case{"ustar", no_long, true, false}, Case{"gnu", "", true, false}, Case{"oldgnu", "", true, false},
        Case{"pax", "", true, true}, Case{"posix", "", true, true}}) {
    SCOPED_TRACE(c.format);
    std::string tar = Tar(absl::StrCat("--format=", c.format, " ", owner, " ", c.excludes));
    auto got = Read(tar);
    ASSERT_TRUE(got.ok()) << got.status();
    CompareWithDisk(*got, c.names, c.nsec);
    // Nothing on disk was left out (but what was excluded).
    EXPECT_TRUE(seen_.count(n99));
    EXPECT_TRUE(seen_.count("sub/random"));
    EXPECT_TRUE(seen_.count("hard"));
    if (c.excludes.empty()) {
      EXPECT_TRUE(seen_.count(n300));
      EXPECT_TRUE(seen_.count("longsym"));
      EXPECT_EQ(seen_.size(), 19u);
    }
    if (std::string(c.format) != "v7") {
      EXPECT_TRUE(seen_.count(n150));
    }
    if (std::string(c.format) == "pax") {
      // GNU tar's PAX headers carry atime (and ctime) too.
      for (const Got& g : *got) {
        if (g.h.path == "./f513") {
          EXPECT_TRUE(g.h.has_atime);
        }
      }
    }
  }
}

TEST_F(TarReaderGnuTarTest, Base256AndPaxNumbers) {
  Write("f", "x");
  for (const char* format : {"gnu", "pax"}) {
    SCOPED_TRACE(format);
    std::string tar = Tar(
        absl::StrCat("--format=", format, " --owner=big:3000000 --group=big:4000000000", " --mtime=@-1000"));
    if (std::string(format) == "gnu") {
      // GNU tar wrote base-256: the first byte of the uid field has its top bit.
      ASSERT_GE(tar.size(), 1024u);
      EXPECT_NE(static_cast<unsigned char>(tar[108]) & 0x80, 0) << "no base-256 uid in the archive";
    }
    auto got = Read(tar);
    ASSERT_TRUE(got.ok()) << got.status();
    for (const Got& g : *got) {
      EXPECT_EQ(g.h.uid, 3000000);
      EXPECT_EQ(g.h.gid, 4000000000);
      EXPECT_EQ(g.h.mtime.tv_sec, -1000);
    }
  }
}

TEST_F(TarReaderGnuTarTest, SparseFiles) {
  // Data at the start, in the middle (several fragments) and a hole at the
  // end; a second file ends in data; a third needs GNU extension blocks.
  const std::string path = src_ + "/sparse";
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), std::string(4096, 'a').data(), 4096, 0), 4096);
    ASSERT_EQ(::pwrite(fd.get(), std::string(8192, 'b').data(), 8192, 1 << 20), 8192);
    ASSERT_EQ(::pwrite(fd.get(), "cc", 2, 3 << 20), 2);
    ASSERT_EQ(::ftruncate(fd.get(), 5 << 20), 0);
    UniqueFd fd2(::open((src_ + "/tail").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_EQ(::pwrite(fd2.get(), "end", 3, (2 << 20) - 3), 3);
    UniqueFd fd3(::open((src_ + "/many").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    for (int i = 0; i < 40; ++i) {
      ASSERT_EQ(::pwrite(fd3.get(), "m", 1, static_cast<off_t>(i) * (256 << 10)), 1);
    }
  }
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  if (st.st_blocks * 512 >= st.st_size) GTEST_SKIP() << "the temp filesystem does not keep holes";
  for (const char* flags :
       {"--format=gnu --sparse", "--format=pax --sparse --sparse-version=0.0",
        "--format=pax --sparse --sparse-version=0.1", "--format=pax --sparse --sparse-version=1.0"}) {
    SCOPED_TRACE(flags);
    std::string tar = Tar(absl::StrCat(flags, " --owner=crisp:4321 --group=crispg:8765"), "sparse tail many");
    // The archive is much smaller than the files: holes were not stored.
    EXPECT_LT(tar.size(), size_t{1} << 20);
    auto got = Read(tar);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 3u);
    for (const Got& g : *got) {
      EXPECT_TRUE(g.h.sparse) << g.h.path;
    }
    CompareWithDisk(*got, true, false);
    EXPECT_EQ(seen_, (std::set<std::string>{"sparse", "tail", "many"}));
  }
}

TEST_F(TarReaderGnuTarTest, Xattrs) {
  Write("f", "x");
  const std::string bin("\0\x01\xff", 3);
  if (::setxattr((src_ + "/f").c_str(), "user.crisp", "value", 5, 0) != 0 ||
      ::setxattr((src_ + "/f").c_str(), "user.bin", bin.data(), bin.size(), 0) != 0)
    GTEST_SKIP() << "no user xattrs on the temp filesystem: " << std::strerror(errno)
                 << " (PaxRecords covers the records)";
  std::string tar = Tar("--format=pax --xattrs --xattrs-include='user.*'", "f");
  auto got = Read(tar);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  std::map<std::string, std::string> x;
  for (const TarXattr& a : (*got)[0].h.xattrs) x[a.name] = a.value;
  EXPECT_EQ(x["user.crisp"], "value");
  EXPECT_EQ(x["user.bin"], bin);
}

}  // namespace
}  // namespace crisp::images
