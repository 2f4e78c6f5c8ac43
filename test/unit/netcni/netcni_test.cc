// netcni with a fake plugin invoker: configuration loading, the exact stdin
// and environment plugins get, result parsing for every supported version,
// rollback and the DEL cache. The real exec invoker runs tiny shell scripts.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "netcni/cni.h"
#include "test/testing/temp_dir.h"

namespace crisp::netcni {
namespace {

using json = nlohmann::json;

struct Call {
  std::string plugin, command;
  std::map<std::string, std::string> env;
  json stdin_json;
};

// Records every call; ADD echoes prevResult (or `add_result` for the first
// plugin) with the plugin's name appended to "seenBy", so tests can see the
// chain.
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
    if (on_call) on_call(c);
    std::string key = c.command + " " + c.plugin;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_->push_back(c);
      if (errors.count(key)) return errors[key];
    }
    Result r;
    if (failures.count(key)) {
      r.exit_code = 1;
      r.stdout_data = failures[key].first;
      r.stderr_data = failures[key].second;
      return r;
    }
    if (outputs.count(key)) {
      r.stdout_data = outputs[key];
    } else if (c.command == "ADD") {
      json res = c.stdin_json.contains("prevResult") ? c.stdin_json["prevResult"] : add_result;
      res["seenBy"].push_back(c.plugin);
      r.stdout_data = res.dump();
    }
    return r;
  }
  // "ADD portmap" -> {stdout, stderr} of a failing run.
  std::map<std::string, std::pair<std::string, std::string>> failures;
  std::map<std::string, absl::Status> errors;  // the invoker itself fails
  std::map<std::string, std::string> outputs;  // stdout of a successful run
  std::function<void(const Call&)> on_call;
  json add_result = json::parse(R"({"cniVersion":"1.0.0",
      "interfaces":[{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"}],
      "ips":[{"address":"fd00::5/64","interface":2},{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2},
             {"address":"10.88.0.1/16","interface":0}]})");

 private:
  std::mutex mu_;
  std::vector<Call>* calls_;
};

constexpr char kJsonError[] =
    R"({"cniVersion":"1.0.0","code":7,"msg":"no more IPs","details":"range exhausted"})";

class CniTest : public crisp::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    ASSERT_TRUE(MkdirAll(dir_ + "/net.d").ok());
    ASSERT_TRUE(MkdirAll(dir_ + "/bin").ok());
    for (const char* p : {"bridge", "portmap", "loopback", "bandwidth"}) AddPlugin(p);
    Recreate();
  }
  void AddPlugin(const std::string& name) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/bin/" + name, "#!/bin/sh\n", 0755).ok());
  }
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
  }
  void RemoveConf(const std::string& name) { ASSERT_EQ(::unlink((dir_ + "/net.d/" + name).c_str()), 0); }
  PodNetworkRequest Req(const std::string& id = "sb1") {
    PodNetworkRequest r;
    r.container_id = id;
    r.netns_path = "/run/crisp/ns/" + id + "/net";
    r.pod_name = "web";
    r.pod_namespace = "default";
    r.pod_uid = "uid-1";
    r.port_mappings = {{"tcp", 80, 8080, ""}};
    r.dns_servers = {"10.96.0.10"};
    r.pod_cidr = "10.88.0.0/16";
    return r;
  }
  std::vector<std::string> Seq() {
    std::vector<std::string> seq;
    for (const auto& c : calls_) seq.push_back(c.command + " " + c.plugin);
    return seq;
  }
  static constexpr char kList[] = R"({"cniVersion":"1.0.0","name":"net1","plugins":[
      {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
      {"type":"portmap","capabilities":{"portMappings":true}},
      {"type":"bandwidth","capabilities":{"bandwidth":true,"dns":true,"ipRanges":true,"portMappings":false}}]})";

  std::vector<Call> calls_;
  FakeInvoker* invoker_ = nullptr;
  std::unique_ptr<CniManager> mgr_;
};

using Strings = std::vector<std::string>;

// ---- configuration loading ----

TEST_F(CniTest, NotReadyWithoutConfigThenReloads) {
  auto s = mgr_->Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no network config found in " + dir_ + "/net.d"), std::string::npos) << s;
  EXPECT_EQ(mgr_->NetworkName(), "");
  EXPECT_FALSE(mgr_->Setup(Req()).ok());
  EXPECT_TRUE(calls_.empty());
  WriteConf("10-net.conflist", kList);
  EXPECT_TRUE(mgr_->Ready().ok()) << mgr_->Ready();
  EXPECT_EQ(mgr_->NetworkName(), "net1");
  EXPECT_EQ(mgr_->ConfigFile(), dir_ + "/net.d/10-net.conflist");
}

