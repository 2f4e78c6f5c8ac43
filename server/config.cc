#include "server/config.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/units.h"
#include "netcni/embedded.h"
#include "netcni/embedded_ipam.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace crisp::server {
namespace {

absl::Status KeyError(const std::string& key, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config key \"", key, "\": ", why));
}

// Rejects keys of `node` that are not in `known`.
absl::Status CheckKeys(const YAML::Node& node, const std::string& prefix, const std::set<std::string>& known) {
  if (!node.IsMap()) return KeyError(prefix.empty() ? "<top>" : prefix, "must be a mapping");
  for (const auto& kv : node) {
    std::string k = kv.first.as<std::string>();
    if (!known.count(k)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown config key \"", prefix.empty() ? "" : prefix + ".", k,
                                                     "\" (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetString(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) return KeyError(key, "must be a string");
  return n.as<std::string>();
}

absl::StatusOr<std::vector<std::string>> GetStringList(const YAML::Node& n, const std::string& key) {
  if (n.IsNull()) return std::vector<std::string>{};
  if (!n.IsSequence()) return KeyError(key, "must be a list of strings");
  std::vector<std::string> out;
  for (const auto& e : n) {
    if (!e.IsScalar()) return KeyError(key, "must be a list of strings");
    out.push_back(e.as<std::string>());
  }
  return out;
}

absl::Status ParseRegistry(const YAML::Node& n, RegistryConfig& r) {
  RETURN_IF_ERROR(CheckKeys(n, "registry", {"mirrors", "insecure", "ca_files", "auths"}));
  if (auto m = n["mirrors"]) {
    if (!m.IsMap()) return KeyError("registry.mirrors", "must map a host to a list of endpoints");
    for (const auto& kv : m) {
      std::string host = kv.first.as<std::string>();
      ASSIGN_OR_RETURN(r.mirrors[host], GetStringList(kv.second, "registry.mirrors." + host));
    }
  }
  if (auto i = n["insecure"]) {
    ASSIGN_OR_RETURN(r.insecure, GetStringList(i, "registry.insecure"));
  }
  if (auto c = n["ca_files"]) {
    if (!c.IsMap()) return KeyError("registry.ca_files", "must map a host to a file");
    for (const auto& kv : c) {
      std::string host = kv.first.as<std::string>();
      ASSIGN_OR_RETURN(r.ca_files[host], GetString(kv.second, "registry.ca_files." + host));
    }
  }
  if (auto a = n["auths"]) {
    if (!a.IsMap()) return KeyError("registry.auths", "must map a host to credentials");
    for (const auto& kv : a) {
      std::string host = kv.first.as<std::string>();
      std::string prefix = "registry.auths." + host;
      RETURN_IF_ERROR(CheckKeys(kv.second, prefix, {"username", "password", "auth", "identity_token"}));
      RegistryAuth& au = r.auths[host];
      if (auto v = kv.second["username"]) { ASSIGN_OR_RETURN(au.username, GetString(v, prefix + ".username")); }
      if (auto v = kv.second["password"]) { ASSIGN_OR_RETURN(au.password, GetString(v, prefix + ".password")); }
      if (auto v = kv.second["auth"]) { ASSIGN_OR_RETURN(au.auth, GetString(v, prefix + ".auth")); }
      if (auto v = kv.second["identity_token"]) {
        ASSIGN_OR_RETURN(au.identity_token, GetString(v, prefix + ".identity_token"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ParseInto(const YAML::Node& root, Config& c) {
  if (root.IsNull()) return absl::OkStatus();  // empty file: defaults
  RETURN_IF_ERROR(CheckKeys(root, "", {"socket", "root", "state", "log_level", "shim_path", "cgroup_parent",
                                       "shm_size", "network", "cni", "embedded_network", "registry", "streaming",
                                       "stats_period"}));
  if (auto v = root["socket"]) { ASSIGN_OR_RETURN(c.socket, GetString(v, "socket")); }
  if (auto v = root["root"]) { ASSIGN_OR_RETURN(c.root, GetString(v, "root")); }
  if (auto v = root["state"]) { ASSIGN_OR_RETURN(c.state, GetString(v, "state")); }
  if (auto v = root["log_level"]) { ASSIGN_OR_RETURN(c.log_level, GetString(v, "log_level")); }
  if (auto v = root["shim_path"]) { ASSIGN_OR_RETURN(c.shim_path, GetString(v, "shim_path")); }
  if (auto v = root["cgroup_parent"]) { ASSIGN_OR_RETURN(c.cgroup_parent, GetString(v, "cgroup_parent")); }
  if (auto v = root["shm_size"]) {
    ASSIGN_OR_RETURN(std::string s, GetString(v, "shm_size"));
    auto size = ParseByteSize(s);
    if (!size.ok()) return KeyError("shm_size", size.status().message());
    c.shm_size = *size;
  }
  if (auto cni = root["cni"]) {
    RETURN_IF_ERROR(CheckKeys(cni, "cni", {"conf_dir", "bin_dirs", "plugin_timeout"}));
    if (auto v = cni["conf_dir"]) { ASSIGN_OR_RETURN(c.cni.conf_dir, GetString(v, "cni.conf_dir")); }
    if (auto v = cni["bin_dirs"]) { ASSIGN_OR_RETURN(c.cni.bin_dirs, GetStringList(v, "cni.bin_dirs")); }
    if (auto v = cni["plugin_timeout"]) {
      ASSIGN_OR_RETURN(std::string s, GetString(v, "cni.plugin_timeout"));
      auto d = ParseDurationString(s);
      if (!d.ok()) return KeyError("cni.plugin_timeout", d.status().message());
      c.cni.plugin_timeout = *d;
    }
  }
  if (auto v = root["network"]) {
    ASSIGN_OR_RETURN(std::string s, GetString(v, "network"));
    auto m = netcni::ParseNetworkMode(s);
    if (!m.ok()) return KeyError("network", m.status().message());
    c.network = *m;
  }
  if (auto en = root["embedded_network"]) {
    RETURN_IF_ERROR(CheckKeys(en, "embedded_network", {"bridge", "subnet", "masquerade"}));
    if (auto v = en["bridge"]) { ASSIGN_OR_RETURN(c.embedded_network.bridge, GetString(v, "embedded_network.bridge")); }
    if (auto v = en["subnet"]) { ASSIGN_OR_RETURN(c.embedded_network.subnet, GetString(v, "embedded_network.subnet")); }
    if (auto v = en["masquerade"]) {
      ASSIGN_OR_RETURN(std::string s, GetString(v, "embedded_network.masquerade"));
      if (s == "true") {
        c.embedded_network.masquerade = true;
      } else if (s == "false") {
        c.embedded_network.masquerade = false;
      } else {
        return KeyError("embedded_network.masquerade", absl::StrCat("must be true or false, got \"", s, "\""));
      }
    }
  }
  if (auto reg = root["registry"]) RETURN_IF_ERROR(ParseRegistry(reg, c.registry));
  if (auto st = root["streaming"]) {
    RETURN_IF_ERROR(CheckKeys(st, "streaming", {"address", "port", "tls_cert_file", "tls_key_file", "idle_timeout"}));
    if (auto v = st["address"]) { ASSIGN_OR_RETURN(c.streaming.address, GetString(v, "streaming.address")); }
    if (auto v = st["port"]) {
      ASSIGN_OR_RETURN(std::string s, GetString(v, "streaming.port"));
      if (!absl::SimpleAtoi(s, &c.streaming.port)) return KeyError("streaming.port", "must be a number");
    }
    if (auto v = st["tls_cert_file"]) {
      ASSIGN_OR_RETURN(c.streaming.tls_cert_file, GetString(v, "streaming.tls_cert_file"));
    }
    if (auto v = st["tls_key_file"]) {
      ASSIGN_OR_RETURN(c.streaming.tls_key_file, GetString(v, "streaming.tls_key_file"));
    }
    if (auto v = st["idle_timeout"]) {
      ASSIGN_OR_RETURN(std::string s, GetString(v, "streaming.idle_timeout"));
      auto d = ParseDurationString(s);
      if (!d.ok()) return KeyError("streaming.idle_timeout", d.status().message());
      c.streaming.idle_timeout = *d;
    }
  }
  if (auto v = root["stats_period"]) {
    ASSIGN_OR_RETURN(std::string s, GetString(v, "stats_period"));
    auto d = ParseDurationString(s);
    if (!d.ok()) return KeyError("stats_period", d.status().message());
    c.stats_period = *d;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Config::Validate() const {
  auto abs = [](const std::string& key, const std::string& v) -> absl::Status {
    if (v.empty() || v[0] != '/') return KeyError(key, absl::StrCat("must be an absolute path, got \"", v, "\""));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(abs("socket", socket));
  RETURN_IF_ERROR(abs("root", root));
  RETURN_IF_ERROR(abs("state", state));
  RETURN_IF_ERROR(abs("cgroup_parent", cgroup_parent));
  RETURN_IF_ERROR(abs("cni.conf_dir", cni.conf_dir));
  if (!shim_path.empty()) RETURN_IF_ERROR(abs("shim_path", shim_path));
  for (const auto& d : cni.bin_dirs) RETURN_IF_ERROR(abs("cni.bin_dirs", d));
  if (cni.bin_dirs.empty()) return KeyError("cni.bin_dirs", "must name at least one directory");
  if (cgroup_parent.find("..") != std::string::npos) return KeyError("cgroup_parent", "must not contain \"..\"");
  if (shm_size < 4096) return KeyError("shm_size", "must be at least 4096 bytes");
  if (cni.plugin_timeout <= absl::ZeroDuration()) return KeyError("cni.plugin_timeout", "must be positive");
  if (auto s = netcni::ValidateInterfaceName(embedded_network.bridge); !s.ok())
    return KeyError("embedded_network.bridge", s.message());
  if (auto s = netcni::ParseIpv4Subnet(embedded_network.subnet); !s.ok())
    return KeyError("embedded_network.subnet", s.status().message());
  if (streaming.address.empty()) return KeyError("streaming.address", "must not be empty");
  if (streaming.port < 0 || streaming.port > 65535) return KeyError("streaming.port", "must be 0..65535");
  if (streaming.tls_cert_file.empty() != streaming.tls_key_file.empty())
    return KeyError("streaming", "tls_cert_file and tls_key_file go together");
  if (!streaming.tls_cert_file.empty()) {
    RETURN_IF_ERROR(abs("streaming.tls_cert_file", streaming.tls_cert_file));
    RETURN_IF_ERROR(abs("streaming.tls_key_file", streaming.tls_key_file));
  }
  if (streaming.idle_timeout <= absl::ZeroDuration()) return KeyError("streaming.idle_timeout", "must be positive");
  if (stats_period < absl::ZeroDuration()) return KeyError("stats_period", "must not be negative");
  auto lv = spdlog::level::from_str(log_level);
  if (lv == spdlog::level::off && log_level != "off")
    return KeyError("log_level", absl::StrCat("unknown level \"", log_level,
                                              "\" (trace, debug, info, warn, error, critical, off)"));
  for (const auto& [host, eps] : registry.mirrors) {
    for (const auto& ep : eps) {
      if (ep.rfind("http://", 0) != 0 && ep.rfind("https://", 0) != 0)
        return KeyError("registry.mirrors." + host, absl::StrCat("endpoint \"", ep, "\" must start with http:// or https://"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text) {
  Config c;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
    RETURN_IF_ERROR(ParseInto(root, c));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<Config> LoadConfig(const std::string& path, bool must_exist) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    if (text.status().code() == absl::StatusCode::kNotFound && !must_exist) return Config{};
    return text.status();
  }
  auto c = ParseConfig(*text);
  if (!c.ok()) return Annotate(c.status(), path);
  return c;
}

std::string DefaultConfigYaml() {
  return R"(# crispd configuration (/etc/crisp/crisp.yaml). Every key is optional; the
# values below are the defaults. Unknown keys are an error at startup.

# gRPC endpoint for kubelet and crictl (unix socket, created mode 0660).
socket: /run/crisp/crisp.sock
# Persistent state: sandbox and container metadata, images, CNI result cache.
root: /var/lib/crisp
# Volatile state: namespace pins, /dev/shm mounts, shim sockets.
state: /run/crisp
# trace, debug (one line per RPC), info, warn, error, critical, off.
log_level: info
# The crisp-shim binary; empty means the one next to crispd.
shim_path: ""
# cgroup parent for pods whose request names none (cgroupfs driver). Each pod
# gets <parent>/<sandbox-id>.
cgroup_parent: /crisp
# Size of each pod's /dev/shm tmpfs.
shm_size: 64Mi

# The pod network: "cni" (the plugins configured in cni.conf_dir), "embedded"
# (crisp's own bridge network, see embedded_network) or "auto": embedded
# while cni.conf_dir holds no *.conflist/*.conf/*.json, CNI once it does.
# A pod is always torn down by the backend that set it up.
network: auto

cni:
  # The lexically first *.conflist, *.conf or *.json here is the pod network.
  conf_dir: /etc/cni/net.d
  # Where plugin binaries are looked up, in order.
  bin_dirs: [/opt/cni/bin, /usr/lib/cni]
  # Each plugin invocation is killed after this long.
  plugin_timeout: 60s

# The embedded network (network: embedded, or auto with no CNI config): a
# bridge holding the subnet's first address as the pods' gateway, a veth pair
# per pod (eth0 inside), addresses from a host-local style store in
# <root>/embedded-ipam, and nat rules made with iptables.
embedded_network:
  bridge: crisp0
  # IPv4, /8 to /30.
  subnet: 10.88.0.0/16
  # One POSTROUTING rule: -s SUBNET ! -d SUBNET -j MASQUERADE.
  masquerade: true

registry:
  # host -> endpoints tried in order before the host itself, e.g.
  #   registry.k8s.io: ["http://127.0.0.1:5000"]
  mirrors: {}
  # hosts reached over plain HTTP / without TLS verification.
  insecure: []
  # host -> CA bundle file.
  ca_files: {}
  # host -> {username, password} or {auth} or {identity_token}.
  auths: {}

# The streaming server: Exec, Attach and PortForward answer a URL on it that
# kubelet (or crictl) connects to with SPDY/3.1 or WebSocket. Each URL holds a
# single-use token valid for one minute.
streaming:
  address: 127.0.0.1
  # 0: a random free port.
  port: 0
  # TLS when both are set (PEM files).
  tls_cert_file: ""
  tls_key_file: ""
  # A stream with no traffic either way for this long is closed.
  idle_timeout: 4h

# Container and pod stats reuse a cgroup sample younger than this (kubelet asks
# every few seconds; usage_nano_cores is computed between samples).
stats_period: 1s
)";
}

std::string ConfigToJson(const Config& c) {
  nlohmann::json j;
  j["socket"] = c.socket;
  j["root"] = c.root;
  j["state"] = c.state;
  j["log_level"] = c.log_level;
  j["shim_path"] = c.shim_path;
  j["cgroup_parent"] = c.cgroup_parent;
  j["shm_size"] = c.shm_size;
  j["network"] = netcni::NetworkModeName(c.network);
  j["embedded_network"] = {{"bridge", c.embedded_network.bridge},
                           {"subnet", c.embedded_network.subnet},
                           {"masquerade", c.embedded_network.masquerade}};
  j["cni"] = {{"conf_dir", c.cni.conf_dir},
              {"bin_dirs", c.cni.bin_dirs},
              {"plugin_timeout", absl::FormatDuration(c.cni.plugin_timeout)}};
  nlohmann::json mirrors = nlohmann::json::object();
  for (const auto& [h, e] : c.registry.mirrors) mirrors[h] = e;
  nlohmann::json cas = nlohmann::json::object();
  for (const auto& [h, f] : c.registry.ca_files) cas[h] = f;
  nlohmann::json auth_hosts = nlohmann::json::array();
  for (const auto& [h, a] : c.registry.auths) auth_hosts.push_back(h);  // never the secrets
  j["streaming"] = {{"address", c.streaming.address},
                    {"port", c.streaming.port},
                    {"tls_cert_file", c.streaming.tls_cert_file},
                    {"tls_key_file", c.streaming.tls_key_file},
                    {"idle_timeout", absl::FormatDuration(c.streaming.idle_timeout)}};
  j["stats_period"] = absl::FormatDuration(c.stats_period);
  j["registry"] = {{"mirrors", mirrors}, {"insecure", c.registry.insecure}, {"ca_files", cas},
                   {"auth_hosts", auth_hosts}};
  return j.dump();
}

}  // namespace crisp::server
