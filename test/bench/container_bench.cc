// Container benchmark: CreateContainer, StartContainer, their sum,
// StopContainer of a process that exits on SIGTERM, RemoveContainer, and the
// PSS of a running container's crisp-shim. One pod (shared PID namespace, so
// the container's process is not PID 1 and SIGTERM ends it), the busybox
// fixture image from a loopback registry. Starts its own crispd unless
// --endpoint names a running CRI runtime. Not a ctest test: run by hand, as
// root, on an otherwise idle machine.
//
//   container_bench [--n 30] [--endpoint unix:///run/containerd/containerd.sock]
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "test/bench/bench_util.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"

namespace crisp::e2e {
namespace {

using bench::Check;
using bench::Series;
using bench::Time;
using RStub = cri::RuntimeService::Stub;

// Pss of `pid` in KiB from /proc/<pid>/smaps_rollup; -1 if unreadable.
long PssKiB(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  std::string key;
  long v;
  while (in >> key) {
    if (key == "Pss:" && in >> v) return v;
  }
  return -1;
}

void Measure(CriClient* c, const std::string& image, int n, std::map<std::string, Series>& s,
             std::set<std::string>& live, std::string* pod, std::vector<long>* pss) {
  cri::PodSandboxConfig pc = PodConfig(absl::StrCat("cbench-", getpid()));
  pc.mutable_metadata()->set_namespace_("crisp-bench");
  pc.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::POD);
  Check(c->RunPodSandbox(pc, pod), "RunPodSandbox");
  auto create = [&](int i) {
    cri::CreateContainerRequest req;
    req.set_pod_sandbox_id(*pod);
    *req.mutable_sandbox_config() = pc;
    auto* cfg = req.mutable_config();
    cfg->mutable_metadata()->set_name(absl::StrCat("c", i));
    cfg->mutable_image()->set_image(image);
    cfg->add_command("/bin/sleep");
    cfg->add_args("1000");
    cfg->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::POD);
    cri::CreateContainerResponse resp;
    Check(c->Runtime(&RStub::CreateContainer, req, &resp), "CreateContainer");
    live.insert(resp.container_id());
    return resp.container_id();
  };
  auto start = [&](const std::string& id) {
    cri::StartContainerRequest req;
    req.set_container_id(id);
    cri::StartContainerResponse resp;
    Check(c->Runtime(&RStub::StartContainer, req, &resp), "StartContainer");
  };
  auto stop = [&](const std::string& id) {
    cri::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(10);
    cri::StopContainerResponse resp;
    Check(c->Runtime(&RStub::StopContainer, req, &resp), "StopContainer");
  };
  auto remove = [&](const std::string& id) {
    cri::RemoveContainerRequest req;
    req.set_container_id(id);
    cri::RemoveContainerResponse resp;
    Check(c->Runtime(&RStub::RemoveContainer, req, &resp), "RemoveContainer");
    live.erase(id);
  };
  // Warm-up.
  std::string w = create(-1);
  start(w);
  stop(w);
  remove(w);
  for (int i = 0; i < n; ++i) {
    std::string id;
    absl::Duration a = Time([&] { id = create(i); });
    absl::Duration b = Time([&] { start(id); });
    s["CreateContainer"].Add(a);
    s["StartContainer"].Add(b);
    s["Create+Start"].Add(a + b);
    cri::ContainerStatusRequest sreq;
    sreq.set_container_id(id);
    sreq.set_verbose(true);
    cri::ContainerStatusResponse sresp;
    s["ContainerStatus"].Add(
        Time([&] { Check(c->Runtime(&RStub::ContainerStatus, sreq, &sresp), "ContainerStatus"); }));
    if (sresp.info().count("info")) {
      auto info = nlohmann::json::parse(sresp.info().at("info"), nullptr, false);
      if (info.is_object() && info.contains("shimPid")) pss->push_back(PssKiB(info["shimPid"].get<int>()));
    }
    s["StopContainer (exits on SIGTERM)"].Add(Time([&] { stop(id); }));
    s["RemoveContainer"].Add(Time([&] { remove(id); }));
  }
}

int Main(int argc, char** argv) {
  int n = 30;
  std::string endpoint, log_level = "info";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--endpoint" && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (a == "--log-level" && i + 1 < argc) {
      log_level = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--n N] [--log-level debug] [--endpoint unix:///path]\n", argv[0]);
      return 2;
    }
  }
  auto reg = testing::FixtureRegistries::StartOrExplain();
  if (!reg) return 1;
  DaemonOptions o;
  o.log_level = log_level;  // debug logs "create steps:" per container
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
  std::vector<long> pss;
  int rc = 0;
  try {
    Measure(c, image, n, s, live, &pod, &pss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    if (t.daemon) std::fprintf(stderr, "crispd log tail:\n%s", t.daemon->LogTail().c_str());
    rc = 1;
  }
  t.CleanUp(live, pod);  // leave the runtime as we found it
  if (rc == 0) {
    std::printf("runtime: %s %s via %s, %ld cores, %d containers\n\n", t.version.runtime_name().c_str(),
                t.version.runtime_version().c_str(), t.where.c_str(), sysconf(_SC_NPROCESSORS_ONLN), n);
    bench::PrintTable(s);
    if (!pss.empty()) {
      std::sort(pss.begin(), pss.end());
      std::printf("\ncrisp-shim PSS of a running container: p50 %ld KiB, max %ld KiB\n", pss[pss.size() / 2],
                  pss.back());
    }
    if (t.daemon && log_level == "debug")
      std::printf("\n%s", RunCapture({"/bin/grep", "-E", "create steps", t.daemon->dir() + "/crispd.log"}).c_str());
  }
  return t.Close(rc);
}

}  // namespace
}  // namespace crisp::e2e

int main(int argc, char** argv) { return crisp::e2e::Main(argc, argv); }
