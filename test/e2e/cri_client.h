#pragma once
// A small synchronous CRI v1 client over a unix socket, for e2e tests and benchmarks.
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cri/api.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace crisp::e2e {

namespace cri = ::runtime::v1;

class CriClient {
 public:
  // `endpoint` like "unix:///run/crisp/crisp.sock".
  explicit CriClient(const std::string& endpoint);

  // Calls `method` on the runtime service with a fresh context and deadline.
  template <typename Req, typename Resp>
  grpc::Status Runtime(grpc::Status (cri::RuntimeService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                         Resp*),
                       const Req& req, Resp* resp, int timeout_s = 60) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
    return (runtime_.get()->*method)(&ctx, req, resp);
  }
  template <typename Req, typename Resp>
  grpc::Status Image(grpc::Status (cri::ImageService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                     const Req& req, Resp* resp, int timeout_s = 120) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
    return (image_.get()->*method)(&ctx, req, resp);
  }

  // Shorthands for the common calls (deadline 60 s unless said otherwise).
  grpc::Status Version(int timeout_s = 10, cri::VersionResponse* resp = nullptr);
  grpc::Status Status(cri::StatusResponse* resp, bool verbose = false);
  // Version with wait_for_ready: waits (up to the deadline) for the channel
  // to connect instead of failing fast while it is (re)connecting.
  grpc::Status WaitForReady(int timeout_s);
  // absl flavour: the sandbox id, or the error with its gRPC code mapped.
  absl::StatusOr<std::string> RunPod(const cri::PodSandboxConfig& config);
  grpc::Status RunPodSandbox(const cri::PodSandboxConfig& config, std::string* id);
  grpc::Status StopPodSandbox(const std::string& id);
  grpc::Status RemovePodSandbox(const std::string& id);
  grpc::Status PodSandboxStatus(const std::string& id, cri::PodSandboxStatusResponse* resp,
                                bool verbose = false);
  grpc::Status ListPodSandbox(const cri::PodSandboxFilter& filter, cri::ListPodSandboxResponse* resp);

  cri::RuntimeService::Stub* runtime() { return runtime_.get(); }
  cri::ImageService::Stub* image() { return image_.get(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cri::RuntimeService::Stub> runtime_;
  std::unique_ptr<cri::ImageService::Stub> image_;
};

// grpc::Status -> absl::Status (same code and message).
absl::Status ToAbsl(const grpc::Status& s);

// A pod config with metadata (name, namespace "e2e", uid, attempt 0) and hostname.
cri::PodSandboxConfig PodConfig(const std::string& name);

}  // namespace crisp::e2e
