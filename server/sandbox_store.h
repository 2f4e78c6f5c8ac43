#pragma once
// In-memory sandboxes. Each entry has its own mutex that serialises the slow
// operations on it (Run/Stop/Remove); List and Status read a snapshot that is
// swapped in under a short lock, so they never wait behind a slow operation.
// Containers use the same pieces (server/id_store.h).
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "podsandbox/controller.h"
#include "server/id_store.h"

namespace crisp::server {

class SandboxEntry : public SnapshotEntry<podsandbox::Sandbox> {
 public:
  using SnapshotEntry::SnapshotEntry;
  // Marks the published state NOTREADY (pause process died) without waiting
  // for op_mu. True if it was READY.
  bool MarkNotReady() {
    bool was_ready = false;
    Amend([&](podsandbox::Sandbox& sb) {
      was_ready = sb.state == podsandbox::SandboxState::kReady;
      sb.state = podsandbox::SandboxState::kNotReady;
    });
    return was_ready;
  }
};

using SandboxStore = IdStore<SandboxEntry>;

// The CRI name of a sandbox: "<name>_<namespace>_<uid>_<attempt>".
std::string SandboxName(const ::runtime::v1::PodSandboxMetadata& md);

}  // namespace crisp::server
