#include "images/tar_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace crisp::images {
namespace {

constexpr size_t kBlock = 512;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
// Global records live for the whole archive and apply to every entry after
// them, so they get a tighter bound than one entry's records.
constexpr size_t kMaxGlobalBytes = size_t{64} << 10;

// Where the fields are in a header block. v7 has name..linkname; ustar adds
// magic..prefix; GNU and star reuse the prefix area.
struct Span {
  size_t off, len;
};
constexpr Span kName{0, 100}, kMode{100, 8}, kUid{108, 8}, kGid{116, 8}, kSize{124, 12}, kMtime{136, 12},
    kChksum{148, 8}, kLinkname{157, 100}, kMagic{257, 6}, kVersion{263, 2}, kUname{265, 32}, kGname{297, 32},
    kDevMajor{329, 8}, kDevMinor{337, 8}, kPrefix{345, 155};
constexpr Span kGnuAtime{345, 12}, kGnuCtime{357, 12}, kGnuRealSize{483, 12};
constexpr size_t kGnuSparseOff = 386, kGnuSparseCount = 4, kGnuIsExtended = 482;
constexpr size_t kExtSparseCount = 21, kExtIsExtended = 504;  // GNU sparse extension block
constexpr Span kStarPrefix{345, 131}, kStarAtime{476, 12}, kStarTrailer{508, 4};
constexpr size_t kTypeflag = 156;

absl::string_view Field(const char* blk, Span s) { return absl::string_view(blk + s.off, s.len); }

// A string field ends at its first NUL (or fills the field).
absl::string_view CStr(absl::string_view f) {
  size_t n = f.find('\0');
  return n == absl::string_view::npos ? f : f.substr(0, n);
}

void Assign(std::string& dst, absl::string_view v) { dst.assign(v.data(), v.size()); }

bool IsZeroBlock(const char* blk) {
  static const char kZero[kBlock] = {};
  return std::memcmp(blk, kZero, kBlock) == 0;
}

int64_t Padding(int64_t size) { return (kBlock - static_cast<uint64_t>(size) % kBlock) % kBlock; }

// A numeric header field: GNU base-256 when the first bit is set (the rest
// is a big-endian two's complement number), else octal digits with spaces
// or NULs around them. False when unparsable or beyond int64.
bool ParseNumeric(absl::string_view f, int64_t* out) {
  if (!f.empty() && (static_cast<unsigned char>(f[0]) & 0x80) != 0) {
    const unsigned char inv = (static_cast<unsigned char>(f[0]) & 0x40) != 0 ? 0xff : 0x00;
    uint64_t x = 0;
    for (size_t i = 0; i < f.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(f[i]) ^ inv;
      if (i == 0) c &= 0x7f;  // the marker bit
      if ((x >> 56) != 0) return false;
      x = x << 8 | c;
    }
    if ((x >> 63) != 0) return false;
    // For a negative number the inverted bits are -x-1.
    *out = inv != 0 ? ~static_cast<int64_t>(x) : static_cast<int64_t>(x);
    return true;
  }
  size_t b = 0, e = f.size();
  while (b < e && (f[b] == ' ' || f[b] == '\0')) ++b;
  while (e > b && (f[e - 1] == ' ' || f[e - 1] == '\0')) --e;
  absl::string_view digits = CStr(f.substr(b, e - b));
  uint64_t x = 0;
  for (char c : digits) {
    if (c < '0' || c > '7' || (x >> 60) != 0) return false;
    x = x * 8 + static_cast<uint64_t>(c - '0');
  }
  if (x > static_cast<uint64_t>(kInt64Max)) return false;
  *out = static_cast<int64_t>(x);
  return true;
}

// A decimal number as PAX records and sparse maps hold them: an optional
// sign, then digits only; false on overflow.
bool ParseDecimal(absl::string_view s, int64_t* out) {
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  const uint64_t limit = neg ? uint64_t{1} << 63 : static_cast<uint64_t>(kInt64Max);
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (x > (limit - d) / 10) return false;
    x = x * 10 + d;
  }
  *out = neg ? static_cast<int64_t>(0 - x) : static_cast<int64_t>(x);
  return true;
}

