// Networking as containers see it, through crispd's socket: a web server in
// a pod reached from the host through a port mapping (portmap plugin) and on
// the pod IP, the pod's DNS config and hostname from inside a container, and
// a pod of two containers that talk over localhost, log separately and each
// answer ExecSync.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "test/e2e/container_fixture.h"
#include "test/e2e/harness.h"

namespace crisp::e2e {
namespace {

// A TCP port nothing listens on right now (the kernel's pick).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// GETs http://host:port/ with curl until it answers (up to `secs`); the body.
std::string Fetch(const std::string& host, int port, int secs = 5) {
  std::string url = absl::StrCat("http://", host, ":", port, "/");
  std::string body;
  for (int i = 0; i < secs * 10 && body.empty(); ++i) {
    body = RunCapture({"/usr/bin/curl", "-sf", "--max-time", "1", url});
    if (body.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return body;
}

// Every test runs once per pod network backend: CNI plugins (bridge,
// host-local, portmap; lo brought up by crisp) and the embedded network.
class NetworkTest : public ContainerTest, public ::testing::WithParamInterface<std::string> {
 protected:
  // The suite starts in SetUp, which knows the backend; each instantiation
  // is its own suite (one daemon each, destroyed by TearDownTestSuite).
  static void SetUpTestSuite() {}
  void SetUp() override {
    if (::geteuid() == 0 && !daemon_ && skip_.empty() && !reg_)
      StartSuite(GetParam() == "embedded" ? EmbeddedDaemonOptions() : DaemonOptions{});
    ContainerTest::SetUp();
  }
  std::string PodIp() {
    cri::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod_);
    cri::PodSandboxStatusResponse resp;
    grpc::Status s = c().Runtime(&RStub::PodSandboxStatus, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status().network().ip();
  }
  // busybox httpd serving `body` on `port` in the foreground.
  cri::ContainerConfig WebServer(const std::string& name, int port, const std::string& body) {
    return Config(name, absl::StrCat("mkdir -p /tmp/www && echo ", body,
                                     " > /tmp/www/index.html && exec httpd -f -p ", port, " -h /tmp/www"));
  }
  grpc::Status Exec(const std::string& id, const std::vector<std::string>& cmd, cri::ExecSyncResponse* resp) {
    cri::ExecSyncRequest req;
    req.set_container_id(id);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_timeout(10);
    return c().Runtime(&RStub::ExecSync, req, resp, 30);
  }
  void StopAndRemove(const std::string& id) {
    EXPECT_TRUE(Stop(id, 0).ok());
    EXPECT_TRUE(Remove(id).ok());
  }
};

TEST_P(NetworkTest, HostPortAndContainerPortReachTheServer) {
  const int host_port = FreePort();
  ASSERT_GT(host_port, 0);
  constexpr int kContainerPort = 8080;
  RunPod([&](cri::PodSandboxConfig* p) {
    auto* pm = p->add_port_mappings();
    pm->set_protocol(cri::TCP);
    pm->set_container_port(kContainerPort);
    pm->set_host_port(host_port);
  });
  // Nothing answers on the host port before the server runs.
  EXPECT_EQ(RunCapture({"/usr/bin/curl", "-sf", "--max-time", "1",
                        absl::StrCat("http://127.0.0.1:", host_port, "/")}),
            "");
  std::string id = RunContainer(WebServer("web", kContainerPort, "crisp-port-mapping"));
  EXPECT_EQ(Fetch("127.0.0.1", host_port), "crisp-port-mapping\n")
      << "host port " << host_port << " via portmap (or the embedded network's DNAT)";
  std::string ip = PodIp();
  ASSERT_FALSE(ip.empty());
  EXPECT_EQ(Fetch(ip, kContainerPort), "crisp-port-mapping\n") << "container port on the pod IP " << ip;
  StopAndRemove(id);
  // Removing the pod removes the mapping (portmap's DEL): checked after the
  // fixture's TearDown would be too late, so stop the pod here.
  ASSERT_TRUE(c().StopPodSandbox(pod_).ok());
  EXPECT_EQ(RunCapture({"/usr/bin/curl", "-sf", "--max-time", "1",
                        absl::StrCat("http://127.0.0.1:", host_port, "/")}),
            "");
}

TEST_P(NetworkTest, ContainerSeesThePodsDnsConfigAndHostname) {
  RunPod([](cri::PodSandboxConfig* p) {
    p->set_hostname("crisp-dns-host");
    auto* dns = p->mutable_dns_config();
    dns->add_servers("10.96.0.10");
    dns->add_searches("e2e.svc.cluster.local");
    dns->add_options("ndots:5");
  });
  std::string log;
  cri::ContainerStatus st = RunToExit(Config("dns", "cat /etc/resolv.conf; echo host=$(hostname)"), &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  std::string out = Lines(log);
  EXPECT_TRUE(absl::StrContains(out, "F nameserver 10.96.0.10")) << out;
  EXPECT_TRUE(absl::StrContains(out, "F search e2e.svc.cluster.local")) << out;
  EXPECT_TRUE(absl::StrContains(out, "F options ndots:5")) << out;
  EXPECT_TRUE(absl::StrContains(out, "F host=crisp-dns-host")) << out;
}

TEST_P(NetworkTest, TwoContainersInAPodShareLocalhostAndKeepTheirOwnLogs) {
  constexpr int kPort = 8081;
  auto server = WebServer("server", kPort, "from-the-server");
  server.add_envs()->set_key("WHO");
  server.mutable_envs(0)->set_value("server");
  std::string a = RunContainer(server);
  // The client fetches the server's page over localhost until it gets it.
  auto client = Config("client", absl::StrCat("for i in $(seq 50); do wget -qO- http://127.0.0.1:", kPort,
                                              "/ 2>/dev/null && break; sleep 0.1; done; echo client-done; "
                                              "exec sleep 1000"));
  client.add_envs()->set_key("WHO");
  client.mutable_envs(0)->set_value("client");
  std::string b = RunContainer(client);
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  std::string b_log;
  cri::ContainerStatus b_st = Status(b);
  for (int i = 0; i < 100 && !absl::StrContains(b_log, "client-done"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    b_log = ReadFile(b_st.log_path()).value_or("");
  }
  EXPECT_EQ(Lines(b_log), "F from-the-server\nF client-done") << b_log;
  // Separate log files; the server's has nothing of the client's.
  cri::ContainerStatus a_st = Status(a);
  EXPECT_NE(a_st.log_path(), b_st.log_path());
  EXPECT_FALSE(absl::StrContains(ReadFile(a_st.log_path()).value_or(""), "client-done"));
  // ExecSync in each runs in that container.
  for (const auto& [id, who] : {std::pair{a, "server"}, std::pair{b, "client"}}) {
    cri::ExecSyncResponse resp;
    grpc::Status s = Exec(id, {"sh", "-c", "echo $WHO; cat /proc/1/cmdline | tr '\\0' ' '"}, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.exit_code(), 0) << resp.stderr();
    std::vector<std::string> lines = absl::StrSplit(resp.stdout(), '\n');
    ASSERT_GE(lines.size(), 2u) << resp.stdout();
    EXPECT_EQ(lines[0], who);
    EXPECT_TRUE(absl::StrContains(lines[1], std::string(who) == "server" ? "httpd" : "sleep")) << lines[1];
  }
  StopAndRemove(b);
  StopAndRemove(a);
}

INSTANTIATE_TEST_SUITE_P(Cni, NetworkTest, ::testing::Values("cni"));
INSTANTIATE_TEST_SUITE_P(Embedded, NetworkTest, ::testing::Values("embedded"));

}  // namespace
}  // namespace crisp::e2e
