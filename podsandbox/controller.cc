#include "podsandbox/controller.h"

#include <signal.h>
#include <unistd.h>

#include <functional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status.h"
#include "common/units.h"
#include "google/protobuf/util/json_util.h"
#include "netcni/cni.h"
#include "podsandbox/sysctl.h"
#include "runtime/namespaces.h"
#include "runtime/pause.h"

namespace crisp::podsandbox {
namespace {

namespace cri = ::runtime::v1;
using json = nlohmann::json;

constexpr absl::Duration kPauseKillTimeout = absl::Seconds(10);
// hostname/hosts/resolv.conf need no fsync: a crash before they reach the
// disk is a crash before RunPodSandbox returned, and recovery removes such a
// sandbox's files with it.
constexpr bool kRegenerable = false;

std::shared_ptr<spdlog::logger> Log() { return Logger("podsandbox"); }

std::string HostHostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

runtime::CgroupResources ToCgroupResources(const cri::LinuxContainerResources& r) {
  runtime::CgroupResources out;
  if (r.cpu_shares() > 0) out.cpu_shares = r.cpu_shares();
  if (r.cpu_quota() != 0) out.cpu_quota = r.cpu_quota();
  if (r.cpu_period() > 0) out.cpu_period = r.cpu_period();
  if (!r.cpuset_cpus().empty()) out.cpuset_cpus = r.cpuset_cpus();
  if (!r.cpuset_mems().empty()) out.cpuset_mems = r.cpuset_mems();
  if (r.memory_limit_in_bytes() > 0) out.memory_limit = r.memory_limit_in_bytes();
  if (r.memory_swap_limit_in_bytes() > 0) out.memory_swap_limit = r.memory_swap_limit_in_bytes();
  for (const auto& h : r.hugepage_limits()) out.hugepage_limits[h.page_size()] = h.limit();
  for (const auto& [k, v] : r.unified()) out.unified[k] = v;
  return out;
}

}  // namespace

runtime::CgroupResources PodCgroupResources(const cri::LinuxPodSandboxConfig& linux) {
  // kubelet sends the pod's containers' total as `resources` and the runtime
  // class overhead separately: the sandbox cgroup gets both.
  runtime::CgroupResources res;
  if (linux.has_resources()) res = ToCgroupResources(linux.resources());
  if (!linux.has_overhead()) return res;
  runtime::CgroupResources ovh = ToCgroupResources(linux.overhead());
  if (!linux.has_resources()) return ovh;
  if (res.memory_limit && ovh.memory_limit) *res.memory_limit += *ovh.memory_limit;
  if (res.cpu_shares && ovh.cpu_shares) *res.cpu_shares += *ovh.cpu_shares;
  if (res.cpu_quota && ovh.cpu_quota && *res.cpu_quota > 0 && *ovh.cpu_quota > 0) {
    int64_t period = res.cpu_period.value_or(100000), operiod = ovh.cpu_period.value_or(100000);
    *res.cpu_quota += *ovh.cpu_quota * period / operiod;
  }
  return res;
}

namespace {

// Undo steps run in reverse order unless dismissed.
class Rollback {
 public:
  void Add(std::string what, std::function<absl::Status()> undo) { steps_.push_back({std::move(what), std::move(undo)}); }
  void Dismiss() { steps_.clear(); }
  ~Rollback() {
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      absl::Status s = it->second();
      if (!s.ok()) Log()->warn("rollback: undoing {} failed: {}", it->first, s.ToString());
    }
  }

 private:
  std::vector<std::pair<std::string, std::function<absl::Status()>>> steps_;
};

// Durations of the steps of one operation, logged as one debug line.
class StepTimer {
 public:
  void Mark(const char* step) {
    absl::Time now = absl::Now();
    absl::StrAppend(&line_, " ", step, "=", absl::StrFormat("%.1f", absl::ToDoubleMilliseconds(now - last_)), "ms");
    last_ = now;
  }
  const std::string& line() const { return line_; }

