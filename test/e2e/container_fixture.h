#pragma once
// The fixture of the container e2e tests: a crispd with the fixture
// registries, the busybox fixture image pulled, one pod per test (removed in
// TearDown) and shorthands for the container RPCs.
#include <stdlib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"

namespace crisp::e2e {

using RStub = cri::RuntimeService::Stub;
using IStub = cri::ImageService::Stub;

class ContainerTest : public E2eTest {
 protected:
  static void SetUpTestSuite() { StartSuite(DaemonOptions{}); }
  // The registries, a crispd started with `opts` and the busybox image in it.
  static void StartSuite(const DaemonOptions& opts) {
    skip_ = testing::FixtureRegistries::SkipReason();
    if (!skip_.empty()) return;
    auto r = testing::FixtureRegistries::Start(CRISP_FIXTURES_DIR, CRISP_FIXTURE_CACHE);
    if (!r.ok()) {
      skip_ = "cannot start the fixture registries: " + std::string(r.status().message());
      ADD_FAILURE() << skip_;
      return;
    }
    reg_ = std::move(*r);
    StartDaemon(opts);
    if (!daemon_) return;
    image_ = PullFixture("crisp/busybox:latest");
  }
  // Pulls a fixture image into the suite's crispd; its reference.
  static std::string PullFixture(const std::string& name) {
    std::string ref = reg_->Open(name);
    cri::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    cri::PullImageResponse resp;
    grpc::Status s = daemon_->client().Image(&IStub::PullImage, req, &resp);
    if (!s.ok()) ADD_FAILURE() << "pulling " << ref << ": " << s.error_message();
    return ref;
  }
  static void TearDownTestSuite() {
    E2eTest::TearDownTestSuite();
    reg_.reset();
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    char tmpl[] = "/tmp/crisp-e2e-logs.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    log_dir_ = tmpl;
  }
  void TearDown() override {
    if (!pod_.empty()) {
      EXPECT_TRUE(c().StopPodSandbox(pod_).ok());
      EXPECT_TRUE(c().RemovePodSandbox(pod_).ok());
    }
    E2eTest::TearDown();
    if (!log_dir_.empty()) {
      EXPECT_TRUE(RemoveAll(log_dir_).ok());
    }
  }
  CriClient& c() { return daemon_->client(); }

  cri::PodSandboxConfig Pod(const std::string& name, cri::NamespaceMode pid = cri::CONTAINER) {
    cri::PodSandboxConfig p = PodConfig(name);
    p.set_log_directory(log_dir_);
    p.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(pid);
    return p;
  }
  // Runs the pod once per test (removed in TearDown).
  const cri::PodSandboxConfig& EnsurePod(cri::NamespaceMode pid = cri::CONTAINER) {
    if (pod_.empty()) {
      pod_config_ = Pod(::testing::UnitTest::GetInstance()->current_test_info()->name(), pid);
      grpc::Status s = c().RunPodSandbox(pod_config_, &pod_);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    return pod_config_;
  }

  // Runs this test's pod with `edit` applied to its config first (removed in
  // TearDown).
  void RunPod(const std::function<void(cri::PodSandboxConfig*)>& edit) {
    ASSERT_TRUE(pod_.empty());
    pod_config_ = Pod(::testing::UnitTest::GetInstance()->current_test_info()->name());
    edit(&pod_config_);
    grpc::Status s = c().RunPodSandbox(pod_config_, &pod_);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  cri::ContainerConfig Config(const std::string& name, const std::string& script) {
    cri::ContainerConfig cfg;
    cfg.mutable_metadata()->set_name(name);
    cfg.mutable_image()->set_image(image_);
    cfg.add_command("/bin/sh");
    cfg.add_args("-c");
    cfg.add_args(script);
    cfg.set_log_path(name + "/0.log");
    return cfg;
  }

  grpc::Status Create(const cri::ContainerConfig& cfg, std::string* id) {
    const cri::PodSandboxConfig& p = EnsurePod();
    cri::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod_);
    *req.mutable_config() = cfg;
    *req.mutable_sandbox_config() = p;
    cri::CreateContainerResponse resp;
    grpc::Status s = c().Runtime(&RStub::CreateContainer, req, &resp);
    *id = resp.container_id();
    return s;
  }
  grpc::Status Start(const std::string& id) {
    cri::StartContainerRequest req;
    req.set_container_id(id);
    cri::StartContainerResponse resp;
    return c().Runtime(&RStub::StartContainer, req, &resp);
  }
  // Create + start; the container's id.
  std::string RunContainer(const cri::ContainerConfig& cfg) {
    std::string id;
    grpc::Status s = Create(cfg, &id);
    EXPECT_TRUE(s.ok()) << s.error_message();
    s = Start(id);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return id;
  }
  grpc::Status Stop(const std::string& id, int64_t timeout) {
    cri::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(timeout);
    cri::StopContainerResponse resp;
    return c().Runtime(&RStub::StopContainer, req, &resp, 60);
  }
  grpc::Status Remove(const std::string& id) {
    cri::RemoveContainerRequest req;
    req.set_container_id(id);
    cri::RemoveContainerResponse resp;
    return c().Runtime(&RStub::RemoveContainer, req, &resp);
  }
  cri::ContainerStatus Status(const std::string& id, std::string* info = nullptr) {
    cri::ContainerStatusRequest req;
    req.set_container_id(id);
    req.set_verbose(info != nullptr);
    cri::ContainerStatusResponse resp;
    grpc::Status s = c().Runtime(&RStub::ContainerStatus, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (info) *info = resp.info().count("info") ? resp.info().at("info") : "";
    return resp.status();
  }
  // Waits up to `secs` for the container to exit; returns its status.
  cri::ContainerStatus WaitExited(const std::string& id, int secs = 15) {
    cri::ContainerStatus st;
    for (int i = 0; i < secs * 20; ++i) {
      st = Status(id);
      if (st.state() == cri::CONTAINER_EXITED) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return st;
  }
  // Create + start + wait; returns the status, the log text in `log`.
  cri::ContainerStatus RunToExit(const cri::ContainerConfig& cfg, std::string* log) {
    std::string id;
    grpc::Status s = Create(cfg, &id);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return {};
    s = Start(id);
    EXPECT_TRUE(s.ok()) << s.error_message();
    cri::ContainerStatus st = WaitExited(id);
    EXPECT_EQ(st.state(), cri::CONTAINER_EXITED);
    if (log) *log = ReadFile(st.log_path()).value_or("");
    EXPECT_TRUE(Remove(id).ok());
    return st;
  }
  // "<tag> <content>" of the log's records of `stream`, joined with '\n'.
  static std::string Lines(const std::string& log, const std::string& stream = "stdout") {
    std::string out;
    for (absl::string_view l : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(l, absl::MaxSplits(' ', 3));
      if (f.size() == 4 && f[1] == stream) absl::StrAppend(&out, out.empty() ? "" : "\n", f[2], " ", f[3]);
    }
    return out;
  }

  static inline std::unique_ptr<testing::FixtureRegistries> reg_;
  static inline std::string skip_, image_;
  std::string log_dir_, pod_;
  cri::PodSandboxConfig pod_config_;
};

}  // namespace crisp::e2e
