#pragma once
// The pod network as the sandbox controller sees it: one interface with two
// implementations, CNI plugins (CniManager) and crisp's own embedded bridge
// network (EmbeddedNetwork), and the selector that decides which one a new
// pod gets. A pod is always torn down by the backend that set it up: the
// controller records Kind() with the sandbox and asks the selector for that
// backend by name later, whatever the configuration says by then.
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "netcni/types.h"

namespace crisp::netcni {

class PodNetwork {
 public:
  virtual ~PodNetwork() = default;

  // "cni" or "embedded": what the controller records with a sandbox.
  virtual std::string Kind() const = 0;

  // OK if pods can get a network now; otherwise FAILED_PRECONDITION saying
  // why (Status reports it as NetworkReady=false).
  virtual absl::Status Ready() = 0;

  // The network's name and where its configuration comes from, for status
  // and verbose output.
  virtual std::string NetworkName() = 0;
  virtual std::string ConfigFile() = 0;

  // Gives the pod in req.netns_path its interface req.ifname, addresses and
  // routes. On failure everything done so far is undone. On success the
  // result is recorded (persistently) so that Teardown works after a restart
  // or a configuration change.
  virtual absl::StatusOr<PodNetworkResult> Setup(const PodNetworkRequest& req) = 0;

  // Undoes Setup using the recorded result when there is one. Idempotent: OK
  // when there is nothing to tear down; a missing namespace is tolerated.
  // Removes the record on success; on failure it stays for a retry.
  virtual absl::Status Teardown(const PodNetworkRequest& req) = 0;

  // Verifies that what Setup made is still in place. NOT_FOUND if nothing is
  // recorded for the sandbox.
  virtual absl::Status Check(const PodNetworkRequest& req) = 0;

  // The recorded result of a sandbox, if any.
  virtual std::optional<PodNetworkResult> CachedResult(const std::string& container_id) = 0;
};

enum class NetworkMode { kCni, kEmbedded, kAuto };

// "cni" / "embedded" / "auto" <-> NetworkMode.
absl::StatusOr<NetworkMode> ParseNetworkMode(const std::string& s);
std::string NetworkModeName(NetworkMode m);

// True if `conf_dir` holds a file CniManager would load (*.conflist, *.conf,
// *.json), whether or not it parses.
bool HasCniConfigFile(const std::string& conf_dir);

// Picks the backend for new pods and finds the one an existing pod used.
// Thread-safe; owns neither backend.
class NetworkSelector {
 public:
  // `embedded` may be null only when mode is kCni.
  NetworkSelector(NetworkMode mode, PodNetwork* cni, PodNetwork* embedded, std::string cni_conf_dir);

  // The backend a pod created now gets: the configured one, or with kAuto
  // the embedded network exactly when the CNI conf dir has no config file
  // (checked at every call, so dropping a conflist in switches new pods to
  // CNI; existing pods keep theirs).
  PodNetwork* Current() const;

  // The backend named `kind` (Kind() of one of them); "" is "cni", what
  // sandboxes recorded before there was a choice. Null for anything else.
  PodNetwork* ByKind(const std::string& kind) const;

  NetworkMode mode() const { return mode_; }

 private:
  NetworkMode mode_;
  PodNetwork* cni_;
  PodNetwork* embedded_;
  std::string conf_dir_;
};

}  // namespace crisp::netcni