TEST_F(CniTest, MissingConfDirIsNotReady) {
  ASSERT_TRUE(RemoveAll(dir_ + "/net.d").ok());
  auto s = mgr_->Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no network config found"), std::string::npos) << s;
  ASSERT_TRUE(MkdirAll(dir_ + "/net.d").ok());
  WriteConf("10-net.conflist", kList);
  EXPECT_TRUE(mgr_->Ready().ok()) << "the directory appearing later is noticed";
}

TEST_F(CniTest, LexicallyFirstFileWinsAndSingleConfFilesWork) {
  WriteConf("20-b.conflist", kList);
  WriteConf("10-a.conf", R"({"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"br9"})");
  WriteConf("05-ignored.txt", "not a config");
  ASSERT_TRUE(MkdirAll(dir_ + "/net.d/00-dir.conf").ok());  // not a file: skipped
  ASSERT_TRUE(mgr_->Ready().ok()) << mgr_->Ready();
  EXPECT_EQ(mgr_->NetworkName(), "single");
  EXPECT_TRUE(absl::EndsWith(mgr_->ConfigFile(), "10-a.conf"));
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].plugin, "bridge");
  EXPECT_EQ(calls_[0].stdin_json, json::parse(R"({"cniVersion":"0.4.0","name":"single","type":"bridge",
                                                  "bridge":"br9"})"));
  // .json is a single-plugin file too, and comes after .conf names sorting first.
  RemoveConf("10-a.conf");
  WriteConf("15-c.json", R"({"cniVersion":"0.3.1","name":"fromjson","type":"loopback"})");
  EXPECT_EQ(mgr_->NetworkName(), "fromjson");
  RemoveConf("15-c.json");
  EXPECT_EQ(mgr_->NetworkName(), "net1") << "reloaded after the directory changed";
}

TEST_F(CniTest, ReloadsWhenTheChosenFileChanges) {
  WriteConf("10-net.conflist", kList);
  ASSERT_EQ(mgr_->NetworkName(), "net1");
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"net2","plugins":[{"type":"bridge"}]})");
  EXPECT_EQ(mgr_->NetworkName(), "net2");
  // Rewritten in place (same inode; the directory's mtime does not change).
  int fd = ::open((dir_ + "/net.d/10-net.conflist").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  std::string text = R"({"cniVersion":"1.0.0","name":"net3-longer","plugins":[{"type":"bridge"}]})";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  EXPECT_EQ(mgr_->NetworkName(), "net3-longer");
}

TEST_F(CniTest, ConfFileHoldingAListIsAccepted) {
  WriteConf("10-net.conf", kList);
  ASSERT_TRUE(mgr_->Ready().ok()) << mgr_->Ready();
  EXPECT_EQ(mgr_->NetworkName(), "net1");
}

TEST_F(CniTest, InvalidConfigsExplainWhy) {
  auto ready_message = [&] { return std::string(mgr_->Ready().message()); };
  WriteConf("10-bad.conflist", "{ not json");
  auto s = mgr_->Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("parse error in file " + dir_ + "/net.d/10-bad.conflist"), std::string::npos)
      << s;
  EXPECT_NE(s.message().find("line 1"), std::string::npos) << "the JSON error says where: " << s;
  EXPECT_EQ(mgr_->NetworkName(), "");
  WriteConf("10-bad.conflist", "[1,2]");
  EXPECT_NE(ready_message().find("not a JSON object"), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[]})");
  EXPECT_NE(ready_message().find("\"plugins\" must be a non-empty list"), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]})");
  EXPECT_NE(ready_message().find("\"name\" is missing"), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]})");
  EXPECT_NE(ready_message().find("needs a \"type\""), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]})");
  EXPECT_NE(ready_message().find("invalid plugin type"), std::string::npos);
  WriteConf("10-bad.conflist", R"({"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]})");
  EXPECT_NE(ready_message().find("\"0.2.0\" is not supported"), std::string::npos);
  WriteConf("10-bad.conf", R"({"cniVersion":"1.0.0","type":"bridge"})");
  EXPECT_NE(ready_message().find("10-bad.conf: network \"name\" is missing"), std::string::npos)
      << ready_message();
  RemoveConf("10-bad.conf");
  WriteConf("10-bad.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},
      {"type":"nosuchplugin"}]})");
  s = mgr_->Ready();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("plugin \"nosuchplugin\" not found in bin_dirs (" + dir_ +
                             "/nothing-here:" + dir_ + "/bin)"),
            std::string::npos)
      << s;
  EXPECT_EQ(mgr_->NetworkName(), "n") << "the config itself loads";
  auto r = mgr_->Setup(Req());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nosuchplugin"), std::string::npos);
  EXPECT_TRUE(calls_.empty()) << "nothing runs when a plugin is missing, not even the first one";
  AddPlugin("nosuchplugin");
  EXPECT_TRUE(mgr_->Ready().ok()) << "binaries are looked up on every call";
}

