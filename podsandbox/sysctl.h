#pragma once
// Which sysctls a pod may set: only those namespaced in a namespace the pod
// owns (kubelet's "safe + namespaced" rule, enforced again here).
#include <map>
#include <string>

#include "absl/status/status.h"

namespace crisp::podsandbox {

enum class SysctlNamespace { kNet, kIpc, kNone };

// Normalises "net/ipv4/ip_forward" to "net.ipv4.ip_forward" and classifies it.
SysctlNamespace ClassifySysctl(const std::string& name);

// INVALID_ARGUMENT naming the first sysctl that is not namespaced, or that
// lives in a namespace the pod shares with the host (net.* with host
// network, IPC ones with host IPC), or whose name or value is malformed.
absl::Status ValidateSysctls(const std::map<std::string, std::string>& sysctls, bool host_network, bool host_ipc);

// "net.ipv4.ip_forward" or "net/ipv4/ip_forward" -> "net/ipv4/ip_forward" (the /proc/sys path).
std::string SysctlPath(const std::string& name);

}  // namespace crisp::podsandbox
