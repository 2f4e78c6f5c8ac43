// The container plan builder: a pure function of (CRI config, sandbox,
// image), tested rule by rule like containerd's spec tests.
#include <sys/mount.h>

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/capabilities.h"
#include "runtime/plan_builder.h"
#include "runtime/seccomp_profile.h"

namespace crisp::runtime {
namespace {

namespace cri = ::runtime::v1;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

class PlanTest : public ::testing::Test {
 protected:
  PlanTest() {
    pod_.set_log_directory("/var/log/pods/ns_p_u");
    in_.id = "c1";
    in_.config = &cfg_;
    in_.sandbox.id = "s1";
    in_.sandbox.config = &pod_;
    in_.sandbox.ns_paths = {{"net", "/run/crisp/ns/s1/net"}, {"ipc", "/run/crisp/ns/s1/ipc"},
                            {"uts", "/run/crisp/ns/s1/uts"}};
    in_.sandbox.hostname_path = "/var/lib/crisp/sandboxes/s1/hostname";
    in_.sandbox.hosts_path = "/var/lib/crisp/sandboxes/s1/hosts";
    in_.sandbox.resolv_conf_path = "/var/lib/crisp/sandboxes/s1/resolv.conf";
    in_.sandbox.shm_path = "/run/crisp/sandboxes/s1/shm";
    in_.image.layer_dirs = {"/l/bottom", "/l/top"};
    in_.image.cmd = {"/bin/sh"};
    in_.container_dir = "/var/lib/crisp/containers/c1";
    in_.shim_dir = "/run/crisp/containers/c1";
    cfg_.mutable_metadata()->set_name("c");
  }
  absl::StatusOr<ContainerPlan> Build() { return BuildContainerPlan(in_); }
  ContainerPlan MustBuild() {
    auto p = Build();
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : ContainerPlan{};
  }
  cri::LinuxContainerSecurityContext* Sc() { return cfg_.mutable_linux()->mutable_security_context(); }
  static const PlanMount* FindMount(const ContainerPlan& p, const std::string& dest) {
    for (const auto& m : p.mounts)
      if (m.destination == dest) return &m;
    return nullptr;
  }