TEST_F(CniTest, MissingVersionDefaultsTo030) {
  WriteConf("10-net.conflist", R"({"name":"n","plugins":[{"type":"bridge"}]})");
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  EXPECT_EQ(calls_[0].stdin_json["cniVersion"], "0.3.0");
}

// ---- what plugins get ----

TEST_F(CniTest, AddChainsResultsAndPassesOnlyDeclaredCapabilities) {
  WriteConf("10-net.conflist", kList);
  auto r = mgr_->Setup(Req());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(Seq(), (Strings{"ADD bridge", "ADD portmap", "ADD bandwidth"}));
  const char* path = ::getenv("PATH");
  for (const auto& c : calls_) {
    EXPECT_EQ(c.env.size(), 7u) << "exactly the CNI variables and PATH";
    EXPECT_EQ(c.env.at("CNI_CONTAINERID"), "sb1");
    EXPECT_EQ(c.env.at("CNI_NETNS"), "/run/crisp/ns/sb1/net");
    EXPECT_EQ(c.env.at("CNI_IFNAME"), "eth0");
    EXPECT_EQ(c.env.at("CNI_ARGS"),
              "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;"
              "K8S_POD_UID=uid-1");
    EXPECT_EQ(c.env.at("CNI_PATH"), dir_ + "/nothing-here:" + dir_ + "/bin");
    EXPECT_EQ(c.env.at("PATH"), path ? path : "");
    EXPECT_EQ(c.stdin_json["name"], "net1");
    EXPECT_EQ(c.stdin_json["cniVersion"], "1.0.0");
  }
  // The plugin's own object, untouched (libcni keeps "capabilities" too).
  EXPECT_EQ(calls_[0].stdin_json, json::parse(R"({"cniVersion":"1.0.0","name":"net1","type":"bridge",
      "bridge":"cni0","ipam":{"type":"host-local"}})"))
      << "no prevResult for the first plugin, no runtimeConfig without capabilities";
  EXPECT_EQ(calls_[1].stdin_json["capabilities"], json::parse(R"({"portMappings":true})"));
  EXPECT_EQ(calls_[1].stdin_json["prevResult"]["seenBy"], json({"bridge"}));
  EXPECT_EQ(calls_[1].stdin_json["runtimeConfig"],
            json::parse(R"({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})"));
  EXPECT_EQ(calls_[2].stdin_json["prevResult"]["seenBy"], json({"bridge", "portmap"}));
  EXPECT_EQ(calls_[2].stdin_json["runtimeConfig"], json::parse(R"({
      "dns":{"servers":["10.96.0.10"],"searches":[],"options":[]},
      "ipRanges":[[{"subnet":"10.88.0.0/16"}]]})"))
      << "portMappings declared false; no bandwidth requested";
  // The final result, IPs inside the sandbox only, IPv4 first.
  EXPECT_EQ(r->raw_result["seenBy"], json({"bridge", "portmap", "bandwidth"}));
  EXPECT_EQ(r->network_name, "net1");
  ASSERT_EQ(r->ips.size(), 2u);
  EXPECT_EQ(r->ips[0].address, "10.88.0.5");
  EXPECT_EQ(r->ips[0].prefix_len, 16);
  EXPECT_FALSE(r->ips[0].ipv6);
  EXPECT_EQ(r->ips[1].address, "fd00::5");
  EXPECT_EQ(r->ips[1].prefix_len, 64);
  EXPECT_TRUE(r->ips[1].ipv6);
  auto cached = mgr_->CachedResult("sb1");
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->network_name, "net1");
  EXPECT_EQ(cached->ips[0].address, "10.88.0.5");
  EXPECT_EQ(cached->raw_result, r->raw_result);
}

