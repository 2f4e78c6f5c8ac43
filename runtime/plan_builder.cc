#include "runtime/plan_builder.h"

#include <sys/mount.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "runtime/capabilities.h"
#include "runtime/seccomp_profile.h"

namespace crisp::runtime {
namespace cri = ::runtime::v1;

namespace {

// Number of path components, for ordering mounts parent-first.
size_t Depth(const std::string& p) {
  return static_cast<size_t>(std::count_if(absl::StrSplit(p, '/', absl::SkipEmpty()).begin(),
                                           absl::StrSplit(p, '/', absl::SkipEmpty()).end(),
                                           [](absl::string_view) { return true; }));
}

// "/a//b/./c/" -> "/a/b/c"; rejects "..".
absl::StatusOr<std::string> CleanContainerPath(const std::string& p) {
  if (p.empty() || p[0] != '/') return absl::InvalidArgumentError(absl::StrCat("container path \"", p, "\" is not absolute"));
  std::vector<std::string> parts;
  for (absl::string_view c : absl::StrSplit(p, '/', absl::SkipEmpty())) {
    if (c == ".") continue;
    if (c == "..") return absl::InvalidArgumentError(absl::StrCat("container path \"", p, "\" contains \"..\""));
    parts.emplace_back(c);
  }
  return "/" + absl::StrJoin(parts, "/");
}

uint64_t Propagation(cri::MountPropagation p) {
  switch (p) {
    case cri::PROPAGATION_HOST_TO_CONTAINER:
      return MS_SLAVE | MS_REC;
    case cri::PROPAGATION_BIDIRECTIONAL:
      return MS_SHARED | MS_REC;
    default:
      return MS_PRIVATE | MS_REC;
  }
}

// The pre-1.19 field, still sent by older kubelets (and crictl).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
const std::string& DeprecatedSeccompPath(const cri::LinuxContainerSecurityContext& sc) {
  return sc.seccomp_profile_path();
}
#pragma GCC diagnostic pop

absl::Status AddSeccomp(const PlanInputs& in, const cri::LinuxContainerSecurityContext& sc,
                        const std::vector<std::string>& cap_names, ContainerPlan* plan) {
  if (sc.privileged()) return absl::OkStatus();  // privileged: no filter
  enum { kNone, kDefault, kLocal } kind = kNone;
  std::string local;
  if (sc.has_seccomp()) {
    switch (sc.seccomp().profile_type()) {
      case cri::SecurityProfile::RuntimeDefault:
        kind = kDefault;
        break;
      case cri::SecurityProfile::Unconfined:
        kind = kNone;
        break;
      case cri::SecurityProfile::Localhost:
        kind = kLocal;
        local = sc.seccomp().localhost_ref();
        break;
      default:
        return absl::InvalidArgumentError("unknown seccomp profile type");
    }
  } else if (const std::string& p = DeprecatedSeccompPath(sc); !p.empty()) {
    if (p == "runtime/default" || p == "docker/default") {
      kind = kDefault;
    } else if (p == "unconfined") {
      kind = kNone;
    } else if (absl::StartsWith(p, "localhost/")) {
      kind = kLocal;
      local = p.substr(strlen("localhost"));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown seccomp profile \"", p, "\""));
    }
  }
  if (kind == kNone) return absl::OkStatus();
  SeccompProfile profile;
  if (kind == kDefault) {
    profile = RuntimeDefaultProfile(cap_names);
  } else {
    if (local.empty() || local[0] != '/')
      return absl::InvalidArgumentError(absl::StrCat("seccomp Localhost profile \"", local, "\" is not an absolute path"));
    if (!in.read_file) return absl::InternalError("no file reader for the seccomp profile");
    auto text = in.read_file(local);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("reading seccomp profile ", local, ": ", text.status().message()));
    std::string error;
    if (!ParseOciSeccompProfile(*text, &profile, &error))
      return absl::InvalidArgumentError(absl::StrCat("seccomp profile ", local, ": ", error));
  }
  plan->seccomp_json = SeccompProfileToJson(profile);
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& DefaultMaskedPaths() {
  static const auto* v = new std::vector<std::string>{
      "/proc/acpi",        "/proc/asound",     "/proc/kcore",       "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/proc/scsi",        "/sys/firmware",    "/sys/devices/virtual/powercap"};
  return *v;
}

const std::vector<std::string>& DefaultReadonlyPaths() {
  static const auto* v =
      new std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  return *v;
}

