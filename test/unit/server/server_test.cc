#include "common/file_util.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/container_store.h"
#include "server/cri_service.h"
#include "server/name_registry.h"
#include "server/sandbox_store.h"

namespace crisp::server {
namespace {

TEST(Config, DefaultsWhenEmpty) {
  auto c = ParseConfig("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->socket, "/run/crisp/crisp.sock");
  EXPECT_EQ(c->root, "/var/lib/crisp");
  EXPECT_EQ(c->shm_size, 64ull << 20);
  EXPECT_EQ(c->cni.conf_dir, "/etc/cni/net.d");
  EXPECT_EQ(c->cni.bin_dirs, (std::vector<std::string>{"/opt/cni/bin", "/usr/lib/cni"}));
}

TEST(Config, DefaultYamlParsesToDefaults) {
  auto c = ParseConfig(DefaultConfigYaml());
  ASSERT_TRUE(c.ok()) << c.status();
  Config d;
  EXPECT_EQ(ConfigToJson(*c), ConfigToJson(d));
}

TEST(Config, ParsesEveryKey) {
  auto c = ParseConfig(R"(
socket: /tmp/x/crisp.sock
root: /tmp/x/root
state: /tmp/x/state
log_level: debug
shim_path: /opt/crisp/crisp-shim
cgroup_parent: /pods
shm_size: 1Gi
cni: {conf_dir: /tmp/x/net.d, bin_dirs: [/a, /b], plugin_timeout: 1m30s}
registry:
  mirrors: {registry.k8s.io: ["http://127.0.0.1:5000"]}
  insecure: [myreg.local:5000]
  ca_files: {myreg.local:5000: /etc/crisp/certs/myreg.pem}
  auths: {myreg.local:5000: {username: u, password: p}}
streaming: {address: 0.0.0.0, port: 10010, tls_cert_file: /c.pem, tls_key_file: /k.pem, idle_timeout: 30m}
stats_period: 5s
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->streaming.address, "0.0.0.0");
  EXPECT_EQ(c->streaming.port, 10010);
  EXPECT_EQ(c->streaming.tls_key_file, "/k.pem");
  EXPECT_EQ(c->streaming.idle_timeout, absl::Minutes(30));
  EXPECT_EQ(c->stats_period, absl::Seconds(5));
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->shm_size, 1ull << 30);
  EXPECT_EQ(c->cni.plugin_timeout, absl::Seconds(90));
  EXPECT_EQ(c->cni.bin_dirs, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(c->registry.mirrors["registry.k8s.io"][0], "http://127.0.0.1:5000");
  EXPECT_EQ(c->registry.auths["myreg.local:5000"].password, "p");
  EXPECT_EQ(ConfigToJson(*c).find("\"p\""), std::string::npos) << "secrets never appear in status output";
}

TEST(Config, NetworkModeAndEmbeddedNetwork) {
  auto d = ParseConfig("");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->network, netcni::NetworkMode::kAuto);
  EXPECT_EQ(d->embedded_network.bridge, "crisp0");
  EXPECT_EQ(d->embedded_network.subnet, "10.88.0.0/16");
  EXPECT_TRUE(d->embedded_network.masquerade);
  auto c = ParseConfig(R"(
network: embedded
embedded_network: {bridge: crispemb0, subnet: 10.90.0.0/16, masquerade: false}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->network, netcni::NetworkMode::kEmbedded);
  EXPECT_EQ(c->embedded_network.bridge, "crispemb0");
  EXPECT_EQ(c->embedded_network.subnet, "10.90.0.0/16");
  EXPECT_FALSE(c->embedded_network.masquerade);
  EXPECT_NE(ConfigToJson(*c).find("\"network\":\"embedded\""), std::string::npos) << ConfigToJson(*c);
  auto cni = ParseConfig("network: cni");
  ASSERT_TRUE(cni.ok());
  EXPECT_EQ(cni->network, netcni::NetworkMode::kCni);
}

void ExpectError(const std::string& yaml, const std::string& needle) {
  auto c = ParseConfig(yaml);
  ASSERT_FALSE(c.ok()) << yaml;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status();
}

TEST(Config, ErrorsNameTheKey) {
  ExpectError("sockett: /x", "sockett");
  ExpectError("cni: {confdir: /x}", "cni.confdir");
  ExpectError("root: relative/path", "root");
  ExpectError("log_level: loud", "log_level");
  ExpectError("shm_size: lots", "shm_size");
  ExpectError("cni: {plugin_timeout: forever}", "cni.plugin_timeout");
  ExpectError("cni: {bin_dirs: /not/a/list}", "cni.bin_dirs");
  ExpectError("registry: {mirrors: {docker.io: [\"ftp://x\"]}}", "registry.mirrors.docker.io");
  ExpectError("registry: {auths: {h: {user: x}}}", "registry.auths.h.user");
  ExpectError("cgroup_parent: /a/../b", "cgroup_parent");
  ExpectError("streaming: {port: 70000}", "streaming.port");
  ExpectError("network: calico", "config key \"network\": unknown network \"calico\" (cni, embedded, auto)");
  ExpectError("network: [cni]", "network");
  ExpectError("embedded_network: {brige: x}", "embedded_network.brige");
  ExpectError("embedded_network: {bridge: a-very-long-bridge-name}", "embedded_network.bridge");
  ExpectError("embedded_network: {bridge: \"a/b\"}", "embedded_network.bridge");
  ExpectError("embedded_network: {subnet: 10.88.0.1/16}", "embedded_network.subnet");
  ExpectError("embedded_network: {subnet: 10.88.0.0/31}", "embedded_network.subnet");
  ExpectError("embedded_network: {subnet: fd00::/64}", "embedded_network.subnet");
  ExpectError("embedded_network: {masquerade: maybe}", "embedded_network.masquerade\": must be true or false");
  ExpectError("streaming: {port: http}", "streaming.port");
  ExpectError("streaming: {tls_cert_file: /c.pem}", "tls_key_file");
  ExpectError("streaming: {idle_timeout: 0s}", "streaming.idle_timeout");
  ExpectError("streaming: {addr: x}", "streaming.addr");
  ExpectError("stats_period: often", "stats_period");
  ExpectError("[1, 2]", "mapping");
  ExpectError("socket: [unclosed", "config");
}

TEST(Config, LoadMissingFile) {
  EXPECT_TRUE(LoadConfig("/nonexistent/crisp.yaml", false).ok());
  EXPECT_EQ(LoadConfig("/nonexistent/crisp.yaml", true).status().code(), absl::StatusCode::kNotFound);
}

TEST(NameRegistry, ReserveReleaseHolder) {
  NameRegistry r;
  ASSERT_TRUE(r.Reserve("web_default_uid_0", "id1").ok());
  EXPECT_TRUE(r.Reserve("web_default_uid_0", "id1").ok()) << "re-reserving by the holder is fine";
  auto s = r.Reserve("web_default_uid_0", "id2");
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("id1"), std::string::npos) << "the error names the holder";
  r.Release("web_default_uid_0", "id2");  // not the holder: no effect
  EXPECT_EQ(r.Holder("web_default_uid_0"), "id1");
  r.Release("web_default_uid_0", "id1");
  EXPECT_EQ(r.Holder("web_default_uid_0"), "");
  EXPECT_TRUE(r.Reserve("web_default_uid_0", "id2").ok());
}

podsandbox::Sandbox MakeSandbox(const std::string& id, const std::string& name,
                                std::map<std::string, std::string> labels = {}) {
  podsandbox::Sandbox sb;
  sb.id = id;
  sb.config.mutable_metadata()->set_name(name);
  sb.config.mutable_metadata()->set_namespace_("ns");
  sb.config.mutable_metadata()->set_uid("u");
  sb.config.mutable_metadata()->set_attempt(2);
  for (auto& [k, v] : labels) (*sb.config.mutable_labels())[k] = v;
  return sb;
}

TEST(SandboxStore, FindByIdAndPrefix) {
  SandboxStore s("pod sandbox");
  s.Add(std::make_shared<SandboxEntry>(MakeSandbox("abc123", "a")));
  s.Add(std::make_shared<SandboxEntry>(MakeSandbox("abd456", "b")));
  EXPECT_EQ((*s.Find("abc123"))->Snapshot()->id, "abc123");
  EXPECT_EQ((*s.Find("abc"))->Snapshot()->id, "abc123");
  EXPECT_EQ(s.Find("ab").status().code(), absl::StatusCode::kInvalidArgument) << "ambiguous prefix";
  EXPECT_EQ(s.Find("zzz").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.Find("abc1234").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.Find("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.Find("zzz").status().message()), "pod sandbox \"zzz\" not found");
  s.Remove("abc123");
  EXPECT_EQ((*s.Find("ab"))->Snapshot()->id, "abd456");
  EXPECT_EQ(s.All().size(), 1u);
}

TEST(SandboxStore, SnapshotsAreImmutableCopies) {
  SandboxEntry e(MakeSandbox("id", "a"));
  e.Publish([] { auto sb = MakeSandbox("id", "a"); sb.state = podsandbox::SandboxState::kReady; return sb; }());
  auto before = e.Snapshot();
  e.MarkNotReady();
  EXPECT_EQ(before->state, podsandbox::SandboxState::kReady) << "readers keep the snapshot they took";
  EXPECT_EQ(e.Snapshot()->state, podsandbox::SandboxState::kNotReady);
}

TEST(SandboxName, Format) { EXPECT_EQ(SandboxName(MakeSandbox("i", "web").config.metadata()), "web_ns_u_2"); }

TEST(MatchLabels, AllSelectorPairsMustMatch) {
  auto sb = MakeSandbox("i", "a", {{"app", "web"}, {"tier", "front"}});
  google::protobuf::Map<std::string, std::string> sel;
  EXPECT_TRUE(MatchLabels(sel, sb.config.labels()));
  sel["app"] = "web";
  EXPECT_TRUE(MatchLabels(sel, sb.config.labels()));
  sel["tier"] = "back";
  EXPECT_FALSE(MatchLabels(sel, sb.config.labels()));
  sel.erase("tier");
  sel["missing"] = "x";
  EXPECT_FALSE(MatchLabels(sel, sb.config.labels()));
}

TEST(ToCri, StatusCarriesNetworkAndNamespaces) {
  auto sb = MakeSandbox("id", "a", {{"k", "v"}});
  sb.state = podsandbox::SandboxState::kReady;
  sb.created_at = 42;
  sb.ips = {{"10.88.0.5", 16, false}, {"fd00::5", 64, true}};
  sb.config.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(::runtime::v1::POD);
  ::runtime::v1::PodSandboxStatus st;
  ToCriSandboxStatus(sb, &st);
  EXPECT_EQ(st.state(), ::runtime::v1::SANDBOX_READY);
  EXPECT_EQ(st.created_at(), 42);
  EXPECT_EQ(st.network().ip(), "10.88.0.5");
  ASSERT_EQ(st.network().additional_ips_size(), 1);
  EXPECT_EQ(st.network().additional_ips(0).ip(), "fd00::5");
  EXPECT_EQ(st.linux().namespaces().options().pid(), ::runtime::v1::POD);
  EXPECT_EQ(st.labels().at("k"), "v");
  EXPECT_EQ(st.metadata().attempt(), 2u);
}

}  // namespace
}  // namespace crisp::server