  cri::ContainerConfig cfg_;
  cri::PodSandboxConfig pod_;
  PlanInputs in_;
};

struct ArgsCase {
  std::vector<std::string> image_ep, image_cmd, command, args, want;
};

TEST(ContainerArgs, DockerAndCriRules) {
  const ArgsCase cases[] = {
      {{"/ep"}, {"cmd"}, {}, {}, {"/ep", "cmd"}},
      {{"/ep"}, {"cmd"}, {}, {"x"}, {"/ep", "x"}},
      {{"/ep"}, {"cmd"}, {"/c"}, {}, {"/c"}},  // a command drops the image's cmd too
      {{"/ep"}, {"cmd"}, {"/c"}, {"x", "y"}, {"/c", "x", "y"}},
      {{}, {"/bin/sh", "-c", "echo"}, {}, {}, {"/bin/sh", "-c", "echo"}},
      {{}, {"/bin/sh"}, {}, {"/bin/true"}, {"/bin/true"}},
      {{}, {}, {}, {}, {}},
  };
  for (const auto& c : cases) {
    cri::ContainerConfig cfg;
    for (const auto& s : c.command) cfg.add_command(s);
    for (const auto& s : c.args) cfg.add_args(s);
    ImageConfigInfo img;
    img.entrypoint = c.image_ep;
    img.cmd = c.image_cmd;
    EXPECT_EQ(ContainerArgs(cfg, img), c.want);
  }
}

TEST_F(PlanTest, NoCommandAtAllIsInvalid) {
  in_.image.cmd.clear();
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PlanTest, EnvImageThenConfigInPlace) {
  in_.image.env = {"PATH=/bin", "A=1", "EMPTY="};
  auto* e = cfg_.add_envs();
  e->set_key("A");
  e->set_value("2");
  e = cfg_.add_envs();
  e->set_key("B");
  e->set_value("x=y");
  EXPECT_THAT(MustBuild().env, ElementsAre("PATH=/bin", "A=2", "EMPTY=", "B=x=y"));
}

TEST_F(PlanTest, WorkingDirConfigThenImageThenRoot) {
  EXPECT_EQ(MustBuild().cwd, "/");
  in_.image.working_dir = "/srv";
  EXPECT_EQ(MustBuild().cwd, "/srv");
  cfg_.set_working_dir("/work");
  EXPECT_EQ(MustBuild().cwd, "/work");
  cfg_.set_working_dir("relative");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PlanTest, UserFields) {
  in_.image.user = "www-data";
  ContainerPlan p = MustBuild();
  EXPECT_EQ(p.user.image_user, "www-data");
  EXPECT_FALSE(p.user.uid.has_value());
  Sc()->mutable_run_as_group()->set_value(7);
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument) << "group without a user";
  Sc()->mutable_run_as_user()->set_value(1000);
  Sc()->add_supplemental_groups(5);
  Sc()->add_supplemental_groups(6);
  p = MustBuild();
  EXPECT_EQ(p.user.uid, std::optional<uint32_t>(1000));
  EXPECT_EQ(p.user.gid, std::optional<uint32_t>(7));
  EXPECT_THAT(p.user.supplemental_groups, ElementsAre(5, 6));
  Sc()->clear_run_as_user();
  Sc()->set_run_as_username("nobody");
  p = MustBuild();
  EXPECT_EQ(p.user.username, "nobody");
  Sc()->mutable_run_as_user()->set_value(-1);
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PlanTest, Namespaces) {
  auto* ns = Sc()->mutable_namespace_options();
  ns->set_pid(cri::CONTAINER);
  ContainerPlan p = MustBuild();
  EXPECT_EQ(p.join_ns.size(), 3u);
  EXPECT_EQ(p.join_ns.at("net"), "/run/crisp/ns/s1/net");
  EXPECT_TRUE(p.new_pid);
  ns->set_pid(cri::NODE);
  p = MustBuild();
  EXPECT_FALSE(p.new_pid);
  EXPECT_EQ(p.join_ns.count("pid"), 0u);
  ns->set_pid(cri::POD);
  p = MustBuild();
  EXPECT_TRUE(p.new_pid) << "no shared PID namespace in the pod: the container gets its own";
  in_.sandbox.ns_paths["pid"] = "/run/crisp/ns/s1/pid";
  p = MustBuild();
  EXPECT_FALSE(p.new_pid);
  EXPECT_EQ(p.join_ns.at("pid"), "/run/crisp/ns/s1/pid");
  ns->set_pid(cri::TARGET);
  ns->set_target_id("other");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  in_.target_pid = 4242;
  EXPECT_EQ(MustBuild().join_ns.at("pid"), "/proc/4242/ns/pid");
  // A host-network pod has no net/uts pins: the container stays in the host's.
  in_.sandbox.ns_paths = {{"ipc", "/run/crisp/ns/s1/ipc"}};
  ns->set_pid(cri::CONTAINER);
  p = MustBuild();
  EXPECT_EQ(p.join_ns.size(), 1u);
  EXPECT_EQ(p.join_ns.count("net"), 0u);
}

TEST_F(PlanTest, RootfsIsTheImageLayersTopFirst) {
  ContainerPlan p = MustBuild();
  EXPECT_THAT(p.lower_dirs, ElementsAre("/l/top", "/l/bottom"));
  EXPECT_EQ(p.upper_dir, "/var/lib/crisp/containers/c1/upper");
  EXPECT_EQ(p.work_dir, "/var/lib/crisp/containers/c1/work");
  EXPECT_EQ(p.rootfs, "/var/lib/crisp/containers/c1/rootfs");
  in_.image.layer_dirs.clear();
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PlanTest, StandardMountsAndPodFiles) {
  ContainerPlan p = MustBuild();
  std::vector<std::string> dests;
  for (const auto& m : p.mounts) dests.push_back(m.destination);
  EXPECT_THAT(dests, ElementsAre("/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/dev/shm", "/etc/hostname",
                                 "/etc/hosts", "/etc/resolv.conf"));
  EXPECT_TRUE(FindMount(p, "/sys")->flags & MS_RDONLY);
  EXPECT_EQ(FindMount(p, "/dev/shm")->source, "/run/crisp/sandboxes/s1/shm");
  EXPECT_FALSE(FindMount(p, "/etc/hosts")->flags & MS_RDONLY);
  Sc()->set_readonly_rootfs(true);
  p = MustBuild();
  EXPECT_TRUE(p.readonly_rootfs);
  EXPECT_TRUE(FindMount(p, "/etc/hosts")->flags & MS_RDONLY);
  Sc()->set_privileged(true);
  p = MustBuild();
  EXPECT_FALSE(FindMount(p, "/sys")->flags & MS_RDONLY) << "privileged: /sys is writable";
}

TEST_F(PlanTest, CriMountsSortedByDepthWithPropagation) {
  auto add = [&](const std::string& c, const std::string& h, bool ro, cri::MountPropagation prop) {
    auto* m = cfg_.add_mounts();
    m->set_container_path(c);
    m->set_host_path(h);
    m->set_readonly(ro);
    m->set_propagation(prop);
  };
  add("/data/deep/er", "/h/3", false, cri::PROPAGATION_PRIVATE);
  add("/data/", "/h/1", true, cri::PROPAGATION_HOST_TO_CONTAINER);
  add("/data/deep", "/h/2", false, cri::PROPAGATION_BIDIRECTIONAL);
  add("/etc/hosts", "/h/hosts", false, cri::PROPAGATION_PRIVATE);
  in_.resolve_host_path = [](const std::string& p) -> absl::StatusOr<std::string> { return "/real" + p; };
  ContainerPlan p = MustBuild();
  std::vector<std::string> cri;
  for (const auto& m : p.mounts)
    if (absl::StartsWith(m.source, "/real")) cri.push_back(m.destination);
  // Parents first (stable by depth: /etc/hosts and /data/deep are both 2 deep).
  EXPECT_THAT(cri, ElementsAre("/data", "/data/deep", "/etc/hosts", "/data/deep/er"));
  EXPECT_EQ(FindMount(p, "/etc/hosts")->source, "/real/h/hosts") << "a CRI mount replaces the pod's file";
  EXPECT_EQ(std::count_if(p.mounts.begin(), p.mounts.end(),
                          [](const PlanMount& m) { return m.destination == "/etc/hosts"; }),
            1);
  const PlanMount* data = FindMount(p, "/data");
  EXPECT_EQ(data->type, "bind");
  EXPECT_TRUE(data->flags & MS_RDONLY);
  EXPECT_EQ(data->propagation, uint64_t{MS_SLAVE | MS_REC});
  EXPECT_EQ(FindMount(p, "/data/deep")->propagation, uint64_t{MS_SHARED | MS_REC});
  EXPECT_EQ(FindMount(p, "/data/deep/er")->propagation, uint64_t{MS_PRIVATE | MS_REC});
}

TEST_F(PlanTest, BadMountsAreInvalid) {
  auto* m = cfg_.add_mounts();
  m->set_container_path("/data");
  m->set_host_path("relative/path");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  m->set_host_path("/h");
  m->set_container_path("data");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  m->set_container_path("/data/../etc");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  m->set_container_path("/data");
  in_.resolve_host_path = [](const std::string&) -> absl::StatusOr<std::string> {
    return absl::NotFoundError("No such file or directory");
  };
  auto s = Build().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "/h")) << s;
}