TEST_F(CniTest, CapabilityArgumentsInCniForm) {
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},
      {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":true,"dns":true}}]})");
  PodNetworkRequest req = Req();
  req.port_mappings = {{"UDP", 53, 5353, "127.0.0.1"}, {"tcp", 80, 0, ""}, {"SCTP", 9, 99, ""}};
  req.dns_servers.clear();
  req.bandwidth = BandwidthLimits{1000, 2000, 3000, 4000};
  ASSERT_TRUE(mgr_->Setup(req).ok());
  EXPECT_EQ(calls_[1].stdin_json["runtimeConfig"], json::parse(R"({
      "portMappings":[{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                      {"hostPort":99,"containerPort":9,"protocol":"sctp"}],
      "bandwidth":{"ingressRate":1000,"ingressBurst":2000,"egressRate":3000,"egressBurst":4000}})"))
      << "lower-case protocols, no mapping without a host port, no empty dns";
}

TEST_F(CniTest, InvalidRequestIsRejected) {
  WriteConf("10-net.conflist", kList);
  for (const char* id : {"", "..", "a/b"}) {
    PodNetworkRequest req = Req();
    req.container_id = id;
    EXPECT_EQ(mgr_->Setup(req).status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_EQ(mgr_->Teardown(req).code(), absl::StatusCode::kInvalidArgument) << id;
  }
  EXPECT_TRUE(calls_.empty());
}

// ---- failures ----

TEST_F(CniTest, FailedAddRollsBackInReverseAndNamesThePlugin) {
  WriteConf("10-net.conflist", kList);
  invoker_->failures["ADD portmap"] = {kJsonError, "ignored stderr"};
  auto r = mgr_->Setup(Req());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "CNI plugin \"portmap\" failed ADD: no more IPs: range exhausted");
  EXPECT_EQ(Seq(), (Strings{"ADD bridge", "ADD portmap", "DEL portmap", "DEL bridge"}));
  // DEL gets what was added so far (bridge's result) as prevResult.
  EXPECT_EQ(calls_[2].stdin_json["prevResult"]["seenBy"], json({"bridge"}));
  EXPECT_EQ(calls_[3].stdin_json["prevResult"]["seenBy"], json({"bridge"}));
  EXPECT_EQ(calls_[2].stdin_json["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value());
  calls_.clear();
  EXPECT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL bandwidth", "DEL portmap", "DEL bridge"}))
      << "no cache: DEL with the current config";
}

TEST_F(CniTest, FirstPluginFailureUsesStderrWhenStdoutIsNotJson) {
  WriteConf("10-net.conflist", kList);
  invoker_->failures["ADD bridge"] = {"garbage", "failed to create bridge \"cni0\": permission denied\n"};
  auto r = mgr_->Setup(Req());
  EXPECT_EQ(r.status().message(),
            "CNI plugin \"bridge\" failed ADD: failed to create bridge \"cni0\": permission denied");
  EXPECT_EQ(Seq(), (Strings{"ADD bridge", "DEL bridge"}));
  EXPECT_FALSE(calls_[1].stdin_json.contains("prevResult"));
  calls_.clear();
  invoker_->failures["ADD bridge"] = {"", ""};
  r = mgr_->Setup(Req());
  EXPECT_EQ(r.status().message(), "CNI plugin \"bridge\" failed ADD: exit status 1 and no output");
}

TEST_F(CniTest, InvokerErrorsKeepTimeoutsAndNameThePlugin) {
  WriteConf("10-net.conflist", kList);
  invoker_->errors["ADD bandwidth"] = absl::DeadlineExceededError("did not finish within 1s and was killed");
  auto r = mgr_->Setup(Req());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(r.status().message().find("CNI plugin \"bandwidth\" ADD: did not finish"), std::string::npos)
      << r.status();
  EXPECT_EQ(Seq(), (Strings{"ADD bridge", "ADD portmap", "ADD bandwidth", "DEL bandwidth", "DEL portmap",
                            "DEL bridge"}));
  invoker_->errors.clear();
  invoker_->errors["ADD bridge"] = absl::InvalidArgumentError("spawn: bad");
  EXPECT_EQ(mgr_->Setup(Req()).status().code(), absl::StatusCode::kInternal) << "never INVALID_ARGUMENT";
}

TEST_F(CniTest, AddResultThatIsNotJsonFails) {
  WriteConf("10-net.conflist", kList);
  invoker_->outputs["ADD portmap"] = "ok\n";
  auto r = mgr_->Setup(Req());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.status().message(), "CNI plugin \"portmap\" ADD printed no JSON result: \"ok\"");
  EXPECT_EQ(Seq(), (Strings{"ADD bridge", "ADD portmap", "DEL portmap", "DEL bridge"}));
}

TEST_F(CniTest, FailedRollbackIsRecordedForTeardown) {
  WriteConf("10-net.conflist", kList);
  invoker_->failures["ADD portmap"] = {kJsonError, ""};
  invoker_->failures["DEL bridge"] = {R"({"code":11,"msg":"try again"})", ""};
  auto r = mgr_->Setup(Req());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("failed ADD: no more IPs: range exhausted (undoing it failed too: "
                                      "CNI plugin \"bridge\" failed DEL: try again)"),
            std::string::npos)
      << r.status();
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value()) << "an incomplete setup is no result";
  EXPECT_EQ(mgr_->Check(Req()).code(), absl::StatusCode::kFailedPrecondition);
  // The config changes; Teardown must still undo with the one ADD used.
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"loopback"}]})");
  calls_.clear();
  EXPECT_FALSE(mgr_->Teardown(Req()).ok()) << "DEL bridge still fails";
  invoker_->failures.clear();
  calls_.clear();
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL bandwidth", "DEL portmap", "DEL bridge"}));
  EXPECT_EQ(calls_[0].stdin_json["name"], "net1");
  calls_.clear();
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL loopback"})) << "the record is gone";
}

