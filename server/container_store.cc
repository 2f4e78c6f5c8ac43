#include "server/container_store.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace crisp::server {

using json = nlohmann::json;
namespace cri = ::runtime::v1;

std::string ContainerName(const cri::ContainerMetadata& md, const cri::PodSandboxMetadata& pod) {
  return absl::StrCat(md.name(), "_", pod.name(), "_", pod.namespace_(), "_", pod.uid(), "_", md.attempt());
}

std::string ContainerToJson(const Container& c) {
  std::string config_json;
  google::protobuf::util::JsonPrintOptions po;
  po.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(c.config, &config_json, po);
  json j = {{"version", 1},
            {"id", c.id},
            {"sandbox_id", c.sandbox_id},
            {"config", json::parse(config_json, nullptr, false)},
            {"image_ref", c.image_ref},
            {"image_id", c.image_id},
            {"state", static_cast<int>(c.state)},
            {"created_at", c.created_at},
            {"started_at", c.started_at},
            {"finished_at", c.finished_at},
            {"exit_code", c.exit_code},
            {"reason", c.reason},
            {"message", c.message},
            {"pid", c.pid.pid},
            {"pid_start_time", c.pid.start_time},
            {"shim_pid", c.shim.pid},
            {"shim_start_time", c.shim.start_time},
            {"cgroup_path", c.cgroup_path},
            {"log_path", c.log_path},
            {"shim_dir", c.shim_dir},
            {"dir", c.dir},
            {"plan", c.plan_json},
            {"stop_signal", c.stop_signal},
            {"uid", c.uid},
            {"gid", c.gid},
            {"groups", c.groups}};
  return j.dump();
}

absl::StatusOr<Container> ContainerFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("container metadata is not valid JSON");
  try {
    Container c;
    c.id = j.at("id").get<std::string>();
    c.sandbox_id = j.at("sandbox_id").get<std::string>();
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    auto st = google::protobuf::util::JsonStringToMessage(j.at("config").dump(), &c.config, opts);
    if (!st.ok()) return absl::DataLossError(absl::StrCat("container config: ", st.ToString()));
    c.image_ref = j.value("image_ref", "");
    c.image_id = j.value("image_id", "");
    int state = j.value("state", static_cast<int>(cri::CONTAINER_UNKNOWN));
    if (!cri::ContainerState_IsValid(state)) return absl::DataLossError("container metadata: bad state");
    c.state = static_cast<cri::ContainerState>(state);
    c.created_at = j.value("created_at", int64_t{0});
    c.started_at = j.value("started_at", int64_t{0});
    c.finished_at = j.value("finished_at", int64_t{0});
    c.exit_code = j.value("exit_code", 0);
    c.reason = j.value("reason", "");
    c.message = j.value("message", "");
    c.pid = {j.value("pid", 0), j.value("pid_start_time", uint64_t{0})};
    c.shim = {j.value("shim_pid", 0), j.value("shim_start_time", uint64_t{0})};
    c.cgroup_path = j.value("cgroup_path", "");
    c.log_path = j.value("log_path", "");
    c.shim_dir = j.value("shim_dir", "");
    c.dir = j.value("dir", "");
    c.plan_json = j.value("plan", "");
    c.stop_signal = j.value("stop_signal", "");
    c.uid = j.value("uid", 0u);
    c.gid = j.value("gid", 0u);
    c.groups = j.value("groups", std::vector<uint32_t>{});
    return c;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("container metadata: ", e.what()));
  }
}

}  // namespace crisp::server
