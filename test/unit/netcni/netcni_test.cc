// netcni with a fake plugin invoker: configuration loading, the exact stdin
// and environment plugins get, result parsing for every supported version,
// rollback and the DEL cache. The real exec invoker runs tiny shell scripts.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "test/testing/temp_dir.h"
#include "netcni/cni.h"

namespace crisp::netcni {
namespace {

using json = nlohmann::json;

struct Call {
  std::string plugin, command;
  std::map<std::string, std::string> env;
  json stdin_json;
};

class FakeInvoker : public CniInvoker {
 public:
  explicit FakeInvoker(std::vector<Call>* calls) : calls_(calls) {}
  absl::StatusOr<Result> Exec(const std::string& plugin_path, const std::vector<std::string>& env,
                              const std::string& stdin_data, absl::Duration) override {
    Call c;
    c.plugin = plugin_path.substr(plugin_path.find_last_of('/') + 1);
    for (const auto& e : env) c.env[e.substr(0, e.find('='))] = e.substr(e.find('=') + 1);
    c.command = c.env["CNI_COMMAND"];
    c.stdin_json = json::parse(stdin_data);
    calls_->push_back(c);
    Result r;
    if (fail_plugin == c.plugin && c.command == "ADD") {
      r.exit_code = 1;
      r.stdout_data = R"({"cniVersion":"1.0.0","code":7,"msg":"no more IPs","details":"range exhausted"})";
      return r;
    }
    if (c.command == "ADD") {
      json res = c.stdin_json.contains("prevResult") ? c.stdin_json["prevResult"] : json(add_result);
      res["seenBy"].push_back(c.plugin);
      r.stdout_data = res.dump();
    }
    return r;
  }
  std::string fail_plugin;
  json add_result = json::parse(R"({"cniVersion":"1.0.0",
      "interfaces":[{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"}],
      "ips":[{"address":"fd00::5/64","interface":2},{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2},
             {"address":"10.88.0.1/16","interface":0}]})");

 private:
  std::vector<Call>* calls_;
};

class CniTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/crisp-cni-test.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    dir_ = t;
    ASSERT_TRUE(MkdirAll(dir_ + "/net.d").ok());
    ASSERT_TRUE(MkdirAll(dir_ + "/bin").ok());
    for (const char* p : {"bridge", "portmap", "loopback", "bandwidth"})
      ASSERT_TRUE(WriteFileAtomic(dir_ + "/bin/" + p, "#!/bin/sh\n", 0755).ok());
    Recreate();
  }
  void TearDown() override { ASSERT_TRUE(RemoveAll(dir_).ok()); }
  void Recreate() {
    CniOptions o;
    o.conf_dir = dir_ + "/net.d";
    o.bin_dirs = {dir_ + "/nothing-here", dir_ + "/bin"};
    o.cache_dir = dir_ + "/cache";
    auto inv = std::make_unique<FakeInvoker>(&calls_);
    invoker_ = inv.get();
    mgr_ = std::make_unique<CniManager>(o, std::move(inv));
  }
  void WriteConf(const std::string& name, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/net.d/" + name, text).ok());
    // Directory mtimes have coarse granularity on some filesystems: make the change visible.
    struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    ts[1].tv_sec = ++tick_;
    ts[1].tv_nsec = 0;
    ::utimensat(AT_FDCWD, (dir_ + "/net.d").c_str(), ts, 0);
  }
  PodNetworkRequest Req() {
    PodNetworkRequest r;
    r.container_id = "sb1";
    r.netns_path = "/run/crisp/ns/sb1/net";
    r.pod_name = "web";
    r.pod_namespace = "default";
    r.pod_uid = "uid-1";
    r.port_mappings = {{"tcp", 80, 8080, ""}};
    r.dns_servers = {"10.96.0.10"};
    r.pod_cidr = "10.88.0.0/16";
    return r;
  }
  static constexpr char kList[] = R"({"cniVersion":"1.0.0","name":"net1","plugins":[
      {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
      {"type":"portmap","capabilities":{"portMappings":true}},
      {"type":"bandwidth","capabilities":{"bandwidth":true,"dns":true,"ipRanges":true}}]})";

  std::string dir_;
  std::vector<Call> calls_;
  FakeInvoker* invoker_ = nullptr;
  std::unique_ptr<CniManager> mgr_;
  time_t tick_ = 1000000;
};

