// Manifest / index / config parsing, platform choice, chain IDs, users,
// WWW-Authenticate parsing.
#include "gtest/gtest.h"
#include "images/auth.h"
#include "images/digest.h"
#include "images/manifest.h"
#include "test/unit/images/test_support.h"

namespace crisp::images {
namespace {

using tartest::BuildImage;
using tartest::BuildIndex;
using tartest::BuiltImage;
using tartest::ImageSpec;

TEST(DigestTest, Sha256AndValidation) {
  EXPECT_EQ(Sha256Digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.Update("ab");
  h.Update("c");
  EXPECT_EQ(h.bytes(), 3u);
  EXPECT_EQ(h.Finish(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(ValidateDigest(Sha256Digest("x")).ok());
  EXPECT_FALSE(ValidateDigest("sha256:xyz").ok());
  EXPECT_FALSE(ValidateDigest("md5:d41d8cd98f00b204e9800998ecf8427e").ok());
  EXPECT_EQ(DigestHex("sha256:abc"), "abc");
}

TEST(ManifestTest, DockerV2S2Manifest) {
  BuiltImage img = BuildImage(ImageSpec{.layer_tars = {"a", "b"}});
  auto doc = ParseManifestDocument(img.manifest, "");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_FALSE(doc->is_index);
  EXPECT_EQ(doc->manifest.media_type, kMediaTypeDockerManifest);
  EXPECT_EQ(doc->manifest.config.digest, img.config_digest);
  EXPECT_EQ(doc->manifest.config.size, static_cast<int64_t>(img.config.size()));
  ASSERT_EQ(doc->manifest.layers.size(), 2u);
  EXPECT_EQ(doc->manifest.layers[1].digest, img.layer_digests[1]);
  EXPECT_EQ(doc->manifest.layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");
}

TEST(ManifestTest, OciManifestWithoutMediaTypeUsesContentTypeOrShape) {
  std::string body = R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",)"
                     R"("digest":")" +
                     Sha256Digest("c") + R"(","size":1},"layers":[]})";
  auto doc = ParseManifestDocument(body, "application/vnd.oci.image.manifest.v1+json; charset=utf-8");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(doc->manifest.media_type, kMediaTypeOciManifest);
  auto shaped = ParseManifestDocument(body, "application/octet-stream");
  ASSERT_TRUE(shaped.ok()) << shaped.status();
  EXPECT_FALSE(shaped->is_index);
  std::string idx = R"({"schemaVersion":2,"manifests":[]})";
  auto i = ParseManifestDocument(idx, "");
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_TRUE(i->is_index);
}

TEST(ManifestTest, RejectsBadDocuments) {
  auto code = [](const std::string& body) { return ParseManifestDocument(body, "").status().code(); };
  EXPECT_EQ(code("not json"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("[]"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(R"({"schemaVersion":1,"fsLayers":[]})"), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(code(R"({"mediaType":"application/vnd.example+json"})"), absl::StatusCode::kUnimplemented);
  std::string d = Sha256Digest("x");
  // Bad digest, negative size, missing layers, wrong types.
  EXPECT_EQ(
      code(
          R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:1","size":1},"layers":[]})"),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + d +
                 R"(","size":-1},"layers":[]})"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + d +
                 R"(","size":1}})"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + d +
                 R"(","size":"1"},"layers":[]})"),
            absl::StatusCode::kInvalidArgument);
  // An OCI artifact (Helm chart) is not a container image.
  EXPECT_EQ(
      code(
          R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":")" +
          d + R"(","size":1},"layers":[]})"),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(code(std::string(kMaxManifestBytes + 1, ' ')), absl::StatusCode::kInvalidArgument);
}