 private:
  absl::Time last_ = absl::Now();
  std::string line_;
};

}  // namespace

std::string ResolvConfContent(const cri::DNSConfig& dns) {
  std::string out;
  if (!dns.searches().empty()) absl::StrAppend(&out, "search ", absl::StrJoin(dns.searches(), " "), "\n");
  for (const auto& s : dns.servers()) absl::StrAppend(&out, "nameserver ", s, "\n");
  if (!dns.options().empty()) absl::StrAppend(&out, "options ", absl::StrJoin(dns.options(), " "), "\n");
  return out;
}

std::string DefaultHostsContent() {
  return "127.0.0.1\tlocalhost\n"
         "::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\n"
         "ff00::0\tip6-mcastprefix\n"
         "ff02::1\tip6-allnodes\n"
         "ff02::2\tip6-allrouters\n";
}

std::string SandboxToJson(const Sandbox& sb) {
  std::string config_json;
  google::protobuf::util::JsonPrintOptions po;
  po.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(sb.config, &config_json, po);
  json ips = json::array();
  for (const auto& ip : sb.ips) ips.push_back({{"address", ip.address}, {"prefix_len", ip.prefix_len}, {"ipv6", ip.ipv6}});
  json j = {
      {"version", 1},
      {"id", sb.id},
      {"config", json::parse(config_json, nullptr, false)},
      {"runtime_handler", sb.runtime_handler},
      {"created_at", sb.created_at},
      {"state", sb.state == SandboxState::kReady ? "ready" : "notready"},
      {"pause_pid", sb.pause.pid},
      {"pause_start_time", sb.pause.start_time},
      {"host_network", sb.host_network},
      {"host_ipc", sb.host_ipc},
      {"pid_mode", static_cast<int>(sb.pid_mode)},
      {"ns_paths", sb.ns_paths},
      {"cgroup_path", sb.cgroup_path},
      {"network_set_up", sb.network_set_up},
      {"network_kind", sb.network_kind},
      {"ips", ips},
      {"cni_result", sb.cni_result},
      {"hostname_path", sb.hostname_path},
      {"hosts_path", sb.hosts_path},
      {"resolv_conf_path", sb.resolv_conf_path},
      {"shm_path", sb.shm_path},
  };
  return j.dump();
}

absl::StatusOr<Sandbox> SandboxFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("sandbox metadata is not valid JSON");
  try {
    Sandbox sb;
    sb.id = j.at("id").get<std::string>();
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    auto st = google::protobuf::util::JsonStringToMessage(j.at("config").dump(), &sb.config, opts);
    if (!st.ok()) return absl::DataLossError(absl::StrCat("sandbox config: ", st.ToString()));
    sb.runtime_handler = j.value("runtime_handler", "");
    sb.created_at = j.value("created_at", int64_t{0});
    sb.state = j.value("state", "notready") == "ready" ? SandboxState::kReady : SandboxState::kNotReady;
    sb.pause.pid = j.value("pause_pid", 0);
    sb.pause.start_time = j.value("pause_start_time", uint64_t{0});
    sb.host_network = j.value("host_network", false);
    sb.host_ipc = j.value("host_ipc", false);
    sb.pid_mode = static_cast<cri::NamespaceMode>(j.value("pid_mode", 1));
    sb.ns_paths = j.value("ns_paths", std::map<std::string, std::string>{});
    sb.cgroup_path = j.value("cgroup_path", "");
    sb.network_set_up = j.value("network_set_up", false);
    sb.network_kind = j.value("network_kind", "");
    for (const auto& ip : j.value("ips", json::array())) {
      sb.ips.push_back({ip.value("address", ""), ip.value("prefix_len", 0), ip.value("ipv6", false)});
    }
    sb.cni_result = j.value("cni_result", json());
    sb.hostname_path = j.value("hostname_path", "");
    sb.hosts_path = j.value("hosts_path", "");
    sb.resolv_conf_path = j.value("resolv_conf_path", "");
    sb.shm_path = j.value("shm_path", "");
    return sb;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("sandbox metadata: ", e.what()));
  }
}

