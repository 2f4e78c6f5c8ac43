// The embedded network's pieces that need no root: the IPAM store
// (host-local semantics in a temp dir), subnet parsing, interface names,
// the backend selector of `network: auto`.
#include "netcni/embedded.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "netcni/embedded_ipam.h"
#include "netcni/pod_network.h"
#include "test/testing/temp_dir.h"

namespace crisp::netcni {
namespace {

Ipv4Subnet Subnet(const std::string& cidr) {
  auto s = ParseIpv4Subnet(cidr);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.value_or(Ipv4Subnet{});
}

TEST(Ipv4Subnet, Parses) {
  Ipv4Subnet s = Subnet("10.88.0.0/16");
  EXPECT_EQ(s.ToString(), "10.88.0.0/16");
  EXPECT_EQ(Ipv4ToString(s.gateway()), "10.88.0.1");
  EXPECT_EQ(Ipv4ToString(s.broadcast()), "10.88.255.255");
  EXPECT_TRUE(s.Contains(*ParseIpv4("10.88.3.4")));
  EXPECT_FALSE(s.Contains(*ParseIpv4("10.89.0.1")));
}

TEST(Ipv4Subnet, BadInputSaysWhy) {
  auto expect = [](const std::string& cidr, const std::string& needle) {
    auto s = ParseIpv4Subnet(cidr);
    ASSERT_FALSE(s.ok()) << cidr;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(s.status().message(), needle)) << s.status();
  };
  expect("10.88.0.0", "not a CIDR");
  expect("10.88.0.1/16", "host bits set (did you mean 10.88.0.0/16?)");
  expect("10.88.0.0/31", "prefix length must be 8 to 30");
  expect("10.0.0.0/7", "prefix length");
  expect("fd00::/64", "not an IPv4 address");
  expect("10.88.0.0/x", "prefix length");
}

TEST(InterfaceName, Validation) {
  EXPECT_TRUE(ValidateInterfaceName("crisp0").ok());
  EXPECT_TRUE(ValidateInterfaceName("abcdefghijklmno").ok());  // 15
  for (const char* bad : {"", "abcdefghijklmnop", "a/b", "a b", "a:b", ".", ".."})
    EXPECT_EQ(ValidateInterfaceName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
}

TEST(HostVethName, StableShortAndDistinct) {
  std::string a = EmbeddedNetwork::HostVethName("0123abcd", "eth0");
  EXPECT_EQ(a, EmbeddedNetwork::HostVethName("0123abcd", "eth0"));
  EXPECT_EQ(a.size(), 15u);
  EXPECT_TRUE(absl::StartsWith(a, "veth"));
  EXPECT_NE(a, EmbeddedNetwork::HostVethName("0123abce", "eth0"));
  EXPECT_NE(a, EmbeddedNetwork::HostVethName("0123abcd", "eth1"));
}

class IpamTest : public testing::TempDirTest {
 protected:
  std::string Dir() { return dir_ + "/ipam"; }
  std::string Addr(const absl::StatusOr<uint32_t>& ip) {
    return ip.ok() ? Ipv4ToString(*ip) : ip.status().ToString();
  }
};

TEST_F(IpamTest, AllocatesAfterTheGatewayWithHostLocalFiles) {
  EmbeddedIpam ipam(Dir(), Subnet("10.90.0.0/24"));
  EXPECT_EQ(Addr(ipam.Allocate("pod-a", "eth0")), "10.90.0.2");
  EXPECT_EQ(Addr(ipam.Allocate("pod-b", "eth0")), "10.90.0.3");
  // host-local's layout: one file per address holding "<id>\r\n<ifname>",
  // and the last reserved address.
  EXPECT_EQ(ReadFile(Dir() + "/10.90.0.2").value_or(""), "pod-a\r\neth0");
  EXPECT_EQ(ReadFile(Dir() + "/last_reserved_ip.0").value_or(""), "10.90.0.3");
  struct stat st;
  ASSERT_EQ(::stat((Dir() + "/10.90.0.3").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(IpamTest, RoundRobinAndPersistentAcrossInstances) {
  {
    EmbeddedIpam ipam(Dir(), Subnet("10.90.0.0/24"));
    EXPECT_EQ(Addr(ipam.Allocate("a", "eth0")), "10.90.0.2");
    EXPECT_EQ(Addr(ipam.Allocate("b", "eth0")), "10.90.0.3");
    ASSERT_TRUE(ipam.Release(*ParseIpv4("10.90.0.2"), "a", "eth0").ok());
  }
  // A new instance (crispd restarted) continues after the last one, not at
  // the just-released .2, and never hands out an address still on disk.
  EmbeddedIpam again(Dir(), Subnet("10.90.0.0/24"));
  EXPECT_EQ(Addr(again.Allocate("c", "eth0")), "10.90.0.4");
  EXPECT_EQ(again.AllocatedTo("b", "eth0"), std::vector<uint32_t>{*ParseIpv4("10.90.0.3")});
}

TEST_F(IpamTest, WrapsAroundAndRunsOut) {
  EmbeddedIpam ipam(Dir(), Subnet("10.90.0.0/29"));  // .2 - .6 (.1 gateway, .7 broadcast)
  std::vector<std::string> got;
  for (int i = 0; i < 5; ++i) got.push_back(Addr(ipam.Allocate("p" + std::to_string(i), "eth0")));
  EXPECT_EQ(got, (std::vector<std::string>{"10.90.0.2", "10.90.0.3", "10.90.0.4", "10.90.0.5", "10.90.0.6"}));
  auto full = ipam.Allocate("p5", "eth0");
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(full.status().message(), "10.90.0.0/29")) << full.status();
  ASSERT_TRUE(ipam.Release(*ParseIpv4("10.90.0.3"), "p1", "eth0").ok());
  EXPECT_EQ(Addr(ipam.Allocate("p6", "eth0")), "10.90.0.3") << "wrapped around to the free one";
}

TEST_F(IpamTest, ReleaseIsIdempotentAndOnlyForTheOwner) {
  EmbeddedIpam ipam(Dir(), Subnet("10.90.0.0/24"));
  uint32_t ip = *ipam.Allocate("a", "eth0");
  EXPECT_TRUE(ipam.Release(ip, "someone-else", "eth0").ok());
  EXPECT_TRUE(PathExists(Dir() + "/10.90.0.2")) << "not released for another owner";
  EXPECT_TRUE(ipam.Release(ip, "a", "eth1").ok());
  EXPECT_TRUE(PathExists(Dir() + "/10.90.0.2")) << "nor for another interface";
  EXPECT_TRUE(ipam.Release(ip, "a", "eth0").ok());
  EXPECT_FALSE(PathExists(Dir() + "/10.90.0.2"));
  EXPECT_TRUE(ipam.Release(ip, "a", "eth0").ok()) << "a second release is fine";
  EXPECT_TRUE(ipam.ReleaseById("never-allocated", "eth0").ok());
}

TEST_F(IpamTest, ReleaseByIdFindsTheAddressWithoutARecord) {
  EmbeddedIpam ipam(Dir(), Subnet("10.90.0.0/24"));
  (void)ipam.Allocate("a", "eth0");
  (void)ipam.Allocate("b", "eth0");
  ASSERT_TRUE(ipam.ReleaseById("a", "eth0").ok());
  EXPECT_FALSE(PathExists(Dir() + "/10.90.0.2"));
  EXPECT_TRUE(PathExists(Dir() + "/10.90.0.3"));
  EXPECT_TRUE(PathExists(Dir() + "/last_reserved_ip.0"));
}

TEST_F(IpamTest, ConcurrentAllocationsAreDistinctAcrossInstances) {
  // Two instances on one directory stand for two processes: O_EXCL is what
  // keeps them apart.
  EmbeddedIpam one(Dir(), Subnet("10.90.0.0/24")), two(Dir(), Subnet("10.90.0.0/24"));
  constexpr int kThreads = 8, kEach = 20;
  std::vector<std::vector<uint32_t>> got(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      EmbeddedIpam& ipam = t % 2 ? one : two;
      for (int i = 0; i < kEach; ++i) {
        auto ip = ipam.Allocate("t" + std::to_string(t) + "-" + std::to_string(i), "eth0");
        if (ip.ok()) got[t].push_back(*ip);
      }
    });
  }
  for (auto& t : ts) t.join();
  std::set<uint32_t> all;
  size_t n = 0;
  for (const auto& v : got) {
    n += v.size();
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(n, static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(all.size(), n) << "no address handed out twice";
  EXPECT_EQ(ListDir(Dir()).value_or(std::vector<std::string>{}).size(), n + 1) << "+ last_reserved_ip.0";
}

TEST_F(IpamTest, AnUnwritableDirIsAClearError) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/file", "x").ok());
  EmbeddedIpam ipam(dir_ + "/file/ipam", Subnet("10.90.0.0/24"));
  auto ip = ipam.Allocate("a", "eth0");
  EXPECT_FALSE(ip.ok());
  EXPECT_TRUE(absl::StrContains(ip.status().message(), dir_ + "/file")) << ip.status();
}

// A backend that only says what it is.
class Named : public PodNetwork {
 public:
  explicit Named(std::string kind) : kind_(std::move(kind)) {}
  std::string Kind() const override { return kind_; }
  absl::Status Ready() override { return absl::OkStatus(); }
  std::string NetworkName() override { return kind_; }
  std::string ConfigFile() override { return ""; }
  absl::StatusOr<PodNetworkResult> Setup(const PodNetworkRequest&) override { return PodNetworkResult{}; }
  absl::Status Teardown(const PodNetworkRequest&) override { return absl::OkStatus(); }
  absl::Status Check(const PodNetworkRequest&) override { return absl::OkStatus(); }
  std::optional<PodNetworkResult> CachedResult(const std::string&) override { return std::nullopt; }

 private:
  std::string kind_;
};

class SelectorTest : public testing::TempDirTest {
 protected:
  Named cni_{"cni"}, emb_{"embedded"};
};

TEST_F(SelectorTest, AutoPicksEmbeddedOnlyWithoutACniConfigFile) {
  std::string conf = dir_ + "/net.d";
  NetworkSelector sel(NetworkMode::kAuto, &cni_, &emb_, conf);
  EXPECT_EQ(sel.Current(), &emb_) << "no directory at all";
  ASSERT_TRUE(MkdirAll(conf).ok());
  EXPECT_EQ(sel.Current(), &emb_) << "empty directory";
  ASSERT_TRUE(WriteFileAtomic(conf + "/README", "not a config").ok());
  ASSERT_TRUE(MkdirAll(conf + "/old.conflist.d").ok());
  ASSERT_TRUE(MkdirAll(conf + "/dir.conflist").ok());
  EXPECT_EQ(sel.Current(), &emb_) << "other files and directories do not count";
  ASSERT_TRUE(WriteFileAtomic(conf + "/10-x.conflist", "{ broken").ok());
  EXPECT_EQ(sel.Current(), &cni_) << "a config file, even a broken one, means CNI (whose Ready() says why)";
  ASSERT_EQ(::unlink((conf + "/10-x.conflist").c_str()), 0);
  ASSERT_TRUE(WriteFileAtomic(conf + "/87-podman.json", "{}").ok());
  EXPECT_EQ(sel.Current(), &cni_);
}

TEST_F(SelectorTest, FixedModesAndKinds) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/10.conf", "{}").ok());
  EXPECT_EQ(NetworkSelector(NetworkMode::kEmbedded, &cni_, &emb_, dir_).Current(), &emb_);
  EXPECT_EQ(NetworkSelector(NetworkMode::kCni, &cni_, &emb_, "/nonexistent").Current(), &cni_);
  NetworkSelector sel(NetworkMode::kCni, &cni_, &emb_, dir_);
  EXPECT_EQ(sel.ByKind("cni"), &cni_);
  EXPECT_EQ(sel.ByKind(""), &cni_) << "records from before the choice existed";
  EXPECT_EQ(sel.ByKind("embedded"), &emb_) << "whatever the mode is now";
  EXPECT_EQ(sel.ByKind("weave"), nullptr);
  EXPECT_EQ(ParseNetworkMode("auto").value_or(NetworkMode::kCni), NetworkMode::kAuto);
  EXPECT_EQ(ParseNetworkMode("embedded").value_or(NetworkMode::kCni), NetworkMode::kEmbedded);
  EXPECT_FALSE(ParseNetworkMode("Embedded").ok());
  EXPECT_EQ(NetworkModeName(NetworkMode::kEmbedded), "embedded");
}

TEST(EmbeddedNetwork, BadOptionsAreNotReadyAndTouchNothing) {
  EmbeddedOptions o;
  o.subnet = "10.88.0.1/16";
  o.ipam_dir = "/nonexistent/crisp-ipam";
  o.state_dir = "/nonexistent/crisp-net";
  EmbeddedNetwork net(o);
  absl::Status s = net.Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "embedded_network.subnet")) << s;
  PodNetworkRequest req;
  req.container_id = "x";
  req.netns_path = "/nonexistent";
  EXPECT_FALSE(net.Setup(req).ok());
  EXPECT_FALSE(PathExists("/nonexistent/crisp-ipam"));
  EXPECT_EQ(net.Kind(), "embedded");
}

TEST(EmbeddedNetwork, BadRequestsAreInvalidArgument) {
  EmbeddedOptions o;
  o.ipam_dir = "/nonexistent/crisp-ipam";
  o.state_dir = "/nonexistent/crisp-net";
  EmbeddedNetwork net(o);
  PodNetworkRequest req;
  req.container_id = "../x";
  req.netns_path = "/nonexistent";
  EXPECT_EQ(net.Setup(req).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.Teardown(req).code(), absl::StatusCode::kInvalidArgument);
  req.container_id = "x";
  req.ifname = "eth0/../x";
  EXPECT_EQ(net.Setup(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.ifname = "eth0";
  req.port_mappings = {{"icmp", 80, 8080, ""}};
  EXPECT_EQ(net.Setup(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.port_mappings = {{"tcp", 80, 8080, "::1"}};
  auto r = net.Setup(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "IPv4 only")) << r.status();
  req.port_mappings = {{"tcp", 0, 8080, ""}};
  EXPECT_EQ(net.Setup(req).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(PathExists("/nonexistent/crisp-ipam"));
}

}  // namespace
}  // namespace crisp::netcni
