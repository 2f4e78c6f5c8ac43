#pragma once
// What a pod network is asked for and what it answers, shared by every
// backend (CNI plugins, the embedded network).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace crisp::netcni {

struct PortMapping {
  std::string protocol = "tcp";  // "tcp", "udp", "sctp"
  int32_t container_port = 0;
  int32_t host_port = 0;
  std::string host_ip;
};

struct BandwidthLimits {
  uint64_t ingress_rate = 0, ingress_burst = 0, egress_rate = 0, egress_burst = 0;  // bits/s, bits
};

struct PodNetworkRequest {
  std::string container_id;  // the sandbox id
  std::string netns_path;    // CNI_NETNS
  std::string ifname = "eth0";
  std::string pod_name, pod_namespace, pod_uid;
  std::vector<PortMapping> port_mappings;
  // DNS servers/searches/options for the "dns" capability.
  std::vector<std::string> dns_servers, dns_searches, dns_options;
  std::optional<BandwidthLimits> bandwidth;
  std::string pod_cidr;  // from UpdateRuntimeConfig; "ipRanges" capability
};

struct PodIp {
  std::string address;  // without prefix length, e.g. "10.88.0.5"
  int prefix_len = 0;
  bool ipv6 = false;
};

struct PodNetworkResult {
  std::string network_name;
  std::vector<PodIp> ips;     // primary first: the first IPv4, then the rest in result order
  nlohmann::json raw_result;  // the final plugin's result
};

}  // namespace crisp::netcni