// "<seconds>[.<fraction>]"; digits past nanoseconds are dropped. A negative
// time counts the fraction backwards too: -1.5 is 1.5 s before the epoch.
bool ParsePaxTime(absl::string_view s, struct timespec* ts) {
  size_t dot = s.find('.');
  absl::string_view secs = s.substr(0, dot);
  absl::string_view frac = dot == absl::string_view::npos ? absl::string_view() : s.substr(dot + 1);
  int64_t sec;
  if (!ParseDecimal(secs, &sec)) return false;
  int64_t nsec = 0;
  for (size_t i = 0; i < frac.size(); ++i) {
    if (frac[i] < '0' || frac[i] > '9') return false;
    if (i < 9) nsec = nsec * 10 + (frac[i] - '0');
  }
  for (size_t i = frac.size(); i < 9; ++i) nsec *= 10;
  if (secs[0] == '-' && nsec > 0) {
    if (sec == std::numeric_limits<int64_t>::min()) return false;
    sec -= 1;
    nsec = 1000000000 - nsec;
  }
  ts->tv_sec = static_cast<time_t>(sec);
  ts->tv_nsec = static_cast<long>(nsec);
  return true;
}

// libarchive writes xattr names url-encoded; a '%' not followed by two hex
// digits stands for itself, as libarchive reads it.
std::string UrlDecode(absl::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

constexpr absl::string_view kSchilyXattr = "SCHILY.xattr.";
constexpr absl::string_view kLibarchiveXattr = "LIBARCHIVE.xattr.";
constexpr absl::string_view kGnuSparse = "GNU.sparse.";

// The records this reader acts on, and so the only ones kept from global
// headers (sparse maps describe one file and never apply globally).
bool KeepGlobally(absl::string_view k) {
  return k == "path" || k == "linkpath" || k == "uid" || k == "gid" || k == "uname" || k == "gname" ||
         k == "mtime" || k == "atime" || k == "size" || k == "SCHILY.devmajor" || k == "SCHILY.devminor" ||
         absl::StartsWith(k, kSchilyXattr) || absl::StartsWith(k, kLibarchiveXattr);
}

bool IsXattrKey(absl::string_view k) {
  return absl::StartsWith(k, kSchilyXattr) || absl::StartsWith(k, kLibarchiveXattr);
}

std::string Describe(char type) {
  unsigned char c = static_cast<unsigned char>(type);
  if (c > 0x20 && c < 0x7f) return absl::StrCat("'", std::string(1, type), "'");
  return absl::StrCat("0x", absl::Hex(c, absl::kZeroPad2));
}

}  // namespace

TarReader::TarReader(ByteSource& src, size_t buffer_size)
    : src_(src), cap_(std::max(buffer_size, kBlock)), buf_(new char[cap_]) {}

TarReader::~TarReader() = default;

uint64_t TarReader::offset() const { return base_ + pos_; }

absl::Status TarReader::Fail(absl::Status s) {
  if (!s.ok() && status_.ok()) status_ = s;
  return s;
}

absl::Status TarReader::Corrupt(absl::string_view msg) const {
  return absl::InvalidArgumentError(absl::StrCat("tar header at offset ", hdr_offset_, ": ", msg));
}

namespace {
absl::Status Truncated(absl::string_view what, uint64_t at) {
  return absl::InvalidArgumentError(
      absl::StrCat("tar archive truncated: the stream ends inside ", what, " at offset ", at));
}
}  // namespace

absl::StatusOr<size_t> TarReader::Ensure(size_t n) {
  if (end_ - pos_ >= n) return n;
  // Move the tail to the front (at most a block's worth in practice), then
  // fill as much of the buffer as the source gives.
  if (pos_ > 0) {
    std::memmove(buf_.get(), buf_.get() + pos_, end_ - pos_);
    base_ += pos_;
    end_ -= pos_;
    pos_ = 0;
  }
  while (end_ < n && !eof_) {
    absl::StatusOr<size_t> r = src_.Read(buf_.get() + end_, cap_ - end_);
    if (!r.ok()) {
      source_failed_ = true;
      return r.status();
    }
    if (*r == 0) eof_ = true;
    end_ += std::min(*r, cap_ - end_);
  }
  return std::min(n, end_);
}