TEST(ManifestTest, IndexPlatformChoice) {
  BuiltImage amd = BuildImage(ImageSpec{.layer_tars = {"amd"}});
  BuiltImage arm = BuildImage(ImageSpec{.layer_tars = {"arm"}, .arch = "arm64", .variant = "v8"});
  BuiltImage armv7 = BuildImage(ImageSpec{.layer_tars = {"armv7"}, .arch = "arm", .variant = "v7"});
  BuiltImage amdv3 = BuildImage(ImageSpec{.layer_tars = {"amdv3"}});
  for (bool oci : {true, false}) {
    std::string idx = BuildIndex(
        {{&arm, "arm64", "v8"}, {&amdv3, "amd64", "v3"}, {&amd, "amd64", ""}, {&armv7, "arm", "v7"}}, oci);
    auto doc = ParseManifestDocument(idx, "");
    ASSERT_TRUE(doc.ok()) << doc.status();
    ASSERT_TRUE(doc->is_index);
    EXPECT_EQ(doc->index.media_type, oci ? kMediaTypeOciIndex : kMediaTypeDockerManifestList);
    // amd64 without a variant prefers the entry without one.
    auto d = ChoosePlatform(doc->index, Platform{"linux", "amd64", ""});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->digest, amd.manifest_digest);
    d = ChoosePlatform(doc->index, Platform{"linux", "amd64", "v3"});
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->digest, amdv3.manifest_digest);
    // aarch64 normalises to arm64, empty variant to v8.
    d = ChoosePlatform(doc->index, Platform{"linux", "aarch64", ""});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->digest, arm.manifest_digest);
    d = ChoosePlatform(doc->index, Platform{"linux", "arm", ""});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->digest, armv7.manifest_digest);
    auto none = ChoosePlatform(doc->index, Platform{"linux", "s390x", ""});
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(none.status().message().find("linux/arm64/v8"), absl::string_view::npos) << none.status();
    EXPECT_EQ(ChoosePlatform(doc->index, Platform{"windows", "amd64", ""}).status().code(),
              absl::StatusCode::kNotFound);
  }
  // Only an amd64/v2 entry: still fine for plain amd64.
  std::string only_v2 = BuildIndex({{&amdv3, "amd64", "v2"}});
  auto doc = ParseManifestDocument(only_v2, "");
  ASSERT_TRUE(doc.ok());
  EXPECT_TRUE(ChoosePlatform(doc->index, Platform{"linux", "amd64", ""}).ok());
  EXPECT_FALSE(ChoosePlatform(doc->index, Platform{"linux", "amd64", "v3"}).ok());
}

TEST(ManifestTest, LayerMediaTypes) {
  EXPECT_EQ(*LayerMediaType("application/vnd.docker.image.rootfs.diff.tar.gzip"), LayerCompression::kGzip);
  EXPECT_EQ(*LayerMediaType("application/vnd.oci.image.layer.v1.tar+gzip"), LayerCompression::kGzip);
  EXPECT_EQ(*LayerMediaType("application/vnd.oci.image.layer.v1.tar+zstd"), LayerCompression::kZstd);
  EXPECT_EQ(*LayerMediaType("application/vnd.oci.image.layer.v1.tar"), LayerCompression::kNone);
  auto foreign = LayerMediaType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(foreign.status().message().find("foreign"), absl::string_view::npos);
  EXPECT_EQ(LayerMediaType("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(LayerMediaType("application/vnd.cncf.helm.chart.content.v1.tar+gzip").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ManifestTest, ConfigChainIdsAndUser) {
  BuiltImage img = BuildImage(ImageSpec{.layer_tars = {"one", "two", "three"}, .user = "www-data:1004"});
  auto cfg = ParseImageConfig(img.config);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->os, "linux");
  EXPECT_EQ(cfg->architecture, "amd64");
  EXPECT_EQ(cfg->user, "www-data:1004");
  ASSERT_EQ(cfg->diff_ids.size(), 3u);
  auto chain = ChainIds(cfg->diff_ids);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain[0], cfg->diff_ids[0]);
  EXPECT_EQ(chain[1], Sha256Digest(cfg->diff_ids[0] + " " + cfg->diff_ids[1]));
  EXPECT_EQ(chain[2], Sha256Digest(chain[1] + " " + cfg->diff_ids[2]));
  EXPECT_TRUE(ChainIds({}).empty());

  EXPECT_FALSE(ParseImageConfig("{}").ok());
  EXPECT_FALSE(ParseImageConfig(R"({"rootfs":{"type":"layers","diff_ids":["nope"]}})").ok());
  EXPECT_FALSE(ParseImageConfig(R"({"rootfs":{"type":"other","diff_ids":[]}})").ok());
  EXPECT_TRUE(ParseImageConfig(R"({"rootfs":{"type":"layers","diff_ids":[]}})").ok());

  struct U {
    const char* in;
    std::optional<int64_t> uid;
    const char* name;
  };
  for (const U& u : {U{"", std::nullopt, ""}, U{"0", 0, ""}, U{"1000", 1000, ""}, U{"1000:1000", 1000, ""},
                     U{"www-data", std::nullopt, "www-data"}, U{"www-data:1004", std::nullopt, "www-data"},
                     U{"nobody:nogroup", std::nullopt, "nobody"}, U{"-1", std::nullopt, "-1"}}) {
    ImageUser got = ParseImageUser(u.in);
    EXPECT_EQ(got.uid, u.uid) << u.in;
    EXPECT_EQ(got.username, u.name) << u.in;
  }
}

