// The embedded network against the real kernel: bridge, veth pairs created
// inside real network namespaces, addresses, routes, iptables rules, IPAM
// files, rollback, teardown without a record or a namespace, concurrency.
// Root only. Every test removes its namespaces, the bridge, the nat rules it
// made and its temp dir, and checks that nothing is left.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/reaper.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "netcni/cni.h"
#include "netcni/embedded.h"
#include "netcni/netlink_util.h"
#include "test/testing/iptables.h"
#include "test/integration/netcni/netns_test_util.h"

namespace crisp::netcni {
namespace {

constexpr char kBridge[] = "crispemit0";
constexpr char kSubnet[] = "10.98.0.0/24";
constexpr char kComment[] = "crisp-embedded:crispemit0";

using testutil::CmdResult;
using testutil::LinkExists;
using testutil::NetnsLink;
using testutil::RunCmd;

std::vector<std::string> NatRules() {
  std::vector<std::string> out;
  for (absl::string_view l :
       absl::StrSplit(RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-S"}).out, '\n', absl::SkipEmpty()))
    out.emplace_back(l);
  return out;
}

class EmbeddedIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!PathExists("/usr/sbin/iptables")) GTEST_SKIP() << "no iptables";
    std::string tmpl = "/tmp/crisp-embedded-it.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_FALSE(LinkExists(kBridge))
        << kBridge << " is left over from an earlier run; ip link del " << kBridge;
    if (auto f = ReadFile("/proc/sys/net/ipv4/ip_forward"); f.ok()) ip_forward_ = *f;
    ready_ = true;
  }

  void TearDown() override {
    if (!ready_) return;
    for (const auto& ns : netns_) RunCmd({"/usr/sbin/ip", "netns", "del", ns});
    if (LinkExists(kBridge)) RunCmd({"/usr/sbin/ip", "link", "del", kBridge});
    RemoveSharedRules();
    if (!ip_forward_.empty()) (void)WriteFileAtomic("/proc/sys/net/ipv4/ip_forward", ip_forward_);
    EXPECT_TRUE(RemoveAll(dir_).ok());
    EXPECT_FALSE(LinkExists(kBridge));
    std::string netns_list = RunCmd({"/usr/sbin/ip", "netns", "list"}).out;
    for (const auto& ns : netns_) EXPECT_FALSE(absl::StrContains(netns_list, ns)) << netns_list;
    for (const auto& l : NatRules()) {
      EXPECT_FALSE(absl::StrContains(l, "10.98.0.")) << l;
      EXPECT_FALSE(absl::StrContains(l, kComment)) << l;
      EXPECT_FALSE(absl::StrContains(l, "CRISP-HP")) << l;
    }
  }

  // What the README says to run to remove the embedded network's shared
  // rules: every rule with its comment, then its host port chain.
  void RemoveSharedRules() {
    for (const auto& l : NatRules()) {
      if (!absl::StartsWith(l, "-A ") || !absl::StrContains(l, kComment)) continue;
      std::vector<std::string> argv = {"/usr/sbin/iptables", "-w", "-t", "nat", "-D"};
      for (auto& w : crisp::testing::IptablesRuleWords(l.substr(3))) argv.push_back(std::move(w));
      CmdResult r = RunCmd(argv);
      EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(argv, " ") << ": " << r.out;
    }
    std::string chain = absl::StrCat("CRISP-HP-", kBridge);
    if (RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-S", chain}).exit_code == 0) {
      RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-F", chain});
      CmdResult r = RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-X", chain});
      EXPECT_EQ(r.exit_code, 0) << r.out;
    }
  }

  std::string NewNetns() {
    std::string name = "crisp-emit-" + RandomHex(4);
    CmdResult r = RunCmd({"/usr/sbin/ip", "netns", "add", name});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    netns_.push_back(name);
    return name;
  }
  static std::string NetnsPath(const std::string& name) { return "/run/netns/" + name; }

  EmbeddedOptions Options() {
    EmbeddedOptions o;
    o.bridge = kBridge;
    o.subnet = kSubnet;
    o.ipam_dir = dir_ + "/ipam";
    o.state_dir = dir_ + "/state";
    return o;
  }

  PodNetworkRequest Req(const std::string& netns) {
    PodNetworkRequest r;
    r.container_id = "it-" + netns;
    r.netns_path = NetnsPath(netns);
    return r;
  }

