#pragma once
// The pause plan and its JSON wire form, shared by crispd and crisp-shim.
// Header-only and free of absl/spdlog so that the shim stays tiny.
#include <map>
#include <optional>
#include <string>

#include "nlohmann/json.hpp"

namespace crisp::runtime {

struct PausePlan {
  bool new_net = true;   // false for host-network pods
  bool new_ipc = true;   // false for host IPC
  bool new_uts = true;   // false for host-network pods
  bool new_pid = false;  // true when the pod shares one PID namespace
  std::string hostname;  // set inside the new UTS namespace (if new_uts)
  // Namespaced sysctls by /proc/sys path ("net/ipv4/ip_forward" -> "1"),
  // written from inside the new namespaces before capabilities are dropped.
  std::map<std::string, std::string> sysctls;
};

inline std::string PausePlanToJson(const PausePlan& p) {
  nlohmann::json j = {{"new_net", p.new_net}, {"new_ipc", p.new_ipc},   {"new_uts", p.new_uts},
                      {"new_pid", p.new_pid}, {"hostname", p.hostname}, {"sysctls", p.sysctls}};
  return j.dump();
}

// std::nullopt if `text` is not a valid plan.
inline std::optional<PausePlan> ParsePausePlan(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    PausePlan p;
    p.new_net = j.value("new_net", true);
    p.new_ipc = j.value("new_ipc", true);
    p.new_uts = j.value("new_uts", true);
    p.new_pid = j.value("new_pid", false);
    p.hostname = j.value("hostname", "");
    p.sysctls = j.value("sysctls", std::map<std::string, std::string>{});
    return p;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace crisp::runtime
