// Container RPCs: Create/Start/Stop/Remove/Status/List, UpdateContainerResources,
// ReopenContainerLog, and their recovery after a crispd restart.
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/status.h"
#include "runtime/container_shim.h"
#include "runtime/namespaces.h"
#include "runtime/plan_builder.h"
#include "server/cri_service.h"

namespace crisp::server {
namespace {

std::shared_ptr<spdlog::logger> Log() { return Logger("server"); }

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

// Signal number from "SIGTERM" / "TERM" / "15"; 0 if unknown.
int SignalNumber(std::string s) {
  int n;
  if (absl::SimpleAtoi(s, &n)) return n > 0 && n < 65 ? n : 0;
  if (!absl::StartsWith(s, "SIG")) s = "SIG" + s;
  static const std::pair<const char*, int> kSigs[] = {
      {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP},
      {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},   {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1},
      {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2}, {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
      {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
      {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ}, {"SIGWINCH", SIGWINCH},
      {"SIGIO", SIGIO},     {"SIGPWR", SIGPWR},   {"SIGSYS", SIGSYS}};
  for (const auto& [name, num] : kSigs)
    if (s == name) return num;
  return 0;
}

// The signal StopContainer sends first: the config's, else the image's, else SIGTERM.
int StopSignal(const Container& c) {
  if (c.config.stop_signal() != cri::SIGNAL_RUNTIME_DEFAULT) {
    std::string name = cri::Signal_Name(c.config.stop_signal());
    int n = SignalNumber(std::string(absl::StripPrefix(name, "SIGNAL_")));
    if (n) return n;
  }
  if (int n = SignalNumber(c.stop_signal)) return n;
  return SIGTERM;
}

// The fields PlanInputs needs from the image config JSON.
runtime::ImageConfigInfo ImageInfo(const images::Image& img) {
  runtime::ImageConfigInfo info;
  info.layer_dirs = img.layer_dirs;
  nlohmann::json j = nlohmann::json::parse(img.config_json, nullptr, false);
  if (!j.is_object() || !j.contains("config") || !j["config"].is_object()) return info;
  const nlohmann::json& c = j["config"];
  auto strings = [&](const char* key) {
    std::vector<std::string> out;
    if (c.contains(key) && c[key].is_array())
      for (const auto& v : c[key])
        if (v.is_string()) out.push_back(v.get<std::string>());
    return out;
  };
  info.entrypoint = strings("Entrypoint");
  info.cmd = strings("Cmd");
  info.env = strings("Env");
  if (c.contains("WorkingDir") && c["WorkingDir"].is_string()) info.working_dir = c["WorkingDir"];
  if (c.contains("User") && c["User"].is_string()) info.user = c["User"];
  if (c.contains("StopSignal") && c["StopSignal"].is_string()) info.stop_signal = c["StopSignal"];
  return info;
}

// The device nodes at `path`: itself, or (a directory) every node below it
// but the per-container pseudo-filesystems.
absl::StatusOr<std::vector<runtime::PlanDevice>> ReadHostDevices(const std::string& path) {
  std::vector<runtime::PlanDevice> out;
  auto add = [&](const std::string& p, const struct stat& st) {
    runtime::PlanDevice d;
    d.path = p;
    d.type = S_ISBLK(st.st_mode) ? 'b' : 'c';
    d.major = major(st.st_rdev);
    d.minor = minor(st.st_rdev);
    d.mode = st.st_mode & 07777;
    d.uid = st.st_uid;
    d.gid = st.st_gid;
    out.push_back(d);
  };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, path);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    add(path, st);
    return out;
  }
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(path + " is not a device");
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string p = it->path().string();
    std::string rel = p.substr(path.size());
    if (it->is_directory() && (rel == "/pts" || rel == "/shm" || rel == "/mqueue" || rel == "/fd")) {
      it.disable_recursion_pending();
      continue;
    }
    if (rel == "/console" || rel == "/ptmx" || it->is_symlink()) continue;
    struct stat s2;
    if (::lstat(p.c_str(), &s2) == 0 && (S_ISCHR(s2.st_mode) || S_ISBLK(s2.st_mode))) add(p, s2);
  }
  return out;
}

// Fills the exit fields of a container whose shim is gone from its exit
// record (or as Unknown/255 when there is none). No-op for exited ones.
void ReconcileExit(Container& c) {
  if (c.state != cri::CONTAINER_CREATED && c.state != cri::CONTAINER_RUNNING) return;
  if (ProcessAlive(c.shim)) return;
  auto rec = runtime::ReadShimExit(c.shim_dir);
  c.state = cri::CONTAINER_EXITED;
  if (!rec.ok()) {
    c.exit_code = 255;
    c.reason = "Unknown";
    c.message = absl::StrCat("the container's shim is gone without an exit record (", rec.status().message(), ")");
    c.finished_at = NowNs();
    return;
  }
  c.exit_code = rec->exit_code;
  c.finished_at = rec->finished_at_ns;
  if (rec->oom_killed) {
    c.reason = "OOMKilled";
  } else {
    c.reason = rec->exit_code == 0 ? "Completed" : "Error";
  }
  c.message = rec->message;
}

}  // namespace

