// Real CNI plugins (/usr/lib/cni: bridge, host-local, portmap) against real
// network namespaces. Root only. Every test removes its namespaces, the
// bridge, the iptables chains portmap created and its temp dir.
#include <fcntl.h>
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
#include "test/testing/iptables.h"
#include "test/integration/netcni/netns_test_util.h"

namespace crisp::netcni {
namespace {

using json = nlohmann::json;

constexpr char kPluginDir[] = "/usr/lib/cni";
constexpr char kBridge[] = "crispit0";
constexpr char kNetwork[] = "crisp-it";

using testutil::CmdResult;
using testutil::LinkExists;
using testutil::NetnsLink;
using testutil::RunCmd;

// Built-in nat chains portmap hooks into; its own chains start with CNI-.
std::vector<std::string> NatRules() {
  CmdResult r = RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-S"});
  std::vector<std::string> out;
  for (absl::string_view l : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) out.emplace_back(l);
  return out;
}

std::set<std::string> CniNatChains() {
  std::set<std::string> out;
  for (const auto& l : NatRules())
    if (absl::StartsWith(l, "-N CNI-")) out.insert(l.substr(3));
  return out;
}

class NetcniIT : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    for (const char* p : {"bridge", "host-local", "portmap"})
      if (!PathExists(absl::StrCat(kPluginDir, "/", p)))
        GTEST_SKIP() << "no CNI plugin " << p << " in " << kPluginDir;
    std::string tmpl = "/tmp/crisp-netcni-it.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    for (const char* d : {"net.d", "bin", "cache", "ipam"}) ASSERT_TRUE(MkdirAll(dir_ + "/" + d).ok());
    ASSERT_FALSE(LinkExists(kBridge))
        << kBridge << " is left over from an earlier run; ip link del " << kBridge;
    chains_before_ = CniNatChains();
    if (auto f = ReadFile("/proc/sys/net/ipv4/ip_forward"); f.ok()) ip_forward_ = *f;
    ready_ = true;
  }

  void TearDown() override {
    if (!ready_) return;
    for (const auto& ns : netns_) RunCmd({"/usr/sbin/ip", "netns", "del", ns});
    if (LinkExists(kBridge)) RunCmd({"/usr/sbin/ip", "link", "del", kBridge});
    RemovePortmapChains();
    // The bridge plugin turns forwarding on for a gateway; put it back.
    if (!ip_forward_.empty()) (void)WriteFileAtomic("/proc/sys/net/ipv4/ip_forward", ip_forward_);
    EXPECT_TRUE(RemoveAll(dir_).ok());
    // Nothing of ours is left.
    EXPECT_FALSE(LinkExists(kBridge));
    std::string netns_list = RunCmd({"/usr/sbin/ip", "netns", "list"}).out;
    for (const auto& ns : netns_) EXPECT_FALSE(absl::StrContains(netns_list, ns)) << netns_list;
    for (const auto& l : NatRules()) EXPECT_FALSE(absl::StrContains(l, "10.99.0.")) << l;
  }

  // portmap leaves its shared top-level chains (CNI-HOSTPORT-*) in place on
  // DEL, as it must for other pods. Remove the ones this test created, if no
  // other user (e.g. a concurrently running e2e test) put rules in them.
  void RemovePortmapChains() {
    std::set<std::string> created;
    for (const auto& c : CniNatChains())
      if (!chains_before_.count(c)) created.insert(c);
    if (created.empty()) return;
    auto rules = NatRules();
    for (const auto& l : rules) {
      for (const auto& c : created) {
        // Another pod's rule inside one of them: leave everything alone.
        if (absl::StartsWith(l, absl::StrCat("-A ", c, " ")) && absl::StrContains(l, "-j CNI-DN-")) return;
      }
    }
    for (const auto& l : rules) {
      if (!absl::StartsWith(l, "-A ")) continue;
      for (const auto& c : created) {
        if (!absl::EndsWith(l, absl::StrCat("-j ", c))) continue;
        std::vector<std::string> argv = {"/usr/sbin/iptables", "-w", "-t", "nat", "-D"};
        for (auto& w : crisp::testing::IptablesRuleWords(l.substr(3))) argv.push_back(std::move(w));
        CmdResult r = RunCmd(argv);
        EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(argv, " ") << ": " << r.out;
      }
    }
    for (const auto& c : created) RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-F", c});
    for (const auto& c : created) {
      CmdResult r = RunCmd({"/usr/sbin/iptables", "-w", "-t", "nat", "-X", c});
      EXPECT_EQ(r.exit_code, 0) << "iptables -t nat -X " << c << ": " << r.out;
    }
  }

