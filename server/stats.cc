// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats,
// ListMetricDescriptors, ListPodSandboxMetrics: cgroup counters (v1 and v2),
// writable-layer usage and pod network counters, sampled at most once per
// stats_period per object so that kubelet's polling stays cheap.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "runtime/stats.h"
#include "server/cri_service.h"

namespace crisp::server {
namespace {

void SetU64(cri::UInt64Value* v, uint64_t x) { v->set_value(x); }

void ToCriPsi(const runtime::PsiStats& in, cri::PsiStats* out) {
  auto fill = [](const runtime::PsiData& d, cri::PsiData* o) {
    o->set_total(d.total_us);
    o->set_avg10(d.avg10);
    o->set_avg60(d.avg60);
    o->set_avg300(d.avg300);
  };
  fill(in.some, out->mutable_some());
  if (in.full) fill(*in.full, out->mutable_full());
}

void ToCriCpuMemory(const StatsSample& s, cri::CpuUsage* cpu, cri::MemoryUsage* mem) {
  int64_t ts = absl::ToUnixNanos(s.at);
  if (s.cgroup.cpu && s.cgroup.cpu->usage_ns) {
    cpu->set_timestamp(ts);
    SetU64(cpu->mutable_usage_core_nano_seconds(), *s.cgroup.cpu->usage_ns);
    if (s.nano_cores) SetU64(cpu->mutable_usage_nano_cores(), *s.nano_cores);
    if (s.cgroup.cpu_pressure) ToCriPsi(*s.cgroup.cpu_pressure, cpu->mutable_psi());
  }
  if (s.cgroup.memory) {
    const auto& m = *s.cgroup.memory;
    mem->set_timestamp(ts);
    SetU64(mem->mutable_working_set_bytes(), m.working_set_bytes);
    if (m.available_bytes) SetU64(mem->mutable_available_bytes(), *m.available_bytes);
    SetU64(mem->mutable_usage_bytes(), m.usage_bytes);
    SetU64(mem->mutable_rss_bytes(), m.rss_bytes);
    SetU64(mem->mutable_page_faults(), m.pgfault);
    SetU64(mem->mutable_major_page_faults(), m.pgmajfault);
    if (s.cgroup.memory_pressure) ToCriPsi(*s.cgroup.memory_pressure, mem->mutable_psi());
  }
}

cri::NetworkInterfaceUsage* ToCriInterface(const runtime::InterfaceStats& i, cri::NetworkInterfaceUsage* out) {
  out->set_name(i.name);
  SetU64(out->mutable_rx_bytes(), i.rx_bytes);
  SetU64(out->mutable_rx_errors(), i.rx_errors);
  SetU64(out->mutable_tx_bytes(), i.tx_bytes);
  SetU64(out->mutable_tx_errors(), i.tx_errors);
  return out;
}

bool Sampled(const Container& c) {
  return c.state == cri::CONTAINER_RUNNING || c.state == cri::CONTAINER_CREATED;
}

}  // namespace

absl::StatusOr<StatsSample> StatsCache::Get(const std::string& key, absl::Duration period,
                                            const std::function<absl::StatusOr<StatsSample>()>& read) {
  absl::Time now = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = samples_.find(key);
    if (it != samples_.end() && now - it->second.at < period) return it->second;
  }
  ASSIGN_OR_RETURN(StatsSample s, read());
  s.at = now;
  std::lock_guard<std::mutex> lock(mu_);
  auto& prev = samples_[key];
  // usage_nano_cores: the CPU rate between the previous sample and this one.
  if (prev.at != absl::InfinitePast() && prev.cgroup.cpu && prev.cgroup.cpu->usage_ns && s.cgroup.cpu &&
      s.cgroup.cpu->usage_ns && *s.cgroup.cpu->usage_ns >= *prev.cgroup.cpu->usage_ns && now > prev.at) {
    double dt = absl::ToDoubleNanoseconds(now - prev.at);
    s.nano_cores = static_cast<uint64_t>(static_cast<double>(*s.cgroup.cpu->usage_ns - *prev.cgroup.cpu->usage_ns) /
                                         dt * 1e9);
  }
  prev = s;
  // Forget objects nobody asked about for a while (removed ones).
  if (now - last_sweep_ > absl::Minutes(1)) {
    last_sweep_ = now;
    for (auto i = samples_.begin(); i != samples_.end();) {
      if (now - i->second.at > absl::Minutes(10)) {
        i = samples_.erase(i);
      } else {
        ++i;
      }
    }
  }
  return s;
}