namespace crisp::server {
namespace {

TEST(Config, ShippedDefaultFileMatchesBuiltInDefaults) {
  auto text = ReadFile(CRISP_SOURCE_DIR "/deploy/crisp.yaml");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, DefaultConfigYaml()) << "deploy/crisp.yaml must stay `crispd config default`";
}

}  // namespace
}  // namespace crisp::server

namespace crisp::server {
namespace {

TEST(ContainerStore, MetadataRoundTripsAndNamesFollowCri) {
  Container c;
  c.id = "c0ffee";
  c.sandbox_id = "5a";
  c.config.mutable_metadata()->set_name("web");
  c.config.mutable_metadata()->set_attempt(3);
  c.config.add_command("/bin/sh");
  (*c.config.mutable_labels())["app"] = "x";
  c.image_ref = "busybox";
  c.image_id = "sha256:abc";
  c.state = cri::CONTAINER_EXITED;
  c.created_at = 1;
  c.started_at = 2;
  c.finished_at = 3;
  c.exit_code = 137;
  c.reason = "OOMKilled";
  c.message = "m";
  c.pid = {42, 4242};
  c.shim = {41, 4141};
  c.cgroup_path = "/crisp/pod/c0ffee";
  c.log_path = "/var/log/pods/p/web/3.log";
  c.shim_dir = "/run/crisp/containers/c0ffee";
  c.dir = "/var/lib/crisp/containers/c0ffee";
  c.plan_json = "{}";
  c.stop_signal = "SIGQUIT";
  c.uid = 1000;
  c.gid = 1001;
  c.groups = {1001, 5};
  auto back = ContainerFromJson(ContainerToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ContainerToJson(*back), ContainerToJson(c));
  EXPECT_EQ(back->config.command(0), "/bin/sh");
  EXPECT_EQ(back->pid.start_time, 4242u);
  EXPECT_EQ(ContainerFromJson("{").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ContainerFromJson(R"({"id":"x"})").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ContainerFromJson(R"({"id":"x","sandbox_id":"s","config":{},"state":99})").status().code(),
            absl::StatusCode::kDataLoss);

  cri::PodSandboxMetadata pod;
  pod.set_name("p");
  pod.set_namespace_("ns");
  pod.set_uid("u");
  EXPECT_EQ(ContainerName(c.config.metadata(), pod), "web_p_ns_u_3");

  ContainerStore store("container");
  store.Add(std::make_shared<ContainerEntry>(c));
  EXPECT_EQ((*store.Find("c0f"))->Snapshot()->exit_code, 137);
  EXPECT_EQ(std::string(store.Find("zz").status().message()), "container \"zz\" not found");
}

}  // namespace
}  // namespace crisp::server
