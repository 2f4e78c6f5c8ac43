// PodSandboxStatus and ListPodSandbox: answered from published snapshots
// only, never waiting behind a slow Run/Stop/Remove.
#include "server/cri_service.h"

namespace crisp::server {

bool MatchLabels(const google::protobuf::Map<std::string, std::string>& selector,
                 const google::protobuf::Map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

namespace {
cri::PodSandboxState ToCriState(podsandbox::SandboxState s) {
  return s == podsandbox::SandboxState::kReady ? cri::SANDBOX_READY : cri::SANDBOX_NOTREADY;
}
}  // namespace

void ToCriSandbox(const podsandbox::Sandbox& sb, cri::PodSandbox* out) {
  out->set_id(sb.id);
  if (sb.config.has_metadata()) *out->mutable_metadata() = sb.config.metadata();
  out->set_state(ToCriState(sb.state));
  out->set_created_at(sb.created_at);
  *out->mutable_labels() = sb.config.labels();
  *out->mutable_annotations() = sb.config.annotations();
  out->set_runtime_handler(sb.runtime_handler);
}

void ToCriSandboxStatus(const podsandbox::Sandbox& sb, cri::PodSandboxStatus* out) {
  out->set_id(sb.id);
  if (sb.config.has_metadata()) *out->mutable_metadata() = sb.config.metadata();
  out->set_state(ToCriState(sb.state));
  out->set_created_at(sb.created_at);
  if (!sb.ips.empty()) {
    auto* net = out->mutable_network();
    net->set_ip(sb.ips[0].address);
    for (size_t i = 1; i < sb.ips.size(); ++i) net->add_additional_ips()->set_ip(sb.ips[i].address);
  }
  auto* opts = out->mutable_linux()->mutable_namespaces()->mutable_options();
  *opts = sb.config.linux().security_context().namespace_options();
  *out->mutable_labels() = sb.config.labels();
  *out->mutable_annotations() = sb.config.annotations();
  out->set_runtime_handler(sb.runtime_handler);
}

absl::Status CriService::PodSandboxStatus(const cri::PodSandboxStatusRequest& req,
                                          cri::PodSandboxStatusResponse* resp) {
  auto entry = sandbox_store_.Find(req.pod_sandbox_id());
  if (!entry.ok()) return entry.status();
  auto sb = (*entry)->Snapshot();
  ToCriSandboxStatus(*sb, resp->mutable_status());
  resp->set_timestamp(absl::ToUnixNanos(absl::Now()));
  if (req.verbose()) (*resp->mutable_info())["info"] = sandboxes_->VerboseInfo(*sb).dump();
  return absl::OkStatus();
}

absl::Status CriService::ListPodSandbox(const cri::ListPodSandboxRequest& req, cri::ListPodSandboxResponse* resp) {
  const auto& f = req.filter();
  std::vector<std::shared_ptr<SandboxEntry>> entries;
  if (!f.id().empty()) {
    auto e = sandbox_store_.Find(f.id());
    if (!e.ok()) return absl::OkStatus();  // no match (or ambiguous): empty list, as other runtimes do
    entries.push_back(*e);
  } else {
    entries = sandbox_store_.All();
  }
  for (const auto& e : entries) {
    auto sb = e->Snapshot();
    if (f.has_state() && ToCriState(sb->state) != f.state().state()) continue;
    if (!MatchLabels(f.label_selector(), sb->config.labels())) continue;
    ToCriSandbox(*sb, resp->add_items());
  }
  return absl::OkStatus();
}

}  // namespace crisp::server
