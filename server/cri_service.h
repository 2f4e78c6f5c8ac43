#pragma once
// The CRI implementation, independent of gRPC: each RPC is a method taking the
// request and filling the response, returning absl::Status. grpc_services.cc
// adapts it to the generated gRPC services; one file per RPC group holds the
// logic (run_pod_sandbox.cc, pod_sandbox_status.cc, ...).
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "api/cri/api.pb.h"
#include "common/exit_watcher.h"
#include "images/image_manager.h"
#include "netcni/pod_network.h"
#include "podsandbox/controller.h"
#include "runtime/cgroups.h"
#include "runtime/container_plan.h"
#include "runtime/stats.h"
#include "server/config.h"
#include "server/container_store.h"
#include "server/events.h"
#include "server/name_registry.h"
#include "server/sandbox_store.h"
#include "server/streaming/streaming.h"

namespace crisp::server {

namespace cri = ::runtime::v1;

// One reading of a container's or sandbox's counters (stats.cc).
struct StatsSample {
  absl::Time at = absl::InfinitePast();
  runtime::CgroupStats cgroup;
  std::optional<uint64_t> nano_cores;        // CPU rate since the previous sample
  std::optional<runtime::DiskUsage> disk;    // writable layer (containers)
  std::vector<runtime::InterfaceStats> net;  // pod netns (sandboxes)
};

// Samples by object id, reused while younger than the stats period.
class StatsCache {
 public:
  absl::StatusOr<StatsSample> Get(const std::string& key, absl::Duration period,
                                  const std::function<absl::StatusOr<StatsSample>()>& read);

 private:
  std::mutex mu_;
  std::map<std::string, StatsSample> samples_;
  absl::Time last_sweep_ = absl::InfinitePast();
};

class CriService {
 public:
  // `cni`, `embedded` (the two pod network backends; `embedded` may be null
  // with `network: cni`) and `cgroups` are the kernel edges (fakes in unit
  // tests). config.network picks the backend of each new pod.
  CriService(Config config, std::unique_ptr<netcni::PodNetwork> cni, std::unique_ptr<netcni::PodNetwork> embedded,
             std::unique_ptr<runtime::CgroupManager> cgroups, std::unique_ptr<images::ImageManager> images);
  ~CriService();

  // Creates the state directories and recovers every persisted object.
  absl::Status Init();

  // Runtime information.
  absl::Status Version(const cri::VersionRequest& req, cri::VersionResponse* resp);
  absl::Status Status(const cri::StatusRequest& req, cri::StatusResponse* resp);
  absl::Status RuntimeConfig(const cri::RuntimeConfigRequest& req, cri::RuntimeConfigResponse* resp);
  absl::Status UpdateRuntimeConfig(const cri::UpdateRuntimeConfigRequest& req, cri::UpdateRuntimeConfigResponse* resp);

  // Pod sandboxes.
  absl::Status RunPodSandbox(const cri::RunPodSandboxRequest& req, cri::RunPodSandboxResponse* resp);
  absl::Status StopPodSandbox(const cri::StopPodSandboxRequest& req, cri::StopPodSandboxResponse* resp);
  absl::Status RemovePodSandbox(const cri::RemovePodSandboxRequest& req, cri::RemovePodSandboxResponse* resp);
  absl::Status PodSandboxStatus(const cri::PodSandboxStatusRequest& req, cri::PodSandboxStatusResponse* resp);
  absl::Status ListPodSandbox(const cri::ListPodSandboxRequest& req, cri::ListPodSandboxResponse* resp);

  // Containers (containers.cc).
  absl::Status CreateContainer(const cri::CreateContainerRequest& req, cri::CreateContainerResponse* resp);
  absl::Status StartContainer(const cri::StartContainerRequest& req, cri::StartContainerResponse* resp);
  absl::Status StopContainer(const cri::StopContainerRequest& req, cri::StopContainerResponse* resp);
  absl::Status RemoveContainer(const cri::RemoveContainerRequest& req, cri::RemoveContainerResponse* resp);
  absl::Status ContainerStatus(const cri::ContainerStatusRequest& req, cri::ContainerStatusResponse* resp);
  absl::Status ListContainers(const cri::ListContainersRequest& req, cri::ListContainersResponse* resp);
  absl::Status UpdateContainerResources(const cri::UpdateContainerResourcesRequest& req,
                                        cri::UpdateContainerResourcesResponse* resp);
  absl::Status ReopenContainerLog(const cri::ReopenContainerLogRequest& req, cri::ReopenContainerLogResponse* resp);
  absl::Status ExecSync(const cri::ExecSyncRequest& req, cri::ExecSyncResponse* resp);
  // Streaming sessions (exec.cc): each answers a single-use URL on the
  // streaming server.
  absl::Status Exec(const cri::ExecRequest& req, cri::ExecResponse* resp);
  absl::Status Attach(const cri::AttachRequest& req, cri::AttachResponse* resp);
  absl::Status PortForward(const cri::PortForwardRequest& req, cri::PortForwardResponse* resp);
  // "address:port" of the streaming server (after Init).
  std::string StreamingEndpoint() const { return streaming_ ? streaming_->Endpoint() : ""; }