std::vector<std::string> ContainerArgs(const cri::ContainerConfig& c, const ImageConfigInfo& image) {
  std::vector<std::string> out;
  if (!c.command().empty()) {
    out.assign(c.command().begin(), c.command().end());
    out.insert(out.end(), c.args().begin(), c.args().end());
    return out;
  }
  out = image.entrypoint;
  if (!c.args().empty()) {
    out.insert(out.end(), c.args().begin(), c.args().end());
  } else {
    out.insert(out.end(), image.cmd.begin(), image.cmd.end());
  }
  return out;
}

std::vector<std::string> ContainerEnv(const cri::ContainerConfig& c, const ImageConfigInfo& image) {
  std::vector<std::string> env = image.env;
  auto key_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (const auto& kv : c.envs()) {
    std::string entry = kv.key() + "=" + kv.value();
    auto it = std::find_if(env.begin(), env.end(), [&](const std::string& e) { return key_of(e) == kv.key(); });
    if (it != env.end()) {
      *it = entry;
    } else {
      env.push_back(entry);
    }
  }
  return env;
}

CgroupResources ContainerCgroupResources(const cri::LinuxContainerResources& r) {
  CgroupResources res;
  if (r.cpu_shares() > 0) res.cpu_shares = r.cpu_shares();
  if (r.cpu_quota() != 0) res.cpu_quota = r.cpu_quota();
  if (r.cpu_period() > 0) res.cpu_period = r.cpu_period();
  if (!r.cpuset_cpus().empty()) res.cpuset_cpus = r.cpuset_cpus();
  if (!r.cpuset_mems().empty()) res.cpuset_mems = r.cpuset_mems();
  if (r.memory_limit_in_bytes() > 0) res.memory_limit = r.memory_limit_in_bytes();
  if (r.memory_swap_limit_in_bytes() > 0) res.memory_swap_limit = r.memory_swap_limit_in_bytes();
  for (const auto& h : r.hugepage_limits()) res.hugepage_limits[h.page_size()] = h.limit();
  for (const auto& [k, v] : r.unified()) res.unified[k] = v;
  return res;
}

