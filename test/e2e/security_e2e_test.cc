// Security contexts as a container sees them, through crispd's socket: IPC
// namespace sharing with the host, users and groups (supplemental, from the
// image's /etc/group, by name, run_as_group), read-only rootfs next to a
// writable volume, capabilities added and dropped (one by one and "ALL"),
// seccomp in every form the CRI carries (typed and the older path field),
// no_new_privs against a setuid-root probe, masked and read-only paths, and
// host paths that are symlinks. Each case makes the container print what it
// sees and compares that with what was asked.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "test/e2e/container_fixture.h"
#include "test/e2e/harness.h"

namespace crisp::e2e {
namespace {

class SecurityTest : public ContainerTest {
 protected:
  static void SetUpTestSuite() {
    ContainerTest::SetUpTestSuite();
    if (!skip_.empty() || !daemon_) return;
    groups_image_ = PullFixture("crisp/groups:latest");
  }

  // Runs `script` to its end with the security context edited by `edit`;
  // the container's stdout lines (without the "F " tags), one per line.
  std::string Output(const std::string& name, const std::string& script,
                     const std::function<void(cri::LinuxContainerSecurityContext*)>& edit,
                     cri::ContainerStatus* status = nullptr) {
    auto cfg = Config(name, script);
    edit(cfg.mutable_linux()->mutable_security_context());
    std::string log;
    cri::ContainerStatus st = RunToExit(cfg, &log);
    if (status) *status = st;
    return Untagged(Lines(log));
  }
  static std::string Untagged(const std::string& lines) {
    std::string out;
    for (absl::string_view l : absl::StrSplit(lines, '\n', absl::SkipEmpty())) {
      absl::ConsumePrefix(&l, "F ");
      absl::ConsumePrefix(&l, "P ");
      absl::StrAppend(&out, l, "\n");
    }
    return out;
  }

  // The value of "<field>:\t<hex>" in `status_text` (/proc/<pid>/status).
  static uint64_t HexField(const std::string& status_text, const std::string& field) {
    for (absl::string_view l : absl::StrSplit(status_text, '\n')) {
      if (absl::ConsumePrefix(&l, field + ":")) {
        uint64_t v = 0;
        if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(l), &v)) return v;
      }
    }
    ADD_FAILURE() << field << " not in: " << status_text;
    return ~0ull;
  }

  // A SysV shared memory segment made on the host with ipcmk; its shmid.
  std::string MakeHostSegment() {
    std::string out = RunCapture({"/usr/bin/ipcmk", "-M", "1024"});
    // "Shared memory id: 42"
    size_t p = out.rfind(':');
    std::string id = p == std::string::npos ? "" : std::string(absl::StripAsciiWhitespace(out.substr(p + 1)));
    int n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(id, &n)) << "ipcmk said: " << out;
    return id;
  }
  static void RemoveHostSegment(const std::string& id) {
    if (!id.empty()) RunCapture({"/usr/bin/ipcrm", "-m", id});
  }

  static inline std::string groups_image_;
};

// The container lists the shmids of its IPC namespace from /proc/sysvipc/shm
// (what ipcs -m reads; the busybox fixture has no ipcs).
constexpr char kListShm[] =
    "awk 'NR == 1 {print \"header=\" $2} NR > 1 {print \"shmid=\" $2}' /proc/sysvipc/shm; echo listed";

TEST_F(SecurityTest, HostIpcPodSeesTheHostsSysvSegments) {
  RunPod([](cri::PodSandboxConfig* p) {
    p->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_ipc(cri::NODE);
  });
  std::string shmid = MakeHostSegment();
  ASSERT_FALSE(shmid.empty());
  std::string out = Output("hostipc", kListShm, [](auto*) {});
  RemoveHostSegment(shmid);
  EXPECT_TRUE(absl::StrContains(out, "shmid=" + shmid + "\n")) << out;
  EXPECT_TRUE(absl::StartsWith(out, "header=shmid\n")) << out;
}