TEST_F(PlanTest, MaskedAndReadonlyPaths) {
  ContainerPlan p = MustBuild();
  EXPECT_EQ(p.masked_paths, DefaultMaskedPaths());
  EXPECT_EQ(p.readonly_paths, DefaultReadonlyPaths());
  EXPECT_NE(std::find(p.masked_paths.begin(), p.masked_paths.end(), "/proc/kcore"), p.masked_paths.end());
  Sc()->add_masked_paths("/proc/only");
  Sc()->add_readonly_paths("/proc/ro");
  p = MustBuild();
  EXPECT_THAT(p.masked_paths, ElementsAre("/proc/only"));
  EXPECT_THAT(p.readonly_paths, ElementsAre("/proc/ro"));
  Sc()->set_privileged(true);
  p = MustBuild();
  EXPECT_TRUE(p.masked_paths.empty());
  EXPECT_TRUE(p.readonly_paths.empty());
}

TEST_F(PlanTest, Capabilities) {
  ContainerPlan p = MustBuild();
  EXPECT_EQ(p.caps.effective, DefaultCapabilities());
  EXPECT_EQ(p.caps.bounding, DefaultCapabilities());
  EXPECT_EQ(p.caps.effective, 0xa80425fbull) << "containerd's 14";
  auto* caps = Sc()->mutable_capabilities();
  caps->add_add_capabilities("NET_ADMIN");
  caps->add_drop_capabilities("CAP_KILL");
  p = MustBuild();
  EXPECT_TRUE(p.caps.effective & (1ull << CapabilityNumber("NET_ADMIN")));
  EXPECT_FALSE(p.caps.effective & (1ull << CapabilityNumber("KILL")));
  caps->Clear();
  caps->add_drop_capabilities("ALL");
  caps->add_add_capabilities("chown");
  EXPECT_EQ(MustBuild().caps.effective, 1ull << CapabilityNumber("CHOWN"));
  caps->Clear();
  caps->add_add_capabilities("ALL");
  caps->add_drop_capabilities("SYS_ADMIN");
  EXPECT_EQ(MustBuild().caps.effective, AllCapabilities() & ~(1ull << CapabilityNumber("SYS_ADMIN")));
  caps->Clear();
  caps->add_add_capabilities("NOT_A_CAP");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  caps->Clear();
  Sc()->set_privileged(true);
  EXPECT_EQ(MustBuild().caps.effective, AllCapabilities());
}