  std::string NewNetns() {
    std::string name = "crisp-it-" + RandomHex(4);
    CmdResult r = RunCmd({"/usr/sbin/ip", "netns", "add", name});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    netns_.push_back(name);
    return name;
  }
  static std::string NetnsPath(const std::string& name) { return "/run/netns/" + name; }

  void WriteConflist(const json& extra_plugins = json::array()) {
    json bridge = {{"type", "bridge"},
                   {"bridge", kBridge},
                   {"isGateway", true},
                   {"ipMasq", false},
                   {"ipam",
                    {{"type", "host-local"},
                     {"ranges", json::array({json::array({{{"subnet", "10.99.0.0/24"}}})})},
                     {"routes", json::array({{{"dst", "0.0.0.0/0"}}})},
                     {"dataDir", dir_ + "/ipam"}}}};
    json list = {{"cniVersion", "1.0.0"}, {"name", kNetwork}, {"plugins", json::array({bridge})}};
    for (const auto& p : extra_plugins) list["plugins"].push_back(p);
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/net.d/10-crisp-it.conflist", list.dump(2)).ok());
  }

  std::unique_ptr<CniManager> Manager() {
    CniOptions o;
    o.conf_dir = dir_ + "/net.d";
    o.bin_dirs = {dir_ + "/bin", kPluginDir};
    o.cache_dir = dir_ + "/cache";
    o.plugin_timeout = absl::Seconds(30);
    return std::make_unique<CniManager>(o, NewExecInvoker());
  }

  PodNetworkRequest Req(const std::string& netns) {
    PodNetworkRequest r;
    r.container_id = "it-" + netns;
    r.netns_path = NetnsPath(netns);
    r.pod_name = "pod-" + netns;
    r.pod_namespace = "default";
    r.pod_uid = "uid-" + netns;
    return r;
  }

  // Files host-local keeps per allocated IP.
  std::vector<std::string> AllocatedIps() {
    std::vector<std::string> out;
    for (const auto& n : ListDir(dir_ + "/ipam/" + kNetwork).value_or(std::vector<std::string>{}))
      if (absl::StartsWith(n, "10.99.0.")) out.push_back(n);
    return out;
  }

  std::vector<std::string> BridgePorts() {
    return ListDir(absl::StrCat("/sys/class/net/", kBridge, "/brif")).value_or(std::vector<std::string>{});
  }

  std::string dir_;
  std::vector<std::string> netns_;
  std::set<std::string> chains_before_;
  std::string ip_forward_;
  bool ready_ = false;
};

