// User/group resolution from a container's passwd/group text, and the
// capability rules (names, containerd's defaults, add/drop/ALL, applying).
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/capabilities.h"
#include "runtime/users.h"

namespace crisp::runtime {
namespace {

using ::testing::ElementsAre;

constexpr char kPasswd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
    "broken line without colons\n"
    "bad:x:notanumber:1::/:\n"
    "user:x:1000:1000:User:/home/user:/bin/sh\n"
    "nohome:x:1001:1001\n";
constexpr char kGroup[] =
    "root:x:0:\n"
    "www-data:x:33:\n"
    "user:x:1000:\n"
    "audio:x:29:user,www-data\n"
    "video:x:44:user\n"
    "bad:x:zz:user\n"
    "staff:x:50\n";

ResolvedUser Resolve(const UserRequest& r) {
  ResolvedUser out;
  std::string err;
  EXPECT_TRUE(ResolveUser(r, kPasswd, kGroup, &out, &err)) << err;
  return out;
}
std::string ResolveError(const UserRequest& r) {
  ResolvedUser out;
  std::string err;
  EXPECT_FALSE(ResolveUser(r, kPasswd, kGroup, &out, &err));
  return err;
}

TEST(Users, ParsingSkipsMalformedLines) {
  auto users = ParsePasswd(kPasswd);
  ASSERT_EQ(users.size(), 4u);
  EXPECT_EQ(users[2].name, "user");
  EXPECT_EQ(users[2].home, "/home/user");
  EXPECT_EQ(users[3].home, "");
  auto groups = ParseGroup(kGroup);
  ASSERT_EQ(groups.size(), 6u);
  EXPECT_THAT(groups[3].members, ElementsAre("user", "www-data"));
}

TEST(Users, DefaultIsRoot) {
  ResolvedUser u = Resolve({});
  EXPECT_EQ(u.uid, 0u);
  EXPECT_EQ(u.gid, 0u);
  EXPECT_EQ(u.home, "/root");
  EXPECT_THAT(u.additional_gids, ElementsAre(0u));
}

TEST(Users, NumericUidInOrOutOfPasswd) {
  UserRequest r;
  r.run_as_user = 1000;
  ResolvedUser u = Resolve(r);
  EXPECT_EQ(u.gid, 1000u);
  EXPECT_EQ(u.username, "user");
  EXPECT_EQ(u.home, "/home/user");
  EXPECT_THAT(u.additional_gids, ElementsAre(29u, 44u, 1000u)) << "member of audio and video";
  r.run_as_user = 4242;
  u = Resolve(r);
  EXPECT_EQ(u.uid, 4242u);
  EXPECT_EQ(u.gid, 0u);
  EXPECT_EQ(u.home, "/");
  EXPECT_THAT(u.additional_gids, ElementsAre(0u));
}

TEST(Users, UsernameMustExist) {
  UserRequest r;
  r.run_as_username = "www-data";
  ResolvedUser u = Resolve(r);
  EXPECT_EQ(u.uid, 33u);
  EXPECT_EQ(u.gid, 33u);
  EXPECT_THAT(u.additional_gids, ElementsAre(29u, 33u));
  r.run_as_username = "ghost";
  EXPECT_NE(ResolveError(r).find("ghost"), std::string::npos);
}

TEST(Users, PrecedenceRunAsUserThenUsernameThenImage) {
  UserRequest r;
  r.image_user = "www-data";
  EXPECT_EQ(Resolve(r).uid, 33u);
  r.run_as_username = "user";
  EXPECT_EQ(Resolve(r).uid, 1000u);
  r.run_as_user = 0;
  EXPECT_EQ(Resolve(r).uid, 0u);
}

TEST(Users, ImageUserForms) {
  struct Case {
    std::string spec;
    uint32_t uid, gid;
  };
  for (const Case& c : {Case{"1000", 1000, 1000}, Case{"1000:1000", 1000, 1000}, Case{"0", 0, 0},
                        Case{"user:44", 1000, 44}, Case{"user:audio", 1000, 29}, Case{"33:video", 33, 44},
                        Case{"5555:6666", 5555, 6666}}) {
    UserRequest r;
    r.image_user = c.spec;
    ResolvedUser u = Resolve(r);
    EXPECT_EQ(u.uid, c.uid) << c.spec;
    EXPECT_EQ(u.gid, c.gid) << c.spec;
  }
  UserRequest r;
  r.image_user = "user:nogroup";
  EXPECT_NE(ResolveError(r).find("nogroup"), std::string::npos);
  r.image_user = "nobody";
  EXPECT_NE(ResolveError(r).find("nobody"), std::string::npos);
}

TEST(Users, RunAsGroupOverridesAndSupplementalMerge) {
  UserRequest r;
  r.run_as_user = 1000;
  r.run_as_group = 7;
  r.supplemental_groups = {44, 5, 5};
  ResolvedUser u = Resolve(r);
  EXPECT_EQ(u.gid, 7u);
  EXPECT_THAT(u.additional_gids, ElementsAre(5u, 7u, 29u, 44u)) << "sorted, unique, primary included";
}

TEST(Capabilities, Names) {
  EXPECT_EQ(CapabilityNumber("CAP_NET_ADMIN"), 12);
  EXPECT_EQ(CapabilityNumber("NET_ADMIN"), 12);
  EXPECT_EQ(CapabilityNumber("net_admin"), 12);
  EXPECT_EQ(CapabilityNumber("cap_checkpoint_restore"), 40);
  EXPECT_EQ(CapabilityNumber("NET_WIZARD"), -1);
  EXPECT_EQ(CapabilityName(21), "CAP_SYS_ADMIN");
  EXPECT_EQ(CapabilityName(99), "");
  EXPECT_THAT(CapsToNames((1ull << 0) | (1ull << 21)), ElementsAre("CAP_CHOWN", "CAP_SYS_ADMIN"));
}

TEST(Capabilities, DefaultsAddDropAll) {
  EXPECT_EQ(DefaultCapabilities(), 0xa80425fbull);
  EXPECT_EQ(CapsToNames(DefaultCapabilities()).size(), 14u);
  CapSets c;
  std::string err;
  ASSERT_TRUE(ComputeCapabilities({}, {}, {}, false, &c, &err));
  EXPECT_EQ(c.effective, DefaultCapabilities());
  EXPECT_EQ(c.bounding, c.effective);
  EXPECT_EQ(c.permitted, c.effective);
  EXPECT_EQ(c.inheritable, 0u);
  EXPECT_EQ(c.ambient, 0u);
  ASSERT_TRUE(ComputeCapabilities({"NET_ADMIN"}, {"KILL", "cap_chown"}, {}, false, &c, &err));
  EXPECT_EQ(c.effective, (DefaultCapabilities() | 1ull << 12) & ~(1ull << 5) & ~1ull);
  ASSERT_TRUE(ComputeCapabilities({"ALL"}, {"SYS_ADMIN"}, {}, false, &c, &err));
  EXPECT_EQ(c.effective, AllCapabilities() & ~(1ull << 21));
  ASSERT_TRUE(ComputeCapabilities({"CHOWN"}, {"ALL"}, {}, false, &c, &err));
  EXPECT_EQ(c.effective, 1ull);
  ASSERT_TRUE(ComputeCapabilities({}, {"ALL"}, {}, false, &c, &err));
  EXPECT_EQ(c.effective, 0u);
  ASSERT_TRUE(ComputeCapabilities({}, {"ALL"}, {}, true, &c, &err));
  EXPECT_EQ(c.effective, AllCapabilities()) << "privileged wins";
  ASSERT_TRUE(ComputeCapabilities({}, {}, {"NET_BIND_SERVICE"}, false, &c, &err));
  EXPECT_EQ(c.ambient, 1ull << 10);
  EXPECT_EQ(c.inheritable, 1ull << 10);
  EXPECT_FALSE(ComputeCapabilities({"FLY"}, {}, {}, false, &c, &err));
  EXPECT_NE(err.find("FLY"), std::string::npos);
  EXPECT_FALSE(ComputeCapabilities({}, {"SWIM"}, {}, false, &c, &err));
}

std::string StatusField(const std::string& name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + ":", 0) == 0) return line.substr(name.size() + 2);
  return "";
}

// Applies `caps` in a child and returns "CapEff CapBnd" it then has.
std::string ApplyInChild(const CapSets& caps) {
  int p[2];
  if (::pipe(p) != 0) return "pipe";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    std::string err;
    std::string out = ApplyCapabilities(caps, &err) ? StatusField("CapEff") + " " + StatusField("CapBnd") : err;
    (void)!::write(p[1], out.data(), out.size());
    _exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  ::waitpid(pid, nullptr, 0);
  return out;
}

TEST(Capabilities, ApplyForReal) {
  if (::geteuid() != 0) GTEST_SKIP() << "shrinking the bounding set needs CAP_SETPCAP (root)";
  CapSets c;
  std::string err;
  ASSERT_TRUE(ComputeCapabilities({}, {}, {}, false, &c, &err));
  EXPECT_EQ(ApplyInChild(c), "00000000a80425fb 00000000a80425fb");
  ASSERT_TRUE(ComputeCapabilities({}, {"ALL"}, {}, false, &c, &err));
  EXPECT_EQ(ApplyInChild(c), "0000000000000000 0000000000000000");
}

}  // namespace
}  // namespace crisp::runtime
