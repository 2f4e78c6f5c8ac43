#pragma once
// In-memory containers and their persisted form (<root>/containers/<id>/meta.json).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "api/cri/api.pb.h"
#include "common/proc.h"
#include "server/id_store.h"

namespace crisp::server {

struct Container {
  std::string id;
  std::string sandbox_id;
  ::runtime::v1::ContainerConfig config;
  std::string image_ref;  // as asked (config.image.image)
  std::string image_id;   // config digest of the image it runs
  ::runtime::v1::ContainerState state = ::runtime::v1::CONTAINER_CREATED;
  int64_t created_at = 0, started_at = 0, finished_at = 0;  // ns since the epoch
  int32_t exit_code = 0;
  std::string reason, message;
  ProcessId pid;   // the container's init process
  ProcessId shim;  // its crisp-shim
  std::string cgroup_path, log_path, shim_dir, dir;
  std::string plan_json;  // for verbose status
  std::string stop_signal;  // from the image config ("SIGQUIT"), may be ""
  // Who the process runs as (resolved in the container's /etc/passwd).
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
  // Set when meta.json could not be read back: only Remove makes sense.
  std::string load_error;
};

using ContainerEntry = SnapshotEntry<Container>;
using ContainerStore = IdStore<ContainerEntry>;

// The CRI name: "<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>".
std::string ContainerName(const ::runtime::v1::ContainerMetadata& md, const ::runtime::v1::PodSandboxMetadata& pod);

std::string ContainerToJson(const Container& c);
absl::StatusOr<Container> ContainerFromJson(const std::string& json);

}  // namespace crisp::server