absl::Status TarReader::Skip(uint64_t n, absl::string_view what) {
  while (n > 0) {
    if (pos_ == end_) {
      ASSIGN_OR_RETURN(size_t got, Ensure(1));
      if (got == 0) return Truncated(what, offset());
    }
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, end_ - pos_));
    pos_ += k;
    n -= k;
  }
  return absl::OkStatus();
}

absl::Status TarReader::ReadBlock(char* blk, absl::string_view what) {
  ASSIGN_OR_RETURN(size_t got, Ensure(kBlock));
  if (got < kBlock) return Truncated(what, offset());
  std::memcpy(blk, buf_.get() + pos_, kBlock);
  pos_ += kBlock;
  return absl::OkStatus();
}

absl::StatusOr<std::string> TarReader::ReadMeta(int64_t size, absl::string_view what) {
  if (size < 0) return Corrupt(absl::StrCat(what, " with a negative size"));
  if (static_cast<uint64_t>(size) > kMaxMetaBytes)
    return Corrupt(absl::StrCat(what, " of ", size, " bytes is larger than the ", kMaxMetaBytes, " allowed"));
  std::string out;
  out.reserve(static_cast<size_t>(size));
  while (out.size() < static_cast<size_t>(size)) {
    if (pos_ == end_) {
      ASSIGN_OR_RETURN(size_t got, Ensure(1));
      if (got == 0) return Truncated(what, offset());
    }
    size_t k = std::min(static_cast<size_t>(size) - out.size(), end_ - pos_);
    out.append(buf_.get() + pos_, k);
    pos_ += k;
  }
  RETURN_IF_ERROR(Skip(static_cast<uint64_t>(Padding(size)), what));
  return out;
}

absl::StatusOr<const TarHeader*> TarReader::Next() {
  if (!status_.ok()) return status_;
  if (done_) return nullptr;
  absl::StatusOr<const TarHeader*> r = NextImpl();
  if (!r.ok()) (void)Fail(r.status());
  return r;
}