Controller::Controller(ControllerOptions opts, netcni::NetworkSelector* networks, runtime::CgroupManager* cgroups)
    : opts_(std::move(opts)), networks_(networks), cgroups_(cgroups) {}

std::string Controller::SandboxDir(const std::string& id) const {
  return JoinPath(JoinPath(opts_.root, "sandboxes"), id);
}
std::string Controller::VolatileDir(const std::string& id) const {
  return JoinPath(JoinPath(opts_.state, "sandboxes"), id);
}
std::string Controller::NsDir(const std::string& id) const { return JoinPath(JoinPath(opts_.state, "ns"), id); }

absl::Status Controller::Save(const Sandbox& sb, bool durable) {
  return WriteFileAtomic(JoinPath(SandboxDir(sb.id), "meta.json"), SandboxToJson(sb), 0600, durable);
}

netcni::PodNetworkRequest Controller::NetworkRequest(const Sandbox& sb, const std::string& pod_cidr) const {
  netcni::PodNetworkRequest req;
  req.container_id = sb.id;
  req.netns_path = sb.netns_path();
  if (req.netns_path.empty()) req.netns_path = JoinPath(NsDir(sb.id), "net");
  req.pod_name = sb.config.metadata().name();
  req.pod_namespace = sb.config.metadata().namespace_();
  req.pod_uid = sb.config.metadata().uid();
  for (const auto& pm : sb.config.port_mappings()) {
    if (pm.host_port() <= 0) continue;  // only host ports need the portmap plugin
    netcni::PortMapping m;
    m.protocol = pm.protocol() == cri::UDP ? "udp" : pm.protocol() == cri::SCTP ? "sctp" : "tcp";
    m.container_port = pm.container_port();
    m.host_port = pm.host_port();
    m.host_ip = pm.host_ip();
    req.port_mappings.push_back(m);
  }
  const auto& dns = sb.config.dns_config();
  req.dns_servers.assign(dns.servers().begin(), dns.servers().end());
  req.dns_searches.assign(dns.searches().begin(), dns.searches().end());
  req.dns_options.assign(dns.options().begin(), dns.options().end());
  const auto& ann = sb.config.annotations();
  auto in = ann.find("kubernetes.io/ingress-bandwidth");
  auto eg = ann.find("kubernetes.io/egress-bandwidth");
  if (in != ann.end() || eg != ann.end()) {
    netcni::BandwidthLimits bw;
    constexpr uint64_t kBurst = 2147483647;  // as kubelet's dockershim did: effectively unlimited burst
    if (in != ann.end()) {
      if (auto v = ParseByteSize(in->second); v.ok()) { bw.ingress_rate = *v; bw.ingress_burst = kBurst; }
    }
    if (eg != ann.end()) {
      if (auto v = ParseByteSize(eg->second); v.ok()) { bw.egress_rate = *v; bw.egress_burst = kBurst; }
    }
    req.bandwidth = bw;
  }
  req.pod_cidr = pod_cidr;
  return req;
}

