#include "server/cri_service.h"

#include "common/file_util.h"
#include "common/log.h"
#include "common/status.h"

namespace crisp::server {

CriService::CriService(Config config, std::unique_ptr<netcni::PodNetwork> cni,
                       std::unique_ptr<netcni::PodNetwork> embedded, std::unique_ptr<runtime::CgroupManager> cgroups,
                       std::unique_ptr<images::ImageManager> images)
    : config_(std::move(config)),
      cni_(std::move(cni)),
      embedded_(std::move(embedded)),
      cgroups_(std::move(cgroups)),
      images_(std::move(images)) {
  networks_ = std::make_unique<netcni::NetworkSelector>(config_.network, cni_.get(), embedded_.get(),
                                                        config_.cni.conf_dir);
  podsandbox::ControllerOptions opts;
  opts.root = config_.root;
  opts.state = config_.state;
  opts.shim_path = config_.shim_path;
  opts.default_cgroup_parent = config_.cgroup_parent;
  opts.shm_size = config_.shm_size;
  sandboxes_ = std::make_unique<podsandbox::Controller>(opts, networks_.get(), cgroups_.get());
}

CriService::~CriService() = default;

absl::Status CriService::Init() {
  for (const char* sub : {"sandboxes", "containers", "cni"}) RETURN_IF_ERROR(MkdirAll(JoinPath(config_.root, sub), 0700));
  for (const char* sub : {"sandboxes", "ns", "containers"}) RETURN_IF_ERROR(MkdirAll(JoinPath(config_.state, sub), 0700));
  RETURN_IF_ERROR(Annotate(images_->Init(), "loading images"));
  RETURN_IF_ERROR(Annotate(StartStreaming(), "starting the streaming server"));
  auto log = Logger("server");
  int ready = 0, total = 0;
  for (auto& sb : sandboxes_->LoadAll()) {
    ++total;
    if (sb.state == podsandbox::SandboxState::kReady) ++ready;
    std::string id = sb.id;
    if (sb.load_error.empty()) {
      if (auto s = sandbox_names_.Reserve(SandboxName(sb.config.metadata()), id); !s.ok())
        log->error("sandbox {}: {}", id, s.ToString());
    }
    auto entry = std::make_shared<SandboxEntry>(std::move(sb));
    sandbox_store_.Add(entry);
    if (entry->Snapshot()->state == podsandbox::SandboxState::kReady) WatchPause(entry);
  }
  log->info("recovered {} sandboxes ({} ready)", total, ready);
  return RecoverContainers();
}

void CriService::WatchPause(const std::shared_ptr<SandboxEntry>& entry) {
  auto snap = entry->Snapshot();
  std::weak_ptr<SandboxEntry> weak = entry;
  std::string id = snap->id;
  auto s = exit_watcher_.Watch(snap->pause, [this, weak, id] {
    if (auto e = weak.lock()) {
      if (e->MarkNotReady()) {
        Logger("server")->info("sandbox {}: pause process exited, sandbox is NOTREADY", id);
        Emit(cri::CONTAINER_STOPPED_EVENT, id, id);
      }
    }
  });
  if (!s.ok()) Logger("server")->warn("sandbox {}: cannot watch pause process: {}", id, s.ToString());
}

void CriService::Emit(cri::ContainerEventType type, const std::string& id, const std::string& sandbox_id) {
  if (!events_.HasSubscribers()) return;
  cri::ContainerEventResponse ev;
  ev.set_container_id(id);
  ev.set_container_event_type(type);
  ev.set_created_at(absl::ToUnixNanos(absl::Now()));
  if (auto sb = sandbox_store_.Find(sandbox_id); sb.ok())
    ToCriSandboxStatus(*(*sb)->Snapshot(), ev.mutable_pod_sandbox_status());
  for (const auto& e : container_store_.All()) {
    auto c = e->Snapshot();
    if (c->sandbox_id == sandbox_id && !e->removed) ToCriContainerStatus(*c, ev.add_containers_statuses());
  }
  events_.Publish(ev);
}

std::string CriService::PodCidr() const {
  std::lock_guard<std::mutex> lock(cidr_mu_);
  return pod_cidr_;
}

}  // namespace crisp::server
