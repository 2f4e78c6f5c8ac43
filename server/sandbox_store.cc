#include "server/sandbox_store.h"

#include "absl/strings/str_cat.h"

namespace crisp::server {

void SandboxStore::Add(std::shared_ptr<SandboxEntry> e) {
  std::string id = e->Snapshot()->id;
  std::unique_lock lock(mu_);
  by_id_[id] = std::move(e);
}

void SandboxStore::Remove(const std::string& id) {
  std::unique_lock lock(mu_);
  by_id_.erase(id);
}

absl::StatusOr<std::shared_ptr<SandboxEntry>> SandboxStore::Find(const std::string& id_or_prefix) const {
  if (id_or_prefix.empty()) return absl::InvalidArgumentError("pod sandbox id is empty");
  std::shared_lock lock(mu_);
  auto it = by_id_.lower_bound(id_or_prefix);
  if (it == by_id_.end() || it->first.compare(0, id_or_prefix.size(), id_or_prefix) != 0)
    return absl::NotFoundError(absl::StrCat("pod sandbox \"", id_or_prefix, "\" not found"));
  if (it->first.size() == id_or_prefix.size()) return it->second;
  auto next = std::next(it);
  if (next != by_id_.end() && next->first.compare(0, id_or_prefix.size(), id_or_prefix) == 0)
    return absl::InvalidArgumentError(absl::StrCat("pod sandbox id prefix \"", id_or_prefix, "\" is ambiguous"));
  return it->second;
}

std::vector<std::shared_ptr<SandboxEntry>> SandboxStore::All() const {
  std::shared_lock lock(mu_);
  std::vector<std::shared_ptr<SandboxEntry>> out;
  out.reserve(by_id_.size());
  for (const auto& [id, e] : by_id_) out.push_back(e);
  return out;
}

std::string SandboxName(const ::runtime::v1::PodSandboxMetadata& md) {
  return absl::StrCat(md.name(), "_", md.namespace_(), "_", md.uid(), "_", md.attempt());
}

}  // namespace crisp::server
