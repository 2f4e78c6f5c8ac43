// Pod sandboxes end to end: a real crispd over its socket, real CNI plugins,
// real namespaces. Every test runs inside the harness's leak check.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "test/e2e/harness.h"

namespace crisp::e2e {
namespace {

using Stub = cri::RuntimeService::Stub;

class SandboxTest : public E2eTest {
 protected:
  CriClient& c() { return daemon_->client(); }

  std::string Run(const cri::PodSandboxConfig& cfg) {
    std::string id;
    grpc::Status s = c().RunPodSandbox(cfg, &id);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->LogTail();
    return id;
  }
  void StopAndRemove(const std::string& id) {
    EXPECT_TRUE(c().StopPodSandbox(id).ok());
    EXPECT_TRUE(c().RemovePodSandbox(id).ok());
  }
  cri::PodSandboxStatus Status(const std::string& id) {
    cri::PodSandboxStatusResponse resp;
    EXPECT_TRUE(c().PodSandboxStatus(id, &resp).ok());
    return resp.status();
  }
};

bool InPodSubnet(const std::string& ip) { return absl::StartsWith(ip, "10.88."); }

// Listens on 0.0.0.0:port inside `netns`, answers one connection with "pong:"
// + what it read. Returns once listening.
std::thread ServeOnce(const std::string& netns, int port, std::atomic<bool>* ready) {
  return std::thread([netns, port, ready] {
    int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) { ready->store(true); return; }
    ::close(fd);
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(l, 1);
    ready->store(true);
    timeval tv = {10, 0};
    ::setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int s = ::accept(l, nullptr, nullptr);
    if (s >= 0) {
      char buf[64] = {};
      ssize_t n = ::read(s, buf, sizeof buf);
      std::string reply = "pong:" + std::string(buf, n > 0 ? n : 0);
      (void)!::write(s, reply.data(), reply.size());
      ::close(s);
    }
    ::close(l);
  });
}

// Connects to ip:port (from the calling thread's netns), sends "ping", returns the reply.
std::string Ping(const std::string& ip, int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  timeval tv = {5, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string out;
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    (void)!::write(s, "ping", 4);
    char buf[64];
    ssize_t n = ::read(s, buf, sizeof buf);
    if (n > 0) out.assign(buf, n);
  } else {
    out = absl::StrCat("connect failed: ", strerror(errno));
  }
  ::close(s);
  return out;
}

std::string Inode(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? absl::StrCat(st.st_dev, ":", st.st_ino) : "none";
}

TEST_F(SandboxTest, VersionAndStatus) {
  cri::VersionResponse v;
  ASSERT_TRUE(c().Runtime(&Stub::Version, cri::VersionRequest(), &v).ok());
  EXPECT_EQ(v.runtime_name(), "crisp");
  EXPECT_EQ(v.runtime_api_version(), "v1");
  EXPECT_FALSE(v.runtime_version().empty());

  cri::StatusRequest req;
  req.set_verbose(true);
  cri::StatusResponse st;
  ASSERT_TRUE(c().Runtime(&Stub::Status, req, &st).ok());
  std::map<std::string, cri::RuntimeCondition> conds;
  for (const auto& cnd : st.status().conditions()) conds[cnd.type()] = cnd;
  EXPECT_TRUE(conds["RuntimeReady"].status());
  EXPECT_TRUE(conds["NetworkReady"].status()) << conds["NetworkReady"].message();
  EXPECT_NE(st.info().at("config").find(daemon_->conf_dir()), std::string::npos) << "verbose info is the config";

  cri::RuntimeConfigResponse rc;
  ASSERT_TRUE(c().Runtime(&Stub::RuntimeConfig, cri::RuntimeConfigRequest(), &rc).ok());
  EXPECT_EQ(rc.linux().cgroup_driver(), cri::CGROUPFS);
}

TEST_F(SandboxTest, NetworkNotReadyWithoutConfigAndReloadsWhenItAppears) {
  std::string conf = daemon_->conf_dir() + "/10-e2e.conflist";
  std::string aside = daemon_->dir() + "/conflist.aside";
  ASSERT_EQ(::rename(conf.c_str(), aside.c_str()), 0);
  cri::StatusResponse st;
  ASSERT_TRUE(c().Runtime(&Stub::Status, cri::StatusRequest(), &st).ok());
  bool seen = false;
  for (const auto& cnd : st.status().conditions()) {
    if (cnd.type() != "NetworkReady") continue;
    seen = true;
    EXPECT_FALSE(cnd.status());
    EXPECT_EQ(cnd.reason(), "NetworkPluginNotReady");
    EXPECT_FALSE(cnd.message().empty());
  }
  EXPECT_TRUE(seen);
  // A pod cannot get a network now, and nothing is left behind.
  std::string id;
  EXPECT_FALSE(c().RunPodSandbox(PodConfig("nonet"), &id).ok());
  ASSERT_EQ(::rename(aside.c_str(), conf.c_str()), 0);
  ASSERT_TRUE(c().Runtime(&Stub::Status, cri::StatusRequest(), &st).ok());
  for (const auto& cnd : st.status().conditions()) {
    if (cnd.type() == "NetworkReady") {
      EXPECT_TRUE(cnd.status()) << cnd.message();
    }
  }
}

TEST_F(SandboxTest, PodIsReadyWithAnIpReachableFromTheHost) {
  std::string id = Run(PodConfig("reach"));
  auto st = Status(id);
  EXPECT_EQ(st.state(), cri::SANDBOX_READY);
  EXPECT_EQ(st.id(), id);
  EXPECT_EQ(st.metadata().name(), "reach");
  EXPECT_GT(st.created_at(), 0);
  ASSERT_TRUE(InPodSubnet(st.network().ip())) << st.network().ip();
  auto info = SandboxInfo(c(), id);
  ASSERT_TRUE(info.is_object());
  std::string netns = info["netns_path"];
  EXPECT_EQ(netns, daemon_->state() + "/ns/" + id + "/net");
  std::atomic<bool> ready{false};
  std::thread server = ServeOnce(netns, 8080, &ready);
  while (!ready) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(Ping(st.network().ip(), 8080), "pong:ping");
  server.join();
  // lo is up inside.
  InNamespace(netns, CLONE_NEWNET, [] {
    auto flags = ReadFile("/sys/class/net/lo/flags");
    ASSERT_TRUE(flags.ok());
    EXPECT_TRUE(std::stoul(*flags, nullptr, 16) & 0x1) << "IFF_UP on lo";
  });
  StopAndRemove(id);
}

TEST_F(SandboxTest, TwoPodsReachEachOther) {
  std::string a = Run(PodConfig("pod-a")), b = Run(PodConfig("pod-b"));
  auto ia = SandboxInfo(c(), a), ib = SandboxInfo(c(), b);
  std::string ip_b = Status(b).network().ip();
  ASSERT_NE(Status(a).network().ip(), ip_b);
  std::atomic<bool> ready{false};
  std::thread server = ServeOnce(ib["netns_path"], 9090, &ready);
  while (!ready) absl::SleepFor(absl::Milliseconds(5));
  std::string reply;
  InNamespace(ia["netns_path"], CLONE_NEWNET, [&] { reply = Ping(ip_b, 9090); });
  EXPECT_EQ(reply, "pong:ping");
  server.join();
  StopAndRemove(a);
  StopAndRemove(b);
}

TEST_F(SandboxTest, HostNetworkPodSharesTheHostNetns) {
  auto cfg = PodConfig("hostnet");
  cfg.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(cri::NODE);
  std::string id = Run(cfg);
  auto st = Status(id);
  EXPECT_EQ(st.state(), cri::SANDBOX_READY);
  EXPECT_TRUE(st.network().ip().empty());
  EXPECT_EQ(st.linux().namespaces().options().network(), cri::NODE);
  auto info = SandboxInfo(c(), id);
  EXPECT_EQ(info["netns_path"], "");
  int pid = info["pid"];
  EXPECT_EQ(Inode(absl::StrCat("/proc/", pid, "/ns/net")), Inode("/proc/self/ns/net"));
  EXPECT_EQ(Inode(absl::StrCat("/proc/", pid, "/ns/uts")), Inode("/proc/self/ns/uts"));
  EXPECT_NE(Inode(absl::StrCat("/proc/", pid, "/ns/ipc")), Inode("/proc/self/ns/ipc"));
  StopAndRemove(id);
}

TEST_F(SandboxTest, HostnameAndResolvConfAreWhatWasAsked) {
  auto cfg = PodConfig("dns");
  cfg.set_hostname("e2e-host");
  auto* dns = cfg.mutable_dns_config();
  dns->add_servers("10.96.0.10");
  dns->add_searches("e2e.svc.cluster.local");
  dns->add_searches("cluster.local");
  dns->add_options("ndots:5");
  std::string id = Run(cfg);
  auto info = SandboxInfo(c(), id);
  std::string host;
  InNamespace(info["ns_paths"]["uts"], CLONE_NEWUTS, [&] {
    char b[256] = {};
    ::gethostname(b, sizeof b - 1);
    host = b;
  });
  EXPECT_EQ(host, "e2e-host");
  EXPECT_EQ(ReadFile(info["resolv_conf_path"]).value_or(""),
            "search e2e.svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n");
  EXPECT_EQ(ReadFile(info["hostname_path"]).value_or(""), "e2e-host\n");
  EXPECT_NE(ReadFile(info["hosts_path"]).value_or("").find("localhost"), std::string::npos);
  StopAndRemove(id);
}

TEST_F(SandboxTest, NamespacedSysctlsApplyInside) {
  auto cfg = PodConfig("sysctl");
  (*cfg.mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "1000";
  (*cfg.mutable_linux()->mutable_sysctls())["kernel.shm_rmid_forced"] = "1";
  std::string id = Run(cfg);
  auto info = SandboxInfo(c(), id);
  std::string port, rmid;
  InNamespace(info["ns_paths"]["net"], CLONE_NEWNET,
              [&] { port = ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").value_or(""); });
  InNamespace(info["ns_paths"]["ipc"], CLONE_NEWIPC,
              [&] { rmid = ReadFile("/proc/sys/kernel/shm_rmid_forced").value_or(""); });
  EXPECT_EQ(port, "1000\n");
  EXPECT_EQ(rmid, "1\n");
  StopAndRemove(id);
}

TEST_F(SandboxTest, UnsafeSysctlIsInvalidArgumentAndLeavesNothing) {
  for (const char* bad : {"vm.swappiness", "kernel.hostname"}) {
    auto cfg = PodConfig("badsysctl");
    (*cfg.mutable_linux()->mutable_sysctls())[bad] = "10";
    std::string id;
    grpc::Status s = c().RunPodSandbox(cfg, &id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find(bad), std::string::npos) << s.error_message();
  }
  // The name was released: the same pod with valid sysctls runs.
  std::string id = Run(PodConfig("badsysctl"));
  StopAndRemove(id);
}

TEST_F(SandboxTest, ListFilters) {
  auto ca = PodConfig("list-a");
  (*ca.mutable_labels())["app"] = "web";
  (*ca.mutable_labels())["tier"] = "front";
  auto cb = PodConfig("list-b");
  (*cb.mutable_labels())["app"] = "db";
  std::string a = Run(ca), b = Run(cb);
  ASSERT_TRUE(c().StopPodSandbox(b).ok());

  auto list = [&](cri::PodSandboxFilter f) {
    cri::ListPodSandboxResponse r;
    EXPECT_TRUE(c().ListPodSandbox(f, &r).ok());
    std::set<std::string> ids;
    for (const auto& it : r.items()) ids.insert(it.id());
    return ids;
  };
  EXPECT_EQ(list({}), (std::set<std::string>{a, b}));
  cri::PodSandboxFilter f;
  f.set_id(a);
  EXPECT_EQ(list(f), (std::set<std::string>{a}));
  f.set_id(a.substr(0, 12));
  EXPECT_EQ(list(f), (std::set<std::string>{a})) << "unique id prefix";
  f.set_id("ffffffffnotanid");
  EXPECT_TRUE(list(f).empty());
  cri::PodSandboxFilter fs;
  fs.mutable_state()->set_state(cri::SANDBOX_READY);
  EXPECT_EQ(list(fs), (std::set<std::string>{a}));
  fs.mutable_state()->set_state(cri::SANDBOX_NOTREADY);
  EXPECT_EQ(list(fs), (std::set<std::string>{b}));
  cri::PodSandboxFilter fl;
  (*fl.mutable_label_selector())["app"] = "web";
  EXPECT_EQ(list(fl), (std::set<std::string>{a}));
  (*fl.mutable_label_selector())["tier"] = "back";
  EXPECT_TRUE(list(fl).empty());

  cri::PodSandboxStatusResponse resp;
  ASSERT_TRUE(c().PodSandboxStatus(a.substr(0, 12), &resp).ok()) << "status by id prefix";
  EXPECT_EQ(resp.status().id(), a);
  EXPECT_EQ(resp.status().labels().at("tier"), "front");
  StopAndRemove(a);
  StopAndRemove(b);
}

TEST_F(SandboxTest, StopReleasesTheIpAndRemoveLeavesNothing) {
  std::string id = Run(PodConfig("lifecycle"));
  std::string ip = Status(id).network().ip();
  ASSERT_TRUE(PathExists(daemon_->ipam_dir() + "/" + ip)) << "host-local holds the IP while the pod runs";
  auto info = SandboxInfo(c(), id);
  int pid = info["pid"];
  ASSERT_TRUE(c().StopPodSandbox(id).ok());
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip)) << "CNI DEL released the IP";
  EXPECT_EQ(Status(id).state(), cri::SANDBOX_NOTREADY);
  EXPECT_FALSE(PathExists(absl::StrCat("/proc/", pid, "/ns"))) << "pause process is gone";
  EXPECT_FALSE(PathExists(info["netns_path"].get<std::string>()));
  EXPECT_TRUE(c().StopPodSandbox(id).ok()) << "stop is idempotent";
  ASSERT_TRUE(c().RemovePodSandbox(id).ok());
  EXPECT_FALSE(PathExists(daemon_->root() + "/sandboxes/" + id));
  EXPECT_FALSE(PathExists(daemon_->state() + "/sandboxes/" + id));
  cri::PodSandboxStatusResponse resp;
  EXPECT_EQ(c().PodSandboxStatus(id, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(c().RemovePodSandbox(id).ok()) << "remove is idempotent";
}

TEST_F(SandboxTest, RemoveOfARunningSandboxStopsItFirst) {
  std::string id = Run(PodConfig("rm-running"));
  std::string ip = Status(id).network().ip();
  ASSERT_TRUE(c().RemovePodSandbox(id).ok());
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip));
}

TEST_F(SandboxTest, UnknownIds) {
  EXPECT_TRUE(c().StopPodSandbox("0123456789abcdef").ok());
  EXPECT_TRUE(c().RemovePodSandbox("0123456789abcdef").ok());
  cri::PodSandboxStatusResponse resp;
  EXPECT_EQ(c().PodSandboxStatus("0123456789abcdef", &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SandboxTest, BadInput) {
  cri::RunPodSandboxRequest req;
  cri::RunPodSandboxResponse resp;
  EXPECT_EQ(c().Runtime(&Stub::RunPodSandbox, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.mutable_config()->set_hostname("no-metadata");
  EXPECT_EQ(c().Runtime(&Stub::RunPodSandbox, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::string id = Run(PodConfig("dup"));
  std::string id2;
  grpc::Status s = c().RunPodSandbox(PodConfig("dup"), &id2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(s.error_message().find(id), std::string::npos) << "names the holder: " << s.error_message();
  auto cfg = PodConfig("dup");
  cfg.mutable_metadata()->set_attempt(1);
  std::string id3 = Run(cfg);  // the next attempt is another name
  StopAndRemove(id);
  StopAndRemove(id3);
}

TEST_F(SandboxTest, SurvivesCrispdRestart) {
  std::string id = Run(PodConfig("restart"));
  std::string ip = Status(id).network().ip();
  std::string dead = Run(PodConfig("restart-dead"));
  int dead_pid = SandboxInfo(c(), dead)["pid"];
  ASSERT_TRUE(daemon_->Kill().ok());
  ::kill(dead_pid, SIGKILL);  // dies while crispd is down
  ASSERT_TRUE(daemon_->Launch().ok());
  auto st = Status(id);
  EXPECT_EQ(st.state(), cri::SANDBOX_READY);
  EXPECT_EQ(st.network().ip(), ip);
  EXPECT_EQ(Status(dead).state(), cri::SANDBOX_NOTREADY);
  std::string again;
  EXPECT_EQ(c().RunPodSandbox(PodConfig("restart"), &again).error_code(), grpc::StatusCode::ALREADY_EXISTS)
      << "names are recovered too";
  StopAndRemove(id);
  StopAndRemove(dead);
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip));
}

TEST_F(SandboxTest, KilledPauseProcessMeansNotReady) {
  std::string id = Run(PodConfig("killed"));
  int pid = SandboxInfo(c(), id)["pid"];
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  cri::PodSandboxState state = cri::SANDBOX_READY;
  for (int i = 0; i < 100 && state == cri::SANDBOX_READY; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    state = Status(id).state();
  }
  EXPECT_EQ(state, cri::SANDBOX_NOTREADY);
  StopAndRemove(id);
}

TEST_F(SandboxTest, ListAndStatusAnswerWhilePodsAreBeingCreated) {
  std::string probe = Run(PodConfig("probe"));
  std::vector<std::future<std::string>> runs;
  for (int i = 0; i < 10; ++i)
    runs.push_back(std::async(std::launch::async, [this, i] { return Run(PodConfig(absl::StrCat("burst-", i))); }));
  absl::Duration worst;
  int calls = 0;
  while (std::any_of(runs.begin(), runs.end(),
                     [](auto& f) { return f.wait_for(std::chrono::seconds(0)) != std::future_status::ready; })) {
    absl::Time t0 = absl::Now();
    cri::ListPodSandboxResponse l;
    ASSERT_TRUE(c().ListPodSandbox({}, &l).ok());
    cri::PodSandboxStatusResponse s;
    ASSERT_TRUE(c().PodSandboxStatus(probe, &s).ok());
    worst = std::max(worst, (absl::Now() - t0) / 2);
    ++calls;
  }
  EXPECT_GT(calls, 0);
  EXPECT_LT(worst, absl::Milliseconds(50)) << "worst List/Status latency during creates: " << worst;
  for (auto& f : runs) StopAndRemove(f.get());
  StopAndRemove(probe);
}

TEST_F(SandboxTest, UnimplementedRpcsSaySo) {
  cri::ListContainersResponse r;
  grpc::Status s = c().Runtime(&Stub::ListContainers, cri::ListContainersRequest(), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_NE(s.error_message().find("ListContainers"), std::string::npos);
}

// A daemon whose network's first plugin always fails.
class FailingCniTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    char t[] = "/tmp/crisp-e2e-bin.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    bin_ = t;
    ASSERT_TRUE(WriteFileAtomic(bin_ + "/failing",
                                "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n"
                                "echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"boom from fake\"}'\nexit 1\n",
                                0755)
                    .ok());
    DaemonOptions o;
    o.bin_dirs = {bin_, "/usr/lib/cni"};
    o.conflist_json = R"({"cniVersion":"1.0.0","name":"crisp-e2e","plugins":[{"type":"failing"}]})";
    auto d = Daemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    before_ = LeakSnapshot(*daemon_);
  }
  void TearDown() override {
    if (daemon_) {
      auto after = LeakSnapshot(*daemon_);
      EXPECT_EQ(after, before_) << "failed run left something behind";
    }
    daemon_.reset();
    if (!bin_.empty()) (void)RemoveAll(bin_);
  }
  std::unique_ptr<Daemon> daemon_;
  std::set<std::string> before_;
  std::string bin_;
};

TEST_F(FailingCniTest, ErrorNamesThePluginAndNothingIsLeft) {
  std::string id;
  grpc::Status s = daemon_->client().RunPodSandbox(PodConfig("cnifail"), &id);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error_message().find("\"failing\""), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("boom from fake"), std::string::npos) << s.error_message();
  cri::ListPodSandboxResponse l;
  ASSERT_TRUE(daemon_->client().ListPodSandbox({}, &l).ok());
  EXPECT_EQ(l.items_size(), 0);
  // The name is free again.
  EXPECT_NE(daemon_->client().RunPodSandbox(PodConfig("cnifail"), &id).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

}  // namespace
}  // namespace crisp::e2e
