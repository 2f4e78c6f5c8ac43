#include "test/testing/fixture_registry.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "images/digest.h"

namespace crisp::testing {
namespace {

struct RunResult {
  int status = -1;
  std::string out;
};

// Runs a shell command, capturing stdout (stderr goes to ours). Through
// crisp's Reaper, the only thing that may wait for children in processes
// that use it (popen/pclose would race with its waitpid(-1)).
RunResult Run(const std::string& cmd) {
  RunResult r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return r;
  auto pid = Reaper::Spawn({.argv = {"/bin/sh", "-c", cmd}, .stdout_fd = p[1], .stderr_fd = 2});
  ::close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  if (!pid.ok()) return r;
  auto st = Reaper::Wait(*pid);
  if (st.ok()) r.status = *st;
  return r;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Starts a registry on `dir` (with htpasswd if `creds` is "user:pass";
// `env` is put before the command, e.g. "TLS_CERT=... TLS_KEY=... ");
// returns its port.
absl::StatusOr<std::string> StartRegistry(const std::string& fixtures, const std::string& dir,
                                          const std::string& creds, const std::string& env = "") {
  RunResult r = Run(absl::StrCat(env, "WATCH_PID=", ::getpid(), " ", Quote(fixtures + "/registry.sh"),
                                 " start ", Quote(dir), creds.empty() ? "" : " " + creds));
  std::string port(absl::StripAsciiWhitespace(r.out));
  if (r.status != 0 || port.empty()) return absl::InternalError("starting a registry in " + dir + " failed");
  return port;
}

void StopRegistry(const std::string& fixtures, const std::string& dir) {
  Run(absl::StrCat(Quote(fixtures + "/registry.sh"), " stop ", Quote(dir)));
}

// (Re)builds the fixture images and pushed registry storages in `cache`
// unless they were built from the same scripts.
absl::Status BuildCache(const std::string& fixtures, const std::string& cache) {
  std::string stamp;
  for (const char* s : {"build-images.sh", "push-images.sh", "registry.sh", "pause.c"}) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(fixtures + "/" + s));
    stamp += text;
  }
  stamp = images::Sha256Digest(stamp);
  RETURN_IF_ERROR(MkdirAll(cache));
  UniqueFd lock(::open((cache + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.valid()) return ErrnoStatus(errno, "opening " + cache + "/lock");
  if (::flock(lock.get(), LOCK_EX) != 0) return ErrnoStatus(errno, "locking the fixture cache");
  auto have = ReadFile(cache + "/stamp");
  if (have.ok() && *have == stamp) return absl::OkStatus();
  auto t0 = std::chrono::steady_clock::now();
  for (const char* d : {"/oci", "/registry-open", "/registry-auth", "/stamp"}) RETURN_IF_ERROR(RemoveAll(cache + d));
  if (Run(absl::StrCat(Quote(fixtures + "/build-images.sh"), " ", Quote(cache + "/oci"), " >&2")).status != 0)
    return absl::InternalError("build-images.sh failed");
  ASSIGN_OR_RETURN(std::string open_port, StartRegistry(fixtures, cache + "/registry-open", ""));
  auto auth_port = StartRegistry(fixtures, cache + "/registry-auth", absl::StrCat(kFixtureUser, ":", kFixturePass));
  int push1 = -1, push2 = -1;
  if (auth_port.ok()) {
    push1 = Run(absl::StrCat(Quote(fixtures + "/push-images.sh"), " ", Quote(cache + "/oci"), " 127.0.0.1:",
                             open_port))
                .status;
    push2 = Run(absl::StrCat(Quote(fixtures + "/push-images.sh"), " ", Quote(cache + "/oci"), " 127.0.0.1:",
                             *auth_port, " ", kFixtureUser, ":", kFixturePass, " busybox"))
                .status;
  }
  StopRegistry(fixtures, cache + "/registry-open");
  StopRegistry(fixtures, cache + "/registry-auth");
  if (!auth_port.ok()) return auth_port.status();
  if (push1 != 0 || push2 != 0) return absl::InternalError("push-images.sh failed");
  // The copies must start with empty access logs.
  RETURN_IF_ERROR(RemoveAll(cache + "/registry-open/log"));
  RETURN_IF_ERROR(RemoveAll(cache + "/registry-auth/log"));
  RETURN_IF_ERROR(WriteFileAtomic(cache + "/stamp", stamp));
  std::fprintf(stderr, "built fixture images and registry storage in %lld ms\n",
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
                       .count()));
  return absl::OkStatus();
}

}  // namespace

std::string FixtureRegistries::SkipReason() {
  if (::geteuid() != 0) return "needs root";
  for (const char* tool : {"docker-registry", "skopeo", "htpasswd", "curl", "zstd"}) {
    if (Run(absl::StrCat("command -v ", tool, " >/dev/null")).status != 0)
      return absl::StrCat(tool, " is not installed");
  }
  return "";
}

absl::StatusOr<std::unique_ptr<FixtureRegistries>> FixtureRegistries::Start(const std::string& fixtures_dir,
                                                                             const std::string& cache_dir) {
  RETURN_IF_ERROR(BuildCache(fixtures_dir, cache_dir));
  std::unique_ptr<FixtureRegistries> r(new FixtureRegistries());
  r->fixtures_ = fixtures_dir;
  r->cache_ = cache_dir;
  char tmpl[] = "/tmp/crisp-registries.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return ErrnoStatus(errno, "mkdtemp");
  r->work_ = tmpl;
  r->open_dir_ = r->work_ + "/registry-open";
  r->auth_dir_ = r->work_ + "/registry-auth";
  for (const auto& [from, to] : {std::pair{cache_dir + "/registry-open", r->open_dir_},
                                 std::pair{cache_dir + "/registry-auth", r->auth_dir_}}) {
    if (Run(absl::StrCat("cp -a ", Quote(from), " ", Quote(to))).status != 0)
      return absl::InternalError("copying " + from);
  }
  // The copied storage keeps the cache's registry config; registry.sh writes a new one.
  ASSIGN_OR_RETURN(std::string open_port, StartRegistry(fixtures_dir, r->open_dir_, ""));
  r->open_ = "127.0.0.1:" + open_port;
  ASSIGN_OR_RETURN(std::string auth_port,
                   StartRegistry(fixtures_dir, r->auth_dir_, absl::StrCat(kFixtureUser, ":", kFixturePass)));
  r->auth_ = "127.0.0.1:" + auth_port;
  return r;
}

std::unique_ptr<FixtureRegistries> FixtureRegistries::StartOrExplain() {
  if (std::string why = SkipReason(); !why.empty()) {
    std::fprintf(stderr, "cannot run the fixture registries: %s\n", why.c_str());
    return nullptr;
  }
  auto r = Start(CRISP_FIXTURES_DIR, CRISP_FIXTURE_CACHE);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    return nullptr;
  }
  return std::move(*r);
}

absl::StatusOr<std::string> FixtureRegistries::StartTls(const std::string& cert, const std::string& key) {
  std::string dir = work_ + "/registry-tls";
  RETURN_IF_ERROR(MkdirAll(dir));
  if (::symlink((open_dir_ + "/data").c_str(), (dir + "/data").c_str()) != 0)
    return ErrnoStatus(errno, "linking the open registry's storage into " + dir);
  tls_dir_ = dir;
  ASSIGN_OR_RETURN(std::string port,
                   StartRegistry(fixtures_, dir, "",
                                 absl::StrCat("TLS_CERT=", Quote(cert), " TLS_KEY=", Quote(key), " ")));
  return "127.0.0.1:" + port;
}

FixtureRegistries::~FixtureRegistries() {
  if (work_.empty()) return;
  StopRegistry(fixtures_, open_dir_);
  StopRegistry(fixtures_, auth_dir_);
  if (!tls_dir_.empty()) StopRegistry(fixtures_, tls_dir_);
  absl::Status s = RemoveAll(work_);
  if (!s.ok()) std::fprintf(stderr, "removing %s: %s\n", work_.c_str(), s.ToString().c_str());
}

int FixtureRegistries::Requests(const std::string& what) const {
  auto log = ReadFile(open_dir_ + "/log");
  if (!log.ok()) return 0;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(*log, '\n'))
    if (absl::StrContains(line, what)) ++n;
  return n;
}

