#pragma once
// In-memory index of objects by id (sandboxes, containers): exact ids or
// unique prefixes, as crictl users type them. Entries are shared_ptrs whose
// Snapshot()->id is their id.
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace crisp::server {

template <typename Entry>
class IdStore {
 public:
  // `kind` names the objects in errors ("pod sandbox", "container").
  explicit IdStore(std::string kind) : kind_(std::move(kind)) {}

  void Add(std::shared_ptr<Entry> e) {
    std::string id = e->Snapshot()->id;
    std::unique_lock lock(mu_);
    by_id_[id] = std::move(e);
  }
  void Remove(const std::string& id) {
    std::unique_lock lock(mu_);
    by_id_.erase(id);
  }
  // Exact id or a unique prefix. NOT_FOUND if none; INVALID_ARGUMENT if
  // empty or ambiguous.
  absl::StatusOr<std::shared_ptr<Entry>> Find(const std::string& id_or_prefix) const {
    if (id_or_prefix.empty()) return absl::InvalidArgumentError(absl::StrCat(kind_, " id is empty"));
    std::shared_lock lock(mu_);
    auto it = by_id_.lower_bound(id_or_prefix);
    if (it == by_id_.end() || it->first.compare(0, id_or_prefix.size(), id_or_prefix) != 0)
      return absl::NotFoundError(absl::StrCat(kind_, " \"", id_or_prefix, "\" not found"));
    if (it->first.size() == id_or_prefix.size()) return it->second;
    auto next = std::next(it);
    if (next != by_id_.end() && next->first.compare(0, id_or_prefix.size(), id_or_prefix) == 0)
      return absl::InvalidArgumentError(absl::StrCat(kind_, " id prefix \"", id_or_prefix, "\" is ambiguous"));
    return it->second;
  }
  std::vector<std::shared_ptr<Entry>> All() const {
    std::shared_lock lock(mu_);
    std::vector<std::shared_ptr<Entry>> out;
    out.reserve(by_id_.size());
    for (const auto& [id, e] : by_id_) out.push_back(e);
    return out;
  }

 private:
  const std::string kind_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> by_id_;
};

// An object whose slow operations are serialised by op_mu while List/Status
// read the last published snapshot without waiting.
template <typename T>
class SnapshotEntry {
 public:
  explicit SnapshotEntry(T v) : snapshot_(std::make_shared<const T>(std::move(v))) {}

  // Held across slow operations on this object.
  std::mutex op_mu;
  // Set (under op_mu) once the object is gone from the store.
  std::atomic<bool> removed{false};

  std::shared_ptr<const T> Snapshot() const {
    std::lock_guard<std::mutex> lock(snap_mu_);
    return snapshot_;
  }
  void Publish(T v) {
    auto p = std::make_shared<const T>(std::move(v));
    std::lock_guard<std::mutex> lock(snap_mu_);
    snapshot_ = std::move(p);
  }
  // Publish that returns the snapshot it replaced (to see a transition
  // atomically with respect to Amend).
  std::shared_ptr<const T> Exchange(T v) {
    auto p = std::make_shared<const T>(std::move(v));
    std::lock_guard<std::mutex> lock(snap_mu_);
    std::swap(snapshot_, p);
    return p;
  }
  // Applies `f` to a copy of the snapshot and publishes it, without op_mu
  // (for asynchronous events such as a process exit).
  template <typename F>
  void Amend(F f) {
    std::lock_guard<std::mutex> lock(snap_mu_);
    auto copy = std::make_shared<T>(*snapshot_);
    f(*copy);
    snapshot_ = std::move(copy);
  }

 private:
  mutable std::mutex snap_mu_;
  std::shared_ptr<const T> snapshot_;
};

}  // namespace crisp::server