  std::vector<std::string> AllocatedIps() {
    std::vector<std::string> out;
    for (const auto& n : ListDir(dir_ + "/ipam").value_or(std::vector<std::string>{}))
      if (absl::StartsWith(n, "10.98.0.")) out.push_back(n);
    return out;
  }
  std::vector<std::string> BridgePorts() {
    return ListDir(absl::StrCat("/sys/class/net/", kBridge, "/brif")).value_or(std::vector<std::string>{});
  }
  std::vector<std::string> Records() { return ListDir(dir_ + "/state").value_or(std::vector<std::string>{}); }

  std::string dir_;
  std::vector<std::string> netns_;
  std::string ip_forward_;
  bool ready_ = false;
};

// One TCP connection from inside `netns` to ip:port; true if it was accepted.
bool ConnectFrom(const std::string& netns, const std::string& ip, int port) {
  bool ok = false;
  absl::Status s = InNetns(netns, [&]() -> absl::Status {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    timeval tv = {5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ok = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    return absl::OkStatus();
  });
  return s.ok() && ok;
}

TEST_F(EmbeddedIT, SetupCheckTeardown) {
  EmbeddedNetwork net(Options());
  ASSERT_TRUE(net.Ready().ok());
  EXPECT_FALSE(LinkExists(kBridge)) << "nothing is made before the first pod";
  std::string ns = NewNetns();
  const std::string host_netns = NetnsLink();
  PodNetworkRequest req = Req(ns);
  auto r = net.Setup(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->ips.size(), 1u) << r->raw_result.dump();
  const std::string ip = r->ips[0].address;
  EXPECT_EQ(ip, "10.98.0.2") << "the first address after the gateway";
  EXPECT_EQ(r->ips[0].prefix_len, 24);
  EXPECT_EQ(r->network_name, "crisp-embedded");

  // Host side: the bridge, up, with the gateway address; the host veth is its port.
  std::string br = RunCmd({"/usr/sbin/ip", "-o", "addr", "show", "dev", kBridge}).out;
  EXPECT_TRUE(absl::StrContains(br, "inet 10.98.0.1/24")) << br;
  EXPECT_TRUE(absl::StrContains(RunCmd({"/usr/sbin/ip", "-o", "link", "show", kBridge}).out, ",UP"))
      << "bridge up";
  std::string host_veth = EmbeddedNetwork::HostVethName(req.container_id, "eth0");
  EXPECT_EQ(BridgePorts(), std::vector<std::string>{host_veth});
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward").value_or(""), "1\n");
  bool masq = false;
  for (const auto& l : NatRules())
    masq = masq || (absl::StrContains(l, "-s 10.98.0.0/24 ! -d 10.98.0.0/24") &&
                    absl::StrContains(l, kComment) && absl::StrContains(l, "MASQUERADE"));
  EXPECT_TRUE(masq) << absl::StrJoin(NatRules(), "\n");

  // Pod side: eth0 with the address, up, and a default route via the gateway.
  auto addrs = ListAddresses(NetnsPath(ns), "eth0");
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  ASSERT_EQ(addrs->size(), 1u);
  EXPECT_EQ((*addrs)[0].address, ip);
  EXPECT_EQ((*addrs)[0].prefix_len, 24);
  std::string routes = RunCmd({"/usr/sbin/ip", "-n", ns, "route"}).out;
  EXPECT_TRUE(absl::StrContains(routes, "default via 10.98.0.1 dev eth0")) << routes;
  EXPECT_TRUE(absl::StrContains(RunCmd({"/usr/sbin/ip", "-n", ns, "-o", "link", "show", "eth0"}).out, ",UP"));
  EXPECT_EQ(NetnsLink(), host_netns) << "this thread never changed namespace";
  EXPECT_FALSE(absl::StrContains(RunCmd({"/usr/sbin/ip", "-o", "link"}).out, " eth0@"))
      << "no move between namespaces needed";

  // The pod reaches the host on the gateway.
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, "10.98.0.1", &a.sin_addr);
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l.get(), 1), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  EXPECT_TRUE(ConnectFrom(NetnsPath(ns), "10.98.0.1", ntohs(a.sin_port)));
  l.reset();

