#include "netcni/pod_network.h"

#include <dirent.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace crisp::netcni {

absl::StatusOr<NetworkMode> ParseNetworkMode(const std::string& s) {
  if (s == "cni") return NetworkMode::kCni;
  if (s == "embedded") return NetworkMode::kEmbedded;
  if (s == "auto") return NetworkMode::kAuto;
  return absl::InvalidArgumentError(absl::StrCat("unknown network \"", s, "\" (cni, embedded, auto)"));
}

std::string NetworkModeName(NetworkMode m) {
  switch (m) {
    case NetworkMode::kCni:
      return "cni";
    case NetworkMode::kEmbedded:
      return "embedded";
    case NetworkMode::kAuto:
      return "auto";
  }
  return "auto";
}

bool HasCniConfigFile(const std::string& conf_dir) {
  DIR* d = ::opendir(conf_dir.c_str());
  if (!d) return false;
  bool found = false;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    // What CniManager would load: a regular file with a config name.
    if (!absl::EndsWith(n, ".conflist") && !absl::EndsWith(n, ".conf") && !absl::EndsWith(n, ".json"))
      continue;
    struct stat st;
    if (::stat((conf_dir + "/" + n).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

NetworkSelector::NetworkSelector(NetworkMode mode, PodNetwork* cni, PodNetwork* embedded,
                                 std::string cni_conf_dir)
    : mode_(mode), cni_(cni), embedded_(embedded), conf_dir_(std::move(cni_conf_dir)) {}

PodNetwork* NetworkSelector::Current() const {
  switch (mode_) {
    case NetworkMode::kCni:
      return cni_;
    case NetworkMode::kEmbedded:
      return embedded_;
    case NetworkMode::kAuto:
      return embedded_ && !HasCniConfigFile(conf_dir_) ? embedded_ : cni_;
  }
  return cni_;
}

PodNetwork* NetworkSelector::ByKind(const std::string& kind) const {
  if (kind.empty() || (cni_ && kind == cni_->Kind())) return cni_;
  if (embedded_ && kind == embedded_->Kind()) return embedded_;
  return nullptr;
}

}  // namespace crisp::netcni
