// Pod sandboxes end to end: a real crispd over its socket, real CNI plugins,
// real namespaces. Every test runs inside the harness's leak check.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <iostream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
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
    EXPECT_TRUE(s.ok()) << "RunPodSandbox " << cfg.metadata().name() << ": " << s.error_message();
    return id;
  }
  void StopAndRemove(const std::string& id) {
    grpc::Status s = c().StopPodSandbox(id);
    EXPECT_TRUE(s.ok()) << "StopPodSandbox " << id << ": " << s.error_message();
    s = c().RemovePodSandbox(id);
    EXPECT_TRUE(s.ok()) << "RemovePodSandbox " << id << ": " << s.error_message();
  }
  cri::PodSandboxStatus Status(const std::string& id) {
    cri::PodSandboxStatusResponse resp;
    grpc::Status s = c().PodSandboxStatus(id, &resp);
    EXPECT_TRUE(s.ok()) << "PodSandboxStatus " << id << ": " << s.error_message();
    return resp.status();
  }
  // In the daemon's /16 (10.88.0.0/16 for CNI, 10.90.0.0/16 embedded).
  static bool InPodSubnet(const std::string& ip) {
    const std::string& subnet = daemon_->options().subnet;
    std::string prefix = subnet.substr(0, subnet.find('.', subnet.find('.') + 1) + 1);
    return !ip.empty() && absl::StartsWith(ip, prefix);
  }
};

// The pod network tests, once per backend: CNI plugins (bridge, host-local,
// portmap on crispe2e0; lo by crisp) and the embedded network (crispemb0).
class SandboxNetTest : public SandboxTest, public ::testing::WithParamInterface<std::string> {
 protected:
  // The daemon starts in SetUp, which knows the backend; each instantiation
  // is its own suite, so it starts once per backend and TearDownTestSuite
  // destroys it.
  static void SetUpTestSuite() {}
  void SetUp() override {
    if (::geteuid() == 0 && !daemon_)
      StartDaemon(GetParam() == "embedded" ? EmbeddedDaemonOptions() : DaemonOptions{});
    SandboxTest::SetUp();
  }
};
INSTANTIATE_TEST_SUITE_P(Cni, SandboxNetTest, ::testing::Values("cni"));
INSTANTIATE_TEST_SUITE_P(Embedded, SandboxNetTest, ::testing::Values("embedded"));

// A TCP server on 0.0.0.0:port inside a network namespace that answers one
// connection with "pong:" + what it read. The thread joins the namespace;
// the test's other threads stay in the host's.
class PodListener {
 public:
  // Returns once the socket listens (or why it could not).
  absl::Status Start(const std::string& netns, int port) {
    std::promise<std::string> ready;
    auto f = ready.get_future();
    thread_ = std::thread([netns, port, ready = std::move(ready)]() mutable {
      int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        ready.set_value(absl::StrCat("joining ", netns, ": ", strerror(errno)));
        if (fd >= 0) ::close(fd);
        return;
      }
      ::close(fd);
      int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a = {};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0) {
        ready.set_value(absl::StrCat("listening on port ", port, ": ", strerror(errno)));
        ::close(l);
        return;
      }
      ready.set_value("");
      timeval tv = {10, 0};
      ::setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      int s = ::accept(l, nullptr, nullptr);
      if (s >= 0) {
        ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[64] = {};
        ssize_t n = ::read(s, buf, sizeof buf);
        std::string reply = "pong:" + std::string(buf, n > 0 ? n : 0);
        (void)!::write(s, reply.data(), reply.size());
        ::close(s);
      }
      ::close(l);
    });
    std::string err = f.get();
    return err.empty() ? absl::OkStatus() : absl::InternalError(err);
  }
  ~PodListener() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

// Connects to ip:port (from the calling thread's netns), sends "ping", returns the reply.
// One TCP request/reply. The first pod on a bridge the CNI plugin has just
// created can take a moment to answer ARP (CI saw a fresh machine's first
// connect fail with EHOSTUNREACH after 3 s), so a failed connect is retried
// for up to 15 s; a wrong reply is not.
std::string PingOnce(const std::string& ip, int port, bool* connected) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  timeval tv = {5, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string out;
  *connected = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (*connected) {
    (void)!::write(s, "ping", 4);
    char buf[64];
    ssize_t n = ::read(s, buf, sizeof buf);
    if (n > 0) out.assign(buf, n);
  } else {
    out = absl::StrCat("connect to ", ip, ":", port, " failed: ", strerror(errno));
  }
  ::close(s);
  return out;
}

