#pragma once
// The e2e harness: a real crispd in a temp root with its own CNI conflist
// (bridge "crispe2e0", 10.88.0.0/16 from host-local in the temp dir),
// cgroup parent and socket, plus a leak check that every test runs inside.
#include <sys/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/e2e/cri_client.h"

namespace crisp::e2e {

struct DaemonOptions {
  std::string crispd_path;
  bool write_conflist = true;
  // Replaces the default conflist when non-empty.
  std::string conflist_json;
  std::vector<std::string> bin_dirs = {"/usr/lib/cni"};
  std::string extra_yaml;  // appended to crisp.yaml
  std::string log_level = "debug";
};

class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions opts);
  // Stops crispd and removes the bridge, the cgroup parent and the temp dir.
  ~Daemon();

  absl::Status Kill();      // SIGKILL, reaped
  absl::Status Launch();    // start crispd and wait for its socket
  absl::Status Restart() { auto s = Kill(); return s.ok() ? Launch() : s; }
  absl::Status Shutdown();  // SIGTERM: must exit 0 within 5 s

  CriClient& client() { return *client_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string root() const { return dir_ + "/root"; }
  std::string state() const { return dir_ + "/state"; }
  std::string conf_dir() const { return dir_ + "/net.d"; }
  std::string ipam_dir() const { return dir_ + "/ipam/crisp-e2e"; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  std::string LogTail(size_t lines = 40) const;

 private:
  DaemonOptions opts_;
  std::string dir_, cgroup_parent_, socket_;
  pid_t pid_ = 0;
  std::unique_ptr<CriClient> client_;
};

// What a test could leak, one entry per object ("mount /x", "link veth1", ...).
std::set<std::string> LeakSnapshot(const Daemon& d);

// Default conflist of the harness (bridge + portmap + loopback).
std::string DefaultConflist(const std::string& ipam_dir);

// The verbose info JSON of a sandbox (info["info"]); null on error.
nlohmann::json SandboxInfo(CriClient& c, const std::string& id);

// Runs `fn` on a thread that joined the namespace file at `ns_path`.
void InNamespace(const std::string& ns_path, int nstype, const std::function<void()>& fn);

// Base fixture: one crispd per test suite, leak check around each test.
class E2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;
  // Hook for suites that need a different daemon.
  static DaemonOptions Options();

  static std::unique_ptr<Daemon> daemon_;
  std::set<std::string> before_;
  pid_t before_pid_ = 0;
};

// Path of the crispd binary under test (set by the test's CMake target).
std::string CrispdPath();

}  // namespace crisp::e2e