TEST_F(SecurityTest, PodIpcNamespaceDoesNotSeeTheHostsSysvSegments) {
  RunPod([](cri::PodSandboxConfig* p) {
    p->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_ipc(cri::POD);
  });
  std::string shmid = MakeHostSegment();
  ASSERT_FALSE(shmid.empty());
  std::string out = Output("podipc", kListShm, [](auto*) {});
  RemoveHostSegment(shmid);
  EXPECT_EQ(out, "header=shmid\nlisted\n") << "no segment at all in a fresh IPC namespace";
}

TEST_F(SecurityTest, ImageGroupsOfTheUserAndSupplementalGroupsAreAllThere) {
  // crisp/groups lists "user" (1000) in extra1 (5000) and extra2 (5001);
  // "others" (5002) has only www-data.
  auto cfg = Config("groups", "id -u; id -g; id -G | tr ' ' '\\n' | sort -n | tr '\\n' ' '; echo");
  cfg.mutable_image()->set_image(groups_image_);
  auto* sc = cfg.mutable_linux()->mutable_security_context();
  sc->mutable_run_as_user()->set_value(1000);
  sc->add_supplemental_groups(4242);
  sc->add_supplemental_groups(4343);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  EXPECT_EQ(Untagged(Lines(log)), "1000\n1000\n1000 4242 4343 5000 5001 \n") << log;
  std::vector<int64_t> reported(st.user().linux().supplemental_groups().begin(),
                                st.user().linux().supplemental_groups().end());
  std::sort(reported.begin(), reported.end());
  EXPECT_EQ(reported, (std::vector<int64_t>{1000, 4242, 4343, 5000, 5001}));
}

TEST_F(SecurityTest, RunAsUsernameAndRunAsGroup) {
  cri::ContainerStatus st;
  std::string out = Output(
      "byname", "id -un; id -u; id -g", [](auto* sc) { sc->set_run_as_username("www-data"); }, &st);
  EXPECT_EQ(out, "www-data\n33\n33\n");
  EXPECT_EQ(st.user().linux().uid(), 33);
  EXPECT_EQ(st.user().linux().gid(), 33);
  // A group other than the user's own primary group.
  out = Output(
      "group", "id -u; id -g; touch /tmp/f && stat -c '%u:%g' /tmp/f",
      [](auto* sc) {
        sc->mutable_run_as_user()->set_value(1000);
        sc->mutable_run_as_group()->set_value(33);
      },
      &st);
  EXPECT_EQ(out, "1000\n33\n1000:33\n");
  EXPECT_EQ(st.user().linux().gid(), 33);
  // A group without a user is refused (covered in detail in the container
  // tests; here by name too).
  auto cfg = Config("groupnouser", "true");
  cfg.mutable_linux()->mutable_security_context()->mutable_run_as_group()->set_value(33);
  std::string id;
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SecurityTest, ReadonlyRootfsFalseAndTrueNextToAWritableVolume) {
  std::string vol = log_dir_ + "/vol";
  ASSERT_TRUE(MkdirAll(vol).ok());
  std::string script =
      "touch /in-rootfs 2>/dev/null && echo rootfs-rw || echo rootfs-ro; "
      "echo data > /vol/from-ctr && echo vol-rw";
  for (bool ro : {false, true}) {
    SCOPED_TRACE(ro ? "readonly" : "writable");
    auto cfg = Config(ro ? "ro" : "rw", script);
    cfg.mutable_linux()->mutable_security_context()->set_readonly_rootfs(ro);
    auto* m = cfg.add_mounts();
    m->set_container_path("/vol");
    m->set_host_path(vol);
    std::string log;
    RunToExit(cfg, &log);
    EXPECT_EQ(Untagged(Lines(log)), std::string(ro ? "rootfs-ro" : "rootfs-rw") + "\nvol-rw\n") << log;
    EXPECT_EQ(ReadFile(vol + "/from-ctr").value_or(""), "data\n");
    ::unlink((vol + "/from-ctr").c_str());
  }
}