  // Stats and metrics (stats.cc).
  absl::Status ContainerStats(const cri::ContainerStatsRequest& req, cri::ContainerStatsResponse* resp);
  absl::Status ListContainerStats(const cri::ListContainerStatsRequest& req, cri::ListContainerStatsResponse* resp);
  absl::Status PodSandboxStats(const cri::PodSandboxStatsRequest& req, cri::PodSandboxStatsResponse* resp);
  absl::Status ListPodSandboxStats(const cri::ListPodSandboxStatsRequest& req, cri::ListPodSandboxStatsResponse* resp);
  absl::Status ListMetricDescriptors(const cri::ListMetricDescriptorsRequest& req,
                                     cri::ListMetricDescriptorsResponse* resp);
  absl::Status ListPodSandboxMetrics(const cri::ListPodSandboxMetricsRequest& req,
                                     cri::ListPodSandboxMetricsResponse* resp);
  // GetContainerEvents: every lifecycle event from now on.
  std::shared_ptr<EventBroker::Subscription> SubscribeEvents() { return events_.Subscribe(); }

  // Images.
  absl::Status PullImage(const cri::PullImageRequest& req, cri::PullImageResponse* resp);
  absl::Status ListImages(const cri::ListImagesRequest& req, cri::ListImagesResponse* resp);
  absl::Status ImageStatus(const cri::ImageStatusRequest& req, cri::ImageStatusResponse* resp);
  absl::Status RemoveImage(const cri::RemoveImageRequest& req, cri::RemoveImageResponse* resp);
  absl::Status ImageFsInfo(const cri::ImageFsInfoRequest& req, cri::ImageFsInfoResponse* resp);

  const Config& config() const { return config_; }

 private:
  std::string PodCidr() const;
  absl::Status UpdateSandbox(const std::string& id,
                             const std::function<absl::Status(SandboxEntry&, podsandbox::Sandbox&)>& op);
  void WatchPause(const std::shared_ptr<SandboxEntry>& entry);

  // Publishes a lifecycle event of container (or sandbox) `id` in
  // `sandbox_id`, with the sandbox's status and its containers' statuses.
  void Emit(cri::ContainerEventType type, const std::string& id, const std::string& sandbox_id);

  // Containers.
  struct InFlightCreate {
    bool done = false;
  };
  std::string ContainerDir(const std::string& id) const;
  std::string ShimDir(const std::string& id) const;
  absl::Status SaveContainer(const Container& c);
  void WatchShim(const std::shared_ptr<ContainerEntry>& entry);
  absl::Status RecoverContainers();
  // Runs `op` on a private copy of the container under its operation lock.
  // An unknown id is OK when `missing_ok` (Remove), else NOT_FOUND.
  absl::Status UpdateContainer(const std::string& id, bool missing_ok,
                               const std::function<absl::Status(ContainerEntry&, Container&)>& op);
  // With the container's op_mu held.
  absl::Status StopContainerLocked(ContainerEntry& e, Container& c, int64_t timeout_s);
  void KillLeftovers(const Container& c);
  absl::Status RemoveContainerLocked(ContainerEntry& e, Container& c);
  absl::StatusOr<runtime::ContainerPlan> ExecPlan(const std::string& id,
                                                  const google::protobuf::RepeatedPtrField<std::string>& cmd, bool tty,
                                                  bool stdin);
  absl::Status StartStreaming();
  absl::Status FillContainerStats(const Container& c, cri::ContainerStats* out);
  absl::Status ContainerFsUsage(cri::FilesystemUsage* out);
  absl::Status FillSandboxStats(const podsandbox::Sandbox& sb, cri::PodSandboxStats* out);
  // Stops (or removes) every container of a sandbox; returns the first error.
  absl::Status ForEachContainerOf(const std::string& sandbox_id, bool remove);

  Config config_;
  std::unique_ptr<netcni::PodNetwork> cni_, embedded_;
  std::unique_ptr<netcni::NetworkSelector> networks_;
  std::unique_ptr<runtime::CgroupManager> cgroups_;
  std::unique_ptr<images::ImageManager> images_;
  std::unique_ptr<podsandbox::Controller> sandboxes_;
  SandboxStore sandbox_store_{"pod sandbox"};
  NameRegistry sandbox_names_;
  ContainerStore container_store_{"container"};
  NameRegistry container_names_;
  std::mutex create_mu_;
  std::condition_variable create_cv_;
  std::map<std::string, std::shared_ptr<InFlightCreate>> creating_;  // by container name
  ExitWatcher exit_watcher_;
  EventBroker events_;
  StatsCache stats_cache_;
  std::unique_ptr<streaming::Server> streaming_;
  mutable std::mutex cidr_mu_;
  std::string pod_cidr_;
};

// The image manager's options from crispd's config (root, registry hosts).
images::ImageOptions ImageOptionsFromConfig(const Config& config);

// Fills a CRI PodSandbox / PodSandboxStatus from our record (also used by tests).
void ToCriSandbox(const podsandbox::Sandbox& sb, cri::PodSandbox* out);
void ToCriSandboxStatus(const podsandbox::Sandbox& sb, cri::PodSandboxStatus* out);
// Fills a CRI Container / ContainerStatus from our record.
void ToCriContainer(const Container& c, cri::Container* out);
void ToCriContainerStatus(const Container& c, cri::ContainerStatus* out);
// Label selector match: every key/value of `selector` is in `labels`.
bool MatchLabels(const google::protobuf::Map<std::string, std::string>& selector,
                 const google::protobuf::Map<std::string, std::string>& labels);

}  // namespace crisp::server
