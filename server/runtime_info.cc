// Version, Status, RuntimeConfig, UpdateRuntimeConfig.
#include "common/log.h"
#include "server/cri_service.h"

#ifndef CRISP_VERSION
#define CRISP_VERSION "0.0.0"
#endif

namespace crisp::server {

absl::Status CriService::Version(const cri::VersionRequest&, cri::VersionResponse* resp) {
  resp->set_version("0.1.0");  // the CRI "kubelet API version" field, as other runtimes answer
  resp->set_runtime_name("crisp");
  resp->set_runtime_version(CRISP_VERSION);
  resp->set_runtime_api_version("v1");
  return absl::OkStatus();
}

absl::Status CriService::Status(const cri::StatusRequest& req, cri::StatusResponse* resp) {
  auto* st = resp->mutable_status();
  auto* rt = st->add_conditions();
  rt->set_type("RuntimeReady");
  rt->set_status(true);
  auto* net = st->add_conditions();
  net->set_type("NetworkReady");
  // The backend a pod created now would get (with `network: auto`, CNI
  // once a config file is in the conf dir, else the embedded network).
  netcni::PodNetwork* backend = networks_->Current();
  absl::Status ready = backend ? backend->Ready() : absl::FailedPreconditionError("no pod network backend");
  net->set_status(ready.ok());
  if (!ready.ok()) {
    net->set_reason("NetworkPluginNotReady");
    net->set_message(std::string("Network plugin returns error: ") + std::string(ready.message()));
  }
  if (req.verbose()) {
    (*resp->mutable_info())["config"] = ConfigToJson(config_);
    (*resp->mutable_info())["cni"] = nlohmann::json{{"mode", netcni::NetworkModeName(networks_->mode())},
                                                    {"backend", backend ? backend->Kind() : ""},
                                                    {"network", backend ? backend->NetworkName() : ""},
                                                    {"file", backend ? backend->ConfigFile() : ""},
                                                    {"pod_cidr", PodCidr()}}
                                         .dump();
  }
  return absl::OkStatus();
}

absl::Status CriService::RuntimeConfig(const cri::RuntimeConfigRequest&, cri::RuntimeConfigResponse* resp) {
  resp->mutable_linux()->set_cgroup_driver(cri::CGROUPFS);
  return absl::OkStatus();
}

absl::Status CriService::UpdateRuntimeConfig(const cri::UpdateRuntimeConfigRequest& req,
                                             cri::UpdateRuntimeConfigResponse*) {
  const std::string& cidr = req.runtime_config().network_config().pod_cidr();
  std::lock_guard<std::mutex> lock(cidr_mu_);
  if (!cidr.empty() && cidr != pod_cidr_) {  // an empty CIDR keeps the current one
    Logger("server")->info("pod CIDR set to \"{}\"", cidr);
    pod_cidr_ = cidr;
  }
  return absl::OkStatus();
}

}  // namespace crisp::server