absl::StatusOr<Sandbox> Controller::Run(const std::string& id, const cri::PodSandboxConfig& config,
                                        const std::string& runtime_handler, const std::string& pod_cidr) {
  const auto& linux = config.linux();
  const auto& nsopts = linux.security_context().namespace_options();
  Sandbox sb;
  sb.id = id;
  sb.config = config;
  sb.runtime_handler = runtime_handler;
  sb.created_at = absl::ToUnixNanos(absl::Now());
  sb.host_network = nsopts.network() == cri::NODE;
  sb.host_ipc = nsopts.ipc() == cri::NODE;
  sb.pid_mode = nsopts.pid();
  std::map<std::string, std::string> sysctls(linux.sysctls().begin(), linux.sysctls().end());
  RETURN_IF_ERROR(ValidateSysctls(sysctls, sb.host_network, sb.host_ipc));
  // Fail before creating anything when the pod could not get a network
  // anyway. The backend is chosen once here: Setup and, later, Teardown
  // use this one.
  netcni::PodNetwork* net = nullptr;
  if (!sb.host_network) {
    net = networks_->Current();
    if (!net) return absl::FailedPreconditionError("pod network is not ready: no network backend configured");
    if (auto s = net->Ready(); !s.ok()) return Annotate(s, "pod network is not ready");
    sb.network_kind = net->Kind();
  }

  const std::string dir = SandboxDir(id), vdir = VolatileDir(id), nsdir = NsDir(id);
  Rollback rb;
  StepTimer t;

  // 1. Directories and the files containers will bind-mount.
  RETURN_IF_ERROR(MkdirAll(dir, 0700));
  rb.Add("sandbox dir", [dir] { return RemoveAll(dir); });
  RETURN_IF_ERROR(MkdirAll(vdir, 0700));
  rb.Add("volatile dir", [vdir] { return RemoveAll(vdir); });
  t.Mark("dirs");

  std::string hostname = config.hostname().empty() ? HostHostname() : config.hostname();
  sb.hostname_path = JoinPath(dir, "hostname");
  RETURN_IF_ERROR(WriteFileAtomic(sb.hostname_path, hostname + "\n", 0644, kRegenerable));
  sb.hosts_path = JoinPath(dir, "hosts");
  if (sb.host_network) {
    auto hosts = ReadFile(opts_.host_hosts_file);
    RETURN_IF_ERROR(WriteFileAtomic(sb.hosts_path, hosts.ok() ? *hosts : DefaultHostsContent(), 0644, kRegenerable));
  } else {
    RETURN_IF_ERROR(WriteFileAtomic(sb.hosts_path, DefaultHostsContent(), 0644, kRegenerable));
  }
  sb.resolv_conf_path = JoinPath(dir, "resolv.conf");
  const auto& dns = config.dns_config();
  if (dns.servers_size() + dns.searches_size() + dns.options_size() > 0) {
    RETURN_IF_ERROR(WriteFileAtomic(sb.resolv_conf_path, ResolvConfContent(dns), 0644, kRegenerable));
  } else {
    auto host = ReadFile(opts_.host_resolv_conf);
    RETURN_IF_ERROR(WriteFileAtomic(sb.resolv_conf_path, host.ok() ? *host : "", 0644, kRegenerable));
  }

  t.Mark("files");

  // 2. /dev/shm for the pod, unless it uses the host's IPC namespace.
  if (sb.host_ipc) {
    sb.shm_path = "/dev/shm";
  } else {
    sb.shm_path = JoinPath(vdir, "shm");
    if (auto s = runtime::MountShm(sb.shm_path, opts_.shm_size); !s.ok()) return Annotate(s, "mounting /dev/shm");
    rb.Add("shm mount", [p = sb.shm_path] { return runtime::UnmountAndRemove(p); });
  }

  t.Mark("shm");

  // 3. The pod cgroup.
  std::string parent = linux.cgroup_parent().empty() ? opts_.default_cgroup_parent : linux.cgroup_parent();
  if (parent.find("..") != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat("cgroup_parent \"", parent, "\" must not contain \"..\""));
  sb.cgroup_path = JoinPath(parent.empty() || parent[0] != '/' ? "/" + parent : parent, id);
  runtime::CgroupResources res = PodCgroupResources(linux);
  if (auto s = cgroups_->Create(sb.cgroup_path, res); !s.ok()) return Annotate(s, "creating pod cgroup");
  rb.Add("pod cgroup", [this, p = sb.cgroup_path] { return cgroups_->Destroy(p); });

  t.Mark("cgroup");

  // 4. The pause process, which owns the pod's namespaces.
  runtime::PausePlan plan;
  plan.new_net = !sb.host_network;
  plan.new_ipc = !sb.host_ipc;
  plan.new_uts = !sb.host_network;
  plan.new_pid = sb.pid_mode == cri::POD;
  plan.hostname = hostname;
  for (const auto& [k, v] : sysctls) plan.sysctls[SysctlPath(k)] = v;
  auto pause = runtime::StartPause(opts_.shim_path, plan);
  if (!pause.ok()) return Annotate(pause.status(), "starting the pause process");
  sb.pause = *pause;
  rb.Add("pause process", [p = sb.pause] { return KillProcess(p, kPauseKillTimeout); });
  if (auto s = cgroups_->AddProcess(sb.cgroup_path, sb.pause.pid); !s.ok())
    return Annotate(s, "moving the pause process into the pod cgroup");

  t.Mark("pause");

  // 5. Pin its namespaces so that they outlive it and containers can join them.
  std::vector<std::string> types;
  if (plan.new_net) types.push_back("net");
  if (plan.new_ipc) types.push_back("ipc");
  if (plan.new_uts) types.push_back("uts");
  if (plan.new_pid) types.push_back("pid");
  if (!types.empty()) {
    if (auto s = runtime::PinNamespaces(sb.pause.pid, types, nsdir); !s.ok()) return Annotate(s, "pinning namespaces");
    rb.Add("namespace pins", [nsdir] { return runtime::UnpinNamespaces(nsdir); });
    for (const auto& t : types) sb.ns_paths[t] = JoinPath(nsdir, t);
  }
  t.Mark("pins");
  // Persist now, so that a crispd crash from here on leaves a record
  // recovery can clean up (with the network backend in it). Not fsync'd: a
  // crispd crash keeps the page cache, and a machine crash takes the pause
  // process, the pins, the netns and its veth with it; the final Save below
  // is the durable one. (Under disk load this fsync alone cost 5-10 ms.)
  RETURN_IF_ERROR(Save(sb, /*durable=*/false));
  t.Mark("save");

  // 6. The network.
  if (!sb.host_network) {
    if (auto s = netcni::BringUpLoopback(sb.netns_path()); !s.ok()) return Annotate(s, "bringing up lo");
    t.Mark("lo");
    netcni::PodNetworkRequest req = NetworkRequest(sb, pod_cidr);
    auto result = net->Setup(req);
    if (!result.ok()) return Annotate(result.status(), absl::StrCat("setting up pod network (", net->Kind(), ")"));
    rb.Add("pod network", [net, req] { return net->Teardown(req); });
    sb.network_set_up = true;
    sb.ips = result->ips;
    sb.cni_result = result->raw_result;
    t.Mark(net->Kind() == "cni" ? "cni" : "net");
  }

  sb.state = SandboxState::kReady;
  RETURN_IF_ERROR(Save(sb));
  t.Mark("save");
  Log()->debug("sandbox {} run steps:{}", id, t.line());
  rb.Dismiss();
  return sb;
}

