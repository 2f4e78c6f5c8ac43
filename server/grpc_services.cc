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
std::atomic<uint64_t> g_finished{0};

template <typename F>
grpc::Status Call(const char* rpc, const google::protobuf::Message& req, F&& f) {
  g_in_flight.fetch_add(1);
  absl::Cleanup done = [] {
    g_finished.fetch_add(1);
    g_in_flight.fetch_sub(1);
  };
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

// The streaming list RPCs (cri-api 0.36) answer the same items as their
// unary twin, in chunks of at most kStreamChunkItems items or about
// kStreamChunkBytes, so a node with thousands of containers never needs one
// huge message. An empty list sends no message.
constexpr int kStreamChunkItems = 500;
constexpr size_t kStreamChunkBytes = 1 << 20;

template <typename Item, typename StreamResp>
grpc::Status SendChunks(google::protobuf::RepeatedPtrField<Item>* items, ServerWriter<StreamResp>* writer,
                        google::protobuf::RepeatedPtrField<Item>* (StreamResp::*field)()) {
  StreamResp chunk;
  size_t bytes = 0;
  for (auto& item : *items) {
    bytes += item.ByteSizeLong();
    (chunk.*field)()->Add(std::move(item));
    if ((chunk.*field)()->size() >= kStreamChunkItems || bytes >= kStreamChunkBytes) {
      if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      chunk.Clear();
      bytes = 0;
    }
  }
  if ((chunk.*field)()->size() > 0 && !writer->Write(chunk))
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  return grpc::Status::OK;
}

// Stream<Name>(filter) = List<Unary>(filter) sent in chunks; `items` names the
// repeated field of the unary response, `sfield` the stream response's.
#define CRISP_STREAM_LIST(Rpc, Unary, items, sfield)                                                     \
  grpc::Status Rpc(ServerContext*, const cri::Rpc##Request* req, ServerWriter<cri::Rpc##Response>* writer) \
      override {                                                                                         \
    cri::Unary##Request list_req;                                                                        \
    *list_req.mutable_filter() = req->filter();                                                          \
    cri::Unary##Response list;                                                                           \
    grpc::Status s = Call(#Rpc, *req, [&] { return svc_->Unary(list_req, &list); });                     \
    if (!s.ok()) return s;                                                                               \
    return SendChunks(list.mutable_##items(), writer, &cri::Rpc##Response::mutable_##sfield);            \
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

  CRISP_STREAM_LIST(StreamPodSandboxes, ListPodSandbox, items, pod_sandboxes)
  CRISP_RPC(CreateContainer)
  CRISP_RPC(StartContainer)
  CRISP_RPC(StopContainer)
  CRISP_RPC(RemoveContainer)
  CRISP_RPC(ListContainers)
  CRISP_STREAM_LIST(StreamContainers, ListContainers, containers, containers)
  CRISP_RPC(ContainerStatus)
  CRISP_RPC(UpdateContainerResources)
  CRISP_RPC(ReopenContainerLog)
  CRISP_RPC(ExecSync)
  CRISP_RPC(Exec)
  CRISP_RPC(Attach)
  CRISP_RPC(PortForward)
  CRISP_RPC(ContainerStats)
  CRISP_RPC(ListContainerStats)
  CRISP_STREAM_LIST(StreamContainerStats, ListContainerStats, stats, container_stats)
  CRISP_RPC(PodSandboxStats)
  CRISP_RPC(ListPodSandboxStats)
  CRISP_STREAM_LIST(StreamPodSandboxStats, ListPodSandboxStats, stats, pod_sandbox_stats)
  // Not "yet": checkpointing needs CRIU, which crisp does not use.
  grpc::Status CheckpointContainer(ServerContext*, const cri::CheckpointContainerRequest* req,
                                   cri::CheckpointContainerResponse*) override {
    Logger("server")->debug("CheckpointContainer {}: not supported", req->container_id());
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "crisp does not support CheckpointContainer: checkpointing needs CRIU, which crisp does not use");
  }
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
  CRISP_RPC(ListMetricDescriptors)
  CRISP_RPC(ListPodSandboxMetrics)
  grpc::Status StreamPodSandboxMetrics(ServerContext*, const cri::StreamPodSandboxMetricsRequest* req,
                                       ServerWriter<cri::StreamPodSandboxMetricsResponse>* writer) override {
    cri::ListPodSandboxMetricsResponse list;
    grpc::Status s = Call("StreamPodSandboxMetrics", *req,
                          [&] { return svc_->ListPodSandboxMetrics(cri::ListPodSandboxMetricsRequest(), &list); });
    if (!s.ok()) return s;
    return SendChunks(list.mutable_pod_metrics(), writer, &cri::StreamPodSandboxMetricsResponse::mutable_pod_sandbox_metrics);
  }
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
  CRISP_STREAM_LIST(StreamImages, ListImages, images, images)

 private:
  CriService* svc_;
};

}  // namespace

int InFlightRpcs() { return g_in_flight.load(); }
uint64_t FinishedRpcs() { return g_finished.load(); }

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
