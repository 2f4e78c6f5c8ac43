#pragma once
// CNI for pod sandboxes: loads the network configuration, runs the plugins
// (ADD / DEL / CHECK, per the CNI spec 0.3.0 - 1.0.0) and caches results so
// that DEL works even after the configuration changed.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "netcni/pod_network.h"
#include "netcni/types.h"
#include "nlohmann/json.hpp"

namespace crisp::netcni {

// Runs one plugin binary. The real one spawns it (common/reaper); tests use a fake.
class CniInvoker {
 public:
  virtual ~CniInvoker() = default;
  struct Result {
    int exit_code = 0;
    std::string stdout_data;
    std::string stderr_data;
  };
  // Runs `plugin_path` with exactly `env` and `stdin_data` on its stdin.
  // Returns the exit code and both outputs; an error only if it could not be
  // run at all or did not finish within `timeout` (DEADLINE_EXCEEDED; the
  // plugin is killed).
  virtual absl::StatusOr<Result> Exec(const std::string& plugin_path, const std::vector<std::string>& env,
                                      const std::string& stdin_data, absl::Duration timeout) = 0;
};

std::unique_ptr<CniInvoker> NewExecInvoker();

// What the exec invoker does, for any command: runs argv (argv[0] an
// absolute path) with exactly `env`, feeds `stdin_data`, collects both
// outputs and the exit code; killed after `timeout` (DEADLINE_EXCEEDED).
absl::StatusOr<CniInvoker::Result> RunCommand(const std::vector<std::string>& argv,
                                              const std::vector<std::string>& env, const std::string& stdin_data,
                                              absl::Duration timeout);

struct CniOptions {
  std::string conf_dir = "/etc/cni/net.d";
  std::vector<std::string> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  std::string cache_dir;  // where results are cached (persistent), e.g. <root>/cni
  absl::Duration plugin_timeout = absl::Seconds(60);
};

class CniManager : public PodNetwork {
 public:
  CniManager(CniOptions opts, std::unique_ptr<CniInvoker> invoker);

  std::string Kind() const override { return "cni"; }

  // OK if a loadable configuration exists (reloading it if the directory
  // changed); otherwise FAILED_PRECONDITION with a message saying why (no
  // file, parse error naming the file, plugin binary missing).
  absl::Status Ready() override;

  // The name and file of the loaded network, for status/verbose output.
  std::string NetworkName() override;
  std::string ConfigFile() override;

  // Runs ADD for every plugin in the list, chaining prevResult. On failure
  // runs DEL for what was added and returns the error naming the plugin and
  // its message (JSON "msg"/"details" or stderr). The result (and the exact
  // config used) is cached under cache_dir before returning OK.
  absl::StatusOr<PodNetworkResult> Setup(const PodNetworkRequest& req) override;

  // Runs DEL in reverse order using the cached config and result if there is
  // one (else the current config). OK if there is nothing to delete. A
  // missing netns is tolerated. Removes the cache entry on success.
  absl::Status Teardown(const PodNetworkRequest& req) override;

  // Runs CHECK (configs >= 0.4.0) against the cached result.
  absl::Status Check(const PodNetworkRequest& req) override;

  // The cached result for a sandbox, if any (used on crispd restart).
  std::optional<PodNetworkResult> CachedResult(const std::string& container_id) override;

 private:
  // implementation-defined members
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Pod IPs from a plugin result (0.3.0 - 1.0.0): addresses on interfaces
// inside the sandbox (all of them if no address is on one), the first IPv4
// moved to the front, the rest in result order. Exposed for tests.
PodNetworkResult ParseResult(const std::string& network, const nlohmann::json& result);

// Brings the loopback interface up inside the network namespace at
// `netns_path` (a pinned /proc/<pid>/ns/net file), using libnl from a helper
// thread that joins the namespace; crispd's own threads never change namespace.
absl::Status BringUpLoopback(const std::string& netns_path);

// A TCP connection to localhost:`port` inside the network namespace at
// `netns_path` (in crispd's own namespace when it is empty: host-network
// pods), opened by a helper thread that joins the namespace; the socket works
// from any thread afterwards. 127.0.0.1 first, then ::1 (as "localhost"
// resolves). UNAVAILABLE naming the port when nothing listens.
absl::StatusOr<UniqueFd> DialLocalhost(const std::string& netns_path, uint16_t port);

// Global-scope addresses currently configured on `ifname` inside the
// namespace (on every interface if `ifname` is empty; lo's addresses are
// host-scope and never listed), read with libnl from a helper thread.
absl::StatusOr<std::vector<PodIp>> ListAddresses(const std::string& netns_path, const std::string& ifname);

}  // namespace crisp::netcni