// PAX records: "<length> <key>=<value>\n" where length counts the whole
// record. Repeated keys: the last wins, except GNU sparse 0.0's repeated
// GNU.sparse.offset/numbytes pairs, which are gathered into a
// GNU.sparse.map ("off,len,off,len...") as 0.1 writes it.
absl::Status TarReader::ParseRecords(absl::string_view s, Records* out) const {
  std::string sparse_map;
  size_t sparse_fields = 0;
  while (!s.empty()) {
    // Some writers pad the header's data with NULs.
    if (s.find_first_not_of('\0') == absl::string_view::npos) break;
    size_t sp = s.find(' ');
    int64_t n = 0;
    if (sp == absl::string_view::npos || !ParseDecimal(s.substr(0, sp), &n) || s[0] == '+' || s[0] == '-' ||
        n < 5 || static_cast<uint64_t>(n) > s.size() || static_cast<uint64_t>(n) < sp + 2)
      return Corrupt("malformed PAX record length");
    absl::string_view rec = s.substr(0, static_cast<size_t>(n));
    if (rec.back() != '\n') return Corrupt("PAX record not ended by a newline");
    absl::string_view kv = rec.substr(sp + 1, rec.size() - sp - 2);
    size_t eq = kv.find('=');
    if (eq == absl::string_view::npos) return Corrupt("PAX record without '='");
    absl::string_view key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key.empty() || key.find('\0') != absl::string_view::npos) return Corrupt("PAX record with a bad key");
    if ((key == "path" || key == "linkpath" || key == "uname" || key == "gname") &&
        value.find('\0') != absl::string_view::npos)
      return Corrupt(absl::StrCat("PAX ", key, " holds a NUL byte"));
    if (key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes") {
      bool want_offset = sparse_fields % 2 == 0;
      if ((key == "GNU.sparse.offset") != want_offset || value.find(',') != absl::string_view::npos)
        return Corrupt("GNU.sparse.offset/numbytes records out of order");
      if (sparse_fields++ > 0) sparse_map.push_back(',');
      sparse_map.append(value.data(), value.size());
    } else {
      (*out)[std::string(key)] = std::string(value);
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
  if (sparse_fields > 0) (*out)["GNU.sparse.map"] = std::move(sparse_map);
  return absl::OkStatus();
}

absl::Status TarReader::MergeGlobal(const Records& recs) {
  for (const auto& [k, v] : recs) {
    if (!KeepGlobally(k)) continue;
    auto it = global_.find(k);
    if (it != global_.end()) {
      global_bytes_ -= it->first.size() + it->second.size();
      global_.erase(it);
    }
    if (v.empty()) continue;  // an empty value ends the global record
    global_bytes_ += k.size() + v.size();
    if (global_bytes_ > kMaxGlobalBytes)
      return Corrupt(absl::StrCat("global PAX records add up to more than ", kMaxGlobalBytes, " bytes"));
    global_.emplace(k, v);
  }
  return absl::OkStatus();
}

absl::StatusOr<const TarHeader*> TarReader::NextImpl() {
  // Whatever the caller left of the previous entry.
  RETURN_IF_ERROR(Skip(static_cast<uint64_t>(remaining_) + static_cast<uint64_t>(pad_), "an entry's data"));
  remaining_ = pad_ = logical_ = 0;
  frags_.clear();
  frag_ = 0;
  frag_done_ = 0;

  // Extension headers seen so far for the coming entry.
  Records local;
  std::string long_name, long_link;
  bool pending = false;
  char blk[kBlock];
  while (true) {
    hdr_offset_ = offset();
    ASSIGN_OR_RETURN(size_t got, Ensure(kBlock));
    if (got == 0) {
      if (pending) return Truncated("the entry an extension header announced", offset());
      done_ = true;  // no end marker: accepted, as Go and GNU tar do
      return nullptr;
    }
    if (got < kBlock) return Truncated("a header", offset());
    std::memcpy(blk, buf_.get() + pos_, kBlock);
    pos_ += kBlock;
    if (IsZeroBlock(blk)) {
      // The end marker is two zero blocks; the stream may end after one.
      ASSIGN_OR_RETURN(got, Ensure(kBlock));
      if (got > 0 && got < kBlock) return Truncated("the end-of-archive marker", offset());
      if (got == kBlock && !IsZeroBlock(buf_.get() + pos_))
        return Corrupt("a zero block followed by a header (the end marker is two zero blocks)");
      if (pending) return Corrupt("the end-of-archive marker follows an extension header, not its entry");
      if (got == kBlock) pos_ += kBlock;
      done_ = true;
      return nullptr;
    }

    int64_t sum = 0;
    if (!ParseNumeric(Field(blk, kChksum), &sum)) return Corrupt("unreadable checksum (not a tar archive?)");
    int64_t usum = 0, ssum = 0;  // old tars summed signed chars
    for (size_t i = 0; i < kBlock; ++i) {
      char c = i >= kChksum.off && i < kChksum.off + kChksum.len ? ' ' : blk[i];
      usum += static_cast<unsigned char>(c);
      ssum += static_cast<signed char>(c);
    }
    if (sum != usum && sum != ssum)
      return Corrupt(absl::StrCat("checksum ", sum, " does not match the header's ", usum));

    const bool ustar = Field(blk, kMagic) == absl::string_view("ustar\0", 6);
    const bool gnu = Field(blk, kMagic) == "ustar " && Field(blk, kVersion) == absl::string_view(" \0", 2);
    const bool star = ustar && Field(blk, kStarTrailer) == absl::string_view("tar\0", 4);
    int64_t size = 0, mode = 0, uid = 0, gid = 0, mtime = 0, dmajor = 0, dminor = 0;
    struct NumField {
      Span span;
      int64_t* out;
      const char* name;
    };
    for (const NumField& f :
         {NumField{kSize, &size, "size"}, NumField{kMode, &mode, "mode"}, NumField{kUid, &uid, "uid"},
          NumField{kGid, &gid, "gid"}, NumField{kMtime, &mtime, "mtime"}}) {
      if (!ParseNumeric(Field(blk, f.span), f.out))
        return Corrupt(absl::StrCat("unreadable ", f.name, " field"));
    }
    if ((ustar || gnu) &&
        (!ParseNumeric(Field(blk, kDevMajor), &dmajor) || !ParseNumeric(Field(blk, kDevMinor), &dminor)))
      return Corrupt("unreadable device number field");
    const char type = blk[kTypeflag];

    // Extension headers: they describe the next entry.
    if (type == 'x' || type == 'g') {
      ASSIGN_OR_RETURN(std::string data, ReadMeta(size, "a PAX header"));
      Records recs;
      RETURN_IF_ERROR(ParseRecords(data, &recs));
      if (type == 'g') {
        RETURN_IF_ERROR(MergeGlobal(recs));
      } else {
        local = std::move(recs);  // a second 'x' replaces the first, as in Go
        pending = true;
      }
      continue;
    }
    if (type == 'L' || type == 'K') {
      ASSIGN_OR_RETURN(std::string data, ReadMeta(size, type == 'L' ? "a GNU long name" : "a GNU long link"));
      (type == 'L' ? long_name : long_link) = std::string(CStr(data));
      pending = true;
      continue;
    }

    TarHeader& h = hdr_;
    Assign(h.path, CStr(Field(blk, kName)));
    Assign(h.link, CStr(Field(blk, kLinkname)));
    h.uname.clear();
    h.gname.clear();
    h.has_atime = false;
    h.atime = {0, 0};
    h.mtime = {static_cast<time_t>(mtime), 0};
    h.xattrs.clear();
    h.sparse = false;
    absl::string_view prefix;
    if (ustar || gnu) {
      Assign(h.uname, CStr(Field(blk, kUname)));
      Assign(h.gname, CStr(Field(blk, kGname)));
    }
    if (star) {
      prefix = CStr(Field(blk, kStarPrefix));
      int64_t at = 0;
      if (!ParseNumeric(Field(blk, kStarAtime), &at)) return Corrupt("unreadable atime field");
      if (Field(blk, kStarAtime)[0] != '\0') {
        h.has_atime = true;
        h.atime = {static_cast<time_t>(at), 0};
      }
    } else if (ustar) {
      prefix = CStr(Field(blk, kPrefix));
    } else if (gnu) {
      // GNU keeps atime and ctime where ustar has the prefix. Go before 1.8
      // wrote a prefix there in GNU headers: if the times do not parse and
      // the field is ASCII, it is read as a prefix (as Go does).
      int64_t at = 0, ct = 0;
      absl::string_view af = Field(blk, kGnuAtime), cf = Field(blk, kGnuCtime);
      bool at_ok = af[0] == '\0' || ParseNumeric(af, &at);
      bool ct_ok = cf[0] == '\0' || ParseNumeric(cf, &ct);
      if (at_ok && ct_ok) {
        if (af[0] != '\0') {
          h.has_atime = true;
          h.atime = {static_cast<time_t>(at), 0};
        }
      } else {
        absl::string_view p = CStr(Field(blk, kPrefix));
        if (std::all_of(p.begin(), p.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
          prefix = p;
      }
    }
    if (!prefix.empty()) h.path = absl::StrCat(prefix, "/", h.path);

    // PAX records: global ones first, unless this entry's own records name
    // the same key (an empty local value then restores the header field),
    // then the entry's own. libarchive's xattr records before SCHILY's, so
    // that SCHILY.xattr (what Go and containerd read) wins a tie.
    uid_ = uid;
    gid_ = gid;
    size_ = size;
    dev_major_ = dmajor;
    dev_minor_ = dminor;
    xattrs_.clear();
    for (bool libarchive_pass : {true, false}) {
      for (const auto& [k, v] : global_) {
        if (absl::StartsWith(k, kLibarchiveXattr) == libarchive_pass && local.count(k) == 0)
          RETURN_IF_ERROR(ApplyRecord(k, v));
      }
      for (const auto& [k, v] : local) {
        if (absl::StartsWith(k, kLibarchiveXattr) != libarchive_pass) continue;
        if (v.empty() && !IsXattrKey(k)) continue;
        RETURN_IF_ERROR(ApplyRecord(k, v));
      }
    }
    // GNU long names win over PAX, as in Go.
    if (!long_name.empty()) h.path = std::move(long_name);
    if (!long_link.empty()) h.link = std::move(long_link);

    bool old_sparse = false;
    switch (type) {
      case '0':
      case '7':
        h.type = TarType::kRegular;
        break;
      case '\0':  // pre-POSIX: a trailing slash marks a directory
        h.type = absl::EndsWith(h.path, "/") ? TarType::kDirectory : TarType::kRegular;
        break;
      case 'S':
        h.type = TarType::kRegular;
        old_sparse = true;
        break;
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
        h.type = static_cast<TarType>(type);
        break;
      default:
        return Corrupt(absl::StrCat("unsupported entry type ", Describe(type), " for \"",
                                    absl::string_view(h.path).substr(0, 256), "\""));
    }
    h.mode = static_cast<uint32_t>(mode & 07777);
    h.uid = uid_;
    h.gid = gid_;
    const bool device = h.type == TarType::kCharDevice || h.type == TarType::kBlockDevice;
    if (device &&
        (dev_major_ < 0 || dev_major_ > 0xffffffffLL || dev_minor_ < 0 || dev_minor_ > 0xffffffffLL))
      return Corrupt(absl::StrCat("device number ", dev_major_, ",", dev_minor_, " out of range"));
    h.dev_major = device ? dev_major_ : 0;
    h.dev_minor = device ? dev_minor_ : 0;
    h.xattrs.reserve(xattrs_.size());
    for (auto& [name, value] : xattrs_) h.xattrs.push_back(TarXattr{name, std::move(value)});

    // Only regular files have data; types '1'-'6' have none whatever their
    // size says (Go's writer leaves the size of hardlinks there).
    if (h.type == TarType::kRegular) {
      if (size_ < 0) return Corrupt(absl::StrCat("negative size ", size_));
      remaining_ = size_;
      pad_ = Padding(size_);
    }
    h.size = remaining_;
    if (old_sparse) {
      if (!gnu) return Corrupt("a GNU sparse entry ('S') without the GNU magic");
      RETURN_IF_ERROR(ReadOldGnuSparse(blk));
    } else {
      RETURN_IF_ERROR(ReadPaxSparse(local));
    }
    return &hdr_;
  }
}

absl::Status TarReader::ApplyRecord(const std::string& k, const std::string& v) {
  TarHeader& h = hdr_;
  auto number = [&](int64_t* out) -> absl::Status {
    if (!ParseDecimal(v, out)) return Corrupt(absl::StrCat("bad PAX ", k, " \"", v.substr(0, 64), "\""));
    return absl::OkStatus();
  };
  auto time = [&](struct timespec* out) -> absl::Status {
    if (!ParsePaxTime(v, out)) return Corrupt(absl::StrCat("bad PAX ", k, " \"", v.substr(0, 64), "\""));
    return absl::OkStatus();
  };
  if (k == "path") {
    h.path = v;
  } else if (k == "linkpath") {
    h.link = v;
  } else if (k == "uname") {
    h.uname = v;
  } else if (k == "gname") {
    h.gname = v;
  } else if (k == "uid") {
    RETURN_IF_ERROR(number(&uid_));
  } else if (k == "gid") {
    RETURN_IF_ERROR(number(&gid_));
  } else if (k == "size") {
    RETURN_IF_ERROR(number(&size_));
  } else if (k == "SCHILY.devmajor") {
    RETURN_IF_ERROR(number(&dev_major_));
  } else if (k == "SCHILY.devminor") {
    RETURN_IF_ERROR(number(&dev_minor_));
  } else if (k == "mtime") {
    RETURN_IF_ERROR(time(&h.mtime));
  } else if (k == "atime") {
    RETURN_IF_ERROR(time(&h.atime));
    h.has_atime = true;
  } else if (absl::StartsWith(k, kSchilyXattr)) {
    std::string name = k.substr(kSchilyXattr.size());
    if (name.empty()) return Corrupt("PAX xattr record without a name");
    xattrs_[std::move(name)] = v;
  } else if (absl::StartsWith(k, kLibarchiveXattr)) {
    std::string name = UrlDecode(absl::string_view(k).substr(kLibarchiveXattr.size()));
    std::string value;
    if (name.empty() || name.find('\0') != std::string::npos || !absl::Base64Unescape(v, &value))
      return Corrupt(absl::StrCat("bad PAX record ", k.substr(0, 128)));
    xattrs_[std::move(name)] = std::move(value);
  }
  return absl::OkStatus();
}

// Old GNU sparse files ('S'): up to four (offset, length) pairs in the
// header, 21 more in each extension block that follows it while the
// "is extended" byte is set. The header's size counts the stored data, the
// realsize field the file's size.
absl::Status TarReader::ReadOldGnuSparse(const char* blk) {
  int64_t real = 0;
  if (!ParseNumeric(Field(blk, kGnuRealSize), &real)) return Corrupt("unreadable GNU sparse realsize");
  auto take = [&](const char* base, size_t count) -> absl::Status {
    for (size_t i = 0; i < count; ++i) {
      const char* e = base + i * 24;
      if (e[0] == '\0') break;  // as GNU and BSD tar end the list
      Fragment f{};
      if (!ParseNumeric(absl::string_view(e, 12), &f.offset) ||
          !ParseNumeric(absl::string_view(e + 12, 12), &f.length))
        return Corrupt("unreadable GNU sparse map entry");
      frags_.push_back(f);
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(take(blk + kGnuSparseOff, kGnuSparseCount));
  bool extended = blk[kGnuIsExtended] != 0;
  size_t ext_bytes = 0;
  char ext[kBlock];
  while (extended) {
    ext_bytes += kBlock;
    if (ext_bytes > kMaxMetaBytes)
      return Corrupt(absl::StrCat("GNU sparse map longer than ", kMaxMetaBytes, " bytes"));
    RETURN_IF_ERROR(ReadBlock(ext, "a GNU sparse extension block"));
    RETURN_IF_ERROR(take(ext, kExtSparseCount));
    extended = ext[kExtIsExtended] != 0;
  }
  hdr_.size = real;
  return CheckSparse();
}

// PAX sparse files as GNU tar writes them: 0.0 (repeated offset/numbytes
// records), 0.1 (GNU.sparse.map) and 1.0 (the map is at the start of the
// data: a count, then offset and length, one decimal number a line, padded
// to a block). GNU.sparse.name and GNU.sparse.size/realsize give the real
// name and size. No GNU.sparse records: not sparse; an unknown version:
// read as a plain file, as Go does.
absl::Status TarReader::ReadPaxSparse(const Records& recs) {
  auto get = [&](const char* key) -> absl::string_view {
    auto it = recs.find(key);
    return it == recs.end() ? absl::string_view() : absl::string_view(it->second);
  };
  absl::string_view major = get("GNU.sparse.major"), minor = get("GNU.sparse.minor");
  bool v1 = false;
  if (major == "0" && (minor == "0" || minor == "1")) {
    v1 = false;
  } else if (major == "1" && minor == "0") {
    v1 = true;
  } else if (!major.empty() || !minor.empty()) {
    return absl::OkStatus();
  } else if (get("GNU.sparse.map").empty()) {
    return absl::OkStatus();
  }
  if (hdr_.type != TarType::kRegular) return Corrupt("GNU sparse records on an entry that is not a file");
  if (absl::string_view name = get("GNU.sparse.name"); !name.empty()) hdr_.path = std::string(name);
  absl::string_view size = get("GNU.sparse.size");
  if (size.empty()) size = get("GNU.sparse.realsize");
  if (!size.empty() && !ParseDecimal(size, &hdr_.size)) return Corrupt("bad GNU.sparse.size");

  auto pair = [&](absl::string_view off, absl::string_view len) -> absl::Status {
    Fragment f{};
    if (!ParseDecimal(off, &f.offset) || !ParseDecimal(len, &f.length))
      return Corrupt("unreadable GNU sparse map entry");
    frags_.push_back(f);
    return absl::OkStatus();
  };
  if (v1) {
    // The map is read in whole blocks from the entry's own data.
    std::string map;
    size_t newlines = 0, next = 0;
    auto feed = [&](uint64_t want) -> absl::Status {
      char b[kBlock];
      while (newlines < want) {
        if (map.size() + kBlock > kMaxMetaBytes)
          return Corrupt(absl::StrCat("GNU sparse map longer than ", kMaxMetaBytes, " bytes"));
        if (remaining_ < static_cast<int64_t>(kBlock))
          return Corrupt("GNU sparse map runs past the entry's data");
        RETURN_IF_ERROR(ReadBlock(b, "a GNU sparse map"));
        remaining_ -= kBlock;
        map.append(b, kBlock);
        newlines += static_cast<size_t>(std::count(b, b + kBlock, '\n'));
      }
      return absl::OkStatus();
    };
    auto token = [&]() {
      size_t nl = map.find('\n', next);
      absl::string_view t(map.data() + next, nl - next);
      next = nl + 1;
      --newlines;
      return t;
    };
    RETURN_IF_ERROR(feed(1));
    int64_t count = 0;
    // Each entry takes at least four bytes ("0\n0\n"): a larger count
    // cannot fit the bounded map.
    if (!ParseDecimal(token(), &count) || count < 0 || static_cast<uint64_t>(count) > kMaxMetaBytes / 4)
      return Corrupt("bad GNU sparse map entry count");
    RETURN_IF_ERROR(feed(2 * static_cast<uint64_t>(count)));
    for (int64_t i = 0; i < count; ++i) {
      absl::string_view off = token();
      RETURN_IF_ERROR(pair(off, token()));
    }
  } else {
    int64_t count = 0;
    if (!ParseDecimal(get("GNU.sparse.numblocks"), &count) || count < 0)
      return Corrupt("bad GNU.sparse.numblocks");
    absl::string_view map = get("GNU.sparse.map");
    size_t fields = map.empty() ? 0 : static_cast<size_t>(std::count(map.begin(), map.end(), ',')) + 1;
    if (static_cast<uint64_t>(count) > fields / 2 || fields != 2 * static_cast<size_t>(count))
      return Corrupt("GNU.sparse.map does not hold GNU.sparse.numblocks entries");
    while (!map.empty()) {
      size_t c1 = map.find(',');
      size_t c2 = map.find(',', c1 + 1);
      RETURN_IF_ERROR(
          pair(map.substr(0, c1), map.substr(c1 + 1, c2 == absl::string_view::npos ? c2 : c2 - c1 - 1)));
      map = c2 == absl::string_view::npos ? absl::string_view() : map.substr(c2 + 1);
    }
  }
  return CheckSparse();
}

// The checks BSD tar and Go make: fragments in order, not overlapping,
// inside the file; and they must add up to exactly the data stored.
absl::Status TarReader::CheckSparse() {
  if (hdr_.size < 0) return Corrupt("negative sparse file size");
  int64_t prev_end = 0, total = 0;
  for (const Fragment& f : frags_) {
    if (f.offset < 0 || f.length < 0) return Corrupt("negative offset or length in the sparse map");
    if (f.offset > kInt64Max - f.length || f.offset + f.length > hdr_.size)
      return Corrupt(
          absl::StrCat("sparse map entry ", f.offset, "+", f.length, " runs past the file size ", hdr_.size));
    if (f.offset < prev_end) return Corrupt("sparse map entries overlap or are out of order");
    prev_end = f.offset + f.length;
    total += f.length;
  }
  if (total != remaining_)
    return Corrupt(
        absl::StrCat("sparse map holds ", total, " bytes of data but the entry stores ", remaining_));
  hdr_.sparse = true;
  return absl::OkStatus();
}

absl::StatusOr<TarChunk> TarReader::Read(size_t max) {
  if (!status_.ok()) return status_;
  max = std::max<size_t>(max, 1);
  int64_t off = 0;
  uint64_t want = 0;
  if (hdr_.sparse) {
    while (frag_ < frags_.size() && frag_done_ == frags_[frag_].length) {
      ++frag_;
      frag_done_ = 0;
    }
    if (frag_ == frags_.size()) return TarChunk{hdr_.size, {}};
    off = frags_[frag_].offset + frag_done_;
    want = static_cast<uint64_t>(frags_[frag_].length - frag_done_);
  } else {
    if (remaining_ == 0) return TarChunk{logical_, {}};
    off = logical_;
    want = static_cast<uint64_t>(remaining_);
  }
  if (pos_ == end_) {
    absl::StatusOr<size_t> got = Ensure(1);
    if (!got.ok()) return Fail(got.status());
    if (*got == 0) return Fail(Truncated("an entry's data", offset()));
  }
  size_t k = static_cast<size_t>(std::min<uint64_t>({want, max, end_ - pos_}));
  TarChunk c{off, absl::string_view(buf_.get() + pos_, k)};
  pos_ += k;
  remaining_ -= static_cast<int64_t>(k);
  if (hdr_.sparse) {
    frag_done_ += static_cast<int64_t>(k);
  } else {
    logical_ += static_cast<int64_t>(k);
  }
  return c;
}

}  // namespace crisp::images
