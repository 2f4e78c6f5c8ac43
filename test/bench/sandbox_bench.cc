// Pod sandbox benchmark: latency of RunPodSandbox, PodSandboxStatus,
// StopPodSandbox, RemovePodSandbox, and of List/Status while pods are being
// created in parallel. Starts its own crispd (like the e2e harness) unless
// --endpoint names a running CRI runtime (e.g. containerd, for comparison).
//
//   sandbox_bench [--n 30] [--parallel 10] [--endpoint unix:///run/containerd/containerd.sock]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "test/e2e/harness.h"

namespace crisp::e2e {
namespace {

struct Series {
  std::vector<double> ms;
  void Add(absl::Duration d) { ms.push_back(absl::ToDoubleMilliseconds(d)); }
  double Pct(double p) {
    if (ms.empty()) return 0;
    std::sort(ms.begin(), ms.end());
    size_t i = static_cast<size_t>(p * (ms.size() - 1) + 0.5);
    return ms[std::min(i, ms.size() - 1)];
  }
};

template <typename F>
absl::Duration Time(F f) {
  absl::Time t = absl::Now();
  f();
  return absl::Now() - t;
}

cri::PodSandboxConfig BenchPod(int i) {
  auto c = PodConfig(absl::StrCat("bench-", getpid(), "-", i));
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::CONTAINER);
  c.set_log_directory("/tmp");
  return c;
}

int Main(int argc, char** argv) {
  int n = 30, parallel = 10;
  std::string endpoint;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--parallel" && i + 1 < argc) parallel = std::atoi(argv[++i]);
    else if (a == "--endpoint" && i + 1 < argc) endpoint = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--n N] [--parallel P] [--endpoint unix:///path]\n", argv[0]);
      return 2;
    }
  }
  std::unique_ptr<Daemon> daemon;
  std::unique_ptr<CriClient> own;
  CriClient* c;
  if (endpoint.empty()) {
    DaemonOptions o;
    o.log_level = "info";
    auto d = Daemon::Start(o);
    if (!d.ok()) {
      std::fprintf(stderr, "starting crispd: %s\n", std::string(d.status().message()).c_str());
      return 1;
    }
    daemon = std::move(*d);
    c = &daemon->client();
    endpoint = "crispd (own instance, bridge CNI)";
  } else {
    own = std::make_unique<CriClient>(endpoint);
    c = own.get();
  }
  cri::VersionResponse v;
  if (!c->Runtime(&cri::RuntimeService::Stub::Version, cri::VersionRequest(), &v).ok()) {
    std::fprintf(stderr, "runtime at %s does not answer\n", endpoint.c_str());
    return 1;
  }

  std::map<std::string, Series> s;
  auto check = [](const grpc::Status& st, const char* what) {
    if (!st.ok()) {
      std::fprintf(stderr, "%s failed: %s\n", what, st.error_message().c_str());
      std::exit(1);
    }
  };
  // Warm-up (first CNI ADD creates the bridge).
  {
    std::string id;
    check(c->RunPodSandbox(BenchPod(-1), &id), "RunPodSandbox");
    check(c->StopPodSandbox(id), "StopPodSandbox");
    check(c->RemovePodSandbox(id), "RemovePodSandbox");
  }
  for (int i = 0; i < n; ++i) {
    std::string id;
    s["RunPodSandbox"].Add(Time([&] { check(c->RunPodSandbox(BenchPod(i), &id), "RunPodSandbox"); }));
    cri::PodSandboxStatusResponse st;
    s["PodSandboxStatus"].Add(Time([&] { check(c->PodSandboxStatus(id, &st), "PodSandboxStatus"); }));
    absl::Duration stop = Time([&] { check(c->StopPodSandbox(id), "StopPodSandbox"); });
    absl::Duration rm = Time([&] { check(c->RemovePodSandbox(id), "RemovePodSandbox"); });
    s["StopPodSandbox"].Add(stop);
    s["RemovePodSandbox"].Add(rm);
    s["Stop+Remove"].Add(stop + rm);
  }

  // List/Status while `parallel` pods are being created.
  std::string probe;
  check(c->RunPodSandbox(BenchPod(100000), &probe), "RunPodSandbox");
  std::vector<std::future<std::string>> runs;
  for (int i = 0; i < parallel; ++i) {
    runs.push_back(std::async(std::launch::async, [c, i, &check] {
      std::string id;
      check(c->RunPodSandbox(BenchPod(200000 + i), &id), "RunPodSandbox");
      return id;
    }));
  }
  auto busy = [&] {
    return std::any_of(runs.begin(), runs.end(),
                       [](auto& f) { return f.wait_for(std::chrono::seconds(0)) != std::future_status::ready; });
  };
  while (busy()) {
    cri::ListPodSandboxResponse l;
    s["ListPodSandbox (during creates)"].Add(Time([&] { check(c->ListPodSandbox({}, &l), "ListPodSandbox"); }));
    cri::PodSandboxStatusResponse st;
    s["PodSandboxStatus (during creates)"].Add(Time([&] { check(c->PodSandboxStatus(probe, &st), "PodSandboxStatus"); }));
  }
  std::vector<std::string> ids = {probe};
  for (auto& f : runs) ids.push_back(f.get());
  for (const auto& id : ids) {
    check(c->StopPodSandbox(id), "StopPodSandbox");
    check(c->RemovePodSandbox(id), "RemovePodSandbox");
  }

  std::printf("runtime: %s %s via %s; %d sequential samples, %ld cores\n", v.runtime_name().c_str(),
              v.runtime_version().c_str(), endpoint.c_str(), n, sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("%-36s %9s %9s %9s %6s\n", "operation", "p50 ms", "p90 ms", "max ms", "n");
  for (auto& [name, series] : s) {
    if (series.ms.empty()) continue;
    std::printf("%-36s %9.2f %9.2f %9.2f %6zu\n", name.c_str(), series.Pct(0.5), series.Pct(0.9), series.Pct(1.0),
                series.ms.size());
  }
  return 0;
}

}  // namespace
}  // namespace crisp::e2e

int main(int argc, char** argv) { return crisp::e2e::Main(argc, argv); }