std::string Ping(const std::string& ip, int port) {
  absl::Time deadline = absl::Now() + absl::Seconds(15);
  for (;;) {
    bool connected = false;
    std::string out = PingOnce(ip, port, &connected);
    if (connected || absl::Now() > deadline) return out;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

std::string Inode(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? absl::StrCat(st.st_dev, ":", st.st_ino) : "none";
}

std::map<std::string, cri::RuntimeCondition> Conditions(CriClient& c) {
  cri::StatusResponse st;
  grpc::Status s = c.Status(&st);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::map<std::string, cri::RuntimeCondition> out;
  for (const auto& cnd : st.status().conditions()) out[cnd.type()] = cnd;
  return out;
}

// Polls the NetworkReady condition until it is `want` (crispd reloads the
// CNI config when the directory changes) or 5 s pass.
cri::RuntimeCondition WaitNetworkReady(CriClient& c, bool want) {
  cri::RuntimeCondition cnd;
  for (int i = 0; i < 100; ++i) {
    cnd = Conditions(c)["NetworkReady"];
    if (cnd.status() == want) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return cnd;
}

// The ports of a bridge (the host ends of pod veths).
std::vector<std::string> ListOrEmptyPorts(const std::string& bridge) {
  auto v = ListDir("/sys/class/net/" + bridge + "/brif").value_or(std::vector<std::string>{});
  if (v.empty()) v.push_back("(no port)");
  return v;
}

std::set<std::string> Lines(const std::string& text) {
  std::set<std::string> out;
  for (absl::string_view l : absl::StrSplit(text, '\n', absl::SkipEmpty())) out.insert(std::string(l));
  return out;
}

TEST_F(SandboxTest, VersionAndStatus) {
  cri::VersionResponse v;
  ASSERT_TRUE(c().Version(10, &v).ok());
  EXPECT_EQ(v.runtime_name(), "crisp");
  EXPECT_EQ(v.runtime_api_version(), "v1");
  EXPECT_FALSE(v.runtime_version().empty());

  cri::StatusResponse st;
  ASSERT_TRUE(c().Status(&st, /*verbose=*/true).ok());
  std::map<std::string, cri::RuntimeCondition> conds;
  for (const auto& cnd : st.status().conditions()) conds[cnd.type()] = cnd;
  ASSERT_TRUE(conds.count("RuntimeReady"));
  ASSERT_TRUE(conds.count("NetworkReady"));
  EXPECT_TRUE(conds["RuntimeReady"].status());
  EXPECT_TRUE(conds["NetworkReady"].status()) << conds["NetworkReady"].message();
  ASSERT_TRUE(st.info().count("config"));
  EXPECT_NE(st.info().at("config").find(daemon_->conf_dir()), std::string::npos)
      << "verbose info is the config";

  cri::RuntimeConfigResponse rc;
  ASSERT_TRUE(c().Runtime(&Stub::RuntimeConfig, cri::RuntimeConfigRequest(), &rc).ok());
  EXPECT_EQ(rc.linux().cgroup_driver(), cri::CGROUPFS);
}

TEST_F(SandboxTest, NetworkNotReadyWithoutConfigAndReloadsWhenItAppears) {
  std::string conf = daemon_->conflist_path();
  std::string aside = daemon_->dir() + "/conflist.aside";
  ASSERT_EQ(::rename(conf.c_str(), aside.c_str()), 0);
  cri::RuntimeCondition cnd = WaitNetworkReady(c(), false);
  EXPECT_FALSE(cnd.status());
  EXPECT_EQ(cnd.reason(), "NetworkPluginNotReady");
  EXPECT_FALSE(cnd.message().empty());
  EXPECT_TRUE(Conditions(c())["RuntimeReady"].status()) << "the runtime itself stays ready";
  // A pod cannot get a network now, and nothing is left behind (leak check).
  std::string id;
  grpc::Status s = c().RunPodSandbox(PodConfig("nonet"), &id);
  EXPECT_FALSE(s.ok());
  // A host-network pod needs no CNI.
  auto host = PodConfig("nonet-host");
  host.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(cri::NODE);
  std::string hid = Run(host);
  StopAndRemove(hid);

  ASSERT_EQ(::rename(aside.c_str(), conf.c_str()), 0);
  cnd = WaitNetworkReady(c(), true);
  EXPECT_TRUE(cnd.status()) << cnd.reason() << ": " << cnd.message();
  std::string id2 = Run(PodConfig("nonet"));  // the name was released by the failed run
  EXPECT_EQ(Status(id2).state(), cri::SANDBOX_READY);
  StopAndRemove(id2);
}

// A second crispd (`network: cni`) whose CNI conf dir is empty from the start.
class EmptyCniDirTest : public E2eTest {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.write_conflist = false;
    StartDaemon(o);
  }
};

// A crispd with `network: auto` (the default) and an empty CNI conf dir: the
// embedded network, until a CNI config appears.
class AutoNetworkTest : public SandboxTest {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o = EmbeddedDaemonOptions();
    o.network = "auto";
    StartDaemon(o);
  }
};

TEST_F(AutoNetworkTest, EmbeddedUntilACniConfigAppearsAndEachPodKeepsItsBackend) {
  cri::StatusResponse st;
  ASSERT_TRUE(c().Status(&st, /*verbose=*/true).ok());
  auto conds = Conditions(c());
  EXPECT_TRUE(conds["NetworkReady"].status()) << conds["NetworkReady"].message();
  auto net = nlohmann::json::parse(st.info().at("cni"), nullptr, false);
  EXPECT_EQ(net.value("mode", ""), "auto") << net.dump();
  EXPECT_EQ(net.value("backend", ""), "embedded") << net.dump();

  std::string a = Run(PodConfig("auto-embedded"));
  std::string ip_a = Status(a).network().ip();
  EXPECT_TRUE(absl::StartsWith(ip_a, "10.90.")) << ip_a;
  EXPECT_EQ(SandboxInfo(c(), a).value("network_kind", ""), "embedded");
  EXPECT_TRUE(PathExists(daemon_->root() + "/embedded-ipam/" + ip_a));

  // A CNI config appears: new pods get CNI, even across a restart.
  ASSERT_TRUE(WriteFileAtomic(daemon_->conflist_path(),
                              DefaultConflist(daemon_->dir() + "/ipam", "crispe2e0", "10.88.0.0/16"))
                  .ok());
  ASSERT_TRUE(daemon_->Restart().ok()) << daemon_->LogTail();
  std::string b = Run(PodConfig("auto-cni"));
  std::string ip_b = Status(b).network().ip();
  EXPECT_TRUE(absl::StartsWith(ip_b, "10.88.")) << ip_b;
  EXPECT_EQ(SandboxInfo(c(), b).value("network_kind", ""), "cni");
  ASSERT_TRUE(c().Status(&st, true).ok());
  EXPECT_EQ(nlohmann::json::parse(st.info().at("cni"), nullptr, false).value("backend", ""), "cni");

  // The embedded pod is torn down by the embedded network, the CNI one by CNI.
  std::string veth_a = "/sys/class/net/" + ListOrEmptyPorts("crispemb0").front();
  StopAndRemove(a);
  EXPECT_FALSE(PathExists(daemon_->root() + "/embedded-ipam/" + ip_a)) << "embedded IPAM released it";
  EXPECT_FALSE(PathExists(veth_a));
  StopAndRemove(b);
  EXPECT_FALSE(PathExists(daemon_->dir() + "/ipam/crisp-e2e/" + ip_b)) << "host-local released it";
  ASSERT_EQ(::unlink(daemon_->conflist_path().c_str()), 0);
  (void)RunCapture({"/sbin/ip", "link", "del", "crispe2e0"});
}

TEST_F(AutoNetworkTest, EmbeddedRejectsWhatItCannotDoAndLeavesNothing) {
  auto cfg = PodConfig("v6-hostport");
  auto* pm = cfg.add_port_mappings();
  pm->set_container_port(80);
  pm->set_host_port(18095);
  pm->set_host_ip("::1");
  std::string id;
  grpc::Status s = c().RunPodSandbox(cfg, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("IPv4 only"), std::string::npos) << s.error_message();
  cri::ListPodSandboxResponse l;
  ASSERT_TRUE(c().ListPodSandbox({}, &l).ok());
  EXPECT_EQ(l.items_size(), 0);
}

TEST_F(EmptyCniDirTest, NetworkNotReady) {
  auto conds = Conditions(daemon_->client());
  EXPECT_TRUE(conds["RuntimeReady"].status());
  EXPECT_FALSE(conds["NetworkReady"].status());
  EXPECT_EQ(conds["NetworkReady"].reason(), "NetworkPluginNotReady");
  EXPECT_FALSE(conds["NetworkReady"].message().empty());
}

TEST_P(SandboxNetTest, PodIsReadyWithAnIpReachableFromTheHost) {
  std::string id = Run(PodConfig("reach"));
  ASSERT_FALSE(id.empty());
  auto st = Status(id);
  EXPECT_EQ(st.state(), cri::SANDBOX_READY);
  EXPECT_EQ(st.id(), id);
  EXPECT_EQ(st.metadata().name(), "reach");
  EXPECT_EQ(st.metadata().namespace_(), "e2e");
  EXPECT_GT(st.created_at(), 0);
  ASSERT_TRUE(InPodSubnet(st.network().ip())) << st.network().ip();
  EXPECT_TRUE(PathExists(daemon_->ipam_dir() + "/" + st.network().ip()))
      << "host-local (or its like) allocated it";

  auto info = SandboxInfo(c(), id);
  ASSERT_TRUE(info.is_object());
  for (const char* key : {"pid", "netns_path", "ns_paths", "hostname_path", "hosts_path", "resolv_conf_path",
                          "shm_path", "cgroup_path", "cni_result"})
    EXPECT_TRUE(info.contains(key)) << key << " missing in " << info.dump();
  EXPECT_EQ(info.value("network_kind", ""), GetParam()) << "the backend is recorded with the pod";
  std::string netns = info.value("netns_path", "");
  EXPECT_EQ(netns, daemon_->state() + "/ns/" + id + "/net");
  EXPECT_EQ(info["ns_paths"].value("net", ""), netns);
  int pid = info.value("pid", 0);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(ReadFile(absl::StrCat("/proc/", pid, "/comm")).value_or(""), "crisp-pause\n");
  // The pins are the pause process's namespaces.
  for (const auto& [type, path] : info["ns_paths"].items())
    EXPECT_EQ(Inode(path.get<std::string>()), Inode(absl::StrCat("/proc/", pid, "/ns/", type))) << type;
  // The pause process is in the pod cgroup <cgroup_parent>/<id>.
  EXPECT_NE(info.value("cgroup_path", "").find(daemon_->cgroup_parent() + "/" + id), std::string::npos)
      << info.dump();
  EXPECT_NE(
      ReadFile(absl::StrCat("/proc/", pid, "/cgroup")).value_or("").find(daemon_->cgroup_parent() + "/" + id),
      std::string::npos);
  // /dev/shm for the pod: a 64 MiB tmpfs.
  struct statfs sf;
  ASSERT_EQ(::statfs(info.value("shm_path", "").c_str(), &sf), 0) << info.dump();
  EXPECT_EQ(sf.f_type, TMPFS_MAGIC);
  EXPECT_EQ(static_cast<uint64_t>(sf.f_blocks) * sf.f_bsize, 64ull << 20);

  PodListener server;
  ASSERT_TRUE(server.Start(netns, 8080).ok());
  EXPECT_EQ(Ping(st.network().ip(), 8080), "pong:ping");
  // lo is up inside.
  InNamespace(netns, CLONE_NEWNET, [] {
    auto flags = ReadFile("/sys/class/net/lo/flags");
    ASSERT_TRUE(flags.ok());
    EXPECT_TRUE(std::stoul(*flags, nullptr, 16) & 0x1) << "IFF_UP on lo";
  });
  StopAndRemove(id);
}

TEST_P(SandboxNetTest, TwoPodsReachEachOther) {
  std::string a = Run(PodConfig("pod-a")), b = Run(PodConfig("pod-b"));
  auto ia = SandboxInfo(c(), a), ib = SandboxInfo(c(), b);
  std::string ip_a = Status(a).network().ip(), ip_b = Status(b).network().ip();
  ASSERT_TRUE(InPodSubnet(ip_a) && InPodSubnet(ip_b)) << ip_a << " " << ip_b;
  ASSERT_NE(ip_a, ip_b);
  PodListener server;
  ASSERT_TRUE(server.Start(ib.value("netns_path", ""), 9090).ok());
  std::string reply;
  InNamespace(ia.value("netns_path", ""), CLONE_NEWNET, [&] { reply = Ping(ip_b, 9090); });
  EXPECT_EQ(reply, "pong:ping");
  StopAndRemove(a);
  StopAndRemove(b);
}

TEST_F(SandboxTest, HostNetworkPodSharesTheHostNetns) {
  auto cfg = PodConfig("hostnet");
  cfg.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(cri::NODE);
  std::string id = Run(cfg);
  auto st = Status(id);
  EXPECT_EQ(st.state(), cri::SANDBOX_READY);
  EXPECT_TRUE(st.network().ip().empty()) << st.network().ip();
  EXPECT_EQ(st.linux().namespaces().options().network(), cri::NODE);
  auto info = SandboxInfo(c(), id);
  EXPECT_EQ(info.value("netns_path", "?"), "");
  EXPECT_FALSE(info["ns_paths"].contains("net")) << info.dump();
  int pid = info.value("pid", 0);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(Inode(absl::StrCat("/proc/", pid, "/ns/net")), Inode("/proc/self/ns/net"));
  // As in Kubernetes, a host-network pod also has the node's UTS namespace,
  // but its own IPC namespace unless it asks for the host's.
  EXPECT_EQ(Inode(absl::StrCat("/proc/", pid, "/ns/uts")), Inode("/proc/self/ns/uts"));
  EXPECT_NE(Inode(absl::StrCat("/proc/", pid, "/ns/ipc")), Inode("/proc/self/ns/ipc"));
  StopAndRemove(id);
}

TEST_F(SandboxTest, HostnameAndResolvConfAreWhatWasAsked) {
  auto cfg = PodConfig("dns");
  cfg.set_hostname("e2e-host");
  auto* dns = cfg.mutable_dns_config();
  dns->add_servers("10.96.0.10");
  dns->add_servers("10.96.0.11");
  dns->add_searches("e2e.svc.cluster.local");
  dns->add_searches("cluster.local");
  dns->add_options("ndots:5");
  dns->add_options("edns0");
  std::string id = Run(cfg);
  auto info = SandboxInfo(c(), id);
  std::string host;
  InNamespace(info["ns_paths"].value("uts", ""), CLONE_NEWUTS, [&] {
    char b[256] = {};
    ::gethostname(b, sizeof b - 1);
    host = b;
  });
  EXPECT_EQ(host, "e2e-host");
  std::string resolv = ReadFile(info.value("resolv_conf_path", "")).value_or("");
  EXPECT_EQ(Lines(resolv),
            (std::set<std::string>{"search e2e.svc.cluster.local cluster.local", "nameserver 10.96.0.10",
                                   "nameserver 10.96.0.11", "options ndots:5 edns0"}))
      << resolv;
  EXPECT_LT(resolv.find("10.96.0.10"), resolv.find("10.96.0.11")) << "server order kept";
  EXPECT_EQ(ReadFile(info.value("hostname_path", "")).value_or(""), "e2e-host\n");
  std::string hosts = ReadFile(info.value("hosts_path", "")).value_or("");
  EXPECT_NE(hosts.find("localhost"), std::string::npos) << hosts;
  StopAndRemove(id);
}

TEST_F(SandboxTest, WithoutDnsConfigResolvConfIsTheHosts) {
  std::string id = Run(PodConfig("nodns"));
  auto info = SandboxInfo(c(), id);
  EXPECT_EQ(ReadFile(info.value("resolv_conf_path", "")).value_or("?"),
            ReadFile("/etc/resolv.conf").value_or(""));
  StopAndRemove(id);
}

TEST_F(SandboxTest, NamespacedSysctlsApplyInside) {
  auto cfg = PodConfig("sysctl");
  // Not the defaults (1024 and 0), so that seeing them proves they were written.
  (*cfg.mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "1000";
  (*cfg.mutable_linux()->mutable_sysctls())["kernel.shm_rmid_forced"] = "1";
  std::string id = Run(cfg);
  auto info = SandboxInfo(c(), id);
  std::string port, rmid;
  InNamespace(info["ns_paths"].value("net", ""), CLONE_NEWNET,
              [&] { port = ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").value_or(""); });
  InNamespace(info["ns_paths"].value("ipc", ""), CLONE_NEWIPC,
              [&] { rmid = ReadFile("/proc/sys/kernel/shm_rmid_forced").value_or(""); });
  EXPECT_EQ(port, "1000\n");
  EXPECT_EQ(rmid, "1\n");
  // ... and not on the host.
  EXPECT_NE(ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").value_or(""), "1000\n");
  StopAndRemove(id);
}

TEST_F(SandboxTest, UnsafeSysctlIsInvalidArgumentAndLeavesNothing) {
  struct Case {
    std::string key;
    cri::NamespaceMode net = cri::POD, ipc = cri::POD;
  };
  for (const Case& k :
       {Case{"vm.swappiness"}, Case{"kernel.hostname"}, Case{"net.ipv4.ip_forward", cri::NODE},
        Case{"kernel.shm_rmid_forced", cri::POD, cri::NODE}}) {
    auto cfg = PodConfig("badsysctl");
    (*cfg.mutable_linux()->mutable_sysctls())[k.key] = "1";
    auto* ns = cfg.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(k.net);
    ns->set_ipc(k.ipc);
    std::string id;
    grpc::Status s = c().RunPodSandbox(cfg, &id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << k.key << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(k.key), std::string::npos) << s.error_message();
  }
  cri::ListPodSandboxResponse l;
  ASSERT_TRUE(c().ListPodSandbox({}, &l).ok());
  EXPECT_EQ(l.items_size(), 0);
  // The name was released: the same pod without the bad sysctl runs.
  std::string id = Run(PodConfig("badsysctl"));
  StopAndRemove(id);
}

TEST_F(SandboxTest, ListFilters) {
  auto ca = PodConfig("list-a");
  (*ca.mutable_labels())["app"] = "web";
  (*ca.mutable_labels())["tier"] = "front";
  (*ca.mutable_annotations())["note"] = "a";
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
  {
    cri::ListPodSandboxResponse r;
    cri::PodSandboxFilter f;
    f.set_id(a);
    ASSERT_TRUE(c().ListPodSandbox(f, &r).ok());
    ASSERT_EQ(r.items_size(), 1);
    EXPECT_EQ(r.items(0).metadata().name(), "list-a");
    EXPECT_EQ(r.items(0).state(), cri::SANDBOX_READY);
    EXPECT_EQ(r.items(0).labels().at("app"), "web");
    EXPECT_EQ(r.items(0).annotations().at("note"), "a");
    EXPECT_GT(r.items(0).created_at(), 0);
  }
  cri::PodSandboxFilter f;
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
  cri::PodSandboxFilter fall;  // every criterion must hold
  fall.set_id(b);
  fall.mutable_state()->set_state(cri::SANDBOX_READY);
  EXPECT_TRUE(list(fall).empty());

  cri::PodSandboxStatusResponse resp;
  ASSERT_TRUE(c().PodSandboxStatus(a.substr(0, 12), &resp).ok()) << "status by id prefix";
  EXPECT_EQ(resp.status().id(), a);
  EXPECT_EQ(resp.status().labels().at("tier"), "front");
  StopAndRemove(a);
  StopAndRemove(b);
}

TEST_P(SandboxNetTest, StopReleasesTheIpAndRemoveLeavesNothing) {
  std::string id = Run(PodConfig("lifecycle"));
  std::string ip = Status(id).network().ip();
  ASSERT_TRUE(PathExists(daemon_->ipam_dir() + "/" + ip)) << "host-local holds the IP while the pod runs";
  auto info = SandboxInfo(c(), id);
  int pid = info.value("pid", 0);
  ASSERT_TRUE(c().StopPodSandbox(id).ok());
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip)) << "CNI DEL released the IP";
  EXPECT_EQ(Status(id).state(), cri::SANDBOX_NOTREADY);
  EXPECT_FALSE(PathExists(absl::StrCat("/proc/", pid, "/ns"))) << "pause process is gone";
  EXPECT_FALSE(PathExists(info.value("netns_path", ""))) << "netns unpinned";
  EXPECT_TRUE(c().StopPodSandbox(id).ok()) << "stop is idempotent";
  EXPECT_EQ(Status(id).state(), cri::SANDBOX_NOTREADY);
  ASSERT_TRUE(c().RemovePodSandbox(id).ok());
  EXPECT_FALSE(PathExists(daemon_->root() + "/sandboxes/" + id));
  EXPECT_FALSE(PathExists(daemon_->state() + "/sandboxes/" + id));
  EXPECT_FALSE(PathExists(daemon_->state() + "/ns/" + id));
  cri::PodSandboxStatusResponse resp;
  EXPECT_EQ(c().PodSandboxStatus(id, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(c().RemovePodSandbox(id).ok()) << "remove is idempotent";
  EXPECT_TRUE(c().StopPodSandbox(id).ok()) << "stop of a removed pod is OK";
  // Everything else (mounts, veth, cgroup, processes, files) is the leak check's.
}

TEST_P(SandboxNetTest, RemoveOfARunningSandboxStopsItFirst) {
  std::string id = Run(PodConfig("rm-running"));
  std::string ip = Status(id).network().ip();
  int pid = SandboxInfo(c(), id).value("pid", 0);
  ASSERT_TRUE(c().RemovePodSandbox(id).ok());
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip));
  EXPECT_FALSE(PathExists(absl::StrCat("/proc/", pid, "/ns")));
  cri::PodSandboxStatusResponse resp;
  EXPECT_EQ(c().PodSandboxStatus(id, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SandboxTest, UnknownIds) {
  EXPECT_TRUE(c().StopPodSandbox("0123456789abcdef").ok());
  EXPECT_TRUE(c().RemovePodSandbox("0123456789abcdef").ok());
  cri::PodSandboxStatusResponse resp;
  grpc::Status s = c().PodSandboxStatus("0123456789abcdef", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(SandboxTest, BadInput) {
  cri::RunPodSandboxRequest req;
  cri::RunPodSandboxResponse resp;
  EXPECT_EQ(c().Runtime(&Stub::RunPodSandbox, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "no config";
  req.mutable_config()->set_hostname("no-metadata");
  grpc::Status s = c().Runtime(&Stub::RunPodSandbox, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "no metadata: " << s.error_message();
  EXPECT_NE(s.error_message().find("metadata"), std::string::npos) << s.error_message();
  auto noname = PodConfig("x");
  noname.mutable_metadata()->clear_name();
  s = c().Runtime(
      &Stub::RunPodSandbox,
      [&] {
        cri::RunPodSandboxRequest r;
        *r.mutable_config() = noname;
        return r;
      }(),
      &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "empty name: " << s.error_message();

  std::string id = Run(PodConfig("dup"));
  std::string id2;
  s = c().RunPodSandbox(PodConfig("dup"), &id2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_NE(s.error_message().find(id), std::string::npos) << "names the holder: " << s.error_message();
  auto cfg = PodConfig("dup");
  cfg.mutable_metadata()->set_attempt(1);
  std::string id3 = Run(cfg);  // the next attempt is another name
  EXPECT_NE(id3, id);
  StopAndRemove(id);
  StopAndRemove(id3);
}

TEST_P(SandboxNetTest, SurvivesCrispdRestart) {
  std::string id = Run(PodConfig("restart"));
  std::string ip = Status(id).network().ip();
  int pid = SandboxInfo(c(), id).value("pid", 0);
  std::string dead = Run(PodConfig("restart-dead"));
  int dead_pid = SandboxInfo(c(), dead).value("pid", 0);
  ASSERT_GT(dead_pid, 0);
  ASSERT_TRUE(daemon_->Kill().ok());
  ASSERT_EQ(::kill(dead_pid, SIGKILL), 0);  // dies while crispd is down
  ASSERT_TRUE(daemon_->Launch().ok()) << daemon_->LogTail();
  auto st = Status(id);
  EXPECT_EQ(st.state(), cri::SANDBOX_READY);
  EXPECT_EQ(st.network().ip(), ip);
  EXPECT_EQ(SandboxInfo(c(), id).value("pid", 0), pid);
  EXPECT_EQ(Status(dead).state(), cri::SANDBOX_NOTREADY);
  std::string again;
  EXPECT_EQ(c().RunPodSandbox(PodConfig("restart"), &again).error_code(), grpc::StatusCode::ALREADY_EXISTS)
      << "names are recovered too";
  // A second restart in a row (nothing changed) keeps the same view.
  ASSERT_TRUE(daemon_->Restart().ok()) << daemon_->LogTail();
  EXPECT_EQ(Status(id).state(), cri::SANDBOX_READY);
  EXPECT_EQ(Status(id).network().ip(), ip);
  StopAndRemove(id);
  StopAndRemove(dead);
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip));
}

TEST_F(SandboxTest, KilledPauseProcessMeansNotReady) {
  std::string id = Run(PodConfig("killed"));
  std::string ip = Status(id).network().ip();
  int pid = SandboxInfo(c(), id).value("pid", 0);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  cri::PodSandboxState state = cri::SANDBOX_READY;
  for (int i = 0; i < 100 && state == cri::SANDBOX_READY; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    state = Status(id).state();
  }
  EXPECT_EQ(state, cri::SANDBOX_NOTREADY) << "within 2 s of the pause process dying";
  StopAndRemove(id);
  EXPECT_FALSE(PathExists(daemon_->ipam_dir() + "/" + ip)) << "Stop still ran CNI DEL";
}

// The pause process of a pod recovered after a restart is not crispd's child
// any more: crispd must still notice when it dies.
TEST_F(SandboxTest, KilledPauseProcessAfterRestartMeansNotReady) {
  std::string id = Run(PodConfig("killed-after-restart"));
  int pid = SandboxInfo(c(), id).value("pid", 0);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(daemon_->Restart().ok()) << daemon_->LogTail();
  ASSERT_EQ(Status(id).state(), cri::SANDBOX_READY);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  cri::PodSandboxState state = cri::SANDBOX_READY;
  for (int i = 0; i < 100 && state == cri::SANDBOX_READY; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    state = Status(id).state();
  }
  EXPECT_EQ(state, cri::SANDBOX_NOTREADY) << "within 2 s of the pause process dying";
  StopAndRemove(id);
}

TEST_F(SandboxTest, ListAndStatusAnswerWhilePodsAreBeingCreated) {
  std::string probe = Run(PodConfig("probe"));
  std::vector<std::future<std::string>> runs;
  for (int i = 0; i < 10; ++i)
    runs.push_back(
        std::async(std::launch::async, [this, i] { return Run(PodConfig(absl::StrCat("burst-", i))); }));
  // Version touches no sandbox state: its latency is the baseline of what
  // the busy machine (gRPC threads, CNI plugin processes) costs any call.
  std::vector<absl::Duration> list_lat, status_lat, version_lat;
  while (std::any_of(runs.begin(), runs.end(), [](auto& f) {
    return f.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
  })) {
    absl::Time t0 = absl::Now();
    cri::ListPodSandboxResponse l;
    ASSERT_TRUE(c().ListPodSandbox({}, &l).ok());
    absl::Time t1 = absl::Now();
    cri::PodSandboxStatusResponse s;
    ASSERT_TRUE(c().PodSandboxStatus(probe, &s).ok());
    absl::Time t2 = absl::Now();
    ASSERT_TRUE(c().Version(10).ok());
    list_lat.push_back(t1 - t0);
    status_lat.push_back(t2 - t1);
    version_lat.push_back(absl::Now() - t2);
  }
  ASSERT_FALSE(list_lat.empty());
  std::sort(list_lat.begin(), list_lat.end());
  std::sort(status_lat.begin(), status_lat.end());
  std::sort(version_lat.begin(), version_lat.end());
  auto pct = [](const std::vector<absl::Duration>& v, double p) {
    return v[static_cast<size_t>(p * (v.size() - 1))];
  };
  std::string summary = absl::StrCat(
      "List p50 ", absl::FormatDuration(pct(list_lat, 0.5)), " p95 ",
      absl::FormatDuration(pct(list_lat, 0.95)), " max ", absl::FormatDuration(list_lat.back()),
      "; Status p50 ", absl::FormatDuration(pct(status_lat, 0.5)), " p95 ",
      absl::FormatDuration(pct(status_lat, 0.95)), " max ", absl::FormatDuration(status_lat.back()),
      "; Version (baseline) p50 ", absl::FormatDuration(pct(version_lat, 0.5)), " p95 ",
      absl::FormatDuration(pct(version_lat, 0.95)), " max ", absl::FormatDuration(version_lat.back()), " (",
      list_lat.size(), " samples each)");
  RecordProperty("latency_during_creates", summary);
  std::cout << "  " << summary << "\n";
  // A List/Status that waited behind a create would take as long as the CNI
  // plugins (60+ ms each, several hundred ms with ten in parallel), and most
  // samples would. A rare slow sample is the 2-core machine being busy with
  // 30 plugin processes, so: 95% under 50 ms, none over 250 ms.
  EXPECT_LT(pct(list_lat, 0.95), absl::Milliseconds(50)) << summary;
  EXPECT_LT(pct(status_lat, 0.95), absl::Milliseconds(50)) << summary;
  EXPECT_LT(list_lat.back(), absl::Milliseconds(250)) << summary;
  EXPECT_LT(status_lat.back(), absl::Milliseconds(250)) << summary;
  std::set<std::string> ids;
  for (auto& f : runs) ids.insert(f.get());
  EXPECT_EQ(ids.size(), 10u);
  cri::ListPodSandboxResponse l;
  ASSERT_TRUE(c().ListPodSandbox({}, &l).ok());
  EXPECT_EQ(l.items_size(), 11);
  std::set<std::string> ips;
  for (const auto& id : ids) ips.insert(Status(id).network().ip());
  EXPECT_EQ(ips.size(), 10u) << "every pod has its own IP";
  for (const auto& id : ids) StopAndRemove(id);
  StopAndRemove(probe);
}

TEST_F(SandboxTest, UnimplementedRpcsSaySo) {
  cri::UpdatePodSandboxResourcesRequest req;
  req.set_pod_sandbox_id("x");
  cri::UpdatePodSandboxResourcesResponse r;
  grpc::Status s = c().Runtime(&Stub::UpdatePodSandboxResources, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_NE(s.error_message().find("UpdatePodSandboxResources"), std::string::npos);
}

// The leak check itself: a running pod shows up in every category it watches.
TEST_P(SandboxNetTest, LeakCheckSeesARunningPod) {
  auto before = LeakSnapshot(*daemon_);
  std::string id = Run(PodConfig("leaky"));
  std::string ip = Status(id).network().ip();
  std::string diff = DiffSnapshots(before, LeakSnapshot(*daemon_));
  for (const std::string& want :
       {absl::StrCat("+ mount ", daemon_->state(), "/ns/", id, "/net nsfs"), std::string("+ link veth"),
        absl::StrCat("+ cgroup /sys/fs/cgroup/"), absl::StrCat("+ ip ", ip), std::string(" crisp-pause"),
        absl::StrCat("+ file ", daemon_->root(), "/sandboxes/", id),
        absl::StrCat("+ file ", daemon_->state(), "/ns/", id),
        absl::StrCat("+ mount ", daemon_->state(), "/sandboxes/", id, "/shm tmpfs")})
    EXPECT_NE(diff.find(want), std::string::npos) << "leak check misses '" << want << "' in:" << diff;
  StopAndRemove(id);
}

// A crispd whose network is bridge (IP allocated, veth made) then a plugin
// that always fails ADD: Run must fail naming the plugin and its message, and
// undo the bridge's work (the leak check sees the IP file, veth, netns...).
class FailingCniTest : public E2eTest {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    char t[] = "/tmp/crisp-e2e-bin.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    bin_ = t;
    ASSERT_TRUE(
        WriteFileAtomic(bin_ + "/crisp-fake-cni",
                        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n"
                        "echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"boom from fake\"}'\nexit 1\n",
                        0755)
            .ok());
    DaemonOptions o;
    o.bin_dirs = {bin_, "/usr/lib/cni"};
    auto cl = nlohmann::json::parse(DefaultConflist("@DIR@/ipam", o.bridge, o.subnet));
    cl["plugins"] = nlohmann::json::array({cl["plugins"][0], {{"type", "crisp-fake-cni"}}});
    o.conflist_json = cl.dump();
    StartDaemon(o);
  }
  static void TearDownTestSuite() {
    E2eTest::TearDownTestSuite();
    if (!bin_.empty()) (void)RemoveAll(bin_);
  }
  static std::string bin_;
};
std::string FailingCniTest::bin_;

TEST_F(FailingCniTest, ErrorNamesThePluginAndNothingIsLeft) {
  CriClient& c = daemon_->client();
  std::string id;
  grpc::Status s = c.RunPodSandbox(PodConfig("cnifail"), &id);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error_message().find("crisp-fake-cni"), std::string::npos)
      << "names the plugin: " << s.error_message();
  EXPECT_NE(s.error_message().find("boom from fake"), std::string::npos) << s.error_message();
  cri::ListPodSandboxResponse l;
  ASSERT_TRUE(c.ListPodSandbox({}, &l).ok());
  EXPECT_EQ(l.items_size(), 0);
  EXPECT_TRUE(ListDir(daemon_->ipam_dir()).value_or(std::vector<std::string>{}).size() <= 2)
      << "bridge's IP released by the rollback DEL";
  // The name is free again (and fails the same way).
  s = c.RunPodSandbox(PodConfig("cnifail"), &id);
  EXPECT_NE(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace crisp::e2e
