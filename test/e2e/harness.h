#pragma once
// The e2e harness: a real crispd in a temp root with its own CNI conflist
// (bridge "crispe2e0", 10.88.0.0/16 from host-local in the temp dir),
// cgroup parent and socket, plus a leak check that every test runs inside.
//
// Used by the e2e tests (fixture E2eTest) and by test/bench (class Daemon).
#include <sys/types.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/e2e/cri_client.h"

namespace crisp::e2e {

struct DaemonOptions {
  std::string crispd_path;  // default: CrispdPath()
  bool write_conflist = true;
  // Replaces the default conflist when non-empty; "@DIR@" in it is replaced
  // with the daemon's temp dir (e.g. "dataDir": "@DIR@/ipam").
  std::string conflist_json;
  // crispd's `network:` (cni, embedded, auto). "cni" by default so that the
  // suites that rename or empty the conf dir test CNI's readiness.
  std::string network = "cni";
  // Bridge and subnet of the default conflist, and of embedded_network (see
  // EmbeddedDaemonOptions). The bench uses its own so that it can run next
  // to the e2e suite.
  std::string bridge = "crispe2e0";
  std::string subnet = "10.88.0.0/16";
  std::vector<std::string> bin_dirs = {"/usr/lib/cni"};
  std::string extra_yaml;  // appended to crisp.yaml
  std::string log_level = "debug";
};

// One crispd in its own temp dir /tmp/crisp-e2e.XXXXXX:
//   crisp.yaml, crispd.log, crisp.sock, root/, state/, net.d/<conflist>,
//   ipam/<network>/ (host-local dataDir).
class Daemon {
 public:
  // Takes the machine-wide harness lock (waits up to 15 min for another run),
  // creates the temp dir, writes the conflist and crisp.yaml, starts crispd
  // and waits until it answers Version. Makes this process a child subreaper
  // (once) so that orphans (pause processes of a SIGKILLed crispd) are reaped.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions opts);
  // Destroy(), ignoring its result.
  ~Daemon();

  absl::Status Launch();    // start crispd and wait for it to serve (20 s; else killed)
  absl::Status Kill();      // SIGKILL, reaped
  absl::Status Restart() {  // SIGKILL and start again with the same dirs
    auto s = Kill();
    return s.ok() ? Launch() : s;
  }
  // SIGTERM while our client is connected: crispd must exit 0 within 5 s.
  absl::Status Shutdown();
  // OK if crispd is running; else says how it exited (and forgets it, so
  // that Launch() can start it again).
  absl::Status CheckAlive();

  // Tears everything down: removes pods still there (an error: a test left
  // them), Shutdown(), deletes the bridge, the cgroup parent (every
  // controller) and the temp dir, then verifies that none of it, no mount
  // under the temp dir and no new crisp-shim/crisp-pause process is left.
  // Cleans up what it can even when it reports a problem. Idempotent.
  absl::Status Destroy();

  CriClient& client() { return *client_; }
  pid_t pid() const { return pid_; }
  const DaemonOptions& options() const { return opts_; }
  const std::string& dir() const { return dir_; }
  std::string socket() const { return socket_; }
  std::string endpoint() const { return "unix://" + socket_; }
  std::string root() const { return dir_ + "/root"; }
  std::string state() const { return dir_ + "/state"; }
  std::string conf_dir() const { return dir_ + "/net.d"; }
  std::string conflist_path() const { return conf_dir() + "/10-e2e.conflist"; }
  // host-local keeps one file per allocated IP here (dataDir/<network name>);
  // the embedded network in <root>/embedded-ipam.
  std::string ipam_dir() const {
    return opts_.network == "cni" ? dir_ + "/ipam/crisp-e2e" : root() + "/embedded-ipam";
  }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  std::string LogTail(size_t lines = 40) const;

 private:
  Daemon() = default;

  DaemonOptions opts_;
  std::string dir_, cgroup_parent_, socket_;
  pid_t pid_ = 0;
  bool destroyed_ = false;
  int lock_fd_ = -1;  // flock'd /run/lock/crisp-e2e.lock while this daemon exists
  std::unique_ptr<CriClient> client_;
};

// What a test could leak, one entry per object, scoped to `d` where the
// object can be attributed (so that other tests running on the machine at the
// same time do not count): "mount <path> <fstype>" (under d's dir, or nsfs
// anywhere but other /tmp dirs),
// "netns <name>", "link <name>" (d's bridge's ports),
// "cgroup <dir>", "ip <addr>", "nat <rule>" (a pod's host port rules of the
// embedded network),
// "process <pid> <comm>", "file <path>", "crispd fds <n>".
std::set<std::string> LeakSnapshot(const Daemon& d);

// "+ x" for entries only in `after`, "- x" for entries only in `before`; "" if equal.
std::string DiffSnapshots(const std::set<std::string>& before, const std::set<std::string>& after);

// crisp-shim / crisp-pause processes on the machine ("process <pid> <comm>").
std::set<std::string> CrispProcesses();
// Those of them that belong to `d`: descendants of this (subreaper) process,
// in d's cgroup parent, or naming d's temp dir. Other crisp test binaries
// running at the same time (integration tests, another build dir) have their
// own shims, which are none of this daemon's business.
std::set<std::string> DaemonProcesses(const Daemon& d);

// A crispd with `network: embedded` on its own bridge and subnet (crispemb0,
// 10.90.0.0/16), so that it never shares them with the CNI daemons.
DaemonOptions EmbeddedDaemonOptions();

// The nat rules of the embedded network on `bridge` (iptables -t nat -S lines
// naming crisp-embedded:<bridge>, its host port chain or a pod's chain).
std::vector<std::string> EmbeddedNatRules(const std::string& bridge);

// The parent of process `pid` (from /proc/<pid>/stat); 0 if unknown.
pid_t ParentPid(const std::string& pid);
// True if `ancestor` is among `pid`'s ancestors (not `pid` itself).
bool DescendsFrom(pid_t pid, pid_t ancestor);

// Default conflist of the harness (bridge + host-local, portmap, loopback).
std::string DefaultConflist(const std::string& ipam_data_dir, const std::string& bridge,
                            const std::string& subnet);

// The verbose info JSON of a sandbox (info["info"]); null on error.
nlohmann::json SandboxInfo(CriClient& c, const std::string& id);

// Runs `fn` on a new thread that joined the namespace file at `ns_path`
// (nstype CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC); the calling thread never
// changes namespace. Fails the test if the namespace cannot be joined.
void InNamespace(const std::string& ns_path, int nstype, const std::function<void()>& fn);

// Runs argv (argv[0] an absolute path) and returns its stdout ("" on error).
std::string RunCapture(std::vector<std::string> argv);

// Base fixture: one crispd per test suite, leak check around each test, the
// tail of crispd's log printed when a test fails.
class E2eTest : public ::testing::Test {
 protected:
  // Suites that need another daemon define their own SetUpTestSuite calling
  // StartDaemon with their options.
  static void SetUpTestSuite() { StartDaemon(DaemonOptions{}); }
  static void TearDownTestSuite();
  static void StartDaemon(DaemonOptions opts);
  void SetUp() override;
  void TearDown() override;

  static std::unique_ptr<Daemon> daemon_;
  std::set<std::string> before_;
  pid_t before_pid_ = 0;
};

// Path of the crispd binary under test (set by CMake).
std::string CrispdPath();

}  // namespace crisp::e2e
