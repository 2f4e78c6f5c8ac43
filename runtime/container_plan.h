#pragma once
// The container plan: everything crisp-shim needs to create one container,
// decided by crispd (runtime/plan_builder.h) and sent as JSON over the shim's
// socketpair. Header-only and free of absl/spdlog/protobuf so that the shim
// stays tiny. Paths are host paths unless said otherwise; "destination" paths
// are inside the container.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace crisp::runtime {

// One mount made inside the container's rootfs before pivot_root, in order.
struct PlanMount {
  std::string type;         // "bind", "proc", "tmpfs", "sysfs", "devpts", "mqueue", "cgroup2"...
  std::string source;       // host path for binds; fs name otherwise
  std::string destination;  // absolute, inside the container
  uint64_t flags = 0;       // MS_* (MS_RDONLY for read-only binds is applied by a remount)
  std::string data;         // fs options ("mode=755,size=65536k")
  // MS_PRIVATE / MS_SLAVE / MS_SHARED (| MS_REC), 0 = leave as it is.
  uint64_t propagation = 0;
  bool operator==(const PlanMount&) const = default;
};

// A device node made in the container's /dev (CRI devices; every host
// device when privileged).
struct PlanDevice {
  std::string path;  // inside the container, e.g. "/dev/fuse"
  char type = 'c';   // 'c' or 'b'
  uint32_t major = 0, minor = 0;
  uint32_t mode = 0666, uid = 0, gid = 0;
  bool operator==(const PlanDevice&) const = default;
};

struct PlanRlimit {
  int resource = 0;  // RLIMIT_*
  uint64_t soft = 0, hard = 0;
  bool operator==(const PlanRlimit&) const = default;
};

// Who the process runs as. Numeric fields win; names are resolved by the shim
// in the container's own /etc/passwd and /etc/group (after the rootfs is
// mounted), as containerd resolves them in the image's files.
struct PlanUser {
  std::optional<uint32_t> uid;     // run_as_user
  std::string username;            // run_as_username
  std::optional<uint32_t> gid;     // run_as_group
  std::vector<uint32_t> supplemental_groups;
  std::string image_user;          // the image config's User ("", "name", "uid:gid", ...)
  bool operator==(const PlanUser&) const = default;
};

struct CapabilitySets {
  uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;
  bool operator==(const CapabilitySets&) const = default;
};

struct ContainerPlan {
  std::string id;
  // Namespaces to join: type ("net", "ipc", "uts", "pid") -> pinned ns file.
  // A type not listed is the host's, except that a new mount namespace is
  // always created and a new PID namespace when new_pid is set.
  std::map<std::string, std::string> join_ns;
  bool new_pid = false;

  // overlayfs: lower dirs top-most first; upper/work under the container's
  // directory. `rootfs` is the (empty) directory it is mounted on.
  std::vector<std::string> lower_dirs;
  std::string upper_dir, work_dir, rootfs;
  bool readonly_rootfs = false;

  std::vector<PlanMount> mounts;
  std::vector<PlanDevice> devices;
  // Propagation of the container's copy of the host's mounts: MS_PRIVATE,
  // MS_SLAVE (a HostToContainer mount asks for it) or MS_SHARED (a
  // Bidirectional one), always with MS_REC.
  uint64_t root_propagation = 0;
  std::vector<std::string> masked_paths, readonly_paths;

  std::vector<std::string> args;  // args[0]: path or name looked up in PATH
  std::vector<std::string> env;   // "K=V"
  std::string cwd = "/";
  PlanUser user;
  CapabilitySets caps;
  bool no_new_privs = true;
  bool privileged = false;
  // OCI runtime-spec linux.seccomp JSON; empty = no filter.
  std::string seccomp_json;
  std::vector<PlanRlimit> rlimits;
  std::optional<int> oom_score_adj;
  // cgroup.procs files the process is moved into before it runs anything of
  // the container (one per v1 hierarchy; one on v2).
  std::vector<std::string> cgroup_procs;
  // memory.oom_control (v1) or memory.events (v2): its oom_kill count tells
  // the shim whether the kernel OOM-killed something in the container.
  std::string oom_events_file;