  EXPECT_EQ(AllocatedIps(), std::vector<std::string>{ip});
  EXPECT_EQ(ReadFile(dir_ + "/ipam/" + ip).value_or(""), req.container_id + "\r\neth0");
  EXPECT_TRUE(net.Check(req).ok()) << net.Check(req);
  auto cached = net.CachedResult(req.container_id);
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->ips.at(0).address, ip);

  // DEL as after a restart: only the id and the namespace are known.
  PodNetworkRequest del;
  del.container_id = req.container_id;
  del.netns_path = req.netns_path;
  ASSERT_TRUE(net.Teardown(del).ok()) << net.Teardown(del);
  EXPECT_TRUE(AllocatedIps().empty());
  EXPECT_TRUE(BridgePorts().empty());
  EXPECT_FALSE(LinkExists(host_veth));
  EXPECT_EQ(ListAddresses(NetnsPath(ns), "eth0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Records().empty());
  EXPECT_FALSE(net.CachedResult(req.container_id).has_value());
  EXPECT_EQ(net.Check(req).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(net.Teardown(del).ok()) << "a second teardown is harmless";
  EXPECT_TRUE(LinkExists(kBridge)) << "the bridge stays for the next pod";
}

TEST_F(EmbeddedIT, CheckNoticesABrokenPod) {
  EmbeddedNetwork net(Options());
  std::string ns = NewNetns();
  PodNetworkRequest req = Req(ns);
  ASSERT_TRUE(net.Setup(req).ok());
  ASSERT_EQ(RunCmd({"/usr/sbin/ip", "-n", ns, "addr", "flush", "dev", "eth0"}).exit_code, 0);
  absl::Status s = net.Check(req);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "does not have 10.98.0.2")) << s;
  ASSERT_TRUE(net.Teardown(req).ok());
}

TEST_F(EmbeddedIT, HostPortsAreDnatRulesRemovedOnTeardown) {
  EmbeddedNetwork net(Options());
  std::string ns = NewNetns();
  PodNetworkRequest req = Req(ns);
  req.port_mappings = {{"tcp", 80, 18091, ""}, {"udp", 53, 18092, "127.0.0.1"}};
  auto r = net.Setup(req);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string ip = r->ips.at(0).address;
  std::string rules = absl::StrJoin(NatRules(), "\n");
  EXPECT_TRUE(absl::StrContains(rules, "--dport 18091 -j DNAT --to-destination " + ip + ":80")) << rules;
  EXPECT_TRUE(absl::StrContains(
      rules, "-d 127.0.0.1/32 -p udp -m udp --dport 18092 -j DNAT --to-destination " + ip + ":53"))
      << rules;
  EXPECT_TRUE(absl::StrContains(rules, "-A PREROUTING -m addrtype --dst-type LOCAL")) << rules;
  EXPECT_EQ(ReadFile(absl::StrCat("/proc/sys/net/ipv4/conf/", kBridge, "/route_localnet")).value_or(""),
            "1\n");
  ASSERT_TRUE(net.Teardown(req).ok());
  rules = absl::StrJoin(NatRules(), "\n");
  EXPECT_FALSE(absl::StrContains(rules, "18091")) << rules;
  EXPECT_FALSE(absl::StrContains(rules, "CRISP-HPD-")) << rules;
  EXPECT_TRUE(absl::StrContains(rules, "-N CRISP-HP-crispemit0")) << "the shared chain stays";
}