nlohmann::json FixtureRegistries::LayoutManifest(const std::string& name) const {
  std::string dir = absl::StrCat(cache_, "/oci/", name);
  auto index_text = ReadFile(dir + "/index.json");
  if (!index_text.ok()) return nullptr;
  auto index = nlohmann::json::parse(*index_text, nullptr, false);
  if (index.is_discarded()) return nullptr;
  std::string d = index["manifests"][0]["digest"];
  auto man = ReadFile(dir + "/blobs/sha256/" + images::DigestHex(d));
  if (!man.ok()) return nullptr;
  return nlohmann::json::parse(*man, nullptr, false);
}

std::string FixtureRegistries::BlobPath(const std::string& digest) const {
  std::string hex = images::DigestHex(digest);
  return absl::StrCat(open_dir_, "/data/docker/registry/v2/blobs/sha256/", hex.substr(0, 2), "/", hex, "/data");
}

absl::StatusOr<std::string> FixtureRegistries::CorruptBlob(const std::string& digest) const {
  std::string path = BlobPath(digest);
  ASSIGN_OR_RETURN(std::string orig, ReadFile(path));
  std::string bad = orig;
  for (size_t i = 100; i < bad.size(); i += 97) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  RETURN_IF_ERROR(WriteFileAtomic(path, bad));
  return orig;
}

}  // namespace crisp::testing
