// Reference parsing and normalisation, as docker/distribution does it.
#include "images/reference.h"

#include "gtest/gtest.h"

namespace crisp::images {
namespace {

struct Valid {
  const char* in;
  const char* domain;
  const char* path;
  const char* tag;
  const char* digest;
  const char* normalised;
};

constexpr char kD[] = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ReferenceTest, ValidReferencesNormalise) {
  const std::string d = kD;
  const std::vector<Valid> cases = {
      {"busybox", "docker.io", "library/busybox", "latest", "", "docker.io/library/busybox:latest"},
      {"busybox:1.36", "docker.io", "library/busybox", "1.36", "", "docker.io/library/busybox:1.36"},
      {"library/busybox", "docker.io", "library/busybox", "latest", "", "docker.io/library/busybox:latest"},
      {"docker.io/busybox", "docker.io", "library/busybox", "latest", "", "docker.io/library/busybox:latest"},
      {"index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest"},
      {"user/app", "docker.io", "user/app", "latest", "", "docker.io/user/app:latest"},
      {"registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", "", "registry.k8s.io/pause:3.9"},
      {"127.0.0.1:5000/crisp/busybox", "127.0.0.1:5000", "crisp/busybox", "latest", "",
       "127.0.0.1:5000/crisp/busybox:latest"},
      {"localhost/app:v1", "localhost", "app", "v1", "", "localhost/app:v1"},
      {"localhost:5000/a/b/c:v1.2-rc_3", "localhost:5000", "a/b/c", "v1.2-rc_3", "",
       "localhost:5000/a/b/c:v1.2-rc_3"},
      {"[::1]:5000/app:v1", "[::1]:5000", "app", "v1", "", "[::1]:5000/app:v1"},
      {"my-registry.example.com/team/app-name_x.y__z", "my-registry.example.com", "team/app-name_x.y__z",
       "latest", "", "my-registry.example.com/team/app-name_x.y__z:latest"},
      {"a---b", "docker.io", "library/a---b", "latest", "", "docker.io/library/a---b:latest"},
      {"app:_tag.with-x", "docker.io", "library/app", "_tag.with-x", "", "docker.io/library/app:_tag.with-x"},
  };
  for (const Valid& c : cases) {
    auto r = ParseReference(c.in);
    ASSERT_TRUE(r.ok()) << c.in << ": " << r.status();
    EXPECT_EQ(r->domain, c.domain) << c.in;
    EXPECT_EQ(r->path, c.path) << c.in;
    EXPECT_EQ(r->tag, c.tag) << c.in;
    EXPECT_EQ(r->digest, c.digest) << c.in;
    EXPECT_EQ(r->String(), c.normalised) << c.in;
  }
}

TEST(ReferenceTest, DigestsWinOverTagsButTagIsKept) {
  auto r = ParseReference(std::string("busybox@") + kD);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->digest, kD);
  EXPECT_EQ(r->Object(), kD);
  EXPECT_EQ(r->String(), std::string("docker.io/library/busybox@") + kD);
  EXPECT_EQ(r->TagRef(), "");

  auto t = ParseReference(std::string("127.0.0.1:5000/x/y:v2@") + kD);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->domain, "127.0.0.1:5000");
  EXPECT_EQ(t->tag, "v2");
  EXPECT_EQ(t->digest, kD);
  EXPECT_EQ(t->Object(), kD);
  EXPECT_EQ(t->TagRef(), "127.0.0.1:5000/x/y:v2");
  EXPECT_EQ(t->DigestRef(kD), std::string("127.0.0.1:5000/x/y@") + kD);
}

TEST(ReferenceTest, InvalidReferencesAreInvalidArgument) {
  const std::vector<std::string> bad = {
      "",
      "Busybox",                                  // uppercase repository
      "docker.io/Library/busybox",                // uppercase path component
      "busybox:",                                 // empty tag
      "busybox:-tag",                             // tag must start with a word char
      "busybox:" + std::string(129, 'a'),         // tag too long
      "busybox@sha256:abc",                       // short digest
      "busybox@sha512:" + std::string(128, 'a'),  // unsupported algorithm
      "busybox@sha256:" + std::string(64, 'A'),   // uppercase hex
      "busybox@",                                 // empty digest
      "a//b",                                     // empty path component
      "/busybox",                                 // empty domain/component
      "busybox/",                                 // trailing slash
      "bus box",                                  // space
      "-busybox",                                 // leading separator
      "busybox-",                                 // trailing separator
      "a..b",                                     // double dot separator
      "a___b",                                    // triple underscore
      "host:port/app",                            // non-numeric port
      "-bad.example.com/app",                     // domain component starting with '-'
      "[::1/app",                                 // unterminated IPv6
      std::string(64, 'a'),                       // an ID, not a name
      "example.com/" + std::string(250, 'a'),     // name longer than 255
      ":tag",                                     // no name
  };
  for (const std::string& s : bad) {
    auto r = ParseReference(s);
    EXPECT_FALSE(r.ok()) << "accepted \"" << s << "\" as " << (r.ok() ? r->String() : "");
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << s;
    }
  }
  auto upper = ParseReference("docker.io/library/BusyBox");
  ASSERT_FALSE(upper.ok());
  EXPECT_NE(upper.status().message().find("lowercase"), absl::string_view::npos) << upper.status();
}

TEST(ReferenceTest, LoopbackHosts) {
  for (const char* h :
       {"localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000", "[::1]"})
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  for (const char* h : {"docker.io", "10.0.0.1:5000", "128.0.0.1", "127.0.0.1.example.com", "[::2]:5000",
                        "localhost.example.com"})
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
}

}  // namespace
}  // namespace crisp::images