TEST_F(NetcniIT, SetupCheckTeardown) {
  WriteConflist(json::array({{{"type", "portmap"}, {"capabilities", {{"portMappings", true}}}}}));
  auto mgr = Manager();
  ASSERT_TRUE(mgr->Ready().ok()) << mgr->Ready();
  std::string ns = NewNetns();
  const std::string host_netns = NetnsLink();

  // A new namespace has lo down.
  EXPECT_TRUE(
      absl::StrContains(RunCmd({"/usr/sbin/ip", "-n", ns, "-o", "link", "show", "lo"}).out, "state DOWN"));
  ASSERT_TRUE(BringUpLoopback(NetnsPath(ns)).ok());
  std::string lo = RunCmd({"/usr/sbin/ip", "-n", ns, "-o", "link", "show", "lo"}).out;
  EXPECT_TRUE(absl::StrContains(lo, "<LOOPBACK,UP,LOWER_UP>")) << lo;
  EXPECT_TRUE(BringUpLoopback(NetnsPath(ns)).ok()) << "idempotent";

  PodNetworkRequest req = Req(ns);
  req.port_mappings = {{"tcp", 80, 18080, ""}};
  auto r = mgr->Setup(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->ips.size(), 1u) << r->raw_result.dump();
  const PodIp ip = r->ips[0];
  EXPECT_TRUE(absl::StartsWith(ip.address, "10.99.0.")) << ip.address;
  EXPECT_NE(ip.address, "10.99.0.1") << "the gateway is the bridge's";
  EXPECT_EQ(ip.prefix_len, 24);
  EXPECT_FALSE(ip.ipv6);
  EXPECT_EQ(r->network_name, kNetwork);

  // The address really is in the namespace, on eth0 only.
  auto addrs = ListAddresses(NetnsPath(ns), "eth0");
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  ASSERT_EQ(addrs->size(), 1u);
  EXPECT_EQ((*addrs)[0].address, ip.address);
  EXPECT_EQ((*addrs)[0].prefix_len, 24);
  auto all = ListAddresses(NetnsPath(ns), "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u) << "lo's 127.0.0.1 is not a pod IP";
  EXPECT_EQ(ListAddresses(NetnsPath(ns), "eth9").status().code(), absl::StatusCode::kNotFound);
  // Neither this thread nor the host namespace ever saw the pod's address.
  EXPECT_EQ(NetnsLink(), host_netns);
  EXPECT_FALSE(absl::StrContains(RunCmd({"/usr/sbin/ip", "-o", "addr"}).out, ip.address + "/"));

  EXPECT_EQ(AllocatedIps(), std::vector<std::string>{ip.address});
  EXPECT_EQ(BridgePorts().size(), 1u);
  bool dnat = false;
  for (const auto& l : NatRules())
    dnat = dnat || (absl::StrContains(l, "--dport 18080") && absl::StrContains(l, ip.address + ":80"));
  EXPECT_TRUE(dnat) << "portmap got the port mapping through runtimeConfig";

  // portmap before v1.2.0 (Debian 12 ships 1.1.1) fails CHECK for IPv4-only
  // pods by looking for ip6tables rules it never made
  // (containernetworking/plugins#819); bridge's CHECK runs first either way.
  if (absl::Status s = mgr->Check(req); !s.ok()) {
    EXPECT_TRUE(
        absl::StrContains(s.message(), "CNI plugin \"portmap\" failed CHECK: could not check ipv6 dnat"))
        << s;
  }
  auto cached = mgr->CachedResult(req.container_id);
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->ips[0].address, ip.address);

  // DEL as after a restart: only the id and the namespace are known.
  PodNetworkRequest del;
  del.container_id = req.container_id;
  del.netns_path = req.netns_path;
  ASSERT_TRUE(mgr->Teardown(del).ok());
  EXPECT_TRUE(AllocatedIps().empty()) << "host-local released the IP";
  EXPECT_TRUE(BridgePorts().empty()) << "the veth is gone";
  EXPECT_EQ(ListAddresses(NetnsPath(ns), "eth0").status().code(), absl::StatusCode::kNotFound);
  for (const auto& l : NatRules()) EXPECT_FALSE(absl::StrContains(l, "18080")) << l;
  EXPECT_FALSE(mgr->CachedResult(req.container_id).has_value());
  EXPECT_TRUE(mgr->Teardown(del).ok()) << "a second teardown is harmless";
}