// ---- teardown and the cache ----

TEST_F(CniTest, TeardownUsesTheCacheEvenAfterTheConfigChanged) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  calls_.clear();
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"loopback"}]})");
  // As after a restart: the caller no longer knows the port mappings, CIDR or pod identity.
  PodNetworkRequest del;
  del.container_id = "sb1";
  ASSERT_TRUE(mgr_->Teardown(del).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL bandwidth", "DEL portmap", "DEL bridge"}));
  for (const auto& c : calls_) {
    EXPECT_EQ(c.stdin_json["name"], "net1");
    EXPECT_EQ(c.stdin_json["prevResult"]["seenBy"], json({"bridge", "portmap", "bandwidth"}))
        << "DEL gets the cached result as prevResult (>= 0.4.0)";
    EXPECT_EQ(c.env.at("CNI_NETNS"), "/run/crisp/ns/sb1/net") << "from the cache";
    EXPECT_EQ(c.env.at("CNI_ARGS"),
              "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;"
              "K8S_POD_UID=uid-1");
  }
  EXPECT_EQ(calls_[1].stdin_json["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
  EXPECT_EQ(calls_[0].stdin_json["runtimeConfig"]["ipRanges"][0][0]["subnet"], "10.88.0.0/16");
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value()) << "cache entry removed";
  calls_.clear();
  // Without a cache: DEL with the current config, so an IP is never leaked.
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL loopback"}));
  EXPECT_FALSE(calls_[0].stdin_json.contains("prevResult"));
}

TEST_F(CniTest, TeardownSurvivesTheConfigDisappearingAndAManagerRestart) {
  WriteConf("10-net.conf", R"({"cniVersion":"1.0.0","name":"single","type":"bridge"})");
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  RemoveConf("10-net.conf");
  Recreate();  // crispd restarted
  calls_.clear();
  ASSERT_TRUE(mgr_->CachedResult("sb1").has_value());
  EXPECT_EQ(mgr_->CachedResult("sb1")->ips[0].address, "10.88.0.5");
  PodNetworkRequest del = Req();
  del.netns_path = "/proc/does/not/exist";  // the namespace is gone: still DEL, with that path
  ASSERT_TRUE(mgr_->Teardown(del).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL bridge"}));
  EXPECT_EQ(calls_[0].env.at("CNI_NETNS"), "/proc/does/not/exist");
  EXPECT_EQ(calls_[0].stdin_json["name"], "single");
}

TEST_F(CniTest, FailedDelKeepsTheCacheForARetry) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  calls_.clear();
  invoker_->failures["DEL portmap"] = {R"({"code":11,"msg":"iptables is locked"})", ""};
  auto s = mgr_->Teardown(Req());
  EXPECT_EQ(s.message(), "CNI plugin \"portmap\" failed DEL: iptables is locked");
  EXPECT_EQ(Seq(), (Strings{"DEL bandwidth", "DEL portmap"}));
  EXPECT_TRUE(mgr_->CachedResult("sb1").has_value());
  invoker_->failures.clear();
  calls_.clear();
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL bandwidth", "DEL portmap", "DEL bridge"}));
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value());
}