TEST_F(CniTest, NotReadyWithoutConfigThenReloads) {
  auto s = mgr_->Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no network config found"), std::string::npos) << s;
  WriteConf("10-net.conflist", kList);
  EXPECT_TRUE(mgr_->Ready().ok()) << mgr_->Ready();
  EXPECT_EQ(mgr_->NetworkName(), "net1");
}

TEST_F(CniTest, LexicallyFirstFileWinsAndSingleConfFilesWork) {
  WriteConf("20-b.conflist", kList);
  WriteConf("10-a.conf", R"({"cniVersion":"0.4.0","name":"single","type":"bridge"})");
  WriteConf("05-ignored.txt", "not a config");
  ASSERT_TRUE(mgr_->Ready().ok());
  EXPECT_EQ(mgr_->NetworkName(), "single");
  EXPECT_TRUE(absl::EndsWith(mgr_->ConfigFile(), "10-a.conf"));
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].plugin, "bridge");
  EXPECT_EQ(calls_[0].stdin_json["name"], "single");
  EXPECT_EQ(calls_[0].stdin_json["cniVersion"], "0.4.0");
  calls_.clear();
  WriteConf("05-z.conflist", kList);  // a new config: DEL must still use the cached .conf
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].command, "DEL");
  EXPECT_EQ(calls_[0].stdin_json["name"], "single");
  ASSERT_TRUE(::unlink((dir_ + "/net.d/05-z.conflist").c_str()) == 0);
  ASSERT_TRUE(::unlink((dir_ + "/net.d/10-a.conf").c_str()) == 0);
  WriteConf("30-c.json", R"({"cniVersion":"0.3.1","name":"fromjson","type":"bridge"})");
  EXPECT_EQ(mgr_->NetworkName(), "net1") << "reloaded after the directory changed";
}

TEST_F(CniTest, InvalidConfigsExplainWhy) {
  WriteConf("10-bad.conflist", "{ not json");
  auto s = mgr_->Ready();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("10-bad.conflist"), std::string::npos) << s;
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[]})");
  EXPECT_NE(mgr_->Ready().message().find("plugins"), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]})");
  EXPECT_NE(mgr_->Ready().message().find("name"), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"nosuchplugin"}]})");
  s = mgr_->Ready();
  EXPECT_NE(s.message().find("\"nosuchplugin\" not found"), std::string::npos) << s;
  EXPECT_FALSE(mgr_->Setup(Req()).ok());
}