absl::StatusOr<ContainerPlan> BuildContainerPlan(const PlanInputs& in) {
  const cri::ContainerConfig& c = *in.config;
  const cri::LinuxContainerSecurityContext& sc = c.linux().security_context();
  ContainerPlan plan;
  plan.id = in.id;

  plan.args = ContainerArgs(c, in.image);
  if (plan.args.empty() || plan.args[0].empty())
    return absl::InvalidArgumentError("no command specified: neither the container config nor the image has one");
  plan.env = ContainerEnv(c, in.image);
  plan.cwd = !c.working_dir().empty() ? c.working_dir() : !in.image.working_dir.empty() ? in.image.working_dir : "/";
  if (plan.cwd[0] != '/') return absl::InvalidArgumentError(absl::StrCat("working dir \"", plan.cwd, "\" is not absolute"));

  // User.
  if (sc.has_run_as_group() && !sc.has_run_as_user() && sc.run_as_username().empty())
    return absl::InvalidArgumentError("run_as_group is set without run_as_user or run_as_username");
  if (sc.has_run_as_user()) {
    if (sc.run_as_user().value() < 0) return absl::InvalidArgumentError("run_as_user is negative");
    plan.user.uid = static_cast<uint32_t>(sc.run_as_user().value());
  }
  if (sc.has_run_as_group()) {
    if (sc.run_as_group().value() < 0) return absl::InvalidArgumentError("run_as_group is negative");
    plan.user.gid = static_cast<uint32_t>(sc.run_as_group().value());
  }
  plan.user.username = sc.run_as_username();
  for (int64_t g : sc.supplemental_groups()) {
    if (g < 0) return absl::InvalidArgumentError("a supplemental group is negative");
    plan.user.supplemental_groups.push_back(static_cast<uint32_t>(g));
  }
  plan.user.image_user = in.image.user;

  // Namespaces: net/ipc/uts of the pod (absent = host), PID by mode.
  for (const char* t : {"net", "ipc", "uts"}) {
    auto it = in.sandbox.ns_paths.find(t);
    if (it != in.sandbox.ns_paths.end()) plan.join_ns[t] = it->second;
  }
  switch (sc.namespace_options().pid()) {
    case cri::POD: {
      // POD is also what an unset field says. A pod created without a
      // shared PID namespace has none to join: the container gets its own,
      // which is what it would share with containerd's pause alone.
      auto it = in.sandbox.ns_paths.find("pid");
      if (it == in.sandbox.ns_paths.end()) {
        plan.new_pid = true;
      } else {
        plan.join_ns["pid"] = it->second;
      }
      break;
    }
    case cri::CONTAINER:
      plan.new_pid = true;
      break;
    case cri::NODE:
      break;
    case cri::TARGET:
      if (in.target_pid <= 0)
        return absl::InvalidArgumentError(
            absl::StrCat("PID namespace target \"", sc.namespace_options().target_id(), "\" is not a running container"));
      plan.join_ns["pid"] = absl::StrCat("/proc/", in.target_pid, "/ns/pid");
      break;
    default:
      return absl::InvalidArgumentError("unknown PID namespace mode");
  }

  // rootfs.
  plan.lower_dirs.assign(in.image.layer_dirs.rbegin(), in.image.layer_dirs.rend());
  if (plan.lower_dirs.empty()) return absl::InvalidArgumentError("the image has no layers");
  plan.upper_dir = in.container_dir + "/upper";
  plan.work_dir = in.container_dir + "/work";
  plan.rootfs = in.container_dir + "/rootfs";
  plan.readonly_rootfs = sc.readonly_rootfs();
  plan.privileged = sc.privileged();

  // Standard mounts, then the pod's files, then the CRI mounts by depth.
  const uint64_t nsn = MS_NOSUID | MS_NOEXEC | MS_NODEV;
  plan.mounts.push_back({"proc", "proc", "/proc", nsn, "", 0});
  plan.mounts.push_back({"tmpfs", "tmpfs", "/dev", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k", 0});
  plan.mounts.push_back({"devpts", "devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0});
  plan.mounts.push_back({"mqueue", "mqueue", "/dev/mqueue", nsn, "", 0});
  plan.mounts.push_back({"sysfs", "sysfs", "/sys", nsn | (plan.privileged ? 0 : MS_RDONLY), "", 0});
  if (!in.sandbox.shm_path.empty()) plan.mounts.push_back({"bind", in.sandbox.shm_path, "/dev/shm", nsn, "", 0});
  const uint64_t file_flags = plan.readonly_rootfs ? MS_RDONLY : 0;
  if (!in.sandbox.hostname_path.empty())
    plan.mounts.push_back({"bind", in.sandbox.hostname_path, "/etc/hostname", file_flags, "", 0});
  if (!in.sandbox.hosts_path.empty())
    plan.mounts.push_back({"bind", in.sandbox.hosts_path, "/etc/hosts", file_flags, "", 0});
  if (!in.sandbox.resolv_conf_path.empty())
    plan.mounts.push_back({"bind", in.sandbox.resolv_conf_path, "/etc/resolv.conf", file_flags, "", 0});
  std::vector<PlanMount> cri_mounts;
  plan.root_propagation = MS_PRIVATE | MS_REC;
  for (const cri::Mount& m : c.mounts()) {
    ASSIGN_OR_RETURN(std::string dest, CleanContainerPath(m.container_path()));
    if (m.host_path().empty() || m.host_path()[0] != '/')
      return absl::InvalidArgumentError(absl::StrCat("mount ", dest, ": host path \"", m.host_path(), "\" is not absolute"));
    std::string src = m.host_path();
    if (in.resolve_host_path) {
      auto r = in.resolve_host_path(src);
      if (!r.ok())
        return absl::InvalidArgumentError(absl::StrCat("mount ", dest, ": host path ", src, ": ", r.status().message()));
      src = *r;
    }
    if (in.mount_propagation_of && m.propagation() != cri::PROPAGATION_PRIVATE) {
      std::string prop = in.mount_propagation_of(src);
      bool ok = prop == "shared" || (prop == "slave" && m.propagation() == cri::PROPAGATION_HOST_TO_CONTAINER);
      if (!ok)
        return absl::InvalidArgumentError(absl::StrCat("mount ", dest, ": host path ", src, " is on a ", prop,
                                                       " mount, but ", cri::MountPropagation_Name(m.propagation()),
                                                       " needs a shared", m.propagation() == cri::PROPAGATION_BIDIRECTIONAL ? "" : " or slave",
                                                       " one"));
    }
    if (m.propagation() == cri::PROPAGATION_BIDIRECTIONAL) {
      plan.root_propagation = MS_SHARED | MS_REC;
    } else if (m.propagation() == cri::PROPAGATION_HOST_TO_CONTAINER && plan.root_propagation != (MS_SHARED | MS_REC)) {
      plan.root_propagation = MS_SLAVE | MS_REC;
    }
    // A CRI mount replaces a standard one on the same path (e.g. /etc/hosts).
    std::erase_if(plan.mounts, [&](const PlanMount& p) { return p.destination == dest; });
    std::erase_if(cri_mounts, [&](const PlanMount& p) { return p.destination == dest; });
    cri_mounts.push_back({"bind", src, dest, m.readonly() ? uint64_t{MS_RDONLY} : 0, "", Propagation(m.propagation())});
  }
  std::stable_sort(cri_mounts.begin(), cri_mounts.end(),
                   [](const PlanMount& a, const PlanMount& b) { return Depth(a.destination) < Depth(b.destination); });
  plan.mounts.insert(plan.mounts.end(), cri_mounts.begin(), cri_mounts.end());

  // Devices: every host device when privileged (as runc/containerd do),
  // then the requested ones (which may rename a host device).
  if (plan.privileged && in.read_devices) {
    auto all = in.read_devices("/dev");
    if (all.ok()) plan.devices = *all;
  }
  for (const cri::Device& d : c.devices()) {
    if (d.host_path().empty() || d.host_path()[0] != '/')
      return absl::InvalidArgumentError(absl::StrCat("device host path \"", d.host_path(), "\" is not absolute"));
    std::string cpath = d.container_path().empty() ? d.host_path() : d.container_path();
    ASSIGN_OR_RETURN(cpath, CleanContainerPath(cpath));
    if (!in.read_devices) return absl::InvalidArgumentError("devices are not supported here");
    auto nodes = in.read_devices(d.host_path());
    if (!nodes.ok())
      return absl::InvalidArgumentError(absl::StrCat("device ", d.host_path(), ": ", nodes.status().message()));
    for (PlanDevice n : *nodes) {
      // A directory maps its subtree under the container path.
      n.path = cpath + n.path.substr(std::min(n.path.size(), d.host_path().size()));
      std::erase_if(plan.devices, [&](const PlanDevice& x) { return x.path == n.path; });
      plan.devices.push_back(n);
    }
  }

  if (!plan.privileged) {
    plan.masked_paths = sc.masked_paths().empty() ? DefaultMaskedPaths()
                                                  : std::vector<std::string>(sc.masked_paths().begin(), sc.masked_paths().end());
    plan.readonly_paths = sc.readonly_paths().empty()
                              ? DefaultReadonlyPaths()
                              : std::vector<std::string>(sc.readonly_paths().begin(), sc.readonly_paths().end());
  }

  // Capabilities and seccomp.
  std::vector<std::string> add(sc.capabilities().add_capabilities().begin(), sc.capabilities().add_capabilities().end());
  std::vector<std::string> drop(sc.capabilities().drop_capabilities().begin(),
                                sc.capabilities().drop_capabilities().end());
  std::vector<std::string> ambient(sc.capabilities().add_ambient_capabilities().begin(),
                                   sc.capabilities().add_ambient_capabilities().end());
  CapSets caps;
  std::string error;
  if (!ComputeCapabilities(add, drop, ambient, plan.privileged, &caps, &error))
    return absl::InvalidArgumentError(absl::StrCat("capabilities: ", error));
  plan.caps = {caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient};
  plan.no_new_privs = sc.no_new_privs();
  RETURN_IF_ERROR(AddSeccomp(in, sc, CapsToNames(caps.effective), &plan));

  // Resources kept by the process itself.
  if (c.linux().has_resources() && c.linux().resources().oom_score_adj() != 0) {
    plan.oom_score_adj = std::max<int>(static_cast<int>(c.linux().resources().oom_score_adj()), in.min_oom_score_adj);
  }
  plan.cgroup_procs = in.cgroup_procs;
  plan.oom_events_file = in.oom_events_file;

  plan.tty = c.tty();
  plan.stdin_open = c.stdin();
  plan.stdin_once = c.stdin_once();
  if (in.sandbox.config && !in.sandbox.config->log_directory().empty() && !c.log_path().empty()) {
    if (c.log_path()[0] == '/' || absl::StrContains(c.log_path(), ".."))
      return absl::InvalidArgumentError(absl::StrCat("log path \"", c.log_path(), "\" must be relative to the pod's log directory"));
    plan.log_path = absl::StrCat(in.sandbox.config->log_directory(), "/", c.log_path());
  }
  plan.shim_dir = in.shim_dir;
  return plan;
}

}  // namespace crisp::runtime
