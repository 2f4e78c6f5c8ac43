// ExecSync (and, with the streaming server, Exec/Attach/PortForward) against
// a real crispd: commands run inside running containers with the
// container's confinement.
#include <dirent.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "gmock/gmock.h"
#include "test/e2e/container_fixture.h"

namespace crisp::e2e {
namespace {

class ExecTest : public ContainerTest {
 protected:
  // A running container that sleeps (its id).
  std::string RunSleeper(const cri::ContainerConfig& cfg) { return RunContainer(cfg); }
  std::string RunSleeper() { return RunSleeper(Config("sleeper", "exec sleep 1000")); }

  grpc::Status Exec(const std::string& id, const std::vector<std::string>& cmd, cri::ExecSyncResponse* resp,
                    int64_t timeout = 0) {
    cri::ExecSyncRequest req;
    req.set_container_id(id);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_timeout(timeout);
    return c().Runtime(&RStub::ExecSync, req, resp, 60);
  }
  std::string Sh(const std::string& id, const std::string& script) {
    cri::ExecSyncResponse resp;
    grpc::Status s = Exec(id, {"sh", "-c", script}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.exit_code(), 0) << resp.stderr();
    return resp.stdout();
  }
};

// /proc/<pid>/status field (e.g. "Threads", "VmRSS") as a number.
int64_t ProcStatus(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (absl::StartsWith(line, field + ":")) {
      int64_t v = 0;
      std::string num = line.substr(field.size() + 1);
      num.erase(0, num.find_first_not_of(" \t"));
      num = num.substr(0, num.find(' '));
      return absl::SimpleAtoi(num, &v) ? v : -1;
    }
  }
  return -1;
}

size_t CountFds(pid_t pid) {
  size_t n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return 0;
  while (struct dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

TEST_F(ExecTest, OutputStderrAndExitCode) {
  std::string id = RunSleeper();
  cri::ExecSyncResponse resp;
  grpc::Status s = Exec(id, {"sh", "-c", "echo out; echo err >&2; exit 3"}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.stdout(), "out\n");
  EXPECT_EQ(resp.stderr(), "err\n");
  EXPECT_EQ(resp.exit_code(), 3);
  // A command found in the image's PATH, run at the container's cwd.
  EXPECT_EQ(Sh(id, "pwd"), "/\n");
}

TEST_F(ExecTest, RunsInsideTheContainerWithItsConfinement) {
  auto cfg = Config("confined", "exec sleep 1000");
  auto* sc = cfg.mutable_linux()->mutable_security_context();
  sc->mutable_run_as_user()->set_value(1000);
  sc->set_no_new_privs(true);
  sc->mutable_seccomp()->set_profile_type(cri::SecurityProfile::RuntimeDefault);
  cfg.add_envs()->set_key("GREETING");
  cfg.mutable_envs(0)->set_value("hello");
  cfg.set_working_dir("/tmp");
  std::string id = RunSleeper(cfg);
  EXPECT_EQ(Sh(id, "id -u"), "1000\n");
  EXPECT_EQ(Sh(id, "echo $GREETING"), "hello\n");
  EXPECT_EQ(Sh(id, "pwd"), "/tmp\n");
  // Same PID namespace as the container: its process is pid 1 there.
  EXPECT_EQ(Sh(id, "cat /proc/1/cmdline | tr '\\0' ' '"), "sleep 1000 ");
  // Same capabilities (none for uid 1000), no_new_privs and seccomp.
  EXPECT_EQ(Sh(id, "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '"),
            "CapEff: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n");
  // Same mount namespace: a file the container's process sees.
  EXPECT_EQ(Sh(id, "echo x > /tmp/f && cat /proc/1/root/tmp/f 2>/dev/null || cat /tmp/f"), "x\n");
  // The pod's hostname (UTS namespace).
  EXPECT_EQ(Sh(id, "hostname"), pod_config_.hostname() + "\n");
  // And the container's cgroup.
  std::string info;
  Status(id, &info);
  auto j = nlohmann::json::parse(info);
  std::string cgroup = j["cgroupPath"];
  std::string self = Sh(id, "cat /proc/self/cgroup");
  EXPECT_TRUE(absl::StrContains(self, cgroup)) << self << " vs " << cgroup;
}

TEST_F(ExecTest, TimeoutKillsTheCommandAndItsChildren) {
  std::string id = RunSleeper();
  cri::ExecSyncResponse resp;
  auto t0 = std::chrono::steady_clock::now();
  grpc::Status s = Exec(id, {"sh", "-c", "sleep 77 & sleep 66; echo never"}, &resp, 1);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_LT(secs, 5);
  // Nothing of it keeps running inside the container.
  std::string ps = Sh(id, "ps -o args");
  EXPECT_FALSE(absl::StrContains(ps, "sleep 77")) << ps;
  EXPECT_FALSE(absl::StrContains(ps, "sleep 66")) << ps;
}

TEST_F(ExecTest, OutputIsCappedAndNotKeptInTheDaemon) {
  std::string id = RunSleeper();
  int64_t rss_before = ProcStatus(daemon_->pid(), "VmRSS");
  cri::ExecSyncResponse resp;
  // 20 MiB on stdout, 1 KiB on stderr.
  grpc::Status s = Exec(id, {"sh", "-c", "head -c 20971520 /dev/zero; head -c 1024 /dev/zero >&2"}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Together they fit in one 16 MiB gRPC message (kubelet's limit).
  EXPECT_EQ(resp.stdout().size(), (16u << 20) - 1024 - 1024);
  EXPECT_EQ(resp.stderr().size(), 1024u);
  EXPECT_EQ(resp.exit_code(), 0);
  int64_t rss_after = ProcStatus(daemon_->pid(), "VmRSS");
  // The response itself passes through (protobuf + gRPC copies); the 4 MiB
  // beyond the cap must not stay, nor the whole response be kept around.
  EXPECT_LT(rss_after - rss_before, 64 * 1024) << "KiB before " << rss_before << ", after " << rss_after;
}

TEST_F(ExecTest, ManyParallelCallsLeakNothing) {
  std::string id = RunSleeper();
  // Warm up (gRPC threads, allocator arenas).
  Sh(id, "true");
  pid_t d = daemon_->pid();
  size_t fds_before = CountFds(d);
  int64_t threads_before = ProcStatus(d, "Threads");
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 20; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        cri::ExecSyncResponse resp;
        std::string want = std::to_string(t * 100 + i);
        if (Exec(id, {"echo", want}, &resp).ok() && resp.stdout() == want + "\n") ok++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 200);
  // Shims are reaped and their sockets closed; gRPC may keep a few threads.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LE(CountFds(d), fds_before + 2);
  EXPECT_LE(ProcStatus(d, "Threads"), threads_before + 8);
  // No zombies among crispd's children.
  std::string zombies;
  DIR* proc = ::opendir("/proc");
  while (struct dirent* e = ::readdir(proc)) {
    int pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    std::getline(f, stat);
    size_t rp = stat.rfind(')');
    if (rp == std::string::npos || rp + 4 > stat.size()) continue;
    char state = stat[rp + 2];
    int ppid = std::atoi(stat.c_str() + rp + 4);
    if (state == 'Z' && ppid == d) zombies += std::string(e->d_name) + " ";
  }
  ::closedir(proc);
  EXPECT_EQ(zombies, "");
}

TEST_F(ExecTest, BadRequestsAreClearErrors) {
  cri::ExecSyncResponse resp;
  EXPECT_EQ(Exec("no-such-container", {"true"}, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  std::string id = RunSleeper();
  EXPECT_EQ(Exec(id, {}, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status s = Exec(id, {"no-such-binary"}, &resp);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.error_message(), "no-such-binary")) << s.error_message();
  // A created but not started container cannot exec.
  std::string created;
  ASSERT_TRUE(Create(Config("created", "sleep 1"), &created).ok());
  EXPECT_EQ(Exec(created, {"true"}, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// GetContainerEvents: a subscriber sees a pod's and its container's
// lifecycle in order, each event with the pod's status.
TEST_F(ExecTest, EventsFollowTheLifecycleInOrder) {
  grpc::ClientContext ctx;
  cri::GetEventsRequest req;
  auto reader = c().runtime()->GetContainerEvents(&ctx, req);
  std::mutex mu;
  std::vector<std::pair<std::string, int>> events;  // (id, type)
  std::vector<std::string> pod_states;
  std::thread collector([&] {
    cri::ContainerEventResponse ev;
    while (reader->Read(&ev)) {
      std::lock_guard<std::mutex> lock(mu);
      events.emplace_back(ev.container_id(), ev.container_event_type());
      pod_states.push_back(cri::PodSandboxState_Name(ev.pod_sandbox_status().state()));
    }
  });
  // The subscription is in place once the stream is open; give it a moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string id = RunSleeper(Config("evented", "exec sleep 1000"));
  std::string pod = pod_;
  ASSERT_TRUE(Stop(id, 0).ok());
  ASSERT_TRUE(Remove(id).ok());
  ASSERT_TRUE(c().StopPodSandbox(pod).ok());
  ASSERT_TRUE(c().RemovePodSandbox(pod).ok());
  pod_.clear();
  std::vector<std::pair<std::string, int>> want = {
      {pod, cri::CONTAINER_CREATED_EVENT}, {pod, cri::CONTAINER_STARTED_EVENT},
      {id, cri::CONTAINER_CREATED_EVENT},  {id, cri::CONTAINER_STARTED_EVENT},
      {id, cri::CONTAINER_STOPPED_EVENT},  {id, cri::CONTAINER_DELETED_EVENT},
      {pod, cri::CONTAINER_STOPPED_EVENT}, {pod, cri::CONTAINER_DELETED_EVENT}};
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (events.size() >= want.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ctx.TryCancel();
  collector.join();
  EXPECT_EQ(events, want);
  ASSERT_GE(pod_states.size(), 7u);
  EXPECT_EQ(pod_states[3], "SANDBOX_READY");     // the container started in a ready pod
  EXPECT_EQ(pod_states[6], "SANDBOX_NOTREADY");  // the pod stopped
}

// Stats: CPU time of a busy container grows, its working set counts memory it
// holds, the pod's network counters grow with traffic, the streaming list
// twin answers the same items, and the metrics use cAdvisor names.
TEST_F(ExecTest, StatsFollowCpuMemoryAndNetwork) {
  std::string busy = RunSleeper(Config("busy", "while :; do :; done"));
  // 50 MiB in tmpfs (/dev/shm): shmem is charged to the writer's cgroup and is
  // never "inactive_file", so it is in the working set.
  std::string holder = RunSleeper(Config("holder", "head -c 52428800 /dev/zero > /dev/shm/hold; exec sleep 1000"));
  auto stats = [&](const std::string& id) {
    cri::ContainerStatsRequest req;
    req.set_container_id(id);
    cri::ContainerStatsResponse resp;
    grpc::Status s = c().Runtime(&RStub::ContainerStats, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.stats();
  };
  auto first = stats(busy);
  EXPECT_EQ(first.attributes().id(), busy);
  EXPECT_EQ(first.attributes().metadata().name(), "busy");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // > stats_period (1 s)
  auto second = stats(busy);
  EXPECT_GT(second.cpu().usage_core_nano_seconds().value(), first.cpu().usage_core_nano_seconds().value());
  EXPECT_GT(second.cpu().timestamp(), first.cpu().timestamp());
  // A spinning shell uses about one core of two.
  EXPECT_GT(second.cpu().usage_nano_cores().value(), 300'000'000u) << second.DebugString();
  EXPECT_TRUE(second.has_writable_layer());
  EXPECT_GT(second.writable_layer().inodes_used().value(), 0u);

  cri::ContainerStats held;
  for (int i = 0; i < 50; ++i) {  // until the writer is done
    held = stats(holder);
    if (held.memory().working_set_bytes().value() >= (50u << 20)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_GE(held.memory().working_set_bytes().value(), 50u << 20) << held.DebugString();
  EXPECT_GE(held.memory().usage_bytes().value(), held.memory().working_set_bytes().value());

  cri::ListContainerStatsRequest lreq;
  lreq.mutable_filter()->set_pod_sandbox_id(pod_);
  cri::ListContainerStatsResponse list;
  ASSERT_TRUE(c().Runtime(&RStub::ListContainerStats, lreq, &list).ok());
  EXPECT_EQ(list.stats_size(), 2);
  grpc::ClientContext sctx;
  cri::StreamContainerStatsRequest sreq;
  sreq.mutable_filter()->set_pod_sandbox_id(pod_);
  auto reader = c().runtime()->StreamContainerStats(&sctx, sreq);
  cri::StreamContainerStatsResponse chunk;
  std::set<std::string> streamed;
  while (reader->Read(&chunk))
    for (const auto& st : chunk.container_stats()) streamed.insert(st.attributes().id());
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(streamed, (std::set<std::string>{busy, holder}));

  auto pod_stats = [&] {
    cri::PodSandboxStatsRequest req;
    req.set_pod_sandbox_id(pod_);
    cri::PodSandboxStatsResponse resp;
    grpc::Status s = c().Runtime(&RStub::PodSandboxStats, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.stats();
  };
  auto before = pod_stats();
  ASSERT_EQ(before.linux().network().default_interface().name(), "eth0") << before.DebugString();
  EXPECT_EQ(before.linux().containers_size(), 2);
  EXPECT_GE(before.linux().memory().working_set_bytes().value(), 50u << 20) << "the pod counts its containers";
  EXPECT_GE(before.linux().process().process_count().value(), 3u);  // pause + 2
  // Traffic from inside the pod: ping the pod's gateway (the bridge).
  std::string gw = Sh(holder, "ip route | awk '/default/ {print $3}'");
  gw.erase(gw.find_last_not_of("\n") + 1);
  ASSERT_FALSE(gw.empty());
  cri::ExecSyncResponse ping;
  ASSERT_TRUE(Exec(holder, {"ping", "-c", "3", "-i", "0.2", "-W", "1", gw}, &ping).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto after = pod_stats();
  EXPECT_GT(after.linux().network().default_interface().tx_bytes().value(),
            before.linux().network().default_interface().tx_bytes().value());
  EXPECT_GT(after.linux().network().default_interface().rx_bytes().value(),
            before.linux().network().default_interface().rx_bytes().value())
      << ping.stdout() << ping.stderr();

  cri::ListPodSandboxStatsResponse plist;
  ASSERT_TRUE(c().Runtime(&RStub::ListPodSandboxStats, cri::ListPodSandboxStatsRequest(), &plist).ok());
  EXPECT_EQ(plist.stats_size(), 1);

  cri::ListMetricDescriptorsResponse desc;
  ASSERT_TRUE(c().Runtime(&RStub::ListMetricDescriptors, cri::ListMetricDescriptorsRequest(), &desc).ok());
  std::set<std::string> names;
  for (const auto& d : desc.descriptors()) names.insert(d.name());
  EXPECT_TRUE(names.count("container_memory_working_set_bytes"));
  cri::ListPodSandboxMetricsResponse metrics;
  ASSERT_TRUE(c().Runtime(&RStub::ListPodSandboxMetrics, cri::ListPodSandboxMetricsRequest(), &metrics).ok());
  ASSERT_EQ(metrics.pod_metrics_size(), 1);
  EXPECT_EQ(metrics.pod_metrics(0).container_metrics_size(), 2);
  for (const auto& m : metrics.pod_metrics(0).metrics()) EXPECT_TRUE(names.count(m.name())) << m.name();

  cri::ImageFsInfoResponse fs;
  ASSERT_TRUE(c().Image(&IStub::ImageFsInfo, cri::ImageFsInfoRequest(), &fs).ok());
  ASSERT_EQ(fs.container_filesystems_size(), 1);
  EXPECT_GT(fs.container_filesystems(0).inodes_used().value(), 0u);
  EXPECT_TRUE(Stop(busy, 0).ok());
  EXPECT_TRUE(Stop(holder, 0).ok());
}

// An unknown id is NOT_FOUND; a missing one INVALID_ARGUMENT; checkpointing
// says why it is not there.
TEST_F(ExecTest, StatsOfUnknownObjectsAndCheckpoint) {
  cri::ContainerStatsRequest req;
  cri::ContainerStatsResponse resp;
  EXPECT_EQ(c().Runtime(&RStub::ContainerStats, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_container_id("0123456789abcdef");
  EXPECT_EQ(c().Runtime(&RStub::ContainerStats, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  cri::PodSandboxStatsRequest preq;
  preq.set_pod_sandbox_id("0123456789abcdef");
  cri::PodSandboxStatsResponse presp;
  EXPECT_EQ(c().Runtime(&RStub::PodSandboxStats, preq, &presp).error_code(), grpc::StatusCode::NOT_FOUND);
  cri::CheckpointContainerRequest creq;
  creq.set_container_id("x");
  cri::CheckpointContainerResponse cresp;
  grpc::Status s = c().Runtime(&RStub::CheckpointContainer, creq, &cresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("CRIU"));
}

// A container sharing the pod's PID namespace: its background children do
// not die with its process, so stopping it kills what is left in its cgroup
// (the critest HostPID/PodPID specs leaked nginx workers before).
TEST_F(ExecTest, StoppingAContainerInASharedPidNamespaceLeavesNoChildren) {
  EnsurePod(cri::POD);
  auto cfg = Config("parent", "sleep 4711 & exec sleep 1000");
  cfg.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::POD);
  std::string id = RunSleeper(cfg);
  auto count = [] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      auto cmd = ReadFile(e.path().string() + "/cmdline");
      if (cmd.ok() && *cmd == std::string("sleep\0" "4711\0", 11)) ++n;
    }
    return n;
  };
  for (int i = 0; i < 50 && count() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(count(), 1) << "the background child runs";
  ASSERT_TRUE(Stop(id, 0).ok());
  EXPECT_EQ(count(), 0) << "the background child was killed with its container";
  EXPECT_TRUE(Remove(id).ok());
}

// The streaming list RPCs answer what their unary twins answer.
TEST_F(ExecTest, StreamingListsMatchTheirUnaryTwins) {
  std::string id = RunSleeper();
  {
    grpc::ClientContext ctx;
    cri::StreamPodSandboxesRequest req;
    auto r = c().runtime()->StreamPodSandboxes(&ctx, req);
    cri::StreamPodSandboxesResponse chunk;
    std::set<std::string> got;
    while (r->Read(&chunk))
      for (const auto& p : chunk.pod_sandboxes()) got.insert(p.id());
    EXPECT_TRUE(r->Finish().ok());
    EXPECT_EQ(got, std::set<std::string>{pod_});
  }
  {
    grpc::ClientContext ctx;
    cri::StreamContainersRequest req;
    req.mutable_filter()->set_pod_sandbox_id(pod_);
    auto r = c().runtime()->StreamContainers(&ctx, req);
    cri::StreamContainersResponse chunk;
    std::set<std::string> got;
    while (r->Read(&chunk))
      for (const auto& ct : chunk.containers()) got.insert(ct.id());
    EXPECT_TRUE(r->Finish().ok());
    EXPECT_EQ(got, std::set<std::string>{id});
  }
  {
    cri::ListImagesResponse list;
    ASSERT_TRUE(c().Image(&IStub::ListImages, cri::ListImagesRequest(), &list).ok());
    std::set<std::string> want;
    for (const auto& img : list.images()) want.insert(img.id());
    grpc::ClientContext ctx;
    cri::StreamImagesRequest req;
    auto r = c().image()->StreamImages(&ctx, req);
    cri::StreamImagesResponse chunk;
    std::set<std::string> got;
    while (r->Read(&chunk))
      for (const auto& img : chunk.images()) got.insert(img.id());
    EXPECT_TRUE(r->Finish().ok());
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(got, want);
  }
  EXPECT_TRUE(Stop(id, 0).ok());
}

}  // namespace
}  // namespace crisp::e2e
