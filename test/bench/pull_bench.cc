// Image benchmark: PullImage of the "large" fixture (5 layers, ~6.5 MiB
// compressed, ~16 MiB / ~1300 files unpacked) from a loopback docker-registry,
// cold (empty store) and again with nothing new; RemoveImage; then ListImages
// and ImageStatus with V images in the store (V variants sharing one layer).
// Starts its own registries (test/testing/fixture_registry.h) and its own
// crispd unless --endpoint names a running CRI runtime (which must treat
// 127.0.0.1:PORT as a plain-HTTP registry). Not a ctest test: run by hand, as
// root, on an otherwise idle machine.
//
//   pull_bench [--n 15] [--variants 100] [--endpoint unix:///run/containerd/containerd.sock]
//   pull_bench --log-level debug   # crispd's log (tail printed) shows "pull steps:" timings
//   pull_bench --crispd PATH       # another crispd binary (or a wrapper, e.g. under strace)
//   pull_bench --image REF         # the cold-pull loop pulls REF instead of the fixture
//                                  # `large` (e.g. an image in a loopback registry of yours)
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "test/bench/bench_util.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"

namespace crisp::e2e {
namespace {

using bench::Check;
using bench::Series;
using bench::Time;
using Stub = cri::ImageService::Stub;

std::string Pull(CriClient* c, const std::string& ref) {
  cri::PullImageRequest req;
  req.mutable_image()->set_image(ref);
  cri::PullImageResponse resp;
  Check(c->Image(&Stub::PullImage, req, &resp), "PullImage " + ref);
  return resp.image_ref();
}

void Remove(CriClient* c, const std::string& ref) {
  cri::RemoveImageRequest req;
  req.mutable_image()->set_image(ref);
  cri::RemoveImageResponse resp;
  Check(c->Image(&Stub::RemoveImage, req, &resp), "RemoveImage " + ref);
}

// User + system CPU time of process `pid` (all its threads), or 0 if unknown.
absl::Duration CpuTime(pid_t pid) {
  if (pid <= 0) return absl::ZeroDuration();
  std::FILE* f = std::fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (f == nullptr) return absl::ZeroDuration();
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // comm may contain spaces
  unsigned long long utime = 0, stime = 0;
  if (p == nullptr || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
    return absl::ZeroDuration();
  return absl::Seconds(static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK)));
}

void Measure(CriClient* c, const testing::FixtureRegistries& reg, const std::string& image, int n, int variants,
             pid_t daemon_pid, std::map<std::string, Series>& s, std::set<std::string>& live) {
  const std::string large = image.empty() ? reg.Open("crisp/large:latest") : image;
  const std::string name = image.empty() ? "large" : image;
  // Warm-up: connections, resolver, the store's directories.
  live.insert(Pull(c, reg.Open("crisp/busybox:latest")));
  Remove(c, reg.Open("crisp/busybox:latest"));
  live.clear();

  for (int i = 0; i < n; ++i) {
    std::string id;
    absl::Duration cpu0 = CpuTime(daemon_pid);
    s["PullImage " + name + " (empty store)"].Add(Time([&] { id = Pull(c, large); }));
    if (daemon_pid > 0) s["PullImage " + name + " (empty store), crispd CPU"].Add(CpuTime(daemon_pid) - cpu0);
    live.insert(id);
    s["PullImage " + name + " (again, nothing new)"].Add(Time([&] { Pull(c, large); }));
    s["RemoveImage " + name].Add(Time([&] { Remove(c, id); }));
    live.erase(id);
  }

  for (int i = 1; i <= variants; ++i) {
    std::string id;
    s["PullImage variant (layer already there)"].Add(
        Time([&] { id = Pull(c, reg.Open(absl::StrCat("crisp/variants:v", i))); }));
    live.insert(id);
  }
  const std::string probe = reg.Open(absl::StrCat("crisp/variants:v", std::max(variants / 2, 1)));
  for (int i = 0; i < 200; ++i) {
    cri::ListImagesResponse l;
    s[absl::StrCat("ListImages (", variants, " images)")].Add(
        Time([&] { Check(c->Image(&Stub::ListImages, cri::ListImagesRequest(), &l), "ListImages"); }));
    if (l.images_size() != variants) throw std::runtime_error(absl::StrCat("listed ", l.images_size(), " images"));
    cri::ImageStatusRequest req;
    req.mutable_image()->set_image(probe);
    cri::ImageStatusResponse st;
    s[absl::StrCat("ImageStatus by tag (", variants, " images)")].Add(
        Time([&] { Check(c->Image(&Stub::ImageStatus, req, &st), "ImageStatus"); }));
    if (!st.has_image()) throw std::runtime_error("ImageStatus found no image for " + probe);
  }
  for (const std::string& id : std::set<std::string>(live)) {
    Remove(c, id);
    live.erase(id);
  }
}

int Main(int argc, char** argv) {
  int n = 15, variants = 100;
  std::string endpoint, crispd_path, log_level, image;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--variants" && i + 1 < argc) {
      variants = std::atoi(argv[++i]);
    } else if (a == "--endpoint" && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (a == "--crispd" && i + 1 < argc) {
      crispd_path = argv[++i];
    } else if (a == "--log-level" && i + 1 < argc) {
      log_level = argv[++i];
    } else if (a == "--image" && i + 1 < argc) {
      image = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: %s [--n N] [--variants V] [--image REF] [--endpoint unix:///path | --crispd PATH --log-level L]\n",
                   argv[0]);
      return 2;
    }
  }
  if (n < 1 || variants < 1) {
    std::fprintf(stderr, "--n and --variants must be >= 1\n");
    return 2;
  }
  auto reg = testing::FixtureRegistries::StartOrExplain();
  if (!reg) return 1;
  std::string pushed = RunCapture({"/bin/bash", "-c",
                                   absl::StrCat(CRISP_FIXTURES_DIR, "/push-variants.sh ", reg->cache(),
                                                "/oci ", reg->open(), " ", variants, " && echo ok")});
  if (pushed != "ok\n") {
    std::fprintf(stderr, "push-variants.sh failed\n");
    return 1;
  }

