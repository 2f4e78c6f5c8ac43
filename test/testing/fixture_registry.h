#pragma once
// Loopback registries with the fixture images (test/fixtures) for tests and
// benchmarks: Debian's docker-registry on two 127.0.0.1 ports, one open and
// one with htpasswd Basic auth (user kFixtureUser / kFixturePass, holding
// crisp/busybox only).
//
// The fixture images and a registry storage with them pushed are built once
// into a cache dir (rebuilt when the fixture scripts change; flock'd, so
// several test processes can share it); every FixtureRegistries starts its
// own registries on private copies of that storage, so a test may damage its
// copy (CorruptBlob).
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace crisp::testing {

inline constexpr char kFixtureUser[] = "crisp";
inline constexpr char kFixturePass[] = "s3cret";

class FixtureRegistries {
 public:
  // Why fixtures cannot run here ("needs root", "skopeo is not installed"),
  // or "" if they can. Tests skip with this reason.
  static std::string SkipReason();

  // Builds the cache in `cache_dir` if needed (scripts from `fixtures_dir`),
  // copies its storages into a new /tmp dir and starts both registries; they
  // are also stopped if this process dies (WATCH_PID).
  static absl::StatusOr<std::unique_ptr<FixtureRegistries>> Start(const std::string& fixtures_dir,
                                                                   const std::string& cache_dir);
  // For tools (benchmarks): Start() with this build's fixture scripts and
  // cache; prints why not to stderr and returns null when it cannot.
  static std::unique_ptr<FixtureRegistries> StartOrExplain();

  // Stops the registries and deletes the copies.
  ~FixtureRegistries();

  // Starts one more registry serving the open registry's storage over HTTPS
  // with the PEM certificate `cert` and key `key`; returns its
  // "127.0.0.1:PORT". Stopped with the others.
  absl::StatusOr<std::string> StartTls(const std::string& cert, const std::string& key);

  const std::string& open() const { return open_; }  // "127.0.0.1:PORT"
  const std::string& auth() const { return auth_; }
  const std::string& open_dir() const { return open_dir_; }
  const std::string& cache() const { return cache_; }
  std::string Open(const std::string& repo) const { return open_ + "/" + repo; }
  std::string Auth(const std::string& repo) const { return auth_ + "/" + repo; }

  // Requests in the open registry's access log whose line contains `what`.
  int Requests(const std::string& what) const;
  // The manifest of fixture image `name` as built (from its OCI layout).
  nlohmann::json LayoutManifest(const std::string& name) const;
  // The open registry's storage file of blob `digest`.
  std::string BlobPath(const std::string& digest) const;
  // Flips bytes of blob `digest` in the open registry's storage, so that it
  // no longer matches its digest; returns the original content.
  absl::StatusOr<std::string> CorruptBlob(const std::string& digest) const;

 private:
  FixtureRegistries() = default;
  std::string fixtures_, cache_, work_, open_dir_, auth_dir_, tls_dir_, open_, auth_;
};

}  // namespace crisp::testing