absl::Status Controller::Stop(Sandbox& sb, const std::string& pod_cidr) {
  StepTimer t;
  // The pause process dies while the network is torn down (as containerd
  // orders it): the pinned netns outlives it, so CNI DEL still finds the
  // pod's interfaces, and its exit is not waited for on its own.
  if (auto s = SignalProcess(sb.pause, SIGKILL); !s.ok()) return Annotate(s, "stopping the pause process");
  if (sb.network_set_up || !sb.network_kind.empty()) {
    netcni::PodNetwork* net = networks_->ByKind(sb.network_kind);
    if (!net)
      return absl::FailedPreconditionError(absl::StrCat("tearing down pod network: unknown network backend \"",
                                                        sb.network_kind, "\" recorded for the sandbox"));
    if (auto s = net->Teardown(NetworkRequest(sb, pod_cidr)); !s.ok())
      return Annotate(s, absl::StrCat("tearing down pod network (", net->Kind(), ")"));
    sb.network_set_up = false;
    sb.network_kind.clear();
  }
  t.Mark("net");
  if (auto s = KillProcess(sb.pause, kPauseKillTimeout); !s.ok()) return Annotate(s, "stopping the pause process");
  t.Mark("pause");
  RETURN_IF_ERROR(runtime::UnpinNamespaces(NsDir(sb.id)));
  t.Mark("pins");
  if (!sb.host_ipc) RETURN_IF_ERROR(runtime::UnmountAndRemove(JoinPath(VolatileDir(sb.id), "shm")));
  t.Mark("shm");
  sb.state = SandboxState::kNotReady;
  // No fsync: if this write is lost, recovery finds the pause process dead
  // (NOTREADY) and a repeated Stop is harmless.
  if (PathExists(SandboxDir(sb.id))) RETURN_IF_ERROR(Save(sb, /*durable=*/false));
  t.Mark("save");
  Log()->debug("sandbox {} stop steps:{}", sb.id, t.line());
  return absl::OkStatus();
}