TEST_F(PlanTest, SeccompProfileSelection) {
  EXPECT_EQ(MustBuild().seccomp_json, "") << "unset: unconfined";
  Sc()->mutable_seccomp()->set_profile_type(cri::SecurityProfile::RuntimeDefault);
  std::string def = MustBuild().seccomp_json;
  SeccompProfile prof;
  std::string err;
  ASSERT_TRUE(SeccompProfileFromJson(def, &prof, &err)) << err;
  EXPECT_FALSE(prof.syscalls.empty());
  Sc()->mutable_seccomp()->set_profile_type(cri::SecurityProfile::Unconfined);
  EXPECT_EQ(MustBuild().seccomp_json, "");
  Sc()->mutable_seccomp()->set_profile_type(cri::SecurityProfile::Localhost);
  Sc()->mutable_seccomp()->set_localhost_ref("/etc/crisp/seccomp/deny-mkdir.json");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInternal) << "no reader";
  std::string asked;
  in_.read_file = [&](const std::string& p) -> absl::StatusOr<std::string> {
    asked = p;
    return std::string(
        R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]})");
  };
  std::string local = MustBuild().seccomp_json;
  EXPECT_EQ(asked, "/etc/crisp/seccomp/deny-mkdir.json");
  EXPECT_TRUE(absl::StrContains(local, "mkdir")) << local;
  Sc()->mutable_seccomp()->set_localhost_ref("relative.json");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  in_.read_file = [](const std::string&) -> absl::StatusOr<std::string> { return std::string("{not json"); };
  Sc()->mutable_seccomp()->set_localhost_ref("/p.json");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  Sc()->set_privileged(true);
  EXPECT_EQ(MustBuild().seccomp_json, "") << "privileged: no filter";
}

TEST_F(PlanTest, OomScoreAdjIsClampedAndLogPathJoined) {
  cfg_.mutable_linux()->mutable_resources()->set_oom_score_adj(-999);
  in_.min_oom_score_adj = -500;
  EXPECT_EQ(MustBuild().oom_score_adj, std::optional<int>(-500));
  cfg_.mutable_linux()->mutable_resources()->set_oom_score_adj(1000);
  EXPECT_EQ(MustBuild().oom_score_adj, std::optional<int>(1000));
  EXPECT_EQ(MustBuild().log_path, "") << "no log path asked";
  cfg_.set_log_path("c/0.log");
  EXPECT_EQ(MustBuild().log_path, "/var/log/pods/ns_p_u/c/0.log");
  cfg_.set_log_path("../escape.log");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  cfg_.set_log_path("/abs.log");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PlanTest, StdioAndCgroupFilesPassThrough) {
  cfg_.set_tty(true);
  cfg_.set_stdin(true);
  cfg_.set_stdin_once(true);
  in_.cgroup_procs = {"/sys/fs/cgroup/cpu/x/cgroup.procs"};
  in_.oom_events_file = "/sys/fs/cgroup/memory/x/memory.oom_control";
  ContainerPlan p = MustBuild();
  EXPECT_TRUE(p.tty && p.stdin_open && p.stdin_once);
  EXPECT_EQ(p.cgroup_procs, in_.cgroup_procs);
  EXPECT_EQ(p.oom_events_file, in_.oom_events_file);
  EXPECT_EQ(p.shim_dir, "/run/crisp/containers/c1");
  EXPECT_TRUE(ParseContainerPlan(ContainerPlanToJson(p)).has_value());
}

