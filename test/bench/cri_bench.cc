// crisp against containerd, side by side, through the same CRI calls.
//
// For each runtime (its own crispd; containerd from Debian started on a
// private socket, see containerd_peer.h) it measures, per operation, p50/p90/
// max over N samples: image pull/status/remove of the `large` fixture from a
// loopback registry; RunPodSandbox, PodSandboxStatus, StopPodSandbox,
// RemovePodSandbox; CreateContainer, StartContainer, ContainerStatus,
// ExecSync(true), StopContainer (the process exits on SIGTERM),
// RemoveContainer; "pod with one container running" end to end, sequential
// and P in parallel; ListPodSandbox and ListContainers with 100 pods present;
// and the PSS of the runtime's own processes (daemon, shims, pause
// processes) idle and with 20 and 100 running pods. Then one table: medians,
// the ratio crisp/containerd, and the budgets of issue 7.
//
// Not a ctest test: run by hand as root on an otherwise idle machine
// (test/bench/compare.sh installs containerd and runs it):
//
//   cri_bench [--n 20] [--parallel 4] [--pods 100] [--peer containerd|none] [--crisp-network cni|embedded]
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "test/bench/bench_util.h"
#include "test/bench/containerd_peer.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"

namespace crisp::bench {
namespace {

namespace cri = ::runtime::v1;
using e2e::CriClient;
using RStub = cri::RuntimeService::Stub;
using IStub = cri::ImageService::Stub;

struct Options {
  int n = 20;
  int parallel = 4;
  int pods = 100;
  bool peer = true;
  std::string crisp_network = "cni";  // or "embedded" (crisp only; the peer always uses the conflist)
  std::string crispd_path, containerd_path = "/usr/bin/containerd";
};

// What one runtime measured.
struct Results {
  std::string name, version, where;
  std::map<std::string, Series> s;
  std::map<std::string, double> mem;  // KiB
  std::string error;                  // why the run stopped early, if it did
};

// PSS (KiB) of the runtime's own processes: descendants of this process
// (a child subreaper: the runtimes' double-forked shims land here) whose comm
// is one of `comms`. `count` gets how many there were.
long RuntimePss(const std::set<std::string>& comms, int* count) {
  const pid_t self = ::getpid();
  long total = 0;
  *count = 0;
  for (const auto& p : ListDir("/proc").value_or(std::vector<std::string>{})) {
    if (p.find_first_not_of("0123456789") != std::string::npos) continue;
    auto comm = ReadFile("/proc/" + p + "/comm");
    if (!comm.ok() || !comms.count(std::string(absl::StripAsciiWhitespace(*comm)))) continue;
    if (!e2e::DescendsFrom(std::atoi(p.c_str()), self)) continue;
    std::ifstream in("/proc/" + p + "/smaps_rollup");
    std::string key;
    long v;
    while (in >> key) {
      if (key == "Pss:" && in >> v) {
        total += v;
        ++*count;
        break;
      }
    }
  }
  return total;
}

// The CRI calls of one pod with one container, on one runtime.
class Driver {
 public:
  Driver(CriClient* c, std::string busybox, std::string cgroup_parent)
      : c_(c), busybox_(std::move(busybox)), cgroup_parent_(std::move(cgroup_parent)) {}

