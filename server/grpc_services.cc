#include "server/grpc_services.h"

#include <atomic>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace crisp::server {
namespace {

using grpc::ServerContext;
using grpc::ServerWriter;

// The id a request is about, for the log line: pod_sandbox_id, container_id,
// or the name in config.metadata.
std::string Subject(const google::protobuf::Message& req) {
  const auto* d = req.GetDescriptor();
  const auto* r = req.GetReflection();
  for (const char* f : {"pod_sandbox_id", "container_id"}) {
    if (const auto* fd = d->FindFieldByName(f); fd && fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING)
      return r->GetString(req, fd);
  }
  if (const auto* fd = d->FindFieldByName("config"); fd && fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
                                                       r->HasField(req, fd)) {
    const auto& cfg = r->GetMessage(req, fd);
    if (const auto* md = cfg.GetDescriptor()->FindFieldByName("metadata")) {
      const auto& m = cfg.GetReflection()->GetMessage(cfg, md);
      if (const auto* n = m.GetDescriptor()->FindFieldByName("name"))
        return m.GetReflection()->GetString(m, n);
    }
  }
  return "";
}

std::atomic<int> g_in_flight{0};

template <typename F>
grpc::Status Call(const char* rpc, const google::protobuf::Message& req, F&& f) {
  g_in_flight.fetch_add(1);
  absl::Cleanup done = [] { g_in_flight.fetch_sub(1); };
  absl::Time start = absl::Now();
  absl::Status s = f();
  double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  auto log = Logger("server");
  if (s.ok()) {
    log->debug("{} {} ok in {:.2f} ms", rpc, Subject(req), ms);
  } else {
    log->warn("{} {} failed in {:.2f} ms: {}", rpc, Subject(req), ms, s.ToString());
  }
  return ToGrpcStatus(s);
}

grpc::Status Unimplemented(const char* rpc) {
  Logger("server")->debug("{}: not implemented", rpc);
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, absl::StrCat("crisp does not implement ", rpc, " yet"));
}

#define CRISP_RPC(Rpc)                                                                       \
  grpc::Status Rpc(ServerContext*, const cri::Rpc##Request* req, cri::Rpc##Response* resp) \
      override {                                                                             \
    return Call(#Rpc, *req, [&] { return svc_->Rpc(*req, resp); });                          \
  }
#define CRISP_TODO(Rpc, Req, Resp) \
  grpc::Status Rpc(ServerContext*, const cri::Req*, cri::Resp*) override { return Unimplemented(#Rpc); }
#define CRISP_TODO_STREAM(Rpc, Req, Resp)                                               \
  grpc::Status Rpc(ServerContext*, const cri::Req*, ServerWriter<cri::Resp>*) override { \
    return Unimplemented(#Rpc);                                                          \
  }

class RuntimeServiceImpl final : public cri::RuntimeService::Service {
 public:
  explicit RuntimeServiceImpl(CriService* svc) : svc_(svc) {}

  CRISP_RPC(Version)
  CRISP_RPC(Status)
  CRISP_RPC(RuntimeConfig)
  CRISP_RPC(UpdateRuntimeConfig)
  CRISP_RPC(RunPodSandbox)
  CRISP_RPC(StopPodSandbox)
  CRISP_RPC(RemovePodSandbox)
  CRISP_RPC(PodSandboxStatus)
  CRISP_RPC(ListPodSandbox)

  CRISP_TODO_STREAM(StreamPodSandboxes, StreamPodSandboxesRequest, StreamPodSandboxesResponse)
  CRISP_RPC(CreateContainer)
  CRISP_RPC(StartContainer)
  CRISP_RPC(StopContainer)
  CRISP_RPC(RemoveContainer)
  CRISP_RPC(ListContainers)
  CRISP_TODO_STREAM(StreamContainers, StreamContainersRequest, StreamContainersResponse)
  CRISP_RPC(ContainerStatus)
  CRISP_RPC(UpdateContainerResources)
  CRISP_RPC(ReopenContainerLog)
  CRISP_RPC(ExecSync)
  CRISP_TODO(Exec, ExecRequest, ExecResponse)
  CRISP_TODO(Attach, AttachRequest, AttachResponse)
  CRISP_TODO(PortForward, PortForwardRequest, PortForwardResponse)
  CRISP_TODO(ContainerStats, ContainerStatsRequest, ContainerStatsResponse)
  CRISP_TODO(ListContainerStats, ListContainerStatsRequest, ListContainerStatsResponse)
  CRISP_TODO_STREAM(StreamContainerStats, StreamContainerStatsRequest, StreamContainerStatsResponse)
  CRISP_TODO(PodSandboxStats, PodSandboxStatsRequest, PodSandboxStatsResponse)
  CRISP_TODO(ListPodSandboxStats, ListPodSandboxStatsRequest, ListPodSandboxStatsResponse)
  CRISP_TODO_STREAM(StreamPodSandboxStats, StreamPodSandboxStatsRequest, StreamPodSandboxStatsResponse)
  CRISP_TODO(CheckpointContainer, CheckpointContainerRequest, CheckpointContainerResponse)
  grpc::Status GetContainerEvents(ServerContext* ctx, const cri::GetEventsRequest*,
                                  ServerWriter<cri::ContainerEventResponse>* writer) override {
    auto sub = svc_->SubscribeEvents();
    Logger("server")->debug("GetContainerEvents: a subscriber connected");
    cri::ContainerEventResponse ev;
    while (!ctx->IsCancelled()) {
      if (sub->Next(&ev, absl::Milliseconds(250)) && !writer->Write(ev)) break;
    }
    Logger("server")->debug("GetContainerEvents: a subscriber left ({} events dropped)", sub->dropped());
    return grpc::Status::OK;
  }
  CRISP_TODO(ListMetricDescriptors, ListMetricDescriptorsRequest, ListMetricDescriptorsResponse)
  CRISP_TODO(ListPodSandboxMetrics, ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse)
  CRISP_TODO_STREAM(StreamPodSandboxMetrics, StreamPodSandboxMetricsRequest, StreamPodSandboxMetricsResponse)
  CRISP_TODO(UpdatePodSandboxResources, UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse)

 private:
  CriService* svc_;
};

class ImageServiceImpl final : public cri::ImageService::Service {
 public:
  explicit ImageServiceImpl(CriService* svc) : svc_(svc) {}

  CRISP_RPC(ListImages)
  CRISP_RPC(ImageStatus)
  CRISP_RPC(PullImage)
  CRISP_RPC(RemoveImage)
  CRISP_RPC(ImageFsInfo)
  CRISP_TODO_STREAM(StreamImages, StreamImagesRequest, StreamImagesResponse)

 private:
  CriService* svc_;
};

}  // namespace

int InFlightRpcs() { return g_in_flight.load(); }

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), std::string(s.message()));
}

std::unique_ptr<cri::RuntimeService::Service> NewRuntimeService(CriService* svc) {
  return std::make_unique<RuntimeServiceImpl>(svc);
}
std::unique_ptr<cri::ImageService::Service> NewImageService(CriService* svc) {
  return std::make_unique<ImageServiceImpl>(svc);
}

}  // namespace crisp::server