std::string CriService::ContainerDir(const std::string& id) const {
  return JoinPath(JoinPath(config_.root, "containers"), id);
}
std::string CriService::ShimDir(const std::string& id) const {
  return JoinPath(JoinPath(config_.state, "containers"), id);
}

absl::Status CriService::SaveContainer(const Container& c) {
  return WriteFileAtomic(JoinPath(c.dir, "meta.json"), ContainerToJson(c), 0600);
}

void CriService::WatchShim(const std::shared_ptr<ContainerEntry>& entry) {
  auto snap = entry->Snapshot();
  std::weak_ptr<ContainerEntry> weak = entry;
  std::string id = snap->id;
  auto s = exit_watcher_.Watch(snap->shim, [this, weak, id] {
    auto e = weak.lock();
    if (!e || e->removed) return;
    Container after;
    bool was_running = false;
    e->Amend([&](Container& c) {
      was_running = c.state == cri::CONTAINER_RUNNING;
      ReconcileExit(c);
      after = c;
    });
    if (after.state == cri::CONTAINER_EXITED) {
      Log()->info("container {} exited: code {} ({})", id, after.exit_code, after.reason);
      KillLeftovers(after);
      {
        // Not while a RemoveContainer deletes the directory (it holds
        // op_mu): a meta.json written into it then made that fail with
        // ENOTEMPTY, or would bring a removed container's file back.
        std::lock_guard<std::mutex> op(e->op_mu);
        if (!e->removed) {
          if (auto st = SaveContainer(*e->Snapshot()); !st.ok()) Log()->warn("container {}: {}", id, st.ToString());
        }
      }
      if (was_running) Emit(cri::CONTAINER_STOPPED_EVENT, id, after.sandbox_id);
    }
  });
  if (!s.ok()) Log()->warn("container {}: cannot watch its shim: {}", id, s.ToString());
}

absl::Status CriService::RecoverContainers() {
  std::string dir = JoinPath(config_.root, "containers");
  ASSIGN_OR_RETURN(std::vector<std::string> ids, ListDir(dir));
  int total = 0, running = 0;
  for (const std::string& id : ids) {
    auto text = ReadFile(JoinPath(JoinPath(dir, id), "meta.json"));
    absl::StatusOr<Container> c = text.ok() ? ContainerFromJson(*text) : absl::StatusOr<Container>(text.status());
    if (!c.ok()) {
      Log()->error("container {}: cannot load its metadata: {}; it can only be removed", id, c.status().ToString());
      Container broken;
      broken.id = id;
      broken.dir = JoinPath(dir, id);
      broken.shim_dir = ShimDir(id);
      broken.state = cri::CONTAINER_UNKNOWN;
      broken.load_error = c.status().ToString();
      container_store_.Add(std::make_shared<ContainerEntry>(std::move(broken)));
      continue;
    }
    ++total;
    auto before = c->state;
    ReconcileExit(*c);
    if (c->state != before) (void)SaveContainer(*c);
    auto sb = sandbox_store_.Find(c->sandbox_id);
    if (sb.ok()) {
      (void)container_names_.Reserve(ContainerName(c->config.metadata(), (*sb)->Snapshot()->config.metadata()), id);
    }
    auto entry = std::make_shared<ContainerEntry>(std::move(*c));
    container_store_.Add(entry);
    auto st = entry->Snapshot()->state;
    if (st == cri::CONTAINER_RUNNING || st == cri::CONTAINER_CREATED) {
      ++running;
      WatchShim(entry);
    }
  }
  Log()->info("recovered {} containers ({} created or running)", total, running);
  return absl::OkStatus();
}