TEST_F(CniTest, TeardownWithNothingConfiguredIsOk) {
  EXPECT_TRUE(mgr_->Teardown(Req()).ok());
  // A config whose plugin is missing and no cache: nothing could have been added.
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"gone"}]})");
  EXPECT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_TRUE(calls_.empty());
}

TEST_F(CniTest, CorruptCacheFallsBackToTheCurrentConfig) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(MkdirAll(dir_ + "/cache/results").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/cache/results/sb1-eth0.json", "{truncated").ok());
  EXPECT_FALSE(mgr_->CachedResult("sb1").has_value());
  ASSERT_TRUE(mgr_->Teardown(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"DEL bandwidth", "DEL portmap", "DEL bridge"}));
  EXPECT_FALSE(PathExists(dir_ + "/cache/results/sb1-eth0.json"));
}

TEST_F(CniTest, CacheEntryHoldsWhatDelNeeds) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/cache/results/sb1-eth0.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto text = ReadFile(dir_ + "/cache/results/sb1-eth0.json");
  ASSERT_TRUE(text.ok());
  json c = json::parse(*text);
  EXPECT_EQ(c["config"], json::parse(kList)) << "the exact list";
  EXPECT_EQ(c["netns"], "/run/crisp/ns/sb1/net");
  EXPECT_EQ(c["ifName"], "eth0");
  EXPECT_TRUE(absl::StrContains(c["cniArgs"].get<std::string>(), "K8S_POD_NAME=web"));
  EXPECT_EQ(c["capabilityArgs"]["portMappings"][0]["containerPort"], 80);
  EXPECT_EQ(c["result"]["seenBy"], json({"bridge", "portmap", "bandwidth"}));
}

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

TEST_F(CniTest, CheckRunsEveryPluginWithTheCachedConfigAndResult) {
  WriteConf("10-net.conflist", kList);
  ASSERT_TRUE(mgr_->Setup(Req()).ok());
  calls_.clear();
  WriteConf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"loopback"}]})");
  ASSERT_TRUE(mgr_->Check(Req()).ok());
  EXPECT_EQ(Seq(), (Strings{"CHECK bridge", "CHECK portmap", "CHECK bandwidth"}));
  for (const auto& c : calls_) {
    EXPECT_EQ(c.stdin_json["name"], "net1");
    EXPECT_EQ(c.stdin_json["prevResult"]["seenBy"], json({"bridge", "portmap", "bandwidth"}));
  }
  EXPECT_EQ(calls_[1].stdin_json["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
  invoker_->failures["CHECK portmap"] = {R"({"code":999,"msg":"chain missing"})", ""};
  auto s = mgr_->Check(Req());
  EXPECT_EQ(s.message(), "CNI plugin \"portmap\" failed CHECK: chain missing");
  EXPECT_EQ(mgr_->Check(Req("unknown")).code(), absl::StatusCode::kNotFound);
}

// Plugins run without any lock held: four sandboxes are all inside their
// first plugin at the same time.
TEST_F(CniTest, ConcurrentSetupsRunInParallel) {
  WriteConf("10-net.conflist", kList);
  std::mutex mu;
  std::condition_variable cv;
  int inside = 0;
  std::atomic<bool> all_met{true};
  invoker_->on_call = [&](const Call& c) {
    if (c.command != "ADD" || c.plugin != "bridge") return;
    std::unique_lock<std::mutex> lock(mu);
    ++inside;
    cv.notify_all();
    if (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return inside >= 4; })) all_met = false;
  };
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { results[i] = mgr_->Setup(Req(absl::StrCat("sb", i))).status(); });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(all_met);
  for (const auto& s : results) EXPECT_TRUE(s.ok()) << s;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(mgr_->CachedResult(absl::StrCat("sb", i)).has_value());
}

// ---- result parsing ----

