// Containers through crispd's socket: a pod, the busybox fixture image pulled
// from a loopback registry, containers created, started, stopped and removed,
// their CRI logs, exit codes and confinement checked from inside (the
// container writes what it sees to its log), and recovery across a SIGKILL
// of crispd. The harness's leak check (mounts, cgroups, shims, files) runs
// around every test.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "runtime/stdio_frame.h"
#include "test/e2e/container_fixture.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"

namespace crisp::e2e {
namespace {


TEST_F(ContainerTest, EchoGoesToTheCriLogAndExitZeroIsCompleted) {
  std::string log;
  cri::ContainerStatus st = RunToExit(Config("echo", "echo hello; echo oops >&2"), &log);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_GT(st.finished_at(), st.started_at());
  EXPECT_GE(st.started_at(), st.created_at());
  EXPECT_EQ(Lines(log, "stdout"), "F hello") << log;
  EXPECT_EQ(Lines(log, "stderr"), "F oops") << log;
  EXPECT_TRUE(absl::StartsWith(st.log_path(), log_dir_));
}

TEST_F(ContainerTest, ExitThreeIsError) {
  cri::ContainerStatus st = RunToExit(Config("three", "exit 3"), nullptr);
  EXPECT_EQ(st.exit_code(), 3);
  EXPECT_EQ(st.reason(), "Error");
}

TEST_F(ContainerTest, StatusListAndLifecycleStates) {
  std::string id;
  auto cfg = Config("sleeper", "sleep 1000");
  (*cfg.mutable_labels())["app"] = "sleepy";
  ASSERT_TRUE(Create(cfg, &id).ok());
  EXPECT_EQ(Status(id).state(), cri::CONTAINER_CREATED);
  cri::ListContainersRequest lreq;
  cri::ListContainersResponse l;
  ASSERT_TRUE(c().Runtime(&RStub::ListContainers, lreq, &l).ok());
  ASSERT_EQ(l.containers_size(), 1);
  EXPECT_EQ(l.containers(0).id(), id);
  EXPECT_EQ(l.containers(0).pod_sandbox_id(), pod_);
  ASSERT_TRUE(Start(id).ok());
  std::string info;
  cri::ContainerStatus st = Status(id, &info);
  EXPECT_EQ(st.state(), cri::CONTAINER_RUNNING);
  EXPECT_EQ(st.image().image(), image_);
  EXPECT_TRUE(absl::StartsWith(st.image_ref(), "sha256:"));
  EXPECT_TRUE(absl::StrContains(info, "\"pid\":")) << info;
  EXPECT_EQ(Start(id).error_code(), grpc::StatusCode::FAILED_PRECONDITION) << "started twice";
  lreq.mutable_filter()->mutable_label_selector()->insert({"app", "sleepy"});
  lreq.mutable_filter()->mutable_state()->set_state(cri::CONTAINER_RUNNING);
  l.Clear();
  ASSERT_TRUE(c().Runtime(&RStub::ListContainers, lreq, &l).ok());
  EXPECT_EQ(l.containers_size(), 1);
  lreq.mutable_filter()->mutable_state()->set_state(cri::CONTAINER_EXITED);
  l.Clear();
  ASSERT_TRUE(c().Runtime(&RStub::ListContainers, lreq, &l).ok());
  EXPECT_EQ(l.containers_size(), 0);
  // `sleep` is PID 1 of its PID namespace and has no SIGTERM handler: the
  // signal is ignored, so the stop takes the timeout and then kills.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Stop(id, 1).ok());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(secs, 0.9);
  EXPECT_LT(secs, 8);
  st = Status(id);
  EXPECT_EQ(st.state(), cri::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 137);
  EXPECT_TRUE(Stop(id, 1).ok()) << "stopping again is fine";
  ASSERT_TRUE(Remove(id).ok());
  EXPECT_TRUE(Remove(id).ok()) << "removing again is fine";
  cri::ContainerStatusRequest sreq;
  sreq.set_container_id(id);
  cri::ContainerStatusResponse sresp;
  EXPECT_EQ(c().Runtime(&RStub::ContainerStatus, sreq, &sresp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ContainerTest, StopWithATermHandlerIsQuick) {
  std::string id;
  ASSERT_TRUE(Create(Config("trap", "trap 'exit 0' TERM; while :; do sleep 0.1; done"), &id).ok());
  ASSERT_TRUE(Start(id).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Stop(id, 10).ok());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 3);
  cri::ContainerStatus st = Status(id);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  ASSERT_TRUE(Remove(id).ok());
}

TEST_F(ContainerTest, ConfinementAsSeenFromInside) {
  auto cfg = Config("inside",
                    "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; id; "
                    "touch /rootfs-is-ro && echo rw || echo ro; "
                    "hostname; cat /etc/hostname; ls /dev/shm >/dev/null && echo shm; "
                    "echo pid=$$");
  auto* sc = cfg.mutable_linux()->mutable_security_context();
  sc->mutable_run_as_user()->set_value(1000);
  sc->mutable_run_as_group()->set_value(1000);
  sc->add_supplemental_groups(4242);
  sc->set_readonly_rootfs(true);
  sc->mutable_seccomp()->set_profile_type(cri::SecurityProfile::RuntimeDefault);
  sc->set_no_new_privs(true);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  std::string out = Lines(log);
  // The only error: touching the read-only rootfs.
  EXPECT_EQ(Lines(log, "stderr"), "F touch: /rootfs-is-ro: Read-only file system") << log;
  // A non-root user has no effective capabilities.
  EXPECT_TRUE(absl::StrContains(out, "CapEff:\t0000000000000000")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Seccomp:\t2")) << out;
  EXPECT_TRUE(absl::StrContains(out, "NoNewPrivs:\t1")) << out;
  // "user" is uid/gid 1000 in the busybox fixture's /etc/passwd and /etc/group.
  EXPECT_TRUE(absl::StrContains(out, "uid=1000(user) gid=1000(user) groups=1000(user),4242")) << out;
  EXPECT_EQ(st.user().linux().uid(), 1000);
  EXPECT_EQ(st.user().linux().gid(), 1000);
  EXPECT_THAT(std::vector<int64_t>(st.user().linux().supplemental_groups().begin(),
                                   st.user().linux().supplemental_groups().end()),
              ::testing::ElementsAre(1000, 4242));
  EXPECT_TRUE(absl::StrContains(out, "F ro")) << out;
  std::string host = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  EXPECT_TRUE(absl::StrContains(out, "F " + host)) << out;
  EXPECT_TRUE(absl::StrContains(out, "F shm")) << out;
  EXPECT_TRUE(absl::StrContains(out + "\n", "F pid=1\n")) << "own PID namespace: " << out;
}

TEST_F(ContainerTest, RootGetsTheDefaultCapabilitiesAndMaskedPaths) {
  std::string log;
  cri::ContainerStatus st = RunToExit(
      Config("caps", "grep CapEff /proc/self/status; wc -c < /proc/timer_list; "
                     "echo x 2>/dev/null > /proc/sys/kernel/domainname || echo ro-sys"),
      &log);
  EXPECT_EQ(st.exit_code(), 0);
  // containerd's default 14: chown dac_override fowner fsetid kill setgid
  // setuid setpcap net_bind_service net_raw sys_chroot mknod audit_write
  // setfcap. /proc/timer_list (root-readable) is masked, /proc/sys read-only.
  EXPECT_EQ(Lines(log), "F CapEff:\t00000000a80425fb\nF 0\nF ro-sys") << log;
}

TEST_F(ContainerTest, BadRequestsAreInvalidAndLeaveNothing) {
  std::string id;
  auto cfg = Config("bad", "true");
  cfg.mutable_image()->set_image(reg_->Open("crisp/never-pulled:latest"));
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::NOT_FOUND);
  cfg = Config("bad", "true");
  cfg.mutable_linux()->mutable_security_context()->mutable_run_as_group()->set_value(5);
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "group without user";
  cfg = Config("bad", "true");
  auto* m = cfg.add_mounts();
  m->set_container_path("/data");
  m->set_host_path("/nonexistent/crisp/path");
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "missing host path";
  cfg = Config("bad", "true");
  cfg.mutable_linux()->mutable_security_context()->set_run_as_username("nosuchuser");
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "unknown user";
  cfg = Config("bad", "true");
  cfg.clear_command();
  cfg.clear_args();
  cfg.add_command("/no/such/binary");
  ASSERT_TRUE(Create(cfg, &id).ok());
  grpc::Status s = Start(id);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.error_message(), "/no/such/binary")) << s.error_message();
  EXPECT_EQ(Status(id).state(), cri::CONTAINER_EXITED);
  EXPECT_TRUE(Remove(id).ok());
  // The name was released each time.
  cri::ListContainersResponse l;
  ASSERT_TRUE(c().Runtime(&RStub::ListContainers, cri::ListContainersRequest(), &l).ok());
  EXPECT_EQ(l.containers_size(), 0);
}

TEST_F(ContainerTest, BindMountAndSharedPodPidNamespace) {
  EnsurePod(cri::POD);
  std::string host_dir = log_dir_ + "/shared";
  ASSERT_TRUE(MkdirAll(host_dir).ok());
  ASSERT_TRUE(WriteFileAtomic(host_dir + "/from-host", "hi\n").ok());
  std::string a;
  ASSERT_TRUE(Create(Config("a", "sleep 1000"), &a).ok());
  ASSERT_TRUE(Start(a).ok());
  auto cfg = Config("b", "cat /data/from-host; ps -o comm | grep -c sleep; echo x > /data/ro || echo ro");
  auto* m = cfg.add_mounts();
  m->set_container_path("/data");
  m->set_host_path(host_dir);
  m->set_readonly(true);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  std::string out = Lines(log);
  EXPECT_TRUE(absl::StrContains(out, "F hi")) << out;
  EXPECT_TRUE(absl::StrContains(out, "F 1\n")) << "sees container a's sleep: " << out;
  EXPECT_TRUE(absl::StrContains(out, "F ro")) << out;
  ASSERT_TRUE(Stop(a, 0).ok());
  ASSERT_TRUE(Remove(a).ok());
}

TEST_F(ContainerTest, ContainersSurviveACrispdRestart) {
  std::string runs, exits;
  ASSERT_TRUE(Create(Config("runs", "sleep 1000"), &runs).ok());
  ASSERT_TRUE(Start(runs).ok());
  ASSERT_TRUE(Create(Config("exits", "sleep 1; echo bye; exit 7"), &exits).ok());
  ASSERT_TRUE(Start(exits).ok());
  ASSERT_TRUE(daemon_->Kill().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // "exits" exits while crispd is down
  ASSERT_TRUE(daemon_->Launch().ok());
  cri::ContainerStatus r = Status(runs);
  EXPECT_EQ(r.state(), cri::CONTAINER_RUNNING);
  cri::ContainerStatus e = WaitExited(exits, 5);
  EXPECT_EQ(e.state(), cri::CONTAINER_EXITED);
  EXPECT_EQ(e.exit_code(), 7);
  EXPECT_EQ(Lines(ReadFile(e.log_path()).value_or("")), "F bye");
  ASSERT_TRUE(Stop(runs, 0).ok());
  EXPECT_EQ(Status(runs).exit_code(), 137);
  ASSERT_TRUE(Remove(runs).ok());
  ASSERT_TRUE(Remove(exits).ok());
}

TEST_F(ContainerTest, RemovingThePodRemovesItsContainersAndFreesTheImage) {
  std::string id;
  ASSERT_TRUE(Create(Config("inpod", "sleep 1000"), &id).ok());
  ASSERT_TRUE(Start(id).ok());
  cri::RemoveImageRequest rreq;
  rreq.mutable_image()->set_image(Status(id).image_ref());
  cri::RemoveImageResponse rresp;
  EXPECT_EQ(c().Image(&IStub::RemoveImage, rreq, &rresp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(c().StopPodSandbox(pod_).ok());
  EXPECT_EQ(Status(id).state(), cri::CONTAINER_EXITED);
  ASSERT_TRUE(c().RemovePodSandbox(pod_).ok());
  pod_.clear();
  cri::ListContainersResponse l;
  ASSERT_TRUE(c().Runtime(&RStub::ListContainers, cri::ListContainersRequest(), &l).ok());
  EXPECT_EQ(l.containers_size(), 0);
}

TEST_F(ContainerTest, MemoryLimitExceededIsOOMKilled) {
  auto cfg = Config("oom", "x=a; while :; do x=$x$x; done");
  cfg.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(16 << 20);
  cri::ContainerStatus st = RunToExit(cfg, nullptr);
  EXPECT_EQ(st.reason(), "OOMKilled");
  EXPECT_EQ(st.exit_code(), 137);
}

TEST_F(ContainerTest, UpdateContainerResourcesChangesTheCgroup) {
  std::string id;
  auto cfg = Config("upd", "sleep 1000");
  cfg.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(64 << 20);
  ASSERT_TRUE(Create(cfg, &id).ok());
  ASSERT_TRUE(Start(id).ok());
  std::string info;
  Status(id, &info);
  std::string cg = nlohmann::json::parse(info).value("cgroupPath", "");
  ASSERT_FALSE(cg.empty()) << info;
  std::string limit_file = "/sys/fs/cgroup/memory" + cg + "/memory.limit_in_bytes";
  if (::access(limit_file.c_str(), F_OK) != 0) limit_file = "/sys/fs/cgroup" + cg + "/memory.max";
  EXPECT_EQ(ReadFile(limit_file).value_or("?"), std::to_string(64 << 20) + "\n");
  cri::UpdateContainerResourcesRequest req;
  req.set_container_id(id);
  req.mutable_linux()->set_memory_limit_in_bytes(128 << 20);
  req.mutable_linux()->set_cpu_shares(512);
  cri::UpdateContainerResourcesResponse resp;
  grpc::Status s = c().Runtime(&RStub::UpdateContainerResources, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ReadFile(limit_file).value_or("?"), std::to_string(128 << 20) + "\n");
  EXPECT_EQ(Status(id).resources().linux().memory_limit_in_bytes(), 128 << 20);
  ASSERT_TRUE(Stop(id, 0).ok());
  ASSERT_TRUE(Remove(id).ok());
}

TEST_F(ContainerTest, HostPidNamespaceSeesHostProcesses) {
  auto cfg = Config("hostpid", "ps -o comm | grep -c '^crispd$'; echo pid=$$");
  cfg.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(cri::NODE);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  std::string out = Lines(log);
  EXPECT_FALSE(absl::StrContains(out, "F 0\n")) << "crispd is visible: " << out;
  EXPECT_FALSE(absl::StrContains(out + "\n", "F pid=1\n")) << out;  // the whole line: pid=15622 is fine
}

TEST_F(ContainerTest, ReopenContainerLogAfterRotation) {
  std::string id;
  ASSERT_TRUE(Create(Config("rot", "echo one; sleep 1; echo two; sleep 1000"), &id).ok());
  ASSERT_TRUE(Start(id).ok());
  std::string path = Status(id).log_path();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(::rename(path.c_str(), (path + ".1").c_str()), 0);
  cri::ReopenContainerLogRequest req;
  req.set_container_id(id);
  cri::ReopenContainerLogResponse resp;
  ASSERT_TRUE(c().Runtime(&RStub::ReopenContainerLog, req, &resp).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Lines(ReadFile(path + ".1").value_or("")), "F one");
  EXPECT_EQ(Lines(ReadFile(path).value_or("")), "F two");
  ASSERT_TRUE(Stop(id, 0).ok());
  EXPECT_EQ(c().Runtime(&RStub::ReopenContainerLog, req, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Remove(id).ok());
}

TEST_F(ContainerTest, TtyOutputGoesToTheLog) {
  auto cfg = Config("tty", "test -t 1 && echo is-a-tty");
  cfg.set_tty(true);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  EXPECT_TRUE(absl::StrContains(log, "stdout F is-a-tty\r")) << log;
}

TEST_F(ContainerTest, CreateRetriedWithTheSameConfigGetsTheSameContainer) {
  std::string a, b;
  auto cfg = Config("retry", "true");
  ASSERT_TRUE(Create(cfg, &a).ok());
  ASSERT_TRUE(Create(cfg, &b).ok()) << "kubelet's retry after a deadline";
  EXPECT_EQ(a, b);
  auto other = cfg;
  other.add_args("changed");
  EXPECT_EQ(Create(other, &b).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  ASSERT_TRUE(Remove(a).ok());
}

TEST_F(ContainerTest, PrivilegedGetsEveryCapabilityCrispHasAndWritableSys) {
  auto cfg = Config("priv", "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; "
                             "wc -c < /proc/timer_list; touch /sys/kernel/crisp-probe 2>&1 | grep -c Read-only; true");
  cfg.mutable_linux()->mutable_security_context()->set_privileged(true);
  cfg.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      cri::SecurityProfile::RuntimeDefault);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  std::string ours;
  {
    std::string status = ReadFile("/proc/self/status").value_or("");
    size_t p = status.find("CapEff:\t");
    ASSERT_NE(p, std::string::npos);
    ours = status.substr(p, 24);
  }
  std::string out = Lines(log);
  EXPECT_TRUE(absl::StrContains(out, "F " + ours)) << "all caps this test (root) has: " << ours << "\n" << out;
  EXPECT_TRUE(absl::StrContains(out, "F Seccomp:\t0")) << "no filter when privileged: " << out;
  EXPECT_FALSE(absl::StrContains(out, "F 0\n")) << "nothing masked: " << out;
  EXPECT_TRUE(absl::StrContains(out, "F 0")) << "/sys is not read-only: " << out;
}

TEST_F(ContainerTest, SeccompWithoutNoNewPrivsAndALocalhostProfile) {
  // RuntimeDefault without no_new_privs: installed while the process still
  // has CAP_SYS_ADMIN; it blocks unshare (no CAP_SYS_ADMIN in the container).
  auto cfg = Config("sec", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true || echo blocked");
  cfg.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      cri::SecurityProfile::RuntimeDefault);
  std::string log;
  RunToExit(cfg, &log);
  EXPECT_EQ(Lines(log), "F NoNewPrivs:\t0\nF Seccomp:\t2\nF blocked") << log;
  // A Localhost profile (OCI JSON) that denies chmod.
  std::string prof = log_dir_ + "/deny-chmod.json";
  ASSERT_TRUE(WriteFileAtomic(prof, R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[)"
                                    R"({"names":["chmod","fchmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]})")
                  .ok());
  cfg = Config("local", "chmod 700 /tmp 2>&1 | grep -c 'not permitted'");
  cfg.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
      cri::SecurityProfile::Localhost);
  cfg.mutable_linux()->mutable_security_context()->mutable_seccomp()->set_localhost_ref(prof);
  RunToExit(cfg, &log);
  EXPECT_EQ(Lines(log), "F 1") << log;
}

// Host dir made a shared mount point; a privileged container mounts a tmpfs
// under its view of it and waits for a marker the host puts under a tmpfs
// mounted after the container started.
TEST_F(ContainerTest, MountPropagationPrivateSlaveShared) {
  struct Case {
    cri::MountPropagation prop;
    bool host_sees_container, container_sees_host;
  };
  for (const Case& k : {Case{cri::PROPAGATION_BIDIRECTIONAL, true, true},
                        Case{cri::PROPAGATION_HOST_TO_CONTAINER, false, true},
                        Case{cri::PROPAGATION_PRIVATE, false, false}}) {
    SCOPED_TRACE(cri::MountPropagation_Name(k.prop));
    std::string host = log_dir_ + "/prop-" + std::to_string(static_cast<int>(k.prop));
    ASSERT_TRUE(MkdirAll(host + "/from-host").ok());
    ASSERT_TRUE(MkdirAll(host + "/from-ctr").ok());
    ASSERT_EQ(::mount(host.c_str(), host.c_str(), nullptr, MS_BIND, nullptr), 0);
    ASSERT_EQ(::mount(nullptr, host.c_str(), nullptr, MS_SHARED, nullptr), 0);
    auto cfg = Config("prop" + std::to_string(static_cast<int>(k.prop)),
                      "mount -t tmpfs ctr /data/from-ctr && touch /data/from-ctr/marker; "
                      "for i in $(seq 60); do [ -e /data/from-host/marker ] && break; sleep 0.05; done; "
                      "[ -e /data/from-host/marker ] && echo saw-host || echo no-host");
    cfg.mutable_linux()->mutable_security_context()->set_privileged(true);
    auto* m = cfg.add_mounts();
    m->set_container_path("/data");
    m->set_host_path(host);
    m->set_propagation(k.prop);
    std::string id;
    grpc::Status s = Create(cfg, &id);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_TRUE(Start(id).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    bool host_sees = ::access((host + "/from-ctr/marker").c_str(), F_OK) == 0;
    ASSERT_EQ(::mount("hosttmp", (host + "/from-host").c_str(), "tmpfs", 0, nullptr), 0);
    ASSERT_TRUE(WriteFileAtomic(host + "/from-host/marker", "x").ok());
    cri::ContainerStatus st = WaitExited(id);
    std::string out = Lines(ReadFile(st.log_path()).value_or(""));
    EXPECT_EQ(host_sees, k.host_sees_container);
    EXPECT_EQ(out, k.container_sees_host ? "F saw-host" : "F no-host");
    EXPECT_TRUE(Remove(id).ok());
    ::umount2((host + "/from-ctr").c_str(), MNT_DETACH);
    ::umount2((host + "/from-host").c_str(), MNT_DETACH);
    EXPECT_EQ(::umount2(host.c_str(), MNT_DETACH), 0);
  }
  // A bidirectional mount of a path on a private mount is refused.
  auto cfg = Config("propbad", "true");
  auto* m = cfg.add_mounts();
  m->set_container_path("/data");
  m->set_host_path(log_dir_);
  m->set_propagation(cri::PROPAGATION_BIDIRECTIONAL);
  std::string id;
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ContainerTest, DevicesAndPrivilegedHostDevices) {
  auto cfg = Config("dev", "ls -l /dev/xnull /dev/sub/zero | awk '{print $1, $5, $6}'; echo > /dev/xnull && echo wrote");
  auto* d = cfg.add_devices();
  d->set_host_path("/dev/null");
  d->set_container_path("/dev/xnull");
  d->set_permissions("rwm");
  d = cfg.add_devices();
  d->set_host_path("/dev/zero");
  d->set_container_path("/dev/sub/zero");
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  // ls sorts: /dev/sub/zero (1,5) before /dev/xnull (1,3).
  EXPECT_EQ(Lines(log), "F crw-rw-rw- 1, 5\nF crw-rw-rw- 1, 3\nF wrote") << log;
  std::string id;
  cfg = Config("baddev", "true");
  cfg.add_devices()->set_host_path("/etc/passwd");
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "not a device";
  // Privileged: the host's devices (here /dev/kmsg, a char device every
  // Linux host has) appear; an unprivileged container does not get them.
  struct stat kst;
  if (::stat("/dev/kmsg", &kst) != 0) return;
  cfg = Config("privdev", "test -c /dev/kmsg && echo kmsg || echo none");
  cfg.mutable_linux()->mutable_security_context()->set_privileged(true);
  RunToExit(cfg, &log);
  EXPECT_EQ(Lines(log), "F kmsg");
  cfg = Config("plaindev", "test -c /dev/kmsg && echo kmsg || echo none");
  RunToExit(cfg, &log);
  EXPECT_EQ(Lines(log), "F none");
}

// The shim's attach socket: output frames out, stdin frames in; stdin_once closes
// the container's stdin when the client goes.
TEST_F(ContainerTest, AttachSocketAndStdinOnce) {
  auto cfg = Config("attach", "echo ready; cat; echo cat-done");
  cfg.set_stdin(true);
  cfg.set_stdin_once(true);
  std::string id;
  ASSERT_TRUE(Create(cfg, &id).ok());
  std::string dir = daemon_->state() + "/containers/" + id;
  int dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dfd, 0);
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::string path = "/proc/self/fd/" + std::to_string(dfd) + "/attach.sock";
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ::close(dfd);
  ASSERT_TRUE(Start(id).ok());
  // Read frames until `want` has been seen on stdout.
  std::string got;
  auto read_until = [&](const std::string& want) {
    struct timeval tv = {5, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (got.find(want) == std::string::npos) {
      unsigned char hdr[5];
      if (::recv(s, hdr, 5, MSG_WAITALL) != 5) return false;
      uint32_t len = (uint32_t{hdr[1]} << 24) | (uint32_t{hdr[2]} << 16) | (uint32_t{hdr[3]} << 8) | hdr[4];
      std::string data(len, '\0');
      if (len && ::recv(s, data.data(), len, MSG_WAITALL) != static_cast<ssize_t>(len)) return false;
      if (hdr[0] == 1) got += data;
    }
    return true;
  };
  ASSERT_TRUE(read_until("ready\n")) << got;
  std::string in = runtime::EncodeFrame(runtime::FrameType::kStdin, "hello\n");
  ASSERT_EQ(::send(s, in.data(), in.size(), MSG_NOSIGNAL), static_cast<ssize_t>(in.size()));
  ASSERT_TRUE(read_until("hello\n")) << got;
  ::close(s);  // stdin_once: cat sees EOF
  cri::ContainerStatus st = WaitExited(id, 10);
  EXPECT_EQ(st.state(), cri::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(Lines(ReadFile(st.log_path()).value_or("")), "F ready\nF hello\nF cat-done");
  EXPECT_TRUE(Remove(id).ok());
}

TEST_F(ContainerTest, TtyResizeThroughTheShim) {
  auto cfg = Config("resize", "sleep 1; stty size");
  cfg.set_tty(true);
  std::string id;
  ASSERT_TRUE(Create(cfg, &id).ok());
  ASSERT_TRUE(Start(id).ok());
  std::string dir = daemon_->state() + "/containers/" + id;
  int dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dfd, 0);
  int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::string path = "/proc/self/fd/" + std::to_string(dfd) + "/ctl.sock";
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ::close(dfd);
  std::string req = R"({"op":"resize","width":123,"height":45})";
  ASSERT_EQ(::send(s, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  char buf[512] = {};
  ASSERT_GT(::recv(s, buf, sizeof buf - 1, 0), 0);
  ::close(s);
  EXPECT_TRUE(absl::StrContains(buf, "\"ok\":true")) << buf;
  cri::ContainerStatus st = WaitExited(id, 10);
  EXPECT_EQ(Lines(ReadFile(st.log_path()).value_or("")), "F 45 123\r");
  EXPECT_TRUE(Remove(id).ok());
}

}  // namespace
}  // namespace crisp::e2e