TEST_F(NetcniIT, FailingPluginRollsBackEverything) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bin/crisp-it-fail", R"(#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":100,"msg":"crisp test failure","details":"on purpose"}'
  exit 1
fi
exit 0
)",
                              0755)
                  .ok());
  WriteConflist(json::array({{{"type", "crisp-it-fail"}}}));
  auto mgr = Manager();
  ASSERT_TRUE(mgr->Ready().ok()) << mgr->Ready();
  std::string ns = NewNetns();
  auto r = mgr->Setup(Req(ns));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(r.status().message(),
                                "CNI plugin \"crisp-it-fail\" failed ADD: crisp test failure: on purpose"))
      << r.status();
  EXPECT_TRUE(AllocatedIps().empty());
  EXPECT_TRUE(BridgePorts().empty()) << "the veth is gone";
  EXPECT_EQ(ListAddresses(NetnsPath(ns), "eth0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(mgr->CachedResult("it-" + ns).has_value());
}

TEST_F(NetcniIT, MissingPluginIsNotReady) {
  WriteConflist(json::array({{{"type", "crisp-it-nonexistent"}}}));
  auto mgr = Manager();
  auto s = mgr->Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "plugin \"crisp-it-nonexistent\" not found")) << s;
  EXPECT_FALSE(LinkExists(kBridge)) << "nothing ran";
}

TEST_F(NetcniIT, TeardownAfterTheNamespaceIsGone) {
  WriteConflist();
  auto mgr = Manager();
  std::string ns = NewNetns();
  PodNetworkRequest req = Req(ns);
  ASSERT_TRUE(mgr->Setup(req).ok());
  ASSERT_EQ(AllocatedIps().size(), 1u);
  EXPECT_TRUE(mgr->Check(req).ok()) << mgr->Check(req);
  // CHECK notices a broken pod network.
  ASSERT_EQ(RunCmd({"/usr/sbin/ip", "-n", ns, "link", "del", "eth0"}).exit_code, 0);
  absl::Status broken = mgr->Check(req);
  EXPECT_TRUE(absl::StrContains(broken.message(), "CNI plugin \"bridge\" failed CHECK")) << broken;
  ASSERT_EQ(RunCmd({"/usr/sbin/ip", "netns", "del", ns}).exit_code, 0);
  ASSERT_TRUE(mgr->Teardown(req).ok()) << mgr->Teardown(req);
  EXPECT_TRUE(AllocatedIps().empty()) << "the IP is released even without the namespace";
  EXPECT_TRUE(BridgePorts().empty());
}

TEST_F(NetcniIT, ConcurrentSandboxes) {
  WriteConflist();
  auto mgr = Manager();
  constexpr int kPods = 4;
  std::vector<std::string> names;
  for (int i = 0; i < kPods; ++i) names.push_back(NewNetns());
  std::vector<absl::StatusOr<PodNetworkResult>> results(kPods, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kPods; ++i) threads.emplace_back([&, i] { results[i] = mgr->Setup(Req(names[i])); });
  for (auto& t : threads) t.join();
  std::set<std::string> ips;
  for (int i = 0; i < kPods; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    ips.insert(results[i]->ips.at(0).address);
    auto addrs = ListAddresses(NetnsPath(names[i]), "eth0");
    ASSERT_TRUE(addrs.ok());
    ASSERT_EQ(addrs->size(), 1u);
    EXPECT_EQ((*addrs)[0].address, results[i]->ips[0].address);
  }
  EXPECT_EQ(ips.size(), static_cast<size_t>(kPods)) << "distinct addresses";
  EXPECT_EQ(BridgePorts().size(), static_cast<size_t>(kPods));
  threads.clear();
  std::vector<absl::Status> dels(kPods);
  for (int i = 0; i < kPods; ++i) threads.emplace_back([&, i] { dels[i] = mgr->Teardown(Req(names[i])); });
  for (auto& t : threads) t.join();
  for (const auto& s : dels) EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(AllocatedIps().empty());
  EXPECT_TRUE(BridgePorts().empty());
}

}  // namespace
}  // namespace crisp::netcni