absl::Status Controller::Remove(Sandbox& sb, const std::string& pod_cidr) {
  RETURN_IF_ERROR(Stop(sb, pod_cidr));
  if (!sb.cgroup_path.empty()) {
    if (auto s = cgroups_->Destroy(sb.cgroup_path); !s.ok()) return Annotate(s, "removing pod cgroup");
  }
  RETURN_IF_ERROR(RemoveAll(VolatileDir(sb.id)));
  RETURN_IF_ERROR(RemoveAll(SandboxDir(sb.id)));
  return absl::OkStatus();
}

std::vector<Sandbox> Controller::LoadAll() {
  std::vector<Sandbox> out;
  auto ids = ListDir(JoinPath(opts_.root, "sandboxes"));
  if (!ids.ok()) return out;
  for (const auto& id : *ids) {
    std::string meta = JoinPath(SandboxDir(id), "meta.json");
    absl::StatusOr<Sandbox> sb = absl::NotFoundError("no meta.json");
    if (auto text = ReadFile(meta); text.ok()) {
      sb = SandboxFromJson(*text);
    } else {
      sb = text.status();
    }
    if (!sb.ok() || sb->id != id) {
      // Keep it visible and removable rather than silently leaking its files.
      Sandbox broken;
      broken.id = id;
      broken.load_error = sb.ok() ? "id mismatch in meta.json" : std::string(sb.status().message());
      broken.state = SandboxState::kNotReady;
      Log()->error("sandbox {}: cannot load metadata: {}", id, broken.load_error);
      out.push_back(std::move(broken));
      continue;
    }
    bool alive = ProcessAlive(sb->pause);
    bool pins_ok = true;
    for (const auto& [type, path] : sb->ns_paths) pins_ok = pins_ok && runtime::IsNamespacePin(path);
    SandboxState recovered = (sb->state == SandboxState::kReady && alive && pins_ok) ? SandboxState::kReady
                                                                                       : SandboxState::kNotReady;
    if (recovered != sb->state) {
      Log()->warn("sandbox {}: was {} but pause alive={} pins={}: now NOTREADY", id,
                  sb->state == SandboxState::kReady ? "READY" : "NOTREADY", alive, pins_ok);
    }
    sb->state = recovered;
    out.push_back(std::move(*sb));
  }
  return out;
}

json Controller::VerboseInfo(const Sandbox& sb) const {
  json ips = json::array();
  for (const auto& ip : sb.ips) ips.push_back(ip.address);
  return {
      {"id", sb.id},
      {"pid", sb.pause.pid},
      {"pid_start_time", sb.pause.start_time},
      {"netns_path", sb.netns_path()},
      {"ns_paths", sb.ns_paths},
      {"cgroup_path", sb.cgroup_path},
      {"hostname_path", sb.hostname_path},
      {"hosts_path", sb.hosts_path},
      {"resolv_conf_path", sb.resolv_conf_path},
      {"shm_path", sb.shm_path},
      {"network_set_up", sb.network_set_up},
      {"network_kind", sb.network_kind},
      {"ips", ips},
      {"cni_result", sb.cni_result},
      {"sandbox_dir", SandboxDir(sb.id)},
      {"load_error", sb.load_error},
  };
}

}  // namespace crisp::podsandbox