TEST_F(CniTest, AddChainsResultsAndPassesOnlyDeclaredCapabilities) {
  WriteConf("10-net.conflist", kList);
  auto r = mgr_->Setup(Req());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(calls_.size(), 3u);
  EXPECT_EQ(calls_[0].plugin, "bridge");
  EXPECT_EQ(calls_[1].plugin, "portmap");
  EXPECT_EQ(calls_[2].plugin, "bandwidth");
  for (const auto& c : calls_) {
    EXPECT_EQ(c.command, "ADD");
    EXPECT_EQ(c.env.at("CNI_CONTAINERID"), "sb1");
    EXPECT_EQ(c.env.at("CNI_NETNS"), "/run/crisp/ns/sb1/net");
    EXPECT_EQ(c.env.at("CNI_IFNAME"), "eth0");
    EXPECT_EQ(c.env.at("CNI_ARGS"),
              "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1");
    EXPECT_EQ(c.env.at("CNI_PATH"), dir_ + "/nothing-here:" + dir_ + "/bin");
    EXPECT_TRUE(c.env.count("PATH"));
    EXPECT_EQ(c.stdin_json["name"], "net1");
    EXPECT_EQ(c.stdin_json["cniVersion"], "1.0.0");
    EXPECT_FALSE(c.stdin_json.contains("capabilities"));
  }
  EXPECT_FALSE(calls_[0].stdin_json.contains("prevResult"));
  EXPECT_FALSE(calls_[0].stdin_json.contains("runtimeConfig")) << "bridge declares no capabilities";
  EXPECT_EQ(calls_[1].stdin_json["prevResult"]["seenBy"], json({"bridge"}));
  EXPECT_EQ(calls_[1].stdin_json["runtimeConfig"],
            json::parse(R"({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})"));
  EXPECT_EQ(calls_[2].stdin_json["prevResult"]["seenBy"], json({"bridge", "portmap"}));
  const json& rc = calls_[2].stdin_json["runtimeConfig"];
  EXPECT_FALSE(rc.contains("portMappings"));
  EXPECT_FALSE(rc.contains("bandwidth")) << "no bandwidth asked";
  EXPECT_EQ(rc["dns"]["servers"], json({"10.96.0.10"}));
  EXPECT_EQ(rc["ipRanges"], json::parse(R"([[{"subnet":"10.88.0.0/16"}]])"));
  // IPs inside the sandbox only, IPv4 first.
  ASSERT_EQ(r->ips.size(), 2u);
  EXPECT_EQ(r->ips[0].address, "10.88.0.5");
  EXPECT_EQ(r->ips[0].prefix_len, 16);
  EXPECT_EQ(r->ips[1].address, "fd00::5");
  EXPECT_TRUE(r->ips[1].ipv6);
  EXPECT_EQ(r->network_name, "net1");
  auto cached = mgr_->CachedResult("sb1");
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->ips[0].address, "10.88.0.5");
}

TEST_F(CniTest, FailedAddRollsBackInReverseAndNamesThePlugin) {
  WriteConf("10-net.conflist", kList);
  invoker_->fail_plugin = "portmap";
  auto r = mgr_->Setup(Req());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("CNI plugin \"portmap\" failed ADD: no more IPs: range exhausted"),
            std::string::npos)
      << r.status();
  std::vector<std::string> seq;
  for (const auto& c : calls_) seq.push_back(c.command + " " + c.plugin);
  EXPECT_EQ(seq, (std::vector<std::string>{"ADD bridge", "ADD portmap", "DEL portmap", "DEL bridge"}));
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value());
}

TEST_F(CniTest, TeardownUsesTheCacheEvenAfterTheConfigChanged) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  calls_.clear();
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"loopback"}]})");
  PodNetworkRequest del = Req();
  del.port_mappings.clear();  // as after a restart: taken from the cache
  ASSERT_TRUE(mgr_->Teardown(del).ok());
  std::vector<std::string> seq;
  for (const auto& c : calls_) seq.push_back(c.command + " " + c.plugin);
  EXPECT_EQ(seq, (std::vector<std::string>{"DEL bandwidth", "DEL portmap", "DEL bridge"}));
  EXPECT_EQ(calls_[0].stdin_json["name"], "net1");
  EXPECT_EQ(calls_[0].stdin_json["prevResult"]["seenBy"], json({"bridge", "portmap", "bandwidth"}))
      << "DEL gets the cached result as prevResult (>= 0.4.0)";
  EXPECT_EQ(calls_[1].stdin_json["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value()) << "cache entry removed";
  calls_.clear();
  // Without a cache: DEL with the current config, so an IP is never leaked.
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].plugin, "loopback");
}

TEST_F(CniTest, TeardownWithNothingConfiguredIsOk) { EXPECT_TRUE(mgr_->Teardown(Req()).ok()); }

TEST_F(CniTest, OldVersionsGetNoPrevResultOnDelAndNoCheck) {
  WriteConf("10-net.conflist", R"({"cniVersion":"0.3.1","name":"old","plugins":[{"type":"bridge"}]})");
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  calls_.clear();
  EXPECT_TRUE(mgr_->Check(Req()).ok());
  EXPECT_TRUE(calls_.empty()) << "CHECK exists from 0.4.0 on";
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_FALSE(calls_[0].stdin_json.contains("prevResult"));
}