  bool tty = false, stdin_open = false, stdin_once = false;
  std::string log_path;  // CRI log file (host path); "" = discard output
  // The shim's own directory: ctl.sock, attach.sock, exit.json.
  std::string shim_dir;
  // Exec mode only (`crisp-shim exec`): the host pid of the running
  // container's process whose namespaces the command joins. args/tty/
  // stdin_open then describe the exec'd command; the rootfs fields are unused.
  int exec_pid = 0;
};

// --- JSON (wire form) -------------------------------------------------------

inline void to_json(nlohmann::json& j, const PlanMount& m) {
  j = {{"type", m.type},   {"source", m.source}, {"destination", m.destination},
       {"flags", m.flags}, {"data", m.data},     {"propagation", m.propagation}};
}
inline void from_json(const nlohmann::json& j, PlanMount& m) {
  m.type = j.at("type").get<std::string>();
  m.source = j.value("source", "");
  m.destination = j.at("destination").get<std::string>();
  m.flags = j.value("flags", uint64_t{0});
  m.data = j.value("data", "");
  m.propagation = j.value("propagation", uint64_t{0});
}
inline void to_json(nlohmann::json& j, const PlanDevice& d) {
  j = {{"path", d.path}, {"type", std::string(1, d.type)}, {"major", d.major}, {"minor", d.minor},
       {"mode", d.mode}, {"uid", d.uid},   {"gid", d.gid}};
}
inline void from_json(const nlohmann::json& j, PlanDevice& d) {
  d.path = j.at("path").get<std::string>();
  std::string t = j.at("type").get<std::string>();
  if (t != "c" && t != "b") throw nlohmann::json::other_error::create(501, "device type must be c or b", &j);
  d.type = t[0];
  d.major = j.at("major").get<uint32_t>();
  d.minor = j.at("minor").get<uint32_t>();
  d.mode = j.value("mode", 0666u);
  d.uid = j.value("uid", 0u);
  d.gid = j.value("gid", 0u);
}
inline void to_json(nlohmann::json& j, const PlanRlimit& r) {
  j = {{"resource", r.resource}, {"soft", r.soft}, {"hard", r.hard}};
}
inline void from_json(const nlohmann::json& j, PlanRlimit& r) {
  r.resource = j.at("resource").get<int>();
  r.soft = j.at("soft").get<uint64_t>();
  r.hard = j.at("hard").get<uint64_t>();
}

inline std::string ContainerPlanToJson(const ContainerPlan& p) {
  nlohmann::json user = {{"username", p.user.username},
                         {"supplemental_groups", p.user.supplemental_groups},
                         {"image_user", p.user.image_user}};
  if (p.user.uid) user["uid"] = *p.user.uid;
  if (p.user.gid) user["gid"] = *p.user.gid;
  nlohmann::json caps = {{"bounding", p.caps.bounding},
                         {"effective", p.caps.effective},
                         {"permitted", p.caps.permitted},
                         {"inheritable", p.caps.inheritable},
                         {"ambient", p.caps.ambient}};
  nlohmann::json j = {{"id", p.id},
                      {"join_ns", p.join_ns},
                      {"new_pid", p.new_pid},
                      {"lower_dirs", p.lower_dirs},
                      {"upper_dir", p.upper_dir},
                      {"work_dir", p.work_dir},
                      {"rootfs", p.rootfs},
                      {"readonly_rootfs", p.readonly_rootfs},
                      {"mounts", p.mounts},
                      {"root_propagation", p.root_propagation},
                      {"devices", p.devices},
                      {"masked_paths", p.masked_paths},
                      {"readonly_paths", p.readonly_paths},
                      {"args", p.args},
                      {"env", p.env},
                      {"cwd", p.cwd},
                      {"user", user},
                      {"caps", caps},
                      {"no_new_privs", p.no_new_privs},
                      {"privileged", p.privileged},
                      {"seccomp_json", p.seccomp_json},
                      {"rlimits", p.rlimits},
                      {"cgroup_procs", p.cgroup_procs},
                      {"oom_events_file", p.oom_events_file},
                      {"tty", p.tty},
                      {"stdin_open", p.stdin_open},
                      {"stdin_once", p.stdin_once},
                      {"log_path", p.log_path},
                      {"shim_dir", p.shim_dir}};
  if (p.oom_score_adj) j["oom_score_adj"] = *p.oom_score_adj;
  if (p.exec_pid) j["exec_pid"] = p.exec_pid;
  return j.dump();
}

