#include "podsandbox/sysctl.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace crisp::podsandbox {
namespace {

std::string Dotted(const std::string& name) {
  if (name.find('/') == std::string::npos) return name;
  std::string s = name;
  std::replace(s.begin(), s.end(), '/', '.');
  return s;
}

}  // namespace

SysctlNamespace ClassifySysctl(const std::string& name) {
  std::string n = Dotted(name);
  if (absl::StartsWith(n, "net.")) return SysctlNamespace::kNet;
  if (n == "kernel.sem" || absl::StartsWith(n, "kernel.shm") || absl::StartsWith(n, "kernel.msg") ||
      absl::StartsWith(n, "fs.mqueue."))
    return SysctlNamespace::kIpc;
  return SysctlNamespace::kNone;
}

std::string SysctlPath(const std::string& name) {
  // With slashes, dots may be part of a component (an interface "eth0.100").
  if (name.find('/') != std::string::npos) return name;
  std::string s = name;
  std::replace(s.begin(), s.end(), '.', '/');
  return s;
}

absl::Status ValidateSysctls(const std::map<std::string, std::string>& sysctls, bool host_network, bool host_ipc) {
  for (const auto& [name, value] : sysctls) {
    std::string path = SysctlPath(name);
    bool bad_name = name.empty() || path.front() == '/' || path.back() == '/';
    for (absl::string_view part : absl::StrSplit(path, '/')) {
      if (part.empty() || part == "." || part == "..") bad_name = true;
    }
    if (bad_name) return absl::InvalidArgumentError(absl::StrCat("sysctl \"", name, "\": malformed name"));
    if (value.find('\n') != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat("sysctl \"", name, "\": value must be one line"));
    switch (ClassifySysctl(name)) {
      case SysctlNamespace::kNet:
        if (host_network)
          return absl::InvalidArgumentError(
              absl::StrCat("sysctl \"", name, "\" is not allowed with host network: it would change the host"));
        break;
      case SysctlNamespace::kIpc:
        if (host_ipc)
          return absl::InvalidArgumentError(
              absl::StrCat("sysctl \"", name, "\" is not allowed with host IPC: it would change the host"));
        break;
      case SysctlNamespace::kNone:
        return absl::InvalidArgumentError(absl::StrCat(
            "sysctl \"", name,
            "\" is not namespaced (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace crisp::podsandbox
