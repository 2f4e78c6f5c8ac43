#pragma once
// crispd configuration: /etc/crisp/crisp.yaml parsed once into a plain struct.
// Every path is configurable so that every test runs in a temp dir.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "netcni/pod_network.h"

namespace crisp::server {

struct CniConfig {
  std::string conf_dir = "/etc/cni/net.d";
  std::vector<std::string> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  absl::Duration plugin_timeout = absl::Seconds(60);
};

// The embedded pod network (netcni::EmbeddedNetwork).
struct EmbeddedNetworkConfig {
  std::string bridge = "crisp0";
  std::string subnet = "10.88.0.0/16";  // the bridge (gateway) gets the first address
  bool masquerade = true;
};

struct RegistryAuth {
  std::string username, password, auth, identity_token;
};

struct RegistryConfig {
  std::map<std::string, std::vector<std::string>> mirrors;
  std::vector<std::string> insecure;
  std::map<std::string, std::string> ca_files;
  std::map<std::string, RegistryAuth> auths;
};

// The streaming server behind the URLs of Exec, Attach and PortForward.
struct StreamingConfig {
  std::string address = "127.0.0.1";
  int port = 0;  // 0: a random free port
  std::string tls_cert_file, tls_key_file;  // TLS when both are set
  absl::Duration idle_timeout = absl::Hours(4);
};

struct Config {
  std::string socket = "/run/crisp/crisp.sock";
  std::string root = "/var/lib/crisp";
  std::string state = "/run/crisp";
  std::string log_level = "info";
  std::string shim_path;  // empty: crisp-shim next to the crispd binary
  std::string cgroup_parent = "/crisp";
  uint64_t shm_size = 64ull << 20;
  // Which pod network new pods get: CNI plugins, the embedded network, or
  // auto (embedded exactly while cni.conf_dir holds no config file).
  netcni::NetworkMode network = netcni::NetworkMode::kAuto;
  CniConfig cni;
  EmbeddedNetworkConfig embedded_network;
  RegistryConfig registry;
  StreamingConfig streaming;
  // Stats RPCs reuse a cgroup sample younger than this.
  absl::Duration stats_period = absl::Seconds(1);

  // Checks values that parsing alone cannot (absolute paths, levels, ...).
  // INVALID_ARGUMENT naming the key.
  absl::Status Validate() const;
};

// Parses YAML text. Unknown keys and ill-typed values are INVALID_ARGUMENT
// naming the key (e.g. "cni.plugin_timeout: invalid duration \"x\"").
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text);

// Reads and parses a file. A missing file at the default path yields the
// defaults; a missing file that was asked for explicitly is NOT_FOUND.
absl::StatusOr<Config> LoadConfig(const std::string& path, bool must_exist);

// The commented default configuration (`crispd config default`). Parsing it
// yields exactly Config{}.
std::string DefaultConfigYaml();

// The effective configuration as JSON (Status verbose info).
std::string ConfigToJson(const Config& c);

}  // namespace crisp::server
