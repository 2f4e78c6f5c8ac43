// PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo: thin
// translations between CRI messages and images::ImageManager.
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "server/cri_service.h"

namespace crisp::server {
namespace {

void ToCriImage(const images::Image& img, cri::Image* out) {
  out->set_id(img.id);
  for (const auto& t : img.repo_tags) out->add_repo_tags(t);
  for (const auto& d : img.repo_digests) out->add_repo_digests(d);
  out->set_size(img.size);
  if (img.uid) out->mutable_uid()->set_value(*img.uid);
  out->set_username(img.username);
  out->mutable_spec()->set_image(img.id);
  out->set_pinned(img.pinned);
}

images::AuthCredentials ToCredentials(const cri::AuthConfig& a) {
  images::AuthCredentials c;
  c.username = a.username();
  c.password = a.password();
  c.auth = a.auth();
  c.server_address = a.server_address();
  c.identity_token = a.identity_token();
  c.registry_token = a.registry_token();
  return c;
}

}  // namespace

images::ImageOptions ImageOptionsFromConfig(const Config& config) {
  images::ImageOptions o;
  o.root = config.root;
  for (const auto& [host, eps] : config.registry.mirrors) o.hosts[host].mirrors = eps;
  for (const auto& host : config.registry.insecure) o.hosts[host].insecure = true;
  for (const auto& [host, file] : config.registry.ca_files) o.hosts[host].ca_file = file;
  for (const auto& [host, a] : config.registry.auths) {
    auto& h = o.hosts[host];
    h.username = a.username;
    h.password = a.password;
    h.auth = a.auth;
    h.identity_token = a.identity_token;
  }
  return o;
}

absl::Status CriService::PullImage(const cri::PullImageRequest& req, cri::PullImageResponse* resp) {
  if (req.image().image().empty()) return absl::InvalidArgumentError("PullImage: image.image is required");
  auto img = images_->Pull(req.image().image(), ToCredentials(req.auth()));
  if (!img.ok()) return Annotate(img.status(), absl::StrCat("pulling image \"", req.image().image(), "\""));
  resp->set_image_ref(img->id);
  return absl::OkStatus();
}

absl::Status CriService::ListImages(const cri::ListImagesRequest& req, cri::ListImagesResponse* resp) {
  const std::string& want = req.filter().image().image();
  if (!want.empty()) {
    if (auto img = images_->Get(want)) ToCriImage(*img, resp->add_images());
    return absl::OkStatus();
  }
  for (const auto& img : images_->List()) ToCriImage(img, resp->add_images());
  return absl::OkStatus();
}

absl::Status CriService::ImageStatus(const cri::ImageStatusRequest& req, cri::ImageStatusResponse* resp) {
  if (req.image().image().empty()) return absl::InvalidArgumentError("ImageStatus: image.image is required");
  auto img = images_->Get(req.image().image());
  if (!img) return absl::OkStatus();  // CRI: a missing image is an empty response, not an error
  ToCriImage(*img, resp->mutable_image());
  if (req.verbose()) {
    nlohmann::json info = {{"id", img->id}, {"layers", img->layer_dirs}, {"size", img->size}};
    info["config"] = nlohmann::json::parse(img->config_json, nullptr, false);
    (*resp->mutable_info())["info"] = info.dump();
  }
  return absl::OkStatus();
}

absl::Status CriService::RemoveImage(const cri::RemoveImageRequest& req, cri::RemoveImageResponse*) {
  if (req.image().image().empty()) return absl::InvalidArgumentError("RemoveImage: image.image is required");
  // An image a container (in any state but removed) was created from stays.
  absl::Status s = images_->Remove(req.image().image(), [this](const std::string& id) {
    for (const auto& e : container_store_.All())
      if (e->Snapshot()->image_id == id) return true;
    return false;
  });
  if (s.code() == absl::StatusCode::kNotFound) return absl::OkStatus();  // idempotent, as kubelet expects
  return s;
}

absl::Status CriService::ImageFsInfo(const cri::ImageFsInfoRequest&, cri::ImageFsInfoResponse* resp) {
  auto u = images_->Usage();
  auto* fs = resp->add_image_filesystems();
  fs->set_timestamp(absl::ToUnixNanos(absl::Now()));
  fs->mutable_fs_id()->set_mountpoint(u.mountpoint);
  fs->mutable_used_bytes()->set_value(u.used_bytes);
  fs->mutable_inodes_used()->set_value(u.inodes_used);
  return ContainerFsUsage(resp->add_container_filesystems());
}

}  // namespace crisp::server