TEST_F(EmbeddedIT, FailedSetupUndoesEverything) {
  // A failure after the address and the veth exist: iptables-restore fails.
  EmbeddedOptions o = Options();
  o.iptables_restore_path = "/bin/false";
  EmbeddedNetwork net(o);
  std::string ns = NewNetns();
  PodNetworkRequest req = Req(ns);
  req.port_mappings = {{"tcp", 80, 18093, ""}};
  auto r = net.Setup(req);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "iptables-restore")) << r.status();
  EXPECT_TRUE(AllocatedIps().empty()) << "address released";
  EXPECT_TRUE(BridgePorts().empty()) << "veth deleted";
  EXPECT_EQ(ListAddresses(NetnsPath(ns), "eth0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Records().empty());

  // A failure at the veth: the pod already has an eth0.
  std::string ns2 = NewNetns();
  ASSERT_EQ(
      RunCmd({"/usr/sbin/ip", "-n", ns2, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"})
          .exit_code,
      0);
  EmbeddedNetwork plain(Options());
  r = plain.Setup(Req(ns2));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "creating veth")) << r.status();
  EXPECT_TRUE(AllocatedIps().empty());
  EXPECT_TRUE(BridgePorts().empty());

  // A namespace that does not exist.
  PodNetworkRequest gone = Req("crisp-emit-nonexistent");
  r = plain.Setup(gone);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(AllocatedIps().empty());
}

TEST_F(EmbeddedIT, TeardownWithoutNamespaceOrRecord) {
  EmbeddedNetwork net(Options());
  std::string a = NewNetns(), b = NewNetns();
  ASSERT_TRUE(net.Setup(Req(a)).ok());
  PodNetworkRequest rb = Req(b);
  rb.port_mappings = {{"tcp", 80, 18094, ""}};
  ASSERT_TRUE(net.Setup(rb).ok());
  ASSERT_EQ(AllocatedIps().size(), 2u);
  // a: its namespace is gone (the veth went with it).
  ASSERT_EQ(RunCmd({"/usr/sbin/ip", "netns", "del", a}).exit_code, 0);
  EXPECT_TRUE(net.Teardown(Req(a)).ok()) << net.Teardown(Req(a));
  // b: crispd crashed before the record reached the disk.
  for (const auto& f : Records()) ASSERT_EQ(::unlink((dir_ + "/state/" + f).c_str()), 0);
  EXPECT_TRUE(net.Teardown(rb).ok()) << net.Teardown(rb);
  EXPECT_TRUE(AllocatedIps().empty()) << "found by id";
  EXPECT_TRUE(BridgePorts().empty()) << "found by the derived name";
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(NatRules(), "\n"), "18094")) << "found by the derived chain";
}

TEST_F(EmbeddedIT, ConcurrentPodsOnAFreshBridge) {
  // Two instances stand for two crispd's racing to create the bridge.
  EmbeddedNetwork one(Options()), two(Options());
  constexpr int kPods = 6;
  std::vector<std::string> names;
  for (int i = 0; i < kPods; ++i) names.push_back(NewNetns());
  std::vector<absl::StatusOr<PodNetworkResult>> results(kPods, absl::UnknownError("not run"));
  std::vector<std::thread> ts;
  for (int i = 0; i < kPods; ++i)
    ts.emplace_back([&, i] { results[i] = (i % 2 ? one : two).Setup(Req(names[i])); });
  for (auto& t : ts) t.join();
  std::set<std::string> ips;
  for (int i = 0; i < kPods; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    ips.insert(results[i]->ips.at(0).address);
  }
  EXPECT_EQ(ips.size(), static_cast<size_t>(kPods));
  EXPECT_EQ(BridgePorts().size(), static_cast<size_t>(kPods));
  std::string br = RunCmd({"/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", kBridge}).out;
  EXPECT_EQ(std::count(br.begin(), br.end(), '\n'), 1) << "one gateway address: " << br;
  // Pods reach each other across the bridge.
  EXPECT_FALSE(ConnectFrom(NetnsPath(names[0]), results[1]->ips[0].address, 9)) << "nothing listens: refused";
  std::string ping =
      RunCmd({"/usr/sbin/ip", "netns", "exec", names[0], "ping", "-c1", "-W2", results[1]->ips[0].address})
          .out;
  if (PathExists("/usr/bin/ping") || PathExists("/bin/ping")) {
    EXPECT_TRUE(absl::StrContains(ping, "1 received")) << ping;
  }
  int rules = 0;
  for (const auto& l : NatRules()) rules += absl::StrContains(l, kComment) ? 1 : 0;
  EXPECT_GE(rules, 1);
  EXPECT_LE(rules, 2) << "the masquerade rule is installed once (two instances may each add it once)";
  ts.clear();
  std::vector<absl::Status> dels(kPods);
  for (int i = 0; i < kPods; ++i)
    ts.emplace_back([&, i] { dels[i] = (i % 2 ? two : one).Teardown(Req(names[i])); });
  for (auto& t : ts) t.join();
  for (const auto& s : dels) EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(AllocatedIps().empty());
  EXPECT_TRUE(BridgePorts().empty());
  EXPECT_TRUE(Records().empty());
}

}  // namespace
}  // namespace crisp::netcni
