#include "server/name_registry.h"

#include "absl/strings/str_cat.h"

namespace crisp::server {

absl::Status NameRegistry::Reserve(const std::string& name, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = names_.emplace(name, id);
  if (!inserted && it->second != id) {
    return absl::AlreadyExistsError(absl::StrCat("name \"", name, "\" is reserved by ", it->second));
  }
  return absl::OkStatus();
}

void NameRegistry::Release(const std::string& name, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(name);
  if (it != names_.end() && it->second == id) names_.erase(it);
}

std::string NameRegistry::Holder(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(name);
  return it == names_.end() ? "" : it->second;
}

}  // namespace crisp::server
