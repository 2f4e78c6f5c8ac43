#include "test/e2e/cri_client.h"

namespace crisp::e2e {

CriClient::CriClient(const std::string& endpoint)
    : channel_(grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(),
                                         [] {
                                           // Reconnect quickly after the daemon restarts (the default backoff
                                           // starts at 1 s).
                                           grpc::ChannelArguments args;
                                           args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
                                           args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
                                           args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
                                           // A private subchannel: a new client after a daemon restart must
                                           // not inherit the backoff state of the previous client's
                                           // connection.
                                           args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
                                           // kubelet's limit (the default is 4 MiB).
                                           args.SetMaxReceiveMessageSize(16 << 20);
                                           return args;
                                         }())),
      runtime_(cri::RuntimeService::NewStub(channel_)),
      image_(cri::ImageService::NewStub(channel_)) {}

grpc::Status CriClient::Version(int timeout_s, cri::VersionResponse* resp) {
  cri::VersionResponse local;
  return Runtime(&cri::RuntimeService::Stub::Version, cri::VersionRequest(), resp ? resp : &local, timeout_s);
}

grpc::Status CriClient::WaitForReady(int timeout_s) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  ctx.set_wait_for_ready(true);
  cri::VersionResponse resp;
  return runtime_->Version(&ctx, cri::VersionRequest(), &resp);
}

grpc::Status CriClient::Status(cri::StatusResponse* resp, bool verbose) {
  cri::StatusRequest req;
  req.set_verbose(verbose);
  return Runtime(&cri::RuntimeService::Stub::Status, req, resp, 10);
}

absl::StatusOr<std::string> CriClient::RunPod(const cri::PodSandboxConfig& config) {
  std::string id;
  grpc::Status s = RunPodSandbox(config, &id);
  if (!s.ok()) return ToAbsl(s);
  return id;
}

absl::Status ToAbsl(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

grpc::Status CriClient::RunPodSandbox(const cri::PodSandboxConfig& config, std::string* id) {
  cri::RunPodSandboxRequest req;
  *req.mutable_config() = config;
  cri::RunPodSandboxResponse resp;
  grpc::Status s = Runtime(&cri::RuntimeService::Stub::RunPodSandbox, req, &resp);
  if (id) *id = resp.pod_sandbox_id();
  return s;
}

grpc::Status CriClient::StopPodSandbox(const std::string& id) {
  cri::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  cri::StopPodSandboxResponse resp;
  return Runtime(&cri::RuntimeService::Stub::StopPodSandbox, req, &resp);
}

grpc::Status CriClient::RemovePodSandbox(const std::string& id) {
  cri::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  cri::RemovePodSandboxResponse resp;
  return Runtime(&cri::RuntimeService::Stub::RemovePodSandbox, req, &resp);
}

grpc::Status CriClient::PodSandboxStatus(const std::string& id, cri::PodSandboxStatusResponse* resp,
                                         bool verbose) {
  cri::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  req.set_verbose(verbose);
  return Runtime(&cri::RuntimeService::Stub::PodSandboxStatus, req, resp);
}

grpc::Status CriClient::ListPodSandbox(const cri::PodSandboxFilter& filter,
                                       cri::ListPodSandboxResponse* resp) {
  cri::ListPodSandboxRequest req;
  *req.mutable_filter() = filter;
  return Runtime(&cri::RuntimeService::Stub::ListPodSandbox, req, resp);
}

cri::PodSandboxConfig PodConfig(const std::string& name) {
  cri::PodSandboxConfig c;
  c.mutable_metadata()->set_name(name);
  c.mutable_metadata()->set_namespace_("e2e");
  c.mutable_metadata()->set_uid(name + "-uid");
  c.mutable_metadata()->set_attempt(0);
  c.set_hostname(name);
  return c;
}

}  // namespace crisp::e2e
