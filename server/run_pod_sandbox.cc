// RunPodSandbox: validate, reserve the name, let the controller build the pod
// (it rolls back on failure), publish it.
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/status.h"
#include "server/cri_service.h"

namespace crisp::server {

absl::Status CriService::RunPodSandbox(const cri::RunPodSandboxRequest& req, cri::RunPodSandboxResponse* resp) {
  if (!req.has_config() || !req.config().has_metadata())
    return absl::InvalidArgumentError("RunPodSandbox: config.metadata is required");
  const auto& md = req.config().metadata();
  if (md.name().empty()) return absl::InvalidArgumentError("RunPodSandbox: metadata.name is required");
  if (!req.runtime_handler().empty())
    return absl::InvalidArgumentError(absl::StrCat("RunPodSandbox: runtime handler \"", req.runtime_handler(),
                                                   "\" is not configured (crisp has only the default handler \"\")"));

  std::string id = NewId();
  std::string name = SandboxName(md);
  RETURN_IF_ERROR(sandbox_names_.Reserve(name, id));
  auto sb = sandboxes_->Run(id, req.config(), req.runtime_handler(), PodCidr());
  if (!sb.ok()) {
    sandbox_names_.Release(name, id);
    return Annotate(sb.status(), absl::StrCat("running pod sandbox ", name));
  }
  auto entry = std::make_shared<SandboxEntry>(std::move(*sb));
  sandbox_store_.Add(entry);
  WatchPause(entry);
  resp->set_pod_sandbox_id(id);
  Logger("server")->info("sandbox {} ({}) ready", id, name);
  Emit(cri::CONTAINER_CREATED_EVENT, id, id);
  Emit(cri::CONTAINER_STARTED_EVENT, id, id);
  return absl::OkStatus();
}

// Runs `op` on a private copy of the sandbox while holding its operation
// lock. An unknown id is OK (Stop and Remove are idempotent), as is a
// sandbox removed while we waited for the lock.
absl::Status CriService::UpdateSandbox(const std::string& id,
                                       const std::function<absl::Status(SandboxEntry&, podsandbox::Sandbox&)>& op) {
  auto entry = sandbox_store_.Find(id);
  if (!entry.ok()) {
    if (entry.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return entry.status();
  }
  std::lock_guard<std::mutex> lock((*entry)->op_mu);
  if ((*entry)->removed) return absl::OkStatus();
  podsandbox::Sandbox sb = *(*entry)->Snapshot();
  return op(**entry, sb);
}

absl::Status CriService::StopPodSandbox(const cri::StopPodSandboxRequest& req, cri::StopPodSandboxResponse*) {
  return UpdateSandbox(req.pod_sandbox_id(), [this](SandboxEntry& entry, podsandbox::Sandbox& sb) {
    RETURN_IF_ERROR(Annotate(ForEachContainerOf(sb.id, /*remove=*/false),
                             absl::StrCat("stopping the containers of pod sandbox ", sb.id)));
    absl::Status s = sandboxes_->Stop(sb, PodCidr());
    // What was done stays done, even on error. Whoever moves the published
    // state off READY (this or the pause watcher) sends the STOPPED event.
    auto before = entry.Exchange(sb);
    if (before->state == podsandbox::SandboxState::kReady && sb.state != podsandbox::SandboxState::kReady)
      Emit(cri::CONTAINER_STOPPED_EVENT, sb.id, sb.id);
    return Annotate(s, absl::StrCat("stopping pod sandbox ", sb.id));
  });
}

absl::Status CriService::RemovePodSandbox(const cri::RemovePodSandboxRequest& req, cri::RemovePodSandboxResponse*) {
  return UpdateSandbox(req.pod_sandbox_id(), [this](SandboxEntry& entry, podsandbox::Sandbox& sb) {
    RETURN_IF_ERROR(Annotate(ForEachContainerOf(sb.id, /*remove=*/true),
                             absl::StrCat("removing the containers of pod sandbox ", sb.id)));
    absl::Status s = sandboxes_->Remove(sb, PodCidr());
    if (!s.ok()) {
      entry.Publish(sb);
      return Annotate(s, absl::StrCat("removing pod sandbox ", sb.id));
    }
    entry.removed = true;
    sandbox_store_.Remove(sb.id);
    if (sb.load_error.empty()) sandbox_names_.Release(SandboxName(sb.config.metadata()), sb.id);
    Logger("server")->info("sandbox {} removed", sb.id);
    Emit(cri::CONTAINER_DELETED_EVENT, sb.id, sb.id);
    return absl::OkStatus();
  });
}

}  // namespace crisp::server