absl::Status CriService::CreateContainer(const cri::CreateContainerRequest& req, cri::CreateContainerResponse* resp) {
  const cri::ContainerConfig& cfg = req.config();
  if (req.pod_sandbox_id().empty()) return absl::InvalidArgumentError("CreateContainer: pod_sandbox_id is required");
  if (!cfg.has_metadata() || cfg.metadata().name().empty())
    return absl::InvalidArgumentError("CreateContainer: config.metadata.name is required");
  if (cfg.image().image().empty()) return absl::InvalidArgumentError("CreateContainer: config.image.image is required");
  ASSIGN_OR_RETURN(auto sb_entry, sandbox_store_.Find(req.pod_sandbox_id()));
  auto sb = sb_entry->Snapshot();
  if (sb->state != podsandbox::SandboxState::kReady)
    return absl::FailedPreconditionError(absl::StrCat("pod sandbox ", sb->id, " is not ready"));
  const std::string name = ContainerName(cfg.metadata(), sb->config.metadata());

  // kubelet retries a CreateContainer whose deadline passed while we were
  // still working on it: wait for that one and answer with its container
  // when it asked for the same thing.
  std::shared_ptr<InFlightCreate> flight;
  {
    std::unique_lock<std::mutex> l(create_mu_);
    for (;;) {
      auto it = creating_.find(name);
      if (it == creating_.end()) break;
      auto other = it->second;
      create_cv_.wait(l, [&] { return other->done; });
    }
    std::string holder = container_names_.Holder(name);
    if (!holder.empty()) {
      auto e = container_store_.Find(holder);
      if (e.ok()) {
        auto c = (*e)->Snapshot();
        if (c->state == cri::CONTAINER_CREATED && c->sandbox_id == sb->id &&
            c->config.SerializeAsString() == cfg.SerializeAsString()) {
          Log()->info("CreateContainer {}: same request as container {} (a retry); answering with it", name, holder);
          resp->set_container_id(holder);
          return absl::OkStatus();
        }
      }
      return absl::AlreadyExistsError(absl::StrCat("container name \"", name, "\" is reserved for ", holder));
    }
    flight = std::make_shared<InFlightCreate>();
    creating_[name] = flight;
  }
  absl::Cleanup finish = [&] {
    std::lock_guard<std::mutex> l(create_mu_);
    flight->done = true;
    creating_.erase(name);
    create_cv_.notify_all();
  };

  auto img = images_->Get(cfg.image().image());
  if (!img) return absl::NotFoundError(absl::StrCat("image \"", cfg.image().image(), "\" is not present; pull it first"));

  Container c;
  c.id = NewId();
  c.sandbox_id = sb->id;
  c.config = cfg;
  c.image_ref = cfg.image().image();
  c.image_id = img->id;
  c.dir = ContainerDir(c.id);
  c.shim_dir = ShimDir(c.id);
  c.cgroup_path = JoinPath(sb->cgroup_path, c.id);
  runtime::ImageConfigInfo info = ImageInfo(*img);
  c.stop_signal = info.stop_signal;
  RETURN_IF_ERROR(container_names_.Reserve(name, c.id));
  const absl::Time t0 = absl::Now();
  absl::Time t_plan, t_cgroup, t_shim;

  bool ok = false;
  bool cgroup_made = false;
  absl::Cleanup undo = [&] {
    if (ok) return;
    if (c.shim.pid > 0) {
      (void)KillProcess(c.pid, absl::Seconds(5));
      (void)KillProcess(c.shim, absl::Seconds(5));
    }
    if (cgroup_made) (void)cgroups_->Destroy(c.cgroup_path);
    (void)RemoveAll(c.shim_dir);
    (void)RemoveAll(c.dir);
    container_names_.Release(name, c.id);
  };
  // The overlay's root directory takes the upper dir's mode: 0755 as an
  // image's "/" has it (0700 would lock non-root users out of everything).
  RETURN_IF_ERROR(MkdirAll(c.dir, 0700));
  RETURN_IF_ERROR(MkdirAll(JoinPath(c.dir, "upper"), 0755));
  for (const char* sub : {"work", "rootfs"}) RETURN_IF_ERROR(MkdirAll(JoinPath(c.dir, sub), 0700));
  RETURN_IF_ERROR(MkdirAll(c.shim_dir, 0700));

  runtime::PlanInputs in;
  in.id = c.id;
  in.config = &cfg;
  in.sandbox.id = sb->id;
  in.sandbox.config = &sb->config;
  in.sandbox.ns_paths = sb->ns_paths;
  in.sandbox.hostname_path = sb->hostname_path;
  in.sandbox.hosts_path = sb->hosts_path;
  in.sandbox.resolv_conf_path = sb->resolv_conf_path;
  in.sandbox.shm_path = sb->shm_path;
  in.image = info;
  in.container_dir = c.dir;
  in.shim_dir = c.shim_dir;
  if (cfg.linux().security_context().namespace_options().pid() == cri::TARGET) {
    auto t = container_store_.Find(cfg.linux().security_context().namespace_options().target_id());
    if (t.ok() && (*t)->Snapshot()->state == cri::CONTAINER_RUNNING) in.target_pid = (*t)->Snapshot()->pid.pid;
  }
  in.cgroup_procs = cgroups_->ProcsFiles(c.cgroup_path);
  in.oom_events_file = cgroups_->OomEventsFile(c.cgroup_path);
  if (auto adj = ReadFile("/proc/self/oom_score_adj"); adj.ok()) {
    int v;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*adj), &v)) in.min_oom_score_adj = v;
  }
  in.read_file = [](const std::string& p) { return ReadFile(p); };
  in.resolve_host_path = [](const std::string& p) -> absl::StatusOr<std::string> {
    std::error_code ec;
    auto r = std::filesystem::canonical(p, ec);
    if (ec) return absl::NotFoundError(ec.message());
    return r.string();
  };
  in.read_devices = ReadHostDevices;
  in.mount_propagation_of = [](const std::string& p) {
    return runtime::MountPropagationOf(ReadFile("/proc/self/mountinfo").value_or(""), p);
  };
  ASSIGN_OR_RETURN(runtime::ContainerPlan plan, runtime::BuildContainerPlan(in));
  if (plan.oom_score_adj && cfg.linux().resources().oom_score_adj() < in.min_oom_score_adj)
    Log()->info("container {}: oom_score_adj {} clamped to {} (crispd's own; lowering it is not permitted here)", c.id,
                cfg.linux().resources().oom_score_adj(), in.min_oom_score_adj);
  c.log_path = plan.log_path;
  if (!c.log_path.empty()) {
    std::string parent = std::filesystem::path(c.log_path).parent_path().string();
    RETURN_IF_ERROR(Annotate(MkdirAll(parent, 0755), "creating the log directory"));
  }
  t_plan = absl::Now();
  RETURN_IF_ERROR(Annotate(cgroups_->Create(c.cgroup_path, runtime::ContainerCgroupResources(cfg.linux().resources())),
                           "creating the container cgroup"));
  cgroup_made = true;
  t_cgroup = absl::Now();
  c.plan_json = runtime::ContainerPlanToJson(plan);
  auto procs = runtime::StartContainerShim(config_.shim_path, plan);
  if (!procs.ok()) return Annotate(procs.status(), absl::StrCat("creating container ", name));
  c.pid = procs->container;
  c.shim = procs->shim;
  c.uid = procs->uid;
  c.gid = procs->gid;
  c.groups = procs->groups;
  c.state = cri::CONTAINER_CREATED;
  c.created_at = NowNs();
  t_shim = absl::Now();
  RETURN_IF_ERROR(SaveContainer(c));
  Log()->debug("container {} create steps: dirs+plan={} cgroup={} shim={} save={}", c.id,
               absl::FormatDuration(t_plan - t0), absl::FormatDuration(t_cgroup - t_plan),
               absl::FormatDuration(t_shim - t_cgroup), absl::FormatDuration(absl::Now() - t_shim));
  ok = true;
  auto entry = std::make_shared<ContainerEntry>(c);
  container_store_.Add(entry);
  WatchShim(entry);
  resp->set_container_id(c.id);
  Log()->info("container {} ({}) created, pid {}", c.id, name, c.pid.pid);
  Emit(cri::CONTAINER_CREATED_EVENT, c.id, c.sandbox_id);
  return absl::OkStatus();
}

