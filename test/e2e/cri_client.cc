#include "test/e2e/cri_client.h"

namespace crisp::e2e {

CriClient::CriClient(const std::string& endpoint)
    : channel_(grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), [] {
        // Reconnect quickly after the daemon restarts (the default backoff starts at 1 s).
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
        args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
        args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
        return args;
      }())),
      runtime_(cri::RuntimeService::NewStub(channel_)),
      image_(cri::ImageService::NewStub(channel_)) {}

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

grpc::Status CriClient::PodSandboxStatus(const std::string& id, cri::PodSandboxStatusResponse* resp, bool verbose) {
  cri::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  req.set_verbose(verbose);
  return Runtime(&cri::RuntimeService::Stub::PodSandboxStatus, req, resp);
}

grpc::Status CriClient::ListPodSandbox(const cri::PodSandboxFilter& filter, cri::ListPodSandboxResponse* resp) {
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