  DaemonOptions o;
  o.log_level = log_level.empty() ? "info" : log_level;  // debug logging would be measured too
  o.write_conflist = false;
  o.crispd_path = crispd_path;
  bench::Target t;
  if (!t.Open(endpoint, o)) return t.Close(1);
  CriClient* c = t.client;

  std::map<std::string, Series> s;
  std::set<std::string> live;
  int rc = 0;
  try {
    Measure(c, *reg, image, n, variants, t.daemon ? t.daemon->pid() : 0, s, live);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    if (t.daemon) std::fprintf(stderr, "crispd log tail:\n%s", t.daemon->LogTail().c_str());
    for (const auto& id : live) {  // leave the runtime as we found it
      cri::RemoveImageRequest req;
      req.mutable_image()->set_image(id);
      cri::RemoveImageResponse resp;
      (void)c->Image(&Stub::RemoveImage, req, &resp);
    }
    rc = 1;
  }
  if (rc == 0) {
    std::printf("runtime: %s %s via %s\nregistry: docker-registry on %s, %ld cores\n\n",
                t.version.runtime_name().c_str(), t.version.runtime_version().c_str(), t.where.c_str(), reg->open().c_str(), sysconf(_SC_NPROCESSORS_ONLN));
    bench::PrintTable(s);
    if (t.daemon && log_level == "debug")
      std::printf("\n%s", RunCapture({"/bin/grep", "-E", "pull steps", t.daemon->dir() + "/crispd.log"}).c_str());
  }
  return t.Close(rc);
}

}  // namespace
}  // namespace crisp::e2e

int main(int argc, char** argv) { return crisp::e2e::Main(argc, argv); }