  cri::PodSandboxConfig Pod(const std::string& name) const {
    cri::PodSandboxConfig pc = e2e::PodConfig(name);
    pc.mutable_metadata()->set_namespace_("crisp-bench");
    pc.mutable_linux()->set_cgroup_parent(cgroup_parent_);
    // What kubelet sends for an ordinary pod: a shared PID namespace is not
    // the default, but here it makes the container's sleep not PID 1, so
    // that SIGTERM ends it (StopContainer measures a process that exits).
    pc.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::POD);
    return pc;
  }
  std::string RunPod(const cri::PodSandboxConfig& pc) {
    std::string id;
    Check(c_->RunPodSandbox(pc, &id), "RunPodSandbox");
    Track(pods_, id, true);
    return id;
  }
  void StopPod(const std::string& id) { Check(c_->StopPodSandbox(id), "StopPodSandbox"); }
  void RemovePod(const std::string& id) {
    Check(c_->RemovePodSandbox(id), "RemovePodSandbox");
    Track(pods_, id, false);
  }
  std::string Create(const std::string& pod, const cri::PodSandboxConfig& pc, const std::string& name) {
    cri::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    *req.mutable_sandbox_config() = pc;
    auto* cfg = req.mutable_config();
    cfg->mutable_metadata()->set_name(name);
    cfg->mutable_image()->set_image(busybox_);
    cfg->add_command("/bin/sleep");
    cfg->add_args("100000");
    cfg->set_log_path(name + ".log");
    cfg->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::POD);
    cri::CreateContainerResponse resp;
    Check(c_->Runtime(&RStub::CreateContainer, req, &resp), "CreateContainer");
    Track(containers_, resp.container_id(), true);
    return resp.container_id();
  }
  void Start(const std::string& id) {
    cri::StartContainerRequest req;
    req.set_container_id(id);
    cri::StartContainerResponse resp;
    Check(c_->Runtime(&RStub::StartContainer, req, &resp), "StartContainer");
  }
  void Status(const std::string& id) {
    cri::ContainerStatusRequest req;
    req.set_container_id(id);
    cri::ContainerStatusResponse resp;
    Check(c_->Runtime(&RStub::ContainerStatus, req, &resp), "ContainerStatus");
    if (resp.status().state() != cri::CONTAINER_RUNNING)
      throw std::runtime_error("container " + id + " is not running");
  }
  void ExecTrue(const std::string& id) {
    cri::ExecSyncRequest req;
    req.set_container_id(id);
    req.add_cmd("/bin/true");
    req.set_timeout(10);
    cri::ExecSyncResponse resp;
    Check(c_->Runtime(&RStub::ExecSync, req, &resp), "ExecSync");
    if (resp.exit_code() != 0) throw std::runtime_error(absl::StrCat("ExecSync true exited ", resp.exit_code()));
  }
  void Stop(const std::string& id) {
    cri::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(10);
    cri::StopContainerResponse resp;
    Check(c_->Runtime(&RStub::StopContainer, req, &resp), "StopContainer");
  }
  void Remove(const std::string& id) {
    cri::RemoveContainerRequest req;
    req.set_container_id(id);
    cri::RemoveContainerResponse resp;
    Check(c_->Runtime(&RStub::RemoveContainer, req, &resp), "RemoveContainer");
    Track(containers_, id, false);
  }
  // Best effort: everything this driver made and did not remove.
  void CleanUp() {
    std::set<std::string> cs, ps;
    {
      std::lock_guard<std::mutex> l(mu_);
      cs = containers_;
      ps = pods_;
    }
    for (const auto& id : cs) {
      try {
        Stop(id);
        Remove(id);
      } catch (const std::exception&) {
      }
    }
    for (const auto& id : ps) {
      (void)c_->StopPodSandbox(id);
      (void)c_->RemovePodSandbox(id);
    }
  }
  CriClient* client() { return c_; }

 private:
  void Track(std::set<std::string>& set, const std::string& id, bool add) {
    std::lock_guard<std::mutex> l(mu_);
    if (add)
      set.insert(id);
    else
      set.erase(id);
  }
  CriClient* c_;
  std::string busybox_, cgroup_parent_;
  std::mutex mu_;
  std::set<std::string> pods_, containers_;
};

struct PodWithContainer {
  std::string pod, container;
};

// RunPodSandbox + CreateContainer + StartContainer.
PodWithContainer Up(Driver& d, const std::string& name) {
  auto pc = d.Pod(name);
  PodWithContainer p;
  p.pod = d.RunPod(pc);
  p.container = d.Create(p.pod, pc, "c");
  d.Start(p.container);
  return p;
}

// StopContainer + RemoveContainer + StopPodSandbox + RemovePodSandbox (kubelet's order).
void Down(Driver& d, const PodWithContainer& p) {
  d.Stop(p.container);
  d.Remove(p.container);
  d.StopPod(p.pod);
  d.RemovePod(p.pod);
}