TEST_F(PlanTest, RootPropagationFollowsTheMountsAndSourcesAreChecked) {
  EXPECT_EQ(MustBuild().root_propagation, uint64_t{MS_PRIVATE | MS_REC});
  auto* m = cfg_.add_mounts();
  m->set_container_path("/a");
  m->set_host_path("/h/a");
  m->set_propagation(cri::PROPAGATION_HOST_TO_CONTAINER);
  std::map<std::string, std::string> props = {{"/h/a", "slave"}, {"/h/b", "shared"}};
  in_.mount_propagation_of = [&](const std::string& p) { return props[p]; };
  EXPECT_EQ(MustBuild().root_propagation, uint64_t{MS_SLAVE | MS_REC});
  auto* b = cfg_.add_mounts();
  b->set_container_path("/b");
  b->set_host_path("/h/b");
  b->set_propagation(cri::PROPAGATION_BIDIRECTIONAL);
  EXPECT_EQ(MustBuild().root_propagation, uint64_t{MS_SHARED | MS_REC});
  props["/h/b"] = "slave";
  auto s = Build().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "bidirectional needs a shared source";
  EXPECT_TRUE(absl::StrContains(s.message(), "/h/b")) << s;
  props["/h/b"] = "shared";
  props["/h/a"] = "private";
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument) << "rslave needs shared or slave";
  m->set_propagation(cri::PROPAGATION_PRIVATE);
  EXPECT_TRUE(Build().ok()) << "a private mount may come from anywhere";
}

TEST_F(PlanTest, Devices) {
  auto* d = cfg_.add_devices();
  d->set_host_path("/dev/fuse");
  d->set_container_path("/dev/myfuse");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument) << "no device reader";
  in_.read_devices = [](const std::string& p) -> absl::StatusOr<std::vector<PlanDevice>> {
    if (p == "/dev/fuse") return std::vector<PlanDevice>{{"/dev/fuse", 'c', 10, 229, 0666, 0, 0}};
    if (p == "/dev/snd") return std::vector<PlanDevice>{{"/dev/snd/a", 'c', 116, 1, 0660, 0, 29}};
    if (p == "/dev") return std::vector<PlanDevice>{{"/dev/kmsg", 'c', 1, 11, 0644, 0, 0}};
    return absl::NotFoundError("no such device");
  };
  auto* snd = cfg_.add_devices();
  snd->set_host_path("/dev/snd");
  ContainerPlan p = MustBuild();
  ASSERT_EQ(p.devices.size(), 2u);
  EXPECT_EQ(p.devices[0], (PlanDevice{"/dev/myfuse", 'c', 10, 229, 0666, 0, 0}));
  EXPECT_EQ(p.devices[1].path, "/dev/snd/a") << "no container path: the host path";
  EXPECT_EQ(p.devices[1].gid, 29u);
  Sc()->set_privileged(true);
  p = MustBuild();
  ASSERT_EQ(p.devices.size(), 3u) << "privileged: the host's devices too";
  EXPECT_EQ(p.devices[0].path, "/dev/kmsg");
  d->set_host_path("/dev/nope");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
  d->set_host_path("relative");
  EXPECT_EQ(Build().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ContainerCgroupResources, CriFieldsMap) {
  cri::LinuxContainerResources r;
  CgroupResources none = ContainerCgroupResources(r);
  EXPECT_FALSE(none.cpu_shares || none.cpu_quota || none.cpu_period || none.memory_limit);
  r.set_cpu_shares(512);
  r.set_cpu_quota(50000);
  r.set_cpu_period(100000);
  r.set_memory_limit_in_bytes(64 << 20);
  r.set_cpuset_cpus("0");
  auto* h = r.add_hugepage_limits();
  h->set_page_size("2MB");
  h->set_limit(4 << 20);
  CgroupResources res = ContainerCgroupResources(r);
  EXPECT_EQ(res.cpu_shares, std::optional<int64_t>(512));
  EXPECT_EQ(res.cpu_quota, std::optional<int64_t>(50000));
  EXPECT_EQ(res.cpu_period, std::optional<int64_t>(100000));
  EXPECT_EQ(res.memory_limit, std::optional<int64_t>(64 << 20));
  EXPECT_EQ(res.cpuset_cpus, std::optional<std::string>("0"));
  EXPECT_EQ(res.hugepage_limits.at("2MB"), uint64_t{4 << 20});
}

}  // namespace
}  // namespace crisp::runtime
