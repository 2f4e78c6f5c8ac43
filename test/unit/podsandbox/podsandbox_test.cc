#include "gtest/gtest.h"
#include "podsandbox/controller.h"
#include "podsandbox/sysctl.h"

namespace crisp::podsandbox {
namespace {

TEST(Sysctl, Classification) {
  EXPECT_EQ(ClassifySysctl("net.ipv4.ip_forward"), SysctlNamespace::kNet);
  EXPECT_EQ(ClassifySysctl("net/ipv4/conf/eth0.100/forwarding"), SysctlNamespace::kNet);
  EXPECT_EQ(ClassifySysctl("kernel.shm_rmid_forced"), SysctlNamespace::kIpc);
  EXPECT_EQ(ClassifySysctl("kernel.shmmax"), SysctlNamespace::kIpc);
  EXPECT_EQ(ClassifySysctl("kernel.msgmax"), SysctlNamespace::kIpc);
  EXPECT_EQ(ClassifySysctl("kernel.sem"), SysctlNamespace::kIpc);
  EXPECT_EQ(ClassifySysctl("fs.mqueue.msg_max"), SysctlNamespace::kIpc);
  EXPECT_EQ(ClassifySysctl("kernel.semaphore"), SysctlNamespace::kNone);
  EXPECT_EQ(ClassifySysctl("kernel.hostname"), SysctlNamespace::kNone);
  EXPECT_EQ(ClassifySysctl("vm.swappiness"), SysctlNamespace::kNone);
  EXPECT_EQ(ClassifySysctl("fs.file-max"), SysctlNamespace::kNone);
  EXPECT_EQ(ClassifySysctl("network.x"), SysctlNamespace::kNone);
}

TEST(Sysctl, PathForm) {
  EXPECT_EQ(SysctlPath("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
  EXPECT_EQ(SysctlPath("net/ipv4/conf/eth0.100/forwarding"), "net/ipv4/conf/eth0.100/forwarding");
}

TEST(Sysctl, Validation) {
  EXPECT_TRUE(ValidateSysctls({{"net.ipv4.ip_forward", "1"}, {"kernel.shm_rmid_forced", "1"}}, false, false).ok());
  EXPECT_EQ(ValidateSysctls({{"vm.swappiness", "1"}}, false, false).code(), absl::StatusCode::kInvalidArgument);
  auto s = ValidateSysctls({{"net.ipv4.ip_forward", "1"}}, true, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("host network"), std::string::npos);
  EXPECT_EQ(ValidateSysctls({{"kernel.msgmax", "1"}}, false, true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateSysctls({{"kernel.msgmax", "1"}}, true, false).ok()) << "IPC sysctls only need own IPC";
  EXPECT_EQ(ValidateSysctls({{"net/../../etc", "1"}}, false, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateSysctls({{"net..x", "1"}}, false, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateSysctls({{"net.ipv4.ip_forward", "1\n0"}}, false, false).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Files, ResolvConf) {
  ::runtime::v1::DNSConfig dns;
  dns.add_servers("10.0.0.10");
  dns.add_servers("10.0.0.11");
  dns.add_searches("ns.svc.cluster.local");
  dns.add_searches("cluster.local");
  dns.add_options("ndots:5");
  EXPECT_EQ(ResolvConfContent(dns),
            "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n");
  EXPECT_EQ(ResolvConfContent(::runtime::v1::DNSConfig()), "");
  EXPECT_NE(DefaultHostsContent().find("127.0.0.1\tlocalhost"), std::string::npos);
}

TEST(Meta, JsonRoundTrip) {
  Sandbox sb;
  sb.id = "abc";
  sb.config.mutable_metadata()->set_name("web");
  sb.config.mutable_metadata()->set_attempt(3);
  sb.config.set_hostname("h");
  (*sb.config.mutable_labels())["app"] = "x";
  sb.config.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(::runtime::v1::POD);
  sb.state = SandboxState::kReady;
  sb.created_at = 123456789012345;
  sb.pause = {4242, 99};
  sb.host_ipc = true;
  sb.pid_mode = ::runtime::v1::POD;
  sb.ns_paths = {{"net", "/run/crisp/ns/abc/net"}};
  sb.cgroup_path = "/crisp/abc";
  sb.network_set_up = true;
  sb.ips = {{"10.88.0.2", 16, false}};
  sb.cni_result = {{"cniVersion", "1.0.0"}};
  sb.resolv_conf_path = "/r";
  auto back = SandboxFromJson(SandboxToJson(sb));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, "abc");
  EXPECT_EQ(back->config.metadata().name(), "web");
  EXPECT_EQ(back->config.metadata().attempt(), 3u);
  EXPECT_EQ(back->config.labels().at("app"), "x");
  EXPECT_EQ(back->state, SandboxState::kReady);
  EXPECT_EQ(back->created_at, 123456789012345);
  EXPECT_EQ(back->pause.pid, 4242);
  EXPECT_EQ(back->pause.start_time, 99u);
  EXPECT_TRUE(back->host_ipc);
  EXPECT_EQ(back->pid_mode, ::runtime::v1::POD);
  EXPECT_EQ(back->netns_path(), "/run/crisp/ns/abc/net");
  EXPECT_EQ(back->cgroup_path, "/crisp/abc");
  EXPECT_TRUE(back->network_set_up);
  ASSERT_EQ(back->ips.size(), 1u);
  EXPECT_EQ(back->ips[0].address, "10.88.0.2");
  EXPECT_EQ(back->cni_result["cniVersion"], "1.0.0");
  EXPECT_EQ(back->resolv_conf_path, "/r");
}

TEST(Cgroup, ResourcesPlusOverhead) {
  ::runtime::v1::LinuxPodSandboxConfig linux;
  EXPECT_FALSE(PodCgroupResources(linux).memory_limit.has_value());
  linux.mutable_overhead()->set_memory_limit_in_bytes(10 << 20);
  linux.mutable_overhead()->set_cpu_quota(10000);
  linux.mutable_overhead()->set_cpu_period(100000);
  EXPECT_EQ(*PodCgroupResources(linux).memory_limit, 10 << 20) << "overhead alone";
  auto* r = linux.mutable_resources();
  r->set_memory_limit_in_bytes(100 << 20);
  r->set_cpu_quota(50000);
  r->set_cpu_period(100000);
  r->set_cpu_shares(512);
  auto res = PodCgroupResources(linux);
  EXPECT_EQ(*res.memory_limit, 110 << 20);
  EXPECT_EQ(*res.cpu_quota, 60000);
  EXPECT_EQ(*res.cpu_period, 100000);
  EXPECT_EQ(*res.cpu_shares, 512) << "no shares in the overhead: unchanged";
}

TEST(Meta, CorruptIsDataLoss) {
  EXPECT_EQ(SandboxFromJson("{not json").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SandboxFromJson("{}").status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace crisp::podsandbox