TEST_F(CniTest, CheckRunsEveryPlugin) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  calls_.clear();
  ASSERT_TRUE(mgr_->Check(Req()).ok());
  ASSERT_EQ(calls_.size(), 3u);
  for (const auto& c : calls_) {
    EXPECT_EQ(c.command, "CHECK");
    EXPECT_TRUE(c.stdin_json.contains("prevResult"));
  }
  EXPECT_EQ(mgr_->Check([&] { auto r = Req(); r.container_id = "unknown"; return r; }()).code(),
            absl::StatusCode::kNotFound);
}

TEST(ParseResult, AllVersions) {
  // 0.3.0 / 0.3.1: ips carry "version".
  auto r = ParseResult("n", json::parse(R"({"cniVersion":"0.3.1",
      "interfaces":[{"name":"eth0","sandbox":"/x"}],
      "ips":[{"version":"4","address":"10.1.0.2/24","interface":0}]})"));
  ASSERT_EQ(r.ips.size(), 1u);
  EXPECT_EQ(r.ips[0].address, "10.1.0.2");
  EXPECT_EQ(r.ips[0].prefix_len, 24);
  // 0.4.0 dual stack, v6 listed first: v4 becomes primary.
  r = ParseResult("n", json::parse(R"({"cniVersion":"0.4.0",
      "interfaces":[{"name":"eth0","sandbox":"/x"}],
      "ips":[{"version":"6","address":"fd00::2/64","interface":0},{"version":"4","address":"10.1.0.2/24","interface":0}]})"));
  ASSERT_EQ(r.ips.size(), 2u);
  EXPECT_EQ(r.ips[0].address, "10.1.0.2");
  EXPECT_EQ(r.ips[1].address, "fd00::2");
  // 1.0.0 without interfaces (e.g. a plugin that reports none): every IP counts.
  r = ParseResult("n", json::parse(R"({"cniVersion":"1.0.0","ips":[{"address":"192.168.5.5/32"}]})"));
  ASSERT_EQ(r.ips.size(), 1u);
  EXPECT_EQ(r.ips[0].prefix_len, 32);
  // Malformed entries are skipped, not fatal.
  r = ParseResult("n", json::parse(R"({"ips":[{"nope":1},7,{"address":"10.0.0.9/8"}]})"));
  ASSERT_EQ(r.ips.size(), 1u);
  EXPECT_TRUE(ParseResult("n", json::object()).ips.empty());
}

class ExecInvokerTest : public crisp::testing::TempDirTest {
 protected:
  std::string Script(const std::string& name, const std::string& body) {
    std::string p = dir_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(p, "#!/bin/sh\n" + body, 0755).ok());
    return p;
  }
};

TEST_F(ExecInvokerTest, StdinStdoutStderrExitCodeAndEnv) {
  auto inv = NewExecInvoker();
  auto r = inv->Exec(Script("echo", "cat; echo \"$CNI_COMMAND\" >&2; exit 3\n"), {"CNI_COMMAND=ADD"},
                     std::string(200000, 'x'), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data.size(), 200000u) << "large stdin/stdout do not deadlock";
  EXPECT_EQ(r->stderr_data, "ADD\n");
}

TEST_F(ExecInvokerTest, TimeoutKills) {
  auto inv = NewExecInvoker();
  absl::Time t0 = absl::Now();
  auto r = inv->Exec(Script("slow", "exec sleep 30\n"), {}, "", absl::Milliseconds(200));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

TEST_F(ExecInvokerTest, MissingBinary) {
  auto r = NewExecInvoker()->Exec(dir_ + "/nope", {}, "", absl::Seconds(1));
  // posix_spawn reports exec failure as an error or as exit status 127.
  EXPECT_TRUE(!r.ok() || r->exit_code == 127);
}

}  // namespace
}  // namespace crisp::netcni