TEST_F(SecurityTest, CapabilitiesAddedAndDroppedOneByOneAndAll) {
  const std::string kShow = "grep -E '^Cap(Eff|Bnd):' /proc/self/status";
  constexpr uint64_t kDefault =
      0xa80425fbull;  // see ContainerTest.RootGetsTheDefaultCapabilitiesAndMaskedPaths
  constexpr uint64_t kSysAdmin = 1ull << 21, kChown = 1ull << 0;
  std::string ours = ReadFile("/proc/self/status").value_or("");

  std::string out = Output("add", kShow + "; hostname crisp-renamed && echo renamed",
                           [](auto* sc) { sc->mutable_capabilities()->add_add_capabilities("SYS_ADMIN"); });
  EXPECT_EQ(HexField(out, "CapEff"), kDefault | kSysAdmin) << out;
  EXPECT_EQ(HexField(out, "CapBnd"), kDefault | kSysAdmin) << out;
  EXPECT_TRUE(absl::StrContains(out, "renamed\n")) << "SYS_ADMIN allows sethostname: " << out;

  out =
      Output("drop", kShow + "; touch /tmp/f; chown 1000 /tmp/f 2>/dev/null && echo chowned || echo no-chown",
             [](auto* sc) { sc->mutable_capabilities()->add_drop_capabilities("CHOWN"); });
  EXPECT_EQ(HexField(out, "CapEff"), kDefault & ~kChown) << out;
  EXPECT_TRUE(absl::StrContains(out, "no-chown\n")) << out;

  out = Output("addall", kShow, [](auto* sc) { sc->mutable_capabilities()->add_add_capabilities("ALL"); });
  EXPECT_EQ(HexField(out, "CapEff"), HexField(ours, "CapEff")) << "everything this (root) test has: " << out;
  EXPECT_EQ(HexField(out, "CapBnd"), HexField(ours, "CapBnd")) << out;

  out = Output("dropall",
               kShow + "; touch /tmp/f; chown 1000 /tmp/f 2>/dev/null && echo chowned || echo no-chown",
               [](auto* sc) { sc->mutable_capabilities()->add_drop_capabilities("ALL"); });
  EXPECT_EQ(HexField(out, "CapEff"), 0u) << out;
  EXPECT_EQ(HexField(out, "CapBnd"), 0u) << out;
  EXPECT_TRUE(absl::StrContains(out, "no-chown\n")) << out;
}

// The pre-1.19 seccomp_profile_path field, which critest v1.26 still uses.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void SetSeccompPath(cri::LinuxContainerSecurityContext* sc, const std::string& path) {
  sc->set_seccomp_profile_path(path);
}
#pragma GCC diagnostic pop

constexpr char kBlockHostname[] =
    R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]})";
constexpr char kBlockChmod[] =
    R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]})";
constexpr char kTryHostname[] =
    "grep Seccomp: /proc/self/status; hostname crisp-renamed 2>/dev/null && echo set || echo blocked";

