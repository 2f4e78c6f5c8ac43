// Pod sandbox benchmark: latency of RunPodSandbox, PodSandboxStatus,
// StopPodSandbox, RemovePodSandbox (N sequential pods), and of
// ListPodSandbox / PodSandboxStatus while P pods are being created in
// parallel. Starts its own crispd (like the e2e harness, on its own bridge
// "crispbench0" and 10.89.0.0/16) unless --endpoint names a running CRI
// runtime (e.g. containerd, for comparison). Not a ctest test: run by hand,
// as root, on an otherwise idle machine.
//
// With --network embedded its crispd uses the embedded network instead of
// CNI (bridge "crispbench1", 10.91.0.0/16).
//
//   sandbox_bench [--n 30] [--parallel 10] [--network cni|embedded] [--log-level debug]
//                 [--endpoint unix:///run/containerd/containerd.sock]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "test/bench/bench_util.h"
#include "test/e2e/harness.h"

namespace crisp::e2e {
namespace {

using bench::Check;
using bench::Series;
using bench::Time;

cri::PodSandboxConfig BenchPod(int i) {
  auto c = PodConfig(absl::StrCat("bench-", getpid(), "-", i));
  c.mutable_metadata()->set_namespace_("crisp-bench");
  // What kubelet sends for an ordinary pod.
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::CONTAINER);
  return c;
}

// Runs the measurements. Every pod it creates is in `live` until removed, so
// that the caller can clean up after a failure (a throw).
void Measure(CriClient* c, int n, int parallel, std::map<std::string, Series>& s, std::set<std::string>& live,
             std::mutex& mu) {
  auto run = [&](int i) {
    std::string id;
    Check(c->RunPodSandbox(BenchPod(i), &id), "RunPodSandbox");
    std::lock_guard<std::mutex> l(mu);
    live.insert(id);
    return id;
  };
  auto stop_remove = [&](const std::string& id, absl::Duration* stop, absl::Duration* rm) {
    absl::Duration a = Time([&] { Check(c->StopPodSandbox(id), "StopPodSandbox"); });
    absl::Duration b = Time([&] { Check(c->RemovePodSandbox(id), "RemovePodSandbox"); });
    std::lock_guard<std::mutex> l(mu);
    live.erase(id);
    if (stop) *stop = a;
    if (rm) *rm = b;
  };

  // Warm-up: the first CNI ADD creates the bridge.
  stop_remove(run(-1), nullptr, nullptr);

  for (int i = 0; i < n; ++i) {
    std::string id;
    s["RunPodSandbox"].Add(Time([&] { id = run(i); }));
    cri::PodSandboxStatusResponse st;
    s["PodSandboxStatus"].Add(Time([&] { Check(c->PodSandboxStatus(id, &st), "PodSandboxStatus"); }));
    absl::Duration stop, rm;
    stop_remove(id, &stop, &rm);
    s["StopPodSandbox"].Add(stop);
    s["RemovePodSandbox"].Add(rm);
    s["Stop+Remove"].Add(stop + rm);
  }

  // List/Status while `parallel` pods are being created.
  std::string probe = run(100000);
  std::vector<std::future<std::string>> runs;
  for (int i = 0; i < parallel; ++i)
    runs.push_back(std::async(std::launch::async, [&run, i] { return run(200000 + i); }));
  auto busy = [&] {
    return std::any_of(runs.begin(), runs.end(), [](auto& f) {
      return f.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
    });
  };
  absl::Time t0 = absl::Now();
  while (busy()) {
    cri::ListPodSandboxResponse l;
    s["ListPodSandbox (during creates)"].Add(
        Time([&] { Check(c->ListPodSandbox({}, &l), "ListPodSandbox"); }));
    cri::PodSandboxStatusResponse st;
    s["PodSandboxStatus (during creates)"].Add(
        Time([&] { Check(c->PodSandboxStatus(probe, &st), "PodSandboxStatus"); }));
  }
  s[absl::StrCat(parallel, " parallel RunPodSandbox (wall)")].Add(absl::Now() - t0);
  std::vector<std::string> ids = {probe};
  for (auto& f : runs) ids.push_back(f.get());
  for (const auto& id : ids) stop_remove(id, nullptr, nullptr);
}

int Main(int argc, char** argv) {
  int n = 30, parallel = 10;
  std::string endpoint, network = "cni", log_level = "info";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--parallel" && i + 1 < argc) {
      parallel = std::atoi(argv[++i]);
    } else if (a == "--endpoint" && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (a == "--network" && i + 1 < argc) {
      network = argv[++i];
    } else if (a == "--log-level" && i + 1 < argc) {
      log_level = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: %s [--n N] [--parallel P] [--network cni|embedded] [--log-level L] "
                   "[--endpoint unix:///path]\n",
                   argv[0]);
      return 2;
    }
  }
  if (network != "cni" && network != "embedded") {
    std::fprintf(stderr, "--network is cni or embedded\n");
    return 2;
  }
  if (n < 1 || parallel < 1) {
    std::fprintf(stderr, "--n and --parallel must be >= 1\n");
    return 2;
  }
  if (endpoint.empty() && ::geteuid() != 0) {
    std::fprintf(stderr, "starting crispd needs root (or use --endpoint)\n");
    return 1;
  }
  DaemonOptions o = network == "embedded" ? EmbeddedDaemonOptions() : DaemonOptions{};
  o.log_level = log_level;  // debug: crispd logs "run steps:" / "stop steps:" and each CNI call
  // Its own bridge and subnet, so that it can run next to the e2e suite.
  o.bridge = network == "embedded" ? "crispbench1" : "crispbench0";
  o.subnet = network == "embedded" ? "10.91.0.0/16" : "10.89.0.0/16";
  bench::Target t;
  if (!t.Open(endpoint, o)) return t.Close(1);
  CriClient* c = t.client;
  std::string where =
      t.daemon ? t.where + (network == "embedded" ? " (embedded network)" : " (bridge+portmap CNI; lo by crisp)")
               : t.where;
  const cri::VersionResponse& v = t.version;

  std::map<std::string, Series> s;
  std::set<std::string> live;
  std::mutex mu;
  int rc = 0;
  try {
    Measure(c, n, parallel, s, live, mu);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    if (t.daemon) std::fprintf(stderr, "crispd log tail:\n%s", t.daemon->LogTail().c_str());
    for (const auto& id : live) {  // leave the runtime as we found it
      (void)c->StopPodSandbox(id);
      (void)c->RemovePodSandbox(id);
    }
    rc = 1;
  }

  if (t.daemon && log_level == "debug") {  // crispd's step timings of every RunPodSandbox
    for (const auto& l : absl::StrSplit(t.daemon->LogTail(100000), '\n'))
      if (absl::StrContains(l, "run steps:")) std::printf("%s\n", std::string(l).c_str());
  }
  if (rc == 0) {
    std::printf("runtime: %s %s via %s\n%d sequential pods, %d parallel, %ld cores\n\n",
                v.runtime_name().c_str(), v.runtime_version().c_str(), where.c_str(), n, parallel,
                sysconf(_SC_NPROCESSORS_ONLN));
    bench::PrintTable(s);
    if (t.daemon && log_level == "debug")
      std::printf("\n%s", RunCapture({"/bin/grep", "-E", "steps:|exit [0-9]+ in", t.daemon->dir() + "/crispd.log"}).c_str());
  }
  return t.Close(rc);
}

}  // namespace
}  // namespace crisp::e2e

int main(int argc, char** argv) { return crisp::e2e::Main(argc, argv); }
