// Layer unpack benchmark without a registry or a daemon: runs the stages of
// a pull's unpack (sha256 of the blob, inflate + sha256 of the tar, tar
// extraction into a fresh directory) over layer blobs on disk, one stage
// at a time and all together, serially and one thread per layer, so that
// CPU can be attributed to each stage (run it under perf or callgrind).
//
//   unpack_bench [--n 10] [--dir /var/tmp] BLOB...
//   unpack_bench $(build/test/fixture-cache/oci/large layer blobs)
//
// Prints p50/p90/max per stage for the whole set of blobs.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/unique_fd.h"
#include "images/digest.h"
#include "images/stream.h"
#include "images/unpack.h"

namespace {

using namespace crisp;
using namespace crisp::images;

struct Series {
  std::vector<double> ms;
  double Pct(double p) {
    std::sort(ms.begin(), ms.end());
    size_t i = static_cast<size_t>(p * (ms.size() - 1) + 0.5);
    return ms[std::min(i, ms.size() - 1)];
  }
};

void Die(const absl::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  std::exit(1);
}

// Stage 1: sha256 of the compressed blob.
void HashBlob(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  Sha256 h;
  FdSource src(fd.get(), &h);
  std::vector<char> buf(1 << 20);
  while (true) {
    auto n = src.Read(buf.data(), buf.size());
    Die(n.status());
    if (*n == 0) break;
  }
  (void)h.Finish();
}

// Stage 2: inflate + sha256 of the tar (the blob hash too when `blob_hash`).
void Inflate(const std::string& path, bool blob_hash) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  Sha256 bh, dh;
  FdSource src(fd.get(), blob_hash ? &bh : nullptr);
  DecompressingSource ds(&src, &dh);
  Die(ds.Drain());
  (void)dh.Finish();
}

// Everything: blob hash, inflate, diff hash, extraction.
void Unpack(const std::string& path, const std::string& dir) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  Sha256 bh, dh;
  FdSource src(fd.get(), &bh);
  DecompressingSource ds(&src, &dh);
  Die(MkdirAll(dir, 0755));
  ExtractOptions xo;
  auto st = ExtractTar(ds, dir, xo);
  Die(st.status());
  Die(ds.Drain());
  (void)dh.Finish();
  (void)bh.Finish();
}

template <typename F>
double Ms(F f) {
  absl::Time t = absl::Now();
  f();
  return absl::ToDoubleMilliseconds(absl::Now() - t);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 10;
  std::string base = "/var/tmp";
  std::vector<std::string> blobs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--dir" && i + 1 < argc) {
      base = argv[++i];
    } else {
      blobs.push_back(a);
    }
  }
  if (blobs.empty() || n < 1) {
    std::fprintf(stderr, "usage: %s [--n N] [--dir DIR] BLOB...\n", argv[0]);
    return 2;
  }
  std::string work = absl::StrCat(base, "/unpack-bench-", RandomHex(4));
  Die(MkdirAll(work, 0700));
  std::map<std::string, Series> s;
  auto parallel = [&](auto f) {
    std::vector<std::thread> t;
    for (size_t i = 0; i < blobs.size(); ++i) t.emplace_back([&, i] { f(i); });
    for (auto& th : t) th.join();
  };
  for (int it = 0; it < n; ++it) {
    s["1 sha256 blobs (serial)"].ms.push_back(Ms([&] {
      for (auto& b : blobs) HashBlob(b);
    }));
    s["2 inflate+sha256 tar (serial)"].ms.push_back(Ms([&] {
      for (auto& b : blobs) Inflate(b, false);
    }));
    s["3 unpack all (serial)"].ms.push_back(Ms([&] {
      for (size_t i = 0; i < blobs.size(); ++i) Unpack(blobs[i], absl::StrCat(work, "/s", it, "-", i));
    }));
    s["4 unpack all (thread per layer)"].ms.push_back(Ms([&] {
      parallel([&](size_t i) { Unpack(blobs[i], absl::StrCat(work, "/p", it, "-", i)); });
    }));
    s["5 sync (syncfs)"].ms.push_back(Ms([&] {
      UniqueFd fd(::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      ::syncfs(fd.get());
    }));
  }
  std::printf("%-40s %9s %9s %9s %6s\n", "stage", "p50 ms", "p90 ms", "max ms", "n");
  for (auto& [name, series] : s)
    std::printf("%-40s %9.2f %9.2f %9.2f %6zu\n", name.c_str(), series.Pct(0.5), series.Pct(0.9),
                series.Pct(1.0), series.ms.size());
  Die(RemoveAll(work));
  return 0;
}