TEST(AuthTest, ParsesChallenges) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c[0].params["service"], "registry.docker.io");
  EXPECT_EQ(c[0].params["scope"], "repository:library/busybox:pull");

  c = ParseWwwAuthenticate(R"(Basic realm="Registry Realm")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params["realm"], "Registry Realm");

  // Several challenges, odd spacing and case, escapes, unquoted values.
  c = ParseWwwAuthenticate(
      R"(  basic REALM = "a \"quoted\" realm" , BEARER realm=https://x/token ,error="invalid_token")");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params["realm"], "a \"quoted\" realm");
  EXPECT_EQ(c[1].scheme, "bearer");
  EXPECT_EQ(c[1].params["realm"], "https://x/token");
  EXPECT_EQ(c[1].params["error"], "invalid_token");

  EXPECT_TRUE(ParseWwwAuthenticate("").empty());
  EXPECT_TRUE(ParseWwwAuthenticate("=,,=").empty());
  c = ParseWwwAuthenticate(R"(Bearer realm="unterminated)");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].params["realm"], "unterminated");
}

TEST(AuthTest, TokensAndCredentials) {
  auto t = ParseTokenResponse(R"({"token":"abc","expires_in":120})");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, "abc");
  EXPECT_EQ(t->expires_in, absl::Seconds(120));
  t = ParseTokenResponse(R"({"access_token":"xyz","refresh_token":"r"})");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, "xyz");
  EXPECT_EQ(t->refresh_token, "r");
  EXPECT_EQ(t->expires_in, absl::Seconds(60));
  EXPECT_FALSE(ParseTokenResponse(R"({"expires_in":1})").ok());
  EXPECT_FALSE(ParseTokenResponse("nope").ok());

  AuthCredentials c;
  EXPECT_TRUE(c.empty());
  c.auth = "dXNlcjpwYTpzcw==";  // user:pa:ss
  auto [u, p] = c.UserPass();
  EXPECT_EQ(u, "user");
  EXPECT_EQ(p, "pa:ss");
  AuthCredentials d;
  d.username = "user";
  d.password = "pa:ss";
  EXPECT_NE(c.Fingerprint(), d.Fingerprint());
  EXPECT_EQ(AuthCredentials{}.Fingerprint(), AuthCredentials{}.Fingerprint());
  EXPECT_EQ(BasicAuthHeaderValue("user", "pa:ss"), "Basic dXNlcjpwYTpzcw==");
  EXPECT_EQ(UrlEncode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
}

}  // namespace
}  // namespace crisp::images