// std::nullopt if `text` is not a valid plan (malformed JSON, a missing
// required key or a value of the wrong type).
inline std::optional<ContainerPlan> ParseContainerPlan(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    ContainerPlan p;
    p.id = j.at("id").get<std::string>();
    p.join_ns = j.value("join_ns", std::map<std::string, std::string>{});
    p.new_pid = j.value("new_pid", false);
    p.lower_dirs = j.at("lower_dirs").get<std::vector<std::string>>();
    p.upper_dir = j.value("upper_dir", "");
    p.work_dir = j.value("work_dir", "");
    p.rootfs = j.at("rootfs").get<std::string>();
    p.readonly_rootfs = j.value("readonly_rootfs", false);
    p.mounts = j.value("mounts", std::vector<PlanMount>{});
    p.root_propagation = j.value("root_propagation", uint64_t{0});
    p.devices = j.value("devices", std::vector<PlanDevice>{});
    p.masked_paths = j.value("masked_paths", std::vector<std::string>{});
    p.readonly_paths = j.value("readonly_paths", std::vector<std::string>{});
    p.args = j.at("args").get<std::vector<std::string>>();
    p.env = j.value("env", std::vector<std::string>{});
    p.cwd = j.value("cwd", "/");
    const nlohmann::json& u = j.at("user");
    if (u.contains("uid")) p.user.uid = u.at("uid").get<uint32_t>();
    if (u.contains("gid")) p.user.gid = u.at("gid").get<uint32_t>();
    p.user.username = u.value("username", "");
    p.user.supplemental_groups = u.value("supplemental_groups", std::vector<uint32_t>{});
    p.user.image_user = u.value("image_user", "");
    const nlohmann::json& c = j.at("caps");
    p.caps.bounding = c.at("bounding").get<uint64_t>();
    p.caps.effective = c.at("effective").get<uint64_t>();
    p.caps.permitted = c.at("permitted").get<uint64_t>();
    p.caps.inheritable = c.at("inheritable").get<uint64_t>();
    p.caps.ambient = c.at("ambient").get<uint64_t>();
    p.no_new_privs = j.value("no_new_privs", true);
    p.privileged = j.value("privileged", false);
    p.seccomp_json = j.value("seccomp_json", "");
    p.rlimits = j.value("rlimits", std::vector<PlanRlimit>{});
    if (j.contains("oom_score_adj")) p.oom_score_adj = j.at("oom_score_adj").get<int>();
    p.cgroup_procs = j.value("cgroup_procs", std::vector<std::string>{});
    p.oom_events_file = j.value("oom_events_file", "");
    p.tty = j.value("tty", false);
    p.stdin_open = j.value("stdin_open", false);
    p.stdin_once = j.value("stdin_once", false);
    p.log_path = j.value("log_path", "");
    p.shim_dir = j.at("shim_dir").get<std::string>();
    p.exec_pid = j.value("exec_pid", 0);
    if (p.args.empty() || p.rootfs.empty() || p.shim_dir.empty()) return std::nullopt;
    return p;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace crisp::runtime
