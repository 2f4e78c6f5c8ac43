// ExecSync and stats benchmark: ExecSync(`true`) in a running container, and
// ListContainerStats with 50 running containers, both when the samples are
// cached (calls within stats_period) and cold (a fresh cgroup read of every
// container). Starts its own crispd unless --endpoint names a running CRI
// runtime. Not a ctest test: run by hand, as root, on an otherwise idle
// machine.
//
//   exec_stats_bench [--n 50] [--containers 50] [--endpoint unix:///run/containerd/containerd.sock]
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "test/bench/bench_util.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"

namespace crisp::e2e {
namespace {

using bench::Check;
using bench::Series;
using bench::Time;
using RStub = cri::RuntimeService::Stub;

void Measure(CriClient* c, const std::string& image, int n, int containers, std::map<std::string, Series>& s,
             std::set<std::string>& live, std::string* pod) {
  cri::PodSandboxConfig pc = PodConfig(absl::StrCat("ebench-", getpid()));
  pc.mutable_metadata()->set_namespace_("crisp-bench");
  Check(c->RunPodSandbox(pc, pod), "RunPodSandbox");
  for (int i = 0; i < containers; ++i) {
    cri::CreateContainerRequest req;
    req.set_pod_sandbox_id(*pod);
    *req.mutable_sandbox_config() = pc;
    auto* cfg = req.mutable_config();
    cfg->mutable_metadata()->set_name(absl::StrCat("c", i));
    cfg->mutable_image()->set_image(image);
    cfg->add_command("/bin/sleep");
    cfg->add_args("1000");
    cri::CreateContainerResponse resp;
    Check(c->Runtime(&RStub::CreateContainer, req, &resp), "CreateContainer");
    live.insert(resp.container_id());
    cri::StartContainerRequest sreq;
    sreq.set_container_id(resp.container_id());
    cri::StartContainerResponse sresp;
    Check(c->Runtime(&RStub::StartContainer, sreq, &sresp), "StartContainer");
  }
  cri::ExecSyncRequest ereq;
  ereq.set_container_id(*live.begin());
  ereq.add_cmd("true");
  ereq.set_timeout(10);
  for (int i = 0; i < n + 3; ++i) {  // 3 warm-up calls
    cri::ExecSyncResponse eresp;
    absl::Duration d = Time([&] { Check(c->Runtime(&RStub::ExecSync, ereq, &eresp), "ExecSync"); });
    if (eresp.exit_code() != 0) throw std::runtime_error("ExecSync true: exit code " + std::to_string(eresp.exit_code()));
    if (i >= 3) s["ExecSync(true)"].Add(d);
  }
  auto list = [&] {
    cri::ListContainerStatsResponse resp;
    Check(c->Runtime(&RStub::ListContainerStats, cri::ListContainerStatsRequest(), &resp), "ListContainerStats");
    if (resp.stats_size() < containers)
      throw std::runtime_error(absl::StrCat("ListContainerStats: ", resp.stats_size(), " of ", containers));
  };
  std::string cached = absl::StrCat("ListContainerStats, ", containers, " containers, cached");
  std::string cold = absl::StrCat("ListContainerStats, ", containers, " containers, cold");
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // > the default stats_period (1 s)
    s[cold].Add(Time(list));
    for (int i = 0; i < n / 5; ++i) s[cached].Add(Time(list));
  }
}

int Main(int argc, char** argv) {
  int n = 50, containers = 50;
  std::string endpoint;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--containers" && i + 1 < argc) {
      containers = std::atoi(argv[++i]);
    } else if (a == "--endpoint" && i + 1 < argc) {
      endpoint = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--n N] [--containers N] [--endpoint unix:///path]\n", argv[0]);
      return 2;
    }
  }
  auto reg = testing::FixtureRegistries::StartOrExplain();
  if (!reg) return 1;
  DaemonOptions o;
  o.bridge = "crispbench0";
  o.subnet = "10.89.0.0/16";
  bench::Target t;
  if (!t.Open(endpoint, o)) return t.Close(1);
  CriClient* c = t.client;
  std::string image = reg->Open("crisp/busybox:latest");
  if (!t.Pull(image)) return t.Close(1);
  std::map<std::string, Series> s;
  std::set<std::string> live;
  std::string pod;
  int rc = 0;
  try {
    Measure(c, image, n, containers, s, live, &pod);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    if (t.daemon) std::fprintf(stderr, "crispd log tail:\n%s", t.daemon->LogTail().c_str());
    rc = 1;
  }
  t.CleanUp(live, pod);  // leave the runtime as we found it
  if (rc == 0) {
    std::printf("runtime: %s %s via %s, %ld cores\n\n", t.version.runtime_name().c_str(),
                t.version.runtime_version().c_str(), t.where.c_str(), sysconf(_SC_NPROCESSORS_ONLN));
    bench::PrintTable(s);
  }
  return t.Close(rc);
}

}  // namespace
}  // namespace crisp::e2e

int main(int argc, char** argv) { return crisp::e2e::Main(argc, argv); }