TEST(ParseResult, AllVersions) {
  // 0.3.0 / 0.3.1: ips carry "version".
  for (const char* v : {"0.3.0", "0.3.1"}) {
    auto r = ParseResult("n", json::parse(absl::StrCat(R"({"cniVersion":")", v, R"(",
        "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/x"}],
        "ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1","interface":1}],
        "routes":[{"dst":"0.0.0.0/0"}],"dns":{}})")));
    ASSERT_EQ(r.ips.size(), 1u) << v;
    EXPECT_EQ(r.ips[0].address, "10.1.0.2");
    EXPECT_EQ(r.ips[0].prefix_len, 24);
    EXPECT_FALSE(r.ips[0].ipv6);
    EXPECT_EQ(r.network_name, "n");
  }
  // 0.4.0 dual stack, v6 listed first: v4 becomes primary.
  auto r = ParseResult("n", json::parse(R"({"cniVersion":"0.4.0",
      "interfaces":[{"name":"eth0","sandbox":"/x"}],
      "ips":[{"version":"6","address":"fd00::2/64","interface":0},
             {"version":"4","address":"10.1.0.2/24","interface":0}]})"));
  ASSERT_EQ(r.ips.size(), 2u);
  EXPECT_EQ(r.ips[0].address, "10.1.0.2");
  EXPECT_EQ(r.ips[1].address, "fd00::2");
  EXPECT_EQ(r.ips[1].prefix_len, 64);
  EXPECT_TRUE(r.ips[1].ipv6);
  // 1.0.0 (no "version"): only the first IPv4 moves; the rest keep their order.
  r = ParseResult("n", json::parse(R"({"cniVersion":"1.0.0",
      "interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/var/run/netns/x"}],
      "ips":[{"address":"fd00::2/64","interface":1},{"address":"10.1.0.2/24","interface":1},
             {"address":"fd00::3/64","interface":1},{"address":"10.2.0.2/16","interface":1},
             {"address":"10.1.0.1/24","interface":0}]})"));
  std::vector<std::string> got;
  for (const auto& ip : r.ips) got.push_back(absl::StrCat(ip.address, "/", ip.prefix_len));
  EXPECT_EQ(got, (Strings{"10.1.0.2/24", "fd00::2/64", "fd00::3/64", "10.2.0.2/16"}))
      << "host-side addresses (interface 0, no sandbox) are not pod IPs";
  // IPv6 only.
  r = ParseResult("n", json::parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
      "ips":[{"address":"2001:db8::7/128","interface":0}]})"));
  ASSERT_EQ(r.ips.size(), 1u);
  EXPECT_TRUE(r.ips[0].ipv6);
  EXPECT_EQ(r.ips[0].prefix_len, 128);
  // Without interfaces (e.g. a plugin that reports none): every IP counts.
  r = ParseResult("n", json::parse(R"({"cniVersion":"1.0.0","ips":[{"address":"192.168.5.5/32"},
      {"address":"192.168.5.6"}]})"));
  ASSERT_EQ(r.ips.size(), 2u);
  EXPECT_EQ(r.ips[0].prefix_len, 32);
  EXPECT_EQ(r.ips[1].address, "192.168.5.6");
  EXPECT_EQ(r.ips[1].prefix_len, 32) << "a bare address is a host address";
  // Malformed entries are skipped, not fatal.
  r = ParseResult("n", json::parse(R"({"ips":[{"nope":1},7,{"address":"10.0.0.9/8","interface":"x"},
      {"address":"10.0.0.10/8","interface":99}]})"));
  ASSERT_EQ(r.ips.size(), 2u);
  EXPECT_TRUE(ParseResult("n", json::object()).ips.empty());
  EXPECT_TRUE(ParseResult("n", json()).ips.empty());
  EXPECT_TRUE(ParseResult("n", json::parse("[1]")).ips.empty());
}

// ---- the real invoker ----

class ExecInvokerTest : public crisp::testing::TempDirTest {
 protected:
  std::string Script(const std::string& name, const std::string& body) {
    std::string p = dir_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(p, "#!/bin/sh\n" + body, 0755).ok());
    return p;
  }
  std::unique_ptr<CniInvoker> inv_ = NewExecInvoker();
};

TEST_F(ExecInvokerTest, StdinStdoutStderrExitCode) {
  auto r = inv_->Exec(Script("echo", "cat; echo \"$CNI_COMMAND\" >&2; exit 3\n"), {"CNI_COMMAND=ADD"},
                      R"({"cniVersion":"1.0.0"})", absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, R"({"cniVersion":"1.0.0"})");
  EXPECT_EQ(r->stderr_data, "ADD\n");
}

