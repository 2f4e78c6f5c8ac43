#pragma once
// Builds a ContainerPlan from what kubelet asked (CRI ContainerConfig), the
// pod it goes into and the image it runs: a pure function (no syscalls; the
// one file it may need, a Localhost seccomp profile, comes through a reader
// callback), unit-tested like containerd's spec tests.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "api/cri/api.pb.h"
#include "runtime/cgroups.h"
#include "runtime/container_plan.h"

namespace crisp::runtime {

// What the plan needs of the image config ("config" object of the OCI image
// config).
struct ImageConfigInfo {
  std::vector<std::string> entrypoint, cmd, env;
  std::string working_dir, user, stop_signal;
  std::vector<std::string> layer_dirs;  // bottom-most first, as in the manifest
};

// What the plan needs of the pod sandbox.
struct SandboxInfo {
  std::string id;
  const ::runtime::v1::PodSandboxConfig* config = nullptr;
  std::map<std::string, std::string> ns_paths;  // pinned "net", "ipc", "uts", "pid" (absent: host)
  std::string hostname_path, hosts_path, resolv_conf_path, shm_path;
};

struct PlanInputs {
  std::string id;
  const ::runtime::v1::ContainerConfig* config = nullptr;
  SandboxInfo sandbox;
  ImageConfigInfo image;
  // The container's directory (upper/, work/, rootfs/ are made by the
  // caller) and the shim's volatile directory.
  std::string container_dir, shim_dir;
  // pid of the target container for NamespaceMode TARGET (its /proc/<pid>/ns/pid).
  int target_pid = 0;
  std::vector<std::string> cgroup_procs;
  std::string oom_events_file;
  // oom_score_adj below this is clamped to it (lowering needs a privilege
  // this host may deny; containerd's restrict_oom_score_adj).
  int min_oom_score_adj = -1000;
  // Reads a Localhost seccomp profile.
  std::function<absl::StatusOr<std::string>(const std::string& path)> read_file;
  // Resolves a mount's host path (symlinks followed, as realpath does);
  // NOT_FOUND if it does not exist. Unset: paths are taken as they are.
  std::function<absl::StatusOr<std::string>(const std::string& path)> resolve_host_path;
  // Propagation of the mount a (resolved) host path is on: "shared",
  // "slave" or "private". Bidirectional mounts need "shared", HostToContainer
  // ones "shared" or "slave" (as containerd checks). Unset: not checked.
  std::function<std::string(const std::string& path)> mount_propagation_of;
  // The device nodes at a host path: the node itself, or every node below a
  // directory (for privileged containers, "/dev"), with `path` set to the
  // host path. NOT_FOUND / INVALID_ARGUMENT for a missing path or one that
  // is no device. Unset: CRI devices are refused and privileged gets none.
  std::function<absl::StatusOr<std::vector<PlanDevice>>(const std::string& host_path)> read_devices;
};

// INVALID_ARGUMENT for what kubelet got wrong: no command at all, a mount
// whose host or container path is relative or whose host path does not
// exist, run_as_group without a user, unknown capability names, a bad
// seccomp profile, a NamespaceMode TARGET without target_pid.
absl::StatusOr<ContainerPlan> BuildContainerPlan(const PlanInputs& in);

// The container's cgroup settings in CRI units.
CgroupResources ContainerCgroupResources(const ::runtime::v1::LinuxContainerResources& r);

// Docker/CRI argv rules: config.command replaces the image entrypoint (and
// then the image cmd is dropped); config.args replaces the image cmd.
std::vector<std::string> ContainerArgs(const ::runtime::v1::ContainerConfig& c, const ImageConfigInfo& image);

// Image env, then the config's envs (same key: the config wins, in place).
std::vector<std::string> ContainerEnv(const ::runtime::v1::ContainerConfig& c, const ImageConfigInfo& image);

// The masked and read-only paths containerd uses by default.
const std::vector<std::string>& DefaultMaskedPaths();
const std::vector<std::string>& DefaultReadonlyPaths();

}  // namespace crisp::runtime