TEST_F(SecurityTest, SeccompProfilesByPathAndByType) {
  std::string block_host = log_dir_ + "/block-hostname.json", block_chmod = log_dir_ + "/block-chmod.json";
  ASSERT_TRUE(WriteFileAtomic(block_host, kBlockHostname).ok());
  ASSERT_TRUE(WriteFileAtomic(block_chmod, kBlockChmod).ok());
  auto sys_admin = [](cri::LinuxContainerSecurityContext* sc) {
    sc->mutable_capabilities()->add_add_capabilities("SYS_ADMIN");
  };
  // Nothing asked: no filter.
  EXPECT_EQ(Output("none", "grep Seccomp: /proc/self/status", [](auto*) {}), "Seccomp:\t0\n");
  // Unconfined, both ways; with SYS_ADMIN sethostname works.
  EXPECT_EQ(Output("unconfined-path", kTryHostname,
                   [&](auto* sc) {
                     SetSeccompPath(sc, "unconfined");
                     sys_admin(sc);
                   }),
            "Seccomp:\t0\nset\n");
  EXPECT_EQ(Output("unconfined-type", kTryHostname,
                   [&](auto* sc) {
                     sc->mutable_seccomp()->set_profile_type(cri::SecurityProfile::Unconfined);
                     sys_admin(sc);
                   }),
            "Seccomp:\t0\nset\n");
  // docker/default and runtime/default: filtered; sethostname is allowed
  // when SYS_ADMIN was granted and refused otherwise.
  for (const char* p : {"docker/default", "runtime/default"}) {
    SCOPED_TRACE(p);
    std::string name = p == std::string("docker/default") ? "docker" : "runtime";  // own log per container
    EXPECT_EQ(Output(name + "-admin", kTryHostname,
                     [&](auto* sc) {
                       SetSeccompPath(sc, p);
                       sys_admin(sc);
                     }),
              "Seccomp:\t2\nset\n");
    EXPECT_EQ(Output(name, kTryHostname, [&](auto* sc) { SetSeccompPath(sc, p); }), "Seccomp:\t2\nblocked\n");
  }
  // localhost/<path>: the profile blocks sethostname despite SYS_ADMIN ...
  EXPECT_EQ(Output("local-host", kTryHostname,
                   [&](auto* sc) {
                     SetSeccompPath(sc, "localhost/" + block_host);
                     sys_admin(sc);
                   }),
            "Seccomp:\t2\nblocked\n");
  // ... and chmod for the other one, as root.
  EXPECT_EQ(Output("local-chmod", "chmod 400 / 2>&1 | grep -c 'not permitted'",
                   [&](auto* sc) { SetSeccompPath(sc, "localhost/" + block_chmod); }),
            "1\n");
  // A bare path (no "localhost/") is not a profile name.
  auto cfg = Config("bare", "true");
  SetSeccompPath(cfg.mutable_linux()->mutable_security_context(), block_host);
  std::string id;
  EXPECT_EQ(Create(cfg, &id).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SecurityTest, PrivilegedContainerIgnoresItsSeccompProfile) {
  std::string block_host = log_dir_ + "/block-hostname.json";
  ASSERT_TRUE(WriteFileAtomic(block_host, kBlockHostname).ok());
  RunPod(
      [](cri::PodSandboxConfig* p) { p->mutable_linux()->mutable_security_context()->set_privileged(true); });
  EXPECT_EQ(Output("priv", kTryHostname,
                   [&](auto* sc) {
                     sc->set_privileged(true);
                     SetSeccompPath(sc, "localhost/" + block_host);
                   }),
            "Seccomp:\t0\nset\n");
  // The same profile in the same pod does block it when not privileged.
  EXPECT_EQ(Output("unpriv", kTryHostname,
                   [&](auto* sc) {
                     sc->mutable_capabilities()->add_add_capabilities("SYS_ADMIN");
                     SetSeccompPath(sc, "localhost/" + block_host);
                   }),
            "Seccomp:\t2\nblocked\n");
}

TEST_F(SecurityTest, NoNewPrivsStopsASetuidRootBinary) {
  // A setuid-root copy of the probe in a host dir, mounted read-only.
  std::string dir = log_dir_ + "/probe";
  ASSERT_TRUE(MkdirAll(dir).ok());
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  auto bin = ReadFile(CRISP_SETUID_PROBE);
  ASSERT_TRUE(bin.ok()) << CRISP_SETUID_PROBE;
  ASSERT_TRUE(WriteFileAtomic(dir + "/probe", *bin).ok());
  ASSERT_EQ(::chown((dir + "/probe").c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod((dir + "/probe").c_str(), 04755), 0);
  for (bool nnp : {true, false}) {
    SCOPED_TRACE(nnp ? "no_new_privs" : "new privileges allowed");
    auto cfg = Config(nnp ? "nnp" : "escalate", "grep NoNewPrivs: /proc/self/status; /probe/probe");
    auto* m = cfg.add_mounts();
    m->set_container_path("/probe");
    m->set_host_path(dir);
    m->set_readonly(true);
    auto* sc = cfg.mutable_linux()->mutable_security_context();
    sc->mutable_run_as_user()->set_value(1000);
    sc->set_no_new_privs(nnp);
    std::string log;
    RunToExit(cfg, &log);
    EXPECT_EQ(Untagged(Lines(log)),
              nnp ? "NoNewPrivs:\t1\nuid=1000 euid=1000\n" : "NoNewPrivs:\t0\nuid=1000 euid=0\n")
        << log;
  }
}

TEST_F(SecurityTest, MaskedAndReadonlyPathsAsAsked) {
  // A masked file reads as empty (/dev/null is bound over it), a masked
  // directory (here a volume with a file) is an empty read-only tmpfs. (Not /bin/<applet>: in the
  // fixture those are symlinks to /bin/busybox, which masking would hide.)
  std::string vol = log_dir_ + "/vol";
  ASSERT_TRUE(MkdirAll(vol).ok());
  ASSERT_TRUE(WriteFileAtomic(vol + "/hidden", "x\n").ok());
  auto cfg = Config("masked",
                    "wc -c < /etc/group; ls -A /vol | wc -l; "
                    "touch /vol/x 2>/dev/null || echo dir-ro; wc -c < /proc/timer_list");
  auto* m = cfg.add_mounts();
  m->set_container_path("/vol");
  m->set_host_path(vol);
  cfg.mutable_linux()->mutable_security_context()->add_masked_paths("/etc/group");
  cfg.mutable_linux()->mutable_security_context()->add_masked_paths("/vol");
  std::string log;
  RunToExit(cfg, &log);
  std::string out = Untagged(Lines(log));
  // Only those are masked: the default list is replaced (timer_list readable).
  EXPECT_TRUE(absl::StartsWith(out, "0\n0\ndir-ro\n")) << out;
  EXPECT_FALSE(absl::EndsWith(out, "\n0\n")) << "/proc/timer_list still masked: " << out;
  // Without masking, the same file has content.
  EXPECT_NE(Output("unmasked", "wc -c < /etc/group", [](auto*) {}), "0\n");
  out = Output("readonly", "touch /tmp/test 2>&1; touch /var-ok 2>/dev/null && echo rootfs-rw",
               [](auto* sc) { sc->add_readonly_paths("/tmp"); });
  EXPECT_EQ(out, "touch: /tmp/test: Read-only file system\nrootfs-rw\n");
}

TEST_F(SecurityTest, HostPathThatIsASymlinkToADirectory) {
  std::string real = log_dir_ + "/real", link = log_dir_ + "/link";
  ASSERT_TRUE(MkdirAll(real).ok());
  ASSERT_TRUE(WriteFileAtomic(real + "/from-host", "through the link\n").ok());
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  auto cfg = Config("symlink", "cat /vol/from-host; echo back > /vol/from-ctr; test -L /vol || echo dir");
  auto* m = cfg.add_mounts();
  m->set_container_path("/vol");
  m->set_host_path(link);
  std::string log;
  cri::ContainerStatus st = RunToExit(cfg, &log);
  EXPECT_EQ(st.exit_code(), 0) << log;
  EXPECT_EQ(Untagged(Lines(log)), "through the link\ndir\n") << log;
  EXPECT_EQ(ReadFile(real + "/from-ctr").value_or(""), "back\n");
}

}  // namespace
}  // namespace crisp::e2e