absl::Status CriService::UpdateContainer(const std::string& id, bool missing_ok,
                                         const std::function<absl::Status(ContainerEntry&, Container&)>& op) {
  auto entry = container_store_.Find(id);
  if (!entry.ok()) {
    if (missing_ok && entry.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return entry.status();
  }
  std::lock_guard<std::mutex> lock((*entry)->op_mu);
  if ((*entry)->removed) {
    return missing_ok ? absl::OkStatus() : absl::NotFoundError(absl::StrCat("container \"", id, "\" not found"));
  }
  Container c = *(*entry)->Snapshot();
  return op(**entry, c);
}

absl::Status CriService::StartContainer(const cri::StartContainerRequest& req, cri::StartContainerResponse*) {
  return UpdateContainer(req.container_id(), false, [this](ContainerEntry& e, Container& c) -> absl::Status {
    ReconcileExit(c);
    if (c.state != cri::CONTAINER_CREATED) {
      e.Publish(c);
      return absl::FailedPreconditionError(
          absl::StrCat("container ", c.id, " is ", cri::ContainerState_Name(c.state), ", not CREATED"));
    }
    auto started = runtime::ShimStart(c.shim_dir);
    if (!started.ok()) {
      // The process could not exec: it is gone, and so is its shim soon.
      (void)WaitProcessGone(c.shim, absl::Seconds(5));
      ReconcileExit(c);
      if (c.state == cri::CONTAINER_EXITED && c.reason != "OOMKilled") {
        c.reason = "StartError";
        c.message = std::string(started.status().message());
      }
      (void)SaveContainer(c);
      e.Publish(c);
      return Annotate(started.status(), absl::StrCat("starting container ", c.id));
    }
    c.state = cri::CONTAINER_RUNNING;
    c.started_at = *started;
    RETURN_IF_ERROR(SaveContainer(c));
    e.Publish(c);
    Log()->info("container {} started", c.id);
    Emit(cri::CONTAINER_STARTED_EVENT, c.id, c.sandbox_id);
    // An exit racing with the start is picked up here rather than lost.
    bool stopped_now = false;
    e.Amend([&](Container& x) {
      bool running = x.state == cri::CONTAINER_RUNNING;
      ReconcileExit(x);
      stopped_now = running && x.state == cri::CONTAINER_EXITED;
    });
    if (stopped_now) Emit(cri::CONTAINER_STOPPED_EVENT, c.id, c.sandbox_id);
    return absl::OkStatus();
  });
}

// A container that shares its pod's (or the host's) PID namespace does not
// take its children with it when its process ends: nginx's workers outlive
// their master. As runc does for such containers, whatever is left in the
// container's cgroup is killed once its process is gone.
void CriService::KillLeftovers(const Container& c) {
  if (c.cgroup_path.empty()) return;
  for (int round = 0; round < 20; ++round) {
    std::set<int> pids = cgroups_->Pids(c.cgroup_path);
    if (pids.empty()) return;
    if (round == 0) Log()->info("container {}: killing {} process(es) left in its cgroup", c.id, pids.size());
    for (int pid : pids) ::kill(pid, SIGKILL);
    absl::SleepFor(absl::Milliseconds(round == 0 ? 2 : 20));
  }
  Log()->warn("container {}: processes keep appearing in its cgroup", c.id);
}

absl::Status CriService::StopContainerLocked(ContainerEntry& e, Container& c, int64_t timeout_s) {
  ReconcileExit(c);
  if (c.state == cri::CONTAINER_RUNNING || c.state == cri::CONTAINER_CREATED) {
    bool graceful = c.state == cri::CONTAINER_RUNNING && timeout_s > 0;
    if (graceful) {
      (void)SignalProcess(c.pid, StopSignal(c));
      if (WaitProcessGone(c.shim, absl::Seconds(timeout_s)).ok()) graceful = false;
    }
    if (ProcessAlive(c.shim)) {
      (void)SignalProcess(c.pid, SIGKILL);
      if (auto s = WaitProcessGone(c.shim, absl::Seconds(10)); !s.ok())
        return Annotate(s, absl::StrCat("stopping container ", c.id, ": its shim did not finish"));
    }
    ReconcileExit(c);
    RETURN_IF_ERROR(SaveContainer(c));
  }
  if (c.state == cri::CONTAINER_EXITED) KillLeftovers(c);
  // Whoever moves the published state from RUNNING to EXITED (this or the
  // shim watcher) sends the one STOPPED event.
  bool stopped_now = false;
  e.Amend([&](Container& cur) {
    stopped_now = cur.state == cri::CONTAINER_RUNNING && c.state == cri::CONTAINER_EXITED;
    cur = c;
  });
  if (stopped_now) Emit(cri::CONTAINER_STOPPED_EVENT, c.id, c.sandbox_id);
  return absl::OkStatus();
}

absl::Status CriService::StopContainer(const cri::StopContainerRequest& req, cri::StopContainerResponse*) {
  int64_t timeout = req.timeout();
  return UpdateContainer(req.container_id(), false, [&](ContainerEntry& e, Container& c) {
    return StopContainerLocked(e, c, timeout);
  });
}

absl::Status CriService::RemoveContainerLocked(ContainerEntry& e, Container& c) {
  if (c.load_error.empty()) RETURN_IF_ERROR(StopContainerLocked(e, c, 0));
  if (!c.cgroup_path.empty()) {
    absl::Status s;
    for (int i = 0; i < 50; ++i) {  // the last exiting tasks may still be in it for a moment
      s = cgroups_->Destroy(c.cgroup_path);
      if (s.ok()) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    RETURN_IF_ERROR(Annotate(s, absl::StrCat("removing container ", c.id, " cgroup")));
  }
  RETURN_IF_ERROR(RemoveAll(c.shim_dir));
  RETURN_IF_ERROR(RemoveAll(c.dir));
  e.removed = true;
  container_store_.Remove(c.id);
  if (auto sb = sandbox_store_.Find(c.sandbox_id); sb.ok() && c.load_error.empty())
    container_names_.Release(ContainerName(c.config.metadata(), (*sb)->Snapshot()->config.metadata()), c.id);
  Log()->info("container {} removed", c.id);
  Emit(cri::CONTAINER_DELETED_EVENT, c.id, c.sandbox_id);
  return absl::OkStatus();
}

absl::Status CriService::RemoveContainer(const cri::RemoveContainerRequest& req, cri::RemoveContainerResponse*) {
  return UpdateContainer(req.container_id(), true,
                         [&](ContainerEntry& e, Container& c) { return RemoveContainerLocked(e, c); });
}

absl::Status CriService::ForEachContainerOf(const std::string& sandbox_id, bool remove) {
  absl::Status first;
  for (const auto& e : container_store_.All()) {
    if (e->Snapshot()->sandbox_id != sandbox_id) continue;
    std::lock_guard<std::mutex> lock(e->op_mu);
    if (e->removed) continue;
    Container c = *e->Snapshot();
    absl::Status s = remove ? RemoveContainerLocked(*e, c) : StopContainerLocked(*e, c, 0);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

void ToCriContainer(const Container& c, cri::Container* out) {
  out->set_id(c.id);
  out->set_pod_sandbox_id(c.sandbox_id);
  *out->mutable_metadata() = c.config.metadata();
  *out->mutable_image() = c.config.image();
  out->set_image_ref(c.image_id);
  out->set_image_id(c.image_id);
  out->set_state(c.state);
  out->set_created_at(c.created_at);
  *out->mutable_labels() = c.config.labels();
  *out->mutable_annotations() = c.config.annotations();
}

void ToCriContainerStatus(const Container& c, cri::ContainerStatus* out) {
  out->set_id(c.id);
  *out->mutable_metadata() = c.config.metadata();
  out->set_state(c.state);
  out->set_created_at(c.created_at);
  out->set_started_at(c.started_at);
  out->set_finished_at(c.finished_at);
  out->set_exit_code(c.exit_code);
  *out->mutable_image() = c.config.image();
  out->set_image_ref(c.image_id);
  out->set_image_id(c.image_id);
  out->set_reason(c.reason);
  out->set_message(c.message);
  *out->mutable_labels() = c.config.labels();
  *out->mutable_annotations() = c.config.annotations();
  *out->mutable_mounts() = c.config.mounts();
  out->set_log_path(c.log_path);
  if (c.config.linux().has_resources()) *out->mutable_resources()->mutable_linux() = c.config.linux().resources();
  auto* user = out->mutable_user()->mutable_linux();
  user->set_uid(c.uid);
  user->set_gid(c.gid);
  for (uint32_t g : c.groups) user->add_supplemental_groups(g);
}

absl::Status CriService::ContainerStatus(const cri::ContainerStatusRequest& req, cri::ContainerStatusResponse* resp) {
  ASSIGN_OR_RETURN(auto e, container_store_.Find(req.container_id()));
  auto c = e->Snapshot();
  ToCriContainerStatus(*c, resp->mutable_status());
  if (req.verbose()) {
    nlohmann::json info = {{"pid", c->pid.pid},
                           {"shimPid", c->shim.pid},
                           {"sandboxID", c->sandbox_id},
                           {"cgroupPath", c->cgroup_path},
                           {"plan", nlohmann::json::parse(c->plan_json, nullptr, false)}};
    if (!c->load_error.empty()) info["loadError"] = c->load_error;
    (*resp->mutable_info())["info"] = info.dump();
  }
  return absl::OkStatus();
}

absl::Status CriService::ListContainers(const cri::ListContainersRequest& req, cri::ListContainersResponse* resp) {
  const cri::ContainerFilter& f = req.filter();
  for (const auto& e : container_store_.All()) {
    auto c = e->Snapshot();
    if (!f.id().empty() && !absl::StartsWith(c->id, f.id())) continue;
    if (f.has_state() && c->state != f.state().state()) continue;
    if (!f.pod_sandbox_id().empty() && !absl::StartsWith(c->sandbox_id, f.pod_sandbox_id())) continue;
    if (!MatchLabels(f.label_selector(), c->config.labels())) continue;
    ToCriContainer(*c, resp->add_containers());
  }
  return absl::OkStatus();
}

absl::Status CriService::UpdateContainerResources(const cri::UpdateContainerResourcesRequest& req,
                                                  cri::UpdateContainerResourcesResponse*) {
  return UpdateContainer(req.container_id(), false, [&](ContainerEntry& e, Container& c) -> absl::Status {
    if (c.state != cri::CONTAINER_RUNNING && c.state != cri::CONTAINER_CREATED)
      return absl::FailedPreconditionError(absl::StrCat("container ", c.id, " is not running"));
    if (!req.has_linux()) return absl::OkStatus();
    RETURN_IF_ERROR(Annotate(cgroups_->Update(c.cgroup_path, runtime::ContainerCgroupResources(req.linux())),
                             absl::StrCat("updating container ", c.id, " resources")));
    *c.config.mutable_linux()->mutable_resources() = req.linux();
    RETURN_IF_ERROR(SaveContainer(c));
    e.Publish(c);
    return absl::OkStatus();
  });
}

absl::Status CriService::ReopenContainerLog(const cri::ReopenContainerLogRequest& req,
                                            cri::ReopenContainerLogResponse*) {
  ASSIGN_OR_RETURN(auto e, container_store_.Find(req.container_id()));
  auto c = e->Snapshot();
  if (c->state != cri::CONTAINER_RUNNING)
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  return runtime::ShimReopenLog(c->shim_dir);
}

}  // namespace crisp::server