// Runs `fn(i)` for i in [0, count) on `parallel` threads.
void InParallel(int count, int parallel, const std::function<void(int)>& fn) {
  std::mutex mu;
  int next = 0;
  std::vector<std::future<void>> workers;
  for (int w = 0; w < parallel; ++w) {
    workers.push_back(std::async(std::launch::async, [&] {
      for (;;) {
        int i;
        {
          std::lock_guard<std::mutex> l(mu);
          if (next >= count) return;
          i = next++;
        }
        fn(i);
      }
    }));
  }
  std::exception_ptr first;
  for (auto& w : workers) {
    try {
      w.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

std::string Pull(CriClient* c, const std::string& ref) {
  cri::PullImageRequest req;
  req.mutable_image()->set_image(ref);
  cri::PullImageResponse resp;
  Check(c->Image(&IStub::PullImage, req, &resp), "PullImage " + ref);
  return resp.image_ref();
}

void MeasureImages(CriClient* c, const testing::FixtureRegistries& reg, int n, Results& r) {
  const std::string large = reg.Open("crisp/large:latest");
  for (int i = 0; i < n; ++i) {
    std::string id;
    r.s["PullImage large (16 MiB, 5 layers)"].Add(Time([&] { id = Pull(c, large); }));
    cri::ImageStatusRequest sreq;
    sreq.mutable_image()->set_image(large);
    cri::ImageStatusResponse sresp;
    r.s["ImageStatus"].Add(Time([&] { Check(c->Image(&IStub::ImageStatus, sreq, &sresp), "ImageStatus"); }));
    if (!sresp.has_image()) throw std::runtime_error("ImageStatus found no image after the pull");
    cri::RemoveImageRequest rreq;
    rreq.mutable_image()->set_image(id);
    cri::RemoveImageResponse rresp;
    r.s["RemoveImage"].Add(Time([&] { Check(c->Image(&IStub::RemoveImage, rreq, &rresp), "RemoveImage"); }));
  }
}

void MeasureSandboxes(Driver& d, int n, Results& r) {
  for (int i = 0; i < n; ++i) {
    auto pc = d.Pod(absl::StrCat("sb-", i));
    std::string id;
    r.s["RunPodSandbox"].Add(Time([&] { id = d.RunPod(pc); }));
    cri::PodSandboxStatusResponse st;
    r.s["PodSandboxStatus"].Add(Time([&] { Check(d.client()->PodSandboxStatus(id, &st), "PodSandboxStatus"); }));
    absl::Duration a = Time([&] { d.StopPod(id); });
    absl::Duration b = Time([&] { d.RemovePod(id); });
    r.s["StopPodSandbox"].Add(a);
    r.s["RemovePodSandbox"].Add(b);
    r.s["StopPodSandbox+RemovePodSandbox"].Add(a + b);
  }
}

void MeasureContainers(Driver& d, int n, Results& r) {
  auto pc = d.Pod("containers");
  std::string pod = d.RunPod(pc);
  for (int i = 0; i < n; ++i) {
    std::string id;
    absl::Duration a = Time([&] { id = d.Create(pod, pc, absl::StrCat("c", i)); });
    absl::Duration b = Time([&] { d.Start(id); });
    r.s["CreateContainer"].Add(a);
    r.s["StartContainer"].Add(b);
    r.s["CreateContainer+StartContainer"].Add(a + b);
    r.s["ContainerStatus"].Add(Time([&] { d.Status(id); }));
    for (int k = 0; k < 3; ++k) r.s["ExecSync true"].Add(Time([&] { d.ExecTrue(id); }));
    r.s["StopContainer (exits on SIGTERM)"].Add(Time([&] { d.Stop(id); }));
    r.s["RemoveContainer"].Add(Time([&] { d.Remove(id); }));
  }
  d.StopPod(pod);
  d.RemovePod(pod);
}

void MeasurePods(Driver& d, int n, int parallel, Results& r) {
  for (int i = 0; i < n; ++i) {
    PodWithContainer p;
    r.s["pod with one container running"].Add(Time([&] { p = Up(d, absl::StrCat("seq-", i)); }));
    r.s["pod with one container: tear down"].Add(Time([&] { Down(d, p); }));
  }
  // The same with `parallel` at a time, each call timed on its own too.
  std::mutex mu;
  const std::string tag = absl::StrCat(" (", parallel, " parallel)");
  absl::Time t0 = absl::Now();
  InParallel(n, parallel, [&](int i) {
    std::vector<std::pair<std::string, absl::Duration>> t;
    auto timed = [&](const char* what, const std::function<void()>& f) { t.emplace_back(what, Time(f)); };
    auto pc = d.Pod(absl::StrCat("par-", i));
    PodWithContainer p;
    timed("RunPodSandbox", [&] { p.pod = d.RunPod(pc); });
    timed("CreateContainer", [&] { p.container = d.Create(p.pod, pc, "c"); });
    timed("StartContainer", [&] { d.Start(p.container); });
    timed("ExecSync true", [&] { d.ExecTrue(p.container); });
    timed("StopContainer (exits on SIGTERM)", [&] { d.Stop(p.container); });
    timed("RemoveContainer", [&] { d.Remove(p.container); });
    timed("StopPodSandbox", [&] { d.StopPod(p.pod); });
    timed("RemovePodSandbox", [&] { d.RemovePod(p.pod); });
    std::lock_guard<std::mutex> l(mu);
    for (const auto& [what, dur] : t) r.s[what + tag].Add(dur);
    r.s["pod with one container running" + tag].Add(t[0].second + t[1].second + t[2].second);
    r.s["pod with one container: tear down" + tag].Add(t[4].second + t[5].second + t[6].second + t[7].second);
  });
  r.s[absl::StrCat(n, " pods up and down, ", parallel, " parallel (wall)")].Add(absl::Now() - t0);
}

// Idle PSS, then `pods` pods with one running container each (PSS at 20 and
// at `pods`), List* with them present, then all torn down.
void MeasureScale(Driver& d, const std::set<std::string>& comms, int pods, int parallel, Results& r) {
  // Steady state: crispd gives freed heap back a second after a burst of
  // RPCs (kubelet's polling would trigger that every second too).
  const absl::Duration settle = absl::Seconds(2);
  absl::SleepFor(settle);
  int count = 0;
  r.mem["idle"] = static_cast<double>(RuntimePss(comms, &count));
  r.mem["idle processes"] = count;
  std::vector<PodWithContainer> up(pods);
  int made = 0;
  for (int step : {std::min(20, pods), pods}) {
    if (step <= made) continue;
    const int from = made;
    InParallel(step - from, parallel, [&](int i) { up[from + i] = Up(d, absl::StrCat("scale-", from + i)); });
    made = step;
    absl::SleepFor(settle);
    r.mem[absl::StrCat(step, " pods")] = static_cast<double>(RuntimePss(comms, &count));
    r.mem[absl::StrCat(step, " pods processes")] = count;
  }
  const std::string suffix = absl::StrCat(" (", pods, " pods)");
  for (int i = 0; i < 100; ++i) {
    cri::ListPodSandboxResponse lp;
    r.s["ListPodSandbox" + suffix].Add(Time([&] { Check(d.client()->ListPodSandbox({}, &lp), "ListPodSandbox"); }));
    if (lp.items_size() != pods) throw std::runtime_error(absl::StrCat("listed ", lp.items_size(), " pods"));
    cri::ListContainersResponse lc;
    r.s["ListContainers" + suffix].Add(Time([&] {
      Check(d.client()->Runtime(&RStub::ListContainers, cri::ListContainersRequest(), &lc), "ListContainers");
    }));
    if (lc.containers_size() != pods)
      throw std::runtime_error(absl::StrCat("listed ", lc.containers_size(), " containers"));
  }
  InParallel(pods, parallel, [&](int i) { Down(d, up[i]); });
}

// Everything, on one runtime behind `c`.
void RunSuite(CriClient* c, const std::set<std::string>& comms, const testing::FixtureRegistries& reg,
              const Options& o, Results& r) {
  cri::VersionResponse v;
  Check(c->Version(10, &v), "Version");
  r.version = v.runtime_name() + " " + v.runtime_version();
  Driver d(c, reg.Open("crisp/busybox:latest"), "/crisp-bench-" + RandomHex(4));
  try {
    // Warm-up: images the rest needs (the sandbox image of a peer too),
    // connections, the bridge of the first CNI ADD.
    Pull(c, reg.Open("crisp/busybox:latest"));
    Pull(c, reg.Open("crisp/pause:latest"));
    Down(d, Up(d, "warm-up"));
    std::fprintf(stderr, "[%s] images\n", r.name.c_str());
    MeasureImages(c, reg, o.n, r);
    // What the pulls and removals left to the background (deleting files,
    // syncing layers: both runtimes have some) is not the next phase's cost.
    absl::SleepFor(absl::Seconds(3));
    std::fprintf(stderr, "[%s] sandboxes\n", r.name.c_str());
    MeasureSandboxes(d, o.n, r);
    std::fprintf(stderr, "[%s] containers\n", r.name.c_str());
    MeasureContainers(d, o.n, r);
    std::fprintf(stderr, "[%s] pods, sequential and %d parallel\n", r.name.c_str(), o.parallel);
    MeasurePods(d, o.n, o.parallel, r);
    std::fprintf(stderr, "[%s] %d pods: memory and List*\n", r.name.c_str(), o.pods);
    MeasureScale(d, comms, o.pods, o.parallel, r);
  } catch (const std::exception& e) {
    r.error = e.what();
    d.CleanUp();
  }
  // The bench's cgroup parent (runtimes create it for the pods' cgroups).
  for (const auto& ctl : ListDir("/sys/fs/cgroup").value_or(std::vector<std::string>{}))
    ::rmdir(("/sys/fs/cgroup/" + ctl + "/" + d.Pod("x").linux().cgroup_parent()).c_str());
  ::rmdir(("/sys/fs/cgroup" + d.Pod("x").linux().cgroup_parent()).c_str());
}

std::string Machine() {
  struct utsname u;
  ::uname(&u);
  std::string cpu = "?";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      cpu = std::string(absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)));
      break;
    }
  }
  return absl::StrCat(sysconf(_SC_NPROCESSORS_ONLN), " cores (", cpu, "), ",
                      sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) >> 30, " GiB, kernel ", u.release);
}

