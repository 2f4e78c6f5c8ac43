#pragma once
// In-memory sandboxes. Each entry has its own mutex that serialises the slow
// operations on it (Run/Stop/Remove); List and Status read a snapshot that is
// swapped in under a short lock, so they never wait behind a slow operation.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "podsandbox/controller.h"

namespace crisp::server {

class SandboxEntry {
 public:
  explicit SandboxEntry(podsandbox::Sandbox sb) : snapshot_(std::make_shared<const podsandbox::Sandbox>(std::move(sb))) {}

  // Held across slow operations on this sandbox.
  std::mutex op_mu;

  // A consistent copy of the sandbox as last published.
  std::shared_ptr<const podsandbox::Sandbox> Snapshot() const {
    std::lock_guard<std::mutex> lock(snap_mu_);
    return snapshot_;
  }
  void Publish(podsandbox::Sandbox sb) {
    auto p = std::make_shared<const podsandbox::Sandbox>(std::move(sb));
    std::lock_guard<std::mutex> lock(snap_mu_);
    snapshot_ = std::move(p);
  }
  // Marks the published state NOTREADY (pause process died) without waiting for op_mu.
  void MarkNotReady() {
    std::lock_guard<std::mutex> lock(snap_mu_);
    if (snapshot_->state == podsandbox::SandboxState::kNotReady) return;
    auto copy = std::make_shared<podsandbox::Sandbox>(*snapshot_);
    copy->state = podsandbox::SandboxState::kNotReady;
    snapshot_ = std::move(copy);
  }
  std::atomic<bool> removed{false};

 private:
  mutable std::mutex snap_mu_;
  std::shared_ptr<const podsandbox::Sandbox> snapshot_;
};

class SandboxStore {
 public:
  void Add(std::shared_ptr<SandboxEntry> e);
  void Remove(const std::string& id);
  // Exact id or a unique prefix. NOT_FOUND if none; INVALID_ARGUMENT if ambiguous.
  absl::StatusOr<std::shared_ptr<SandboxEntry>> Find(const std::string& id_or_prefix) const;
  std::vector<std::shared_ptr<SandboxEntry>> All() const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<SandboxEntry>> by_id_;
};

// The CRI name of a sandbox: "<name>_<namespace>_<uid>_<attempt>".
std::string SandboxName(const ::runtime::v1::PodSandboxMetadata& md);

}  // namespace crisp::server