absl::Status CriService::FillContainerStats(const Container& c, cri::ContainerStats* out) {
  auto* a = out->mutable_attributes();
  a->set_id(c.id);
  *a->mutable_metadata() = c.config.metadata();
  *a->mutable_labels() = c.config.labels();
  *a->mutable_annotations() = c.config.annotations();
  std::string upper = c.dir + "/upper";
  auto sample = stats_cache_.Get(c.id, config_.stats_period, [&]() -> absl::StatusOr<StatsSample> {
    StatsSample s;
    ASSIGN_OR_RETURN(s.cgroup, cgroups_->Stats(c.cgroup_path));
    if (auto du = runtime::DirUsage(upper); du.ok()) s.disk = *du;
    return s;
  });
  if (!sample.ok()) {
    // The container may have just exited and its cgroup gone: attributes only.
    if (sample.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return Annotate(sample.status(), absl::StrCat("stats of container ", c.id));
  }
  ToCriCpuMemory(*sample, out->mutable_cpu(), out->mutable_memory());
  if (sample->cgroup.memory && sample->cgroup.memory->swap_usage_bytes) {
    auto* sw = out->mutable_swap();
    sw->set_timestamp(absl::ToUnixNanos(sample->at));
    SetU64(sw->mutable_swap_usage_bytes(), *sample->cgroup.memory->swap_usage_bytes);
    if (sample->cgroup.memory->swap_limit_bytes) {
      uint64_t lim = *sample->cgroup.memory->swap_limit_bytes, used = *sample->cgroup.memory->swap_usage_bytes;
      SetU64(sw->mutable_swap_available_bytes(), lim > used ? lim - used : 0);
    }
  }
  if (sample->cgroup.io_pressure) {
    out->mutable_io()->set_timestamp(absl::ToUnixNanos(sample->at));
    ToCriPsi(*sample->cgroup.io_pressure, out->mutable_io()->mutable_psi());
  }
  if (sample->disk) {
    auto* w = out->mutable_writable_layer();
    w->set_timestamp(absl::ToUnixNanos(sample->at));
    w->mutable_fs_id()->set_mountpoint(upper);
    SetU64(w->mutable_used_bytes(), sample->disk->bytes);
    SetU64(w->mutable_inodes_used(), sample->disk->inodes);
  }
  return absl::OkStatus();
}

// Every container's writable layer (overlay upper dir) under <root>/containers.
absl::Status CriService::ContainerFsUsage(cri::FilesystemUsage* out) {
  runtime::DiskUsage total;
  for (const auto& e : container_store_.All()) {
    auto c = e->Snapshot();
    if (e->removed || c->dir.empty()) continue;
    if (auto du = runtime::DirUsage(c->dir + "/upper"); du.ok()) {
      total.bytes += du->bytes;
      total.inodes += du->inodes;
    }
  }
  out->set_timestamp(absl::ToUnixNanos(absl::Now()));
  out->mutable_fs_id()->set_mountpoint(config_.root + "/containers");
  SetU64(out->mutable_used_bytes(), total.bytes);
  SetU64(out->mutable_inodes_used(), total.inodes);
  return absl::OkStatus();
}

absl::Status CriService::ContainerStats(const cri::ContainerStatsRequest& req, cri::ContainerStatsResponse* resp) {
  if (req.container_id().empty()) return absl::InvalidArgumentError("container_id is required");
  ASSIGN_OR_RETURN(auto e, container_store_.Find(req.container_id()));
  return FillContainerStats(*e->Snapshot(), resp->mutable_stats());
}

absl::Status CriService::ListContainerStats(const cri::ListContainerStatsRequest& req,
                                            cri::ListContainerStatsResponse* resp) {
  const auto& f = req.filter();
  for (const auto& e : container_store_.All()) {
    auto c = e->Snapshot();
    if (e->removed || !Sampled(*c)) continue;
    if (!f.id().empty() && !absl::StartsWith(c->id, f.id())) continue;
    if (!f.pod_sandbox_id().empty() && !absl::StartsWith(c->sandbox_id, f.pod_sandbox_id())) continue;
    if (!MatchLabels(f.label_selector(), c->config.labels())) continue;
    cri::ContainerStats st;
    if (auto s = FillContainerStats(*c, &st); !s.ok()) {
      Logger("server")->warn("{}", s.ToString());  // one unreadable container does not hide the others
      continue;
    }
    *resp->add_stats() = std::move(st);
  }
  return absl::OkStatus();
}

absl::Status CriService::FillSandboxStats(const podsandbox::Sandbox& sb, cri::PodSandboxStats* out) {
  auto* a = out->mutable_attributes();
  a->set_id(sb.id);
  *a->mutable_metadata() = sb.config.metadata();
  *a->mutable_labels() = sb.config.labels();
  *a->mutable_annotations() = sb.config.annotations();
  auto* lx = out->mutable_linux();
  // The pod cgroup holds the pause process and, below it, every container's
  // cgroup: its counters are the pod's totals.
  bool ready = sb.state == podsandbox::SandboxState::kReady;
  auto sample = stats_cache_.Get(sb.id, config_.stats_period, [&]() -> absl::StatusOr<StatsSample> {
    StatsSample s;
    ASSIGN_OR_RETURN(s.cgroup, cgroups_->Stats(sb.cgroup_path));
    if (ready && !sb.host_network) {
      if (auto net = runtime::ReadNetDev(sb.pause.pid); net.ok()) s.net = std::move(*net);
    }
    return s;
  });
  if (sample.ok()) {
    int64_t ts = absl::ToUnixNanos(sample->at);
    ToCriCpuMemory(*sample, lx->mutable_cpu(), lx->mutable_memory());
    if (sample->cgroup.pids) {
      lx->mutable_process()->set_timestamp(ts);
      SetU64(lx->mutable_process()->mutable_process_count(), sample->cgroup.pids->current);
    }
    if (sample->cgroup.io_pressure) {
      lx->mutable_io()->set_timestamp(ts);
      ToCriPsi(*sample->cgroup.io_pressure, lx->mutable_io()->mutable_psi());
    }
    if (!sample->net.empty()) {
      auto* net = lx->mutable_network();
      net->set_timestamp(ts);
      for (const auto& i : sample->net) {
        if (i.name == "lo") continue;
        ToCriInterface(i, net->add_interfaces());
        // CNI names the pod's interface eth0; kubelet reports that one.
        if (i.name == "eth0" || !net->has_default_interface()) ToCriInterface(i, net->mutable_default_interface());
      }
    }
  } else if (sample.status().code() != absl::StatusCode::kNotFound) {
    return Annotate(sample.status(), absl::StrCat("stats of pod sandbox ", sb.id));
  }
  for (const auto& e : container_store_.All()) {
    auto c = e->Snapshot();
    if (c->sandbox_id != sb.id || e->removed || !Sampled(*c)) continue;
    if (auto s = FillContainerStats(*c, lx->add_containers()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CriService::PodSandboxStats(const cri::PodSandboxStatsRequest& req, cri::PodSandboxStatsResponse* resp) {
  if (req.pod_sandbox_id().empty()) return absl::InvalidArgumentError("pod_sandbox_id is required");
  ASSIGN_OR_RETURN(auto e, sandbox_store_.Find(req.pod_sandbox_id()));
  return FillSandboxStats(*e->Snapshot(), resp->mutable_stats());
}

absl::Status CriService::ListPodSandboxStats(const cri::ListPodSandboxStatsRequest& req,
                                             cri::ListPodSandboxStatsResponse* resp) {
  const auto& f = req.filter();
  for (const auto& e : sandbox_store_.All()) {
    auto sb = e->Snapshot();
    if (sb->state != podsandbox::SandboxState::kReady) continue;
    if (!f.id().empty() && !absl::StartsWith(sb->id, f.id())) continue;
    if (!MatchLabels(f.label_selector(), sb->config.labels())) continue;
    cri::PodSandboxStats st;
    if (auto s = FillSandboxStats(*sb, &st); !s.ok()) {
      Logger("server")->warn("{}", s.ToString());
      continue;
    }
    *resp->add_stats() = std::move(st);
  }
  return absl::OkStatus();
}

// The cAdvisor metric names kubelet knows, for what crisp measures. Each
// carries the labels id (container or sandbox id), name (the CRI name) and
// image; network metrics add interface. CPU time is not among them: Metric
// values are integers and cAdvisor's CPU counter is in seconds, so crisp
// reports CPU through the stats RPCs (nanoseconds) instead.
namespace {
struct MetricDef {
  const char* name;
  const char* help;
  cri::MetricType type;
  bool per_interface;
};
constexpr MetricDef kMetrics[] = {
    {"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed",
     cri::GAUGE, false},
    {"container_memory_working_set_bytes", "Current working set in bytes", cri::GAUGE, false},
    {"container_memory_rss", "Size of RSS in bytes", cri::GAUGE, false},
    {"container_memory_failures_total", "Cumulative count of memory allocation failures (page faults)", cri::COUNTER,
     false},
    {"container_spec_memory_limit_bytes", "Memory limit for the container", cri::GAUGE, false},
    {"container_processes", "Number of processes running inside the container", cri::GAUGE, false},
    {"container_fs_usage_bytes", "Number of bytes that are consumed by the container's writable layer", cri::GAUGE,
     false},
    {"container_fs_inodes_total", "Number of inodes used by the container's writable layer", cri::GAUGE, false},
    {"container_network_receive_bytes_total", "Cumulative count of bytes received", cri::COUNTER, true},
    {"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", cri::COUNTER, true},
    {"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", cri::COUNTER,
     true},
    {"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting",
     cri::COUNTER, true},
};

void AddMetric(const char* name, const std::vector<std::string>& labels, int64_t ts, uint64_t value,
               google::protobuf::RepeatedPtrField<cri::Metric>* out) {
  for (const auto& d : kMetrics) {
    if (std::string_view(d.name) != name) continue;
    auto* m = out->Add();
    m->set_name(name);
    m->set_timestamp(ts);
    m->set_metric_type(d.type);
    for (const auto& l : labels) m->add_label_values(l);
    SetU64(m->mutable_value(), value);
  }
}

void AddCommonMetrics(const cri::MemoryUsage& mem, const std::vector<std::string>& labels, int64_t ts,
                      google::protobuf::RepeatedPtrField<cri::Metric>* out) {
  if (mem.has_usage_bytes()) AddMetric("container_memory_usage_bytes", labels, ts, mem.usage_bytes().value(), out);
  if (mem.has_working_set_bytes())
    AddMetric("container_memory_working_set_bytes", labels, ts, mem.working_set_bytes().value(), out);
  if (mem.has_rss_bytes()) AddMetric("container_memory_rss", labels, ts, mem.rss_bytes().value(), out);
  if (mem.has_page_faults()) AddMetric("container_memory_failures_total", labels, ts, mem.page_faults().value(), out);
  if (mem.has_available_bytes() && mem.has_working_set_bytes())
    AddMetric("container_spec_memory_limit_bytes", labels, ts,
              mem.available_bytes().value() + mem.working_set_bytes().value(), out);
}
}  // namespace

absl::Status CriService::ListMetricDescriptors(const cri::ListMetricDescriptorsRequest&,
                                               cri::ListMetricDescriptorsResponse* resp) {
  for (const auto& d : kMetrics) {
    auto* out = resp->add_descriptors();
    out->set_name(d.name);
    out->set_help(d.help);
    for (const char* k : {"id", "name", "image"}) out->add_label_keys(k);
    if (d.per_interface) out->add_label_keys("interface");
  }
  return absl::OkStatus();
}

absl::Status CriService::ListPodSandboxMetrics(const cri::ListPodSandboxMetricsRequest&,
                                               cri::ListPodSandboxMetricsResponse* resp) {
  cri::ListPodSandboxStatsResponse stats;
  RETURN_IF_ERROR(ListPodSandboxStats(cri::ListPodSandboxStatsRequest(), &stats));
  int64_t now = absl::ToUnixNanos(absl::Now());
  for (const auto& ps : stats.stats()) {
    auto* pm = resp->add_pod_metrics();
    pm->set_pod_sandbox_id(ps.attributes().id());
    std::string pod_name = absl::StrCat(ps.attributes().metadata().namespace_(), "/", ps.attributes().metadata().name());
    std::vector<std::string> labels = {ps.attributes().id(), pod_name, ""};
    const auto& lx = ps.linux();
    AddCommonMetrics(lx.memory(), labels, now, pm->mutable_metrics());
    if (lx.has_process())
      AddMetric("container_processes", labels, now, lx.process().process_count().value(), pm->mutable_metrics());
    for (const auto& i : lx.network().interfaces()) {
      std::vector<std::string> il = labels;
      il.push_back(i.name());
      AddMetric("container_network_receive_bytes_total", il, now, i.rx_bytes().value(), pm->mutable_metrics());
      AddMetric("container_network_transmit_bytes_total", il, now, i.tx_bytes().value(), pm->mutable_metrics());
      AddMetric("container_network_receive_errors_total", il, now, i.rx_errors().value(), pm->mutable_metrics());
      AddMetric("container_network_transmit_errors_total", il, now, i.tx_errors().value(), pm->mutable_metrics());
    }
    for (const auto& cs : lx.containers()) {
      auto* cm = pm->add_container_metrics();
      cm->set_container_id(cs.attributes().id());
      std::string image;
      if (auto e = container_store_.Find(cs.attributes().id()); e.ok()) image = (*e)->Snapshot()->image_ref;
      std::vector<std::string> cl = {cs.attributes().id(), cs.attributes().metadata().name(), image};
      AddCommonMetrics(cs.memory(), cl, now, cm->mutable_metrics());
      if (cs.has_writable_layer()) {
        AddMetric("container_fs_usage_bytes", cl, now, cs.writable_layer().used_bytes().value(), cm->mutable_metrics());
        AddMetric("container_fs_inodes_total", cl, now, cs.writable_layer().inodes_used().value(),
                  cm->mutable_metrics());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace crisp::server