struct Budget {
  double limit;
  const char* unit;
  double max_ratio = 0;  // also at most this times the peer (0: no ratio budget)
};

void Print(const Options& o, const Results& a, const std::optional<Results>& b) {
  std::printf("machine: %s\n", Machine().c_str());
  std::printf("%s: %s\n", a.name.c_str(), a.where.c_str());
  if (b) std::printf("%s: %s\n", b->name.c_str(), b->where.c_str());
  std::printf("N=%d sequential samples per operation, %d in parallel, %d pods for memory and List*\n\n", o.n,
              o.parallel, o.pods);
  const std::map<std::string, Budget> budgets = {
      {"RunPodSandbox", {100, "ms", 0.5}},
      {"StopPodSandbox+RemovePodSandbox", {60, "ms"}},
      {"CreateContainer+StartContainer", {25, "ms"}},
      {"StopContainer (exits on SIGTERM)", {30, "ms"}},
      {"PullImage large (16 MiB, 5 layers)", {60, "ms"}},
      {absl::StrCat("ListPodSandbox (", o.pods, " pods)"), {2, "ms"}},
      {absl::StrCat("ListContainers (", o.pods, " pods)"), {2, "ms"}},
  };
  std::vector<std::string> missed;
  auto verdict = [&](const std::string& what, double v, const Budget& bu, std::optional<double> peer) {
    bool ok = v <= bu.limit && (bu.max_ratio == 0 || !peer || v <= bu.max_ratio * *peer);
    std::string text = absl::StrCat(ok ? "ok " : "MISS ", "<= ", bu.limit, " ", bu.unit);
    if (bu.max_ratio > 0) absl::StrAppend(&text, ", <= ", bu.max_ratio, "x");
    if (!ok) missed.push_back(what);
    return text;
  };
  std::printf("%-52s %10s %8s %8s", "operation (ms)", (a.name + " p50").c_str(), "p90", "max");
  if (b) std::printf(" %15s %8s %8s %7s", (b->name + " p50").c_str(), "p90", "max", "ratio");
  std::printf("  budget (crisp p50)\n");
  for (const auto& [name, series] : a.s) {
    Series x = series;
    std::printf("%-52s %10.2f %8.2f %8.2f", name.c_str(), x.Pct(0.5), x.Pct(0.9), x.Pct(1.0));
    std::optional<double> peer;
    if (b) {
      auto it = b->s.find(name);
      if (it != b->s.end()) {
        Series y = it->second;
        peer = y.Pct(0.5);
        std::printf(" %15.2f %8.2f %8.2f %6.2fx", y.Pct(0.5), y.Pct(0.9), y.Pct(1.0),
                    *peer > 0 ? x.Pct(0.5) / *peer : 0);
      } else {
        std::printf(" %15s %8s %8s %7s", "-", "-", "-", "-");
      }
    }
    auto bu = budgets.find(name);
    std::printf("  %s\n", bu == budgets.end() ? "" : verdict(name, x.Pct(0.5), bu->second, peer).c_str());
  }
  // Memory: idle, and per pod as the growth from idle divided by the pods.
  auto per_pod = [&](const Results& r, int pods) -> double {
    auto it = r.mem.find(absl::StrCat(pods, " pods"));
    auto idle = r.mem.find("idle");
    if (it == r.mem.end() || idle == r.mem.end()) return 0;
    return (it->second - idle->second) / pods;
  };
  auto mem_row = [&](const std::string& label, double va, std::optional<double> vb, const Budget* bu) {
    std::printf("%-52s %10.2f %8s %8s", label.c_str(), va / 1024, "", "");
    if (b) std::printf(" %15.2f %8s %8s %6.2fx", vb.value_or(0) / 1024, "", "", vb && *vb > 0 ? va / *vb : 0);
    std::printf("  %s\n", bu ? verdict(label, va / 1024, *bu, std::nullopt).c_str() : "");
  };
  std::printf("\n%-52s %10s %8s %8s", "runtime PSS (MiB)", a.name.c_str(), "", "");
  if (b) std::printf(" %15s %8s %8s %7s", b->name.c_str(), "", "", "ratio");
  std::printf("  budget\n");
  auto get = [](const std::optional<Results>& r, const std::string& k) -> std::optional<double> {
    if (!r) return std::nullopt;
    auto it = r->mem.find(k);
    return it == r->mem.end() ? std::nullopt : std::optional<double>(it->second);
  };
  const Budget idle_budget{15, "MiB"}, pod_budget{0.8, "MiB"};
  if (a.mem.count("idle")) mem_row("idle (daemon)", a.mem.at("idle"), get(b, "idle"), &idle_budget);
  for (int pods : {std::min(20, o.pods), o.pods}) {
    std::string k = absl::StrCat(pods, " pods");
    if (!a.mem.count(k)) continue;
    mem_row(absl::StrCat("with ", pods, " running pods (", static_cast<int>(a.mem.at(k + " processes")),
                         b && get(b, k + " processes") ? absl::StrCat("/", static_cast<int>(*get(b, k + " processes")))
                                                        : "",
                         " processes)"),
            a.mem.at(k), get(b, k), nullptr);
    std::optional<double> pb;
    if (b) pb = per_pod(*b, pods);
    mem_row(absl::StrCat("per pod, from ", pods, " pods"), per_pod(a, pods), pb,
            pods == o.pods ? &pod_budget : nullptr);
    if (pods == o.pods) break;
  }
  if (!a.error.empty()) std::printf("\n%s stopped early: %s\n", a.name.c_str(), a.error.c_str());
  if (b && !b->error.empty()) std::printf("\n%s stopped early: %s\n", b->name.c_str(), b->error.c_str());
  std::printf("\nbudgets missed: %s\n", missed.empty() ? "none" : absl::StrJoin(missed, ", ").c_str());
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--n") {
      o.n = std::atoi(next().c_str());
    } else if (a == "--parallel") {
      o.parallel = std::atoi(next().c_str());
    } else if (a == "--pods") {
      o.pods = std::atoi(next().c_str());
    } else if (a == "--peer") {
      std::string p = next();
      if (p != "containerd" && p != "none") {
        std::fprintf(stderr, "--peer containerd|none\n");
        return 2;
      }
      o.peer = p == "containerd";
    } else if (a == "--crisp-network") {
      o.crisp_network = next();
      if (o.crisp_network != "cni" && o.crisp_network != "embedded") {
        std::fprintf(stderr, "--crisp-network cni|embedded\n");
        return 2;
      }
    } else if (a == "--crispd") {
      o.crispd_path = next();
    } else if (a == "--containerd") {
      o.containerd_path = next();
    } else {
      std::fprintf(stderr,
                   "usage: %s [--n N] [--parallel P] [--pods PODS] [--peer containerd|none] "
                   "[--crisp-network cni|embedded] [--crispd PATH] [--containerd PATH]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.n < 1 || o.parallel < 1 || o.pods < 1) {
    std::fprintf(stderr, "--n, --parallel and --pods must be >= 1\n");
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "needs root\n");
    return 1;
  }
  auto reg = testing::FixtureRegistries::StartOrExplain();
  if (!reg) return 1;
  int rc = 0;

  Results crisp;
  crisp.name = "crisp";
  {
    const bool embedded = o.crisp_network == "embedded";
    e2e::DaemonOptions d = embedded ? e2e::EmbeddedDaemonOptions() : e2e::DaemonOptions{};
    d.log_level = "info";  // containerd logs at info too
    d.bridge = embedded ? "crispbench1" : "crispbench0";
    d.subnet = embedded ? "10.91.0.0/16" : "10.89.0.0/16";
    d.crispd_path = o.crispd_path;
    Target t;
    if (!t.Open("", d)) return t.Close(1);
    crisp.where = t.where + (embedded ? " (embedded network: libnl bridge + veth, masquerade, host ports)"
                                      : " (bridge + host-local, portmap CNI; lo by crisp)");
    RunSuite(t.client, {"crispd", "crisp-shim", "crisp-pause"}, *reg, o, crisp);
    if (!crisp.error.empty()) std::fprintf(stderr, "crispd log tail:\n%s", t.daemon->LogTail().c_str());
    rc = t.Close(crisp.error.empty() ? 0 : 1);
  }

  std::optional<Results> peer;
  if (o.peer) {
    peer.emplace();
    peer->name = "containerd";
    ContainerdOptions co;
    co.binary = o.containerd_path;
    co.registry = reg->open();
    co.sandbox_image = reg->Open("crisp/pause:latest");
    auto ctd = Containerd::Start(co);
    if (!ctd.ok()) {
      peer->error = std::string(ctd.status().message());
    } else {
      e2e::CriClient client((*ctd)->endpoint());
      std::string runc = e2e::RunCapture({"/usr/sbin/runc", "--version"});
      peer->where = absl::StrCat("own containerd in ", (*ctd)->dir(), ", ",
                                 std::string(absl::StripSuffix(runc.substr(0, runc.find('\n')), "\n")),
                                 ", same CNI conflist");
      RunSuite(&client, {"containerd", "containerd-shim", "pause"}, *reg, o, *peer);
      if (auto s = (*ctd)->Stop(); !s.ok()) {
        std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
        rc = 1;
      }
    }
    if (!peer->error.empty()) rc = 1;
  }
  Print(o, crisp, peer);
  return rc;
}

}  // namespace
}  // namespace crisp::bench

int main(int argc, char** argv) { return crisp::bench::Main(argc, argv); }