TEST_F(ExecInvokerTest, LargeStdinAndBothOutputsDoNotDeadlock) {
  // stderr is filled (far beyond a pipe buffer) before stdin is even read.
  auto r = inv_->Exec(Script("big", "head -c 300000 /dev/zero | tr '\\0' e >&2; cat\n"), {},
                      std::string(500000, 'x'), absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, std::string(500000, 'x'));
  EXPECT_EQ(r->stderr_data, std::string(300000, 'e'));
}

TEST_F(ExecInvokerTest, ExactlyTheGivenEnvironment) {
  auto r = inv_->Exec(Script("env", "exec /usr/bin/env\n"),
                      {"CNI_COMMAND=DEL", "CNI_IFNAME=eth0", "PATH=/nowhere"}, "", absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(absl::StrContains(r->stdout_data, "CNI_COMMAND=DEL\n"));
  EXPECT_TRUE(absl::StrContains(r->stdout_data, "CNI_IFNAME=eth0\n"));
  EXPECT_TRUE(absl::StrContains(r->stdout_data, "PATH=/nowhere\n"));
  EXPECT_FALSE(absl::StrContains(r->stdout_data, "HOME=")) << "nothing inherited from the test";
}

TEST_F(ExecInvokerTest, PluginThatIgnoresStdinDoesNotKillUs) {
  // It exits before reading: our write gets EPIPE, and SIGPIPE must not
  // terminate the test process (which does not ignore SIGPIPE).
  auto r = inv_->Exec(Script("noread", "exec 0<&-; echo done; exit 4\n"), {}, std::string(1 << 20, 'x'),
                      absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 4);
  EXPECT_EQ(r->stdout_data, "done\n");
}

TEST_F(ExecInvokerTest, KilledBySignalReportsIt) {
  auto r = inv_->Exec(Script("selfkill", "kill -9 $$\n"), {}, "", absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 128 + 9);
  EXPECT_EQ(r->stderr_data, "killed by signal 9");
}

TEST_F(ExecInvokerTest, TimeoutKills) {
  absl::Time t0 = absl::Now();
  auto r = inv_->Exec(Script("slow", "echo partial; exec sleep 30\n"), {}, "", absl::Milliseconds(300));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "was killed"));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

TEST_F(ExecInvokerTest, TimeoutKillsAPluginThatClosedItsOutputs) {
  absl::Time t0 = absl::Now();
  auto r =
      inv_->Exec(Script("closer", "exec >&- 2>&- 0<&-; exec sleep 30\n"), {}, "x", absl::Milliseconds(300));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

TEST_F(ExecInvokerTest, MissingBinary) {
  auto r = inv_->Exec(dir_ + "/nope", {}, "", absl::Seconds(1));
  // posix_spawn reports exec failure as an error (glibc) or as exit status 127.
  EXPECT_TRUE(!r.ok() || r->exit_code == 127);
}

// The manager and the real invoker together, with a script as the plugin.
TEST_F(ExecInvokerTest, ManagerWithScriptPlugin) {
  ASSERT_TRUE(MkdirAll(dir_ + "/bin").ok());
  ASSERT_TRUE(MkdirAll(dir_ + "/net.d").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bin/fake", R"(#!/bin/sh
input=$(cat)
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"address":"10.5.0.9/24","interface":0}]}' ;;
DEL) echo "$input" > ")" + dir_ + R"(/del-stdin" ;;
esac
)",
                              0755)
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/net.d/1.conflist",
                              R"({"cniVersion":"1.0.0","name":"s","plugins":[{"type":"fake"}]})")
                  .ok());
  CniOptions o;
  o.conf_dir = dir_ + "/net.d";
  o.bin_dirs = {dir_ + "/bin"};
  o.cache_dir = dir_ + "/cache";
  CniManager mgr(o, NewExecInvoker());
  PodNetworkRequest req;
  req.container_id = "abc";
  req.netns_path = "/run/netns/x";
  auto r = mgr.Setup(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->ips.size(), 1u);
  EXPECT_EQ(r->ips[0].address, "10.5.0.9");
  ASSERT_TRUE(mgr.Teardown(req).ok());
  auto del_stdin = ReadFile(dir_ + "/del-stdin");
  ASSERT_TRUE(del_stdin.ok());
  json d = json::parse(*del_stdin);
  EXPECT_EQ(d["prevResult"]["ips"][0]["address"], "10.5.0.9/24");
}

}  // namespace
}  // namespace crisp::netcni
