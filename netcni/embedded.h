#pragma once
// The embedded pod network: what the CNI bridge + host-local + portmap
// plugins do, done in-process with libnl, for hosts with no CNI config.
//
// On the host (created on first use, kept, shared by every pod):
//   * a bridge (default crisp0) holding the subnet's first address as the
//     pods' gateway, with a fixed MAC so that it does not follow its ports;
//   * net.ipv4.ip_forward=1;
//   * with masquerade, one nat POSTROUTING rule
//       -s SUBNET ! -d SUBNET -m comment --comment crisp-embedded:BRIDGE -j MASQUERADE
//   * for host ports, once the first pod asks for one: a nat chain
//     CRISP-HP-BRIDGE jumped to from PREROUTING and OUTPUT for local
//     destinations, a POSTROUTING masquerade of 127.0.0.0/8 leaving through
//     the bridge, and route_localnet=1 on the bridge (127.0.0.1:PORT works).
// Per pod:
//   * a veth pair made by one RTM_NEWLINK: the host end vethXXXXXXXXXXX
//     (named after the sandbox id) enslaved to the bridge, the other end
//     created directly inside the pod's netns as eth0, both up;
//   * an address from EmbeddedIpam and a default route via the gateway,
//     set from a helper thread that joined the pod's namespace;
//   * for host ports, a chain CRISP-HPD-XXXXXXXXXXXX of DNAT rules, jumped
//     to from CRISP-HP-BRIDGE (one iptables-restore call);
//   * a record <state_dir>/<id>-<ifname>.json for Teardown.
#include <memory>
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "netcni/cni.h"
#include "netcni/embedded_ipam.h"
#include "netcni/pod_network.h"

namespace crisp::netcni {

struct EmbeddedOptions {
  std::string bridge = "crisp0";
  std::string subnet = "10.88.0.0/16";  // the gateway is its first address
  bool masquerade = true;
  std::string ipam_dir;   // e.g. <root>/embedded-ipam
  std::string state_dir;  // e.g. <root>/embedded-network
  // iptables and iptables-restore; empty: looked up in PATH, then /usr/sbin, /sbin.
  std::string iptables_path, iptables_restore_path;
  absl::Duration command_timeout = absl::Seconds(30);
};

// A valid Linux interface name (1-15 bytes, no '/', ':', whitespace, not . or ..).
absl::Status ValidateInterfaceName(const std::string& name);

class EmbeddedNetwork : public PodNetwork {
 public:
  // `opts.subnet` must parse (ParseIpv4Subnet); crispd's config validation
  // checks it first. Nothing is touched until the first Setup.
  explicit EmbeddedNetwork(EmbeddedOptions opts);
  ~EmbeddedNetwork() override;

  std::string Kind() const override { return "embedded"; }
  // OK when the options are valid: the bridge is made by the first Setup.
  absl::Status Ready() override;
  std::string NetworkName() override { return "crisp-embedded"; }
  std::string ConfigFile() override { return ""; }
  absl::StatusOr<PodNetworkResult> Setup(const PodNetworkRequest& req) override;
  absl::Status Teardown(const PodNetworkRequest& req) override;
  absl::Status Check(const PodNetworkRequest& req) override;
  std::optional<PodNetworkResult> CachedResult(const std::string& container_id) override;

  // The host end of a pod's veth: "veth" + 11 hex digits of a hash of the
  // sandbox id and interface name (exposed for tests and leak checks).
  static std::string HostVethName(const std::string& container_id, const std::string& ifname);

  const EmbeddedOptions& options() const { return opts_; }

 private:
  struct Impl;
  EmbeddedOptions opts_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crisp::netcni
