#pragma once
// The pod sandbox controller: everything a pod is made of besides its
// containers — the pause process holding the pod's namespaces, the pins of
// those namespaces, hostname/hosts/resolv.conf files, /dev/shm, the pod
// cgroup and the CNI network — created with rollback and torn down
// idempotently. It holds no global state: the server's store owns Sandbox
// objects and serialises operations on each one.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cri/api.pb.h"
#include "common/proc.h"
#include "netcni/pod_network.h"
#include "nlohmann/json.hpp"
#include "runtime/cgroups.h"

namespace crisp::podsandbox {

enum class SandboxState { kReady, kNotReady };

struct Sandbox {
  std::string id;
  ::runtime::v1::PodSandboxConfig config;
  std::string runtime_handler;
  int64_t created_at = 0;  // ns since the epoch
  SandboxState state = SandboxState::kNotReady;
  ProcessId pause;
  bool host_network = false;
  bool host_ipc = false;
  ::runtime::v1::NamespaceMode pid_mode = ::runtime::v1::CONTAINER;
  // Pinned namespace files by type ("net", "ipc", "uts", "pid").
  std::map<std::string, std::string> ns_paths;
  std::string cgroup_path;  // relative to the hierarchy roots
  bool network_set_up = false;  // network Setup done and Teardown not yet done
  // The backend (netcni::PodNetwork::Kind()) this pod's network belongs to,
  // recorded before Setup runs and cleared once Teardown succeeded: a pod
  // is torn down by the backend that set it up, whatever the config says
  // by then, and a Setup interrupted by a crash is torn down too. Records
  // from before there was a choice have "" (CNI) and network_set_up.
  std::string network_kind;
  std::vector<netcni::PodIp> ips;
  nlohmann::json cni_result;
  std::string hostname_path, hosts_path, resolv_conf_path, shm_path;
  // Set when the metadata file could not be read back: only Stop/Remove make sense.
  std::string load_error;

  std::string netns_path() const {
    auto it = ns_paths.find("net");
    return it == ns_paths.end() ? "" : it->second;
  }
};

struct ControllerOptions {
  std::string root;   // persistent: <root>/sandboxes/<id>
  std::string state;  // volatile: <state>/sandboxes/<id>, <state>/ns/<id>
  std::string shim_path;
  std::string default_cgroup_parent = "/crisp";
  uint64_t shm_size = 64ull << 20;
  std::string host_hosts_file = "/etc/hosts";
  std::string host_resolv_conf = "/etc/resolv.conf";
};

class Controller {
 public:
  // `networks` picks the pod network backend (CNI or embedded) per pod.
  Controller(ControllerOptions opts, netcni::NetworkSelector* networks, runtime::CgroupManager* cgroups);

  // Creates a ready sandbox with id `id`. Validates the config first
  // (INVALID_ARGUMENT for bad sysctls etc.). Every step registers its undo;
  // on failure everything done so far is undone and the error says which
  // step failed. The sandbox is persisted before returning.
  absl::StatusOr<Sandbox> Run(const std::string& id, const ::runtime::v1::PodSandboxConfig& config,
                              const std::string& runtime_handler, const std::string& pod_cidr);

  // Tears down the network (by the backend that set it up), kills the pause process and releases
  // the namespace pins and /dev/shm. Idempotent; persists the new state. If
  // a step fails, the sandbox keeps what is left and the next Stop retries.
  absl::Status Stop(Sandbox& sb, const std::string& pod_cidr);

  // Stop, then removes the cgroup and every file of the sandbox.
  absl::Status Remove(Sandbox& sb, const std::string& pod_cidr);

  // Loads every persisted sandbox and reconciles it with reality: READY only
  // if its pause process (pid + start time) is alive and its namespace pins
  // are mounted. A sandbox whose metadata cannot be read comes back NOTREADY
  // with load_error set, so that it can still be stopped and removed.
  std::vector<Sandbox> LoadAll();

  // Persists meta.json (fsync'd unless !durable).
  absl::Status Save(const Sandbox& sb, bool durable = true);

  // Paths of a sandbox's directories.
  std::string SandboxDir(const std::string& id) const;
  std::string VolatileDir(const std::string& id) const;
  std::string NsDir(const std::string& id) const;

  // JSON for PodSandboxStatus verbose info.
  nlohmann::json VerboseInfo(const Sandbox& sb) const;

 private:
  netcni::PodNetworkRequest NetworkRequest(const Sandbox& sb, const std::string& pod_cidr) const;

  ControllerOptions opts_;
  netcni::NetworkSelector* networks_;
  runtime::CgroupManager* cgroups_;
};

// cgroup settings of the sandbox: linux.resources plus linux.overhead.
runtime::CgroupResources PodCgroupResources(const ::runtime::v1::LinuxPodSandboxConfig& linux);

// File contents, exposed for unit tests.
std::string ResolvConfContent(const ::runtime::v1::DNSConfig& dns);
std::string DefaultHostsContent();

// Serialisation of a Sandbox to/from its meta.json (for unit tests too).
std::string SandboxToJson(const Sandbox& sb);
absl::StatusOr<Sandbox> SandboxFromJson(const std::string& json);

}  // namespace crisp::podsandbox
