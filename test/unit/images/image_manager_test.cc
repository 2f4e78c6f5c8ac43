// ImageManager against the in-memory registry: pulls, references, auth,
// mirrors, verification, singleflight, untag/remove and GC.
#include "images/image_manager.h"

#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/testing/temp_dir.h"
#include "test/unit/images/fake_registry.h"
#include "test/unit/images/test_images.h"

namespace crisp::images {
namespace {

using testing::Compression;
using testing::Dir;
using testing::FakeRegistry;
using testing::File;
using testing::MakeImage;
using testing::MakeIndex;
using testing::MakeLayer;
using testing::TestImage;
using testing::TransportRef;

class ImageManagerTest : public crisp::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    reg_.AddHost("reg.test");
    base_ = MakeLayer({Dir("bin"), File("bin/sh", "#!busybox", 0755), Dir("etc"), File("etc/motd", "hi")});
    top_ = MakeLayer({File("etc/.wh.motd", ""), File("app", "app", 0755)});
    img_ = MakeImage({base_, top_}, false, "1000");
    reg_.Push("team/app", "v1", img_);
  }

  std::unique_ptr<ImageManager> NewManager(ImageOptions o = {}) {
    o.root = dir_;
    o.preserve_owner = ::geteuid() == 0;
    auto m = std::make_unique<ImageManager>(std::move(o), std::make_unique<TransportRef>(&reg_));
    EXPECT_TRUE(m->Init().ok());
    return m;
  }

  std::vector<std::string> Names(const std::string& sub) {
    return ListDir(dir_ + "/images/" + sub).value_or(std::vector<std::string>{});
  }

  FakeRegistry reg_;
  testing::TestLayer base_, top_;
  TestImage img_;
};

TEST_F(ImageManagerTest, PullListGetByEveryForm) {
  auto m = NewManager();
  auto img = m->Pull("reg.test/team/app:v1", {});
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->id, img_.config_digest);
  EXPECT_EQ(img->repo_tags, std::vector<std::string>{"reg.test/team/app:v1"});
  const std::string dref = "reg.test/team/app@" + img_.manifest_digest;
  EXPECT_EQ(img->repo_digests, std::vector<std::string>{dref});
  EXPECT_EQ(img->uid, 1000);
  EXPECT_GT(img->size, 0u);
  EXPECT_EQ(img->config_json, img_.config);
  ASSERT_EQ(img->layer_dirs.size(), 2u);
  EXPECT_EQ(ReadFile(img->layer_dirs[0] + "/bin/sh").value_or(""), "#!busybox");
  EXPECT_EQ(ReadFile(img->layer_dirs[1] + "/app").value_or(""), "app");
  EXPECT_TRUE(absl::StartsWith(img->layer_dirs[0], dir_ + "/images/layers/"));

  ASSERT_EQ(m->List().size(), 1u);
  const std::string hex = DigestHex(img->id);
  for (const std::string& q : {img->id, hex, hex.substr(0, 12), "sha256:" + hex.substr(0, 12),
                               std::string("reg.test/team/app:v1"), dref,
                               "reg.test/team/app:v1@" + img_.manifest_digest,
                               "reg.test/team/app:other@" + img_.manifest_digest}) {
    auto got = m->Get(q);
    ASSERT_TRUE(got.has_value()) << q;
    EXPECT_EQ(got->id, img->id) << q;
  }
  for (const std::string& q : {std::string("reg.test/team/app:v2"), std::string("reg.test/team/app"), std::string("app:v1"),
                               "sha256:" + hex.substr(1, 12), std::string("ffff"), std::string("")})
    EXPECT_FALSE(m->Get(q).has_value()) << q;

  // Every request went to https://reg.test (not loopback, not insecure).
  for (const std::string& u : reg_.urls()) EXPECT_TRUE(absl::StartsWith(u, "https://reg.test/v2/team/app/")) << u;
  EXPECT_TRUE(Names("ingest").empty());
  EXPECT_EQ(Names("layers").size(), 2u);
}

TEST_F(ImageManagerTest, PinnedImages) {
  ImageOptions o;
  o.pinned_images = {"reg.test/team/app:v1", "not a ref"};
  auto m = NewManager(o);
  auto img = m->Pull("reg.test/team/app:v1", {});
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_TRUE(img->pinned);
  EXPECT_TRUE(m->List()[0].pinned);
  auto other = MakeImage({MakeLayer({File("x", "y")})});
  reg_.Push("team/other", "v1", other);
  EXPECT_FALSE(m->Pull("reg.test/team/other:v1", {})->pinned);
}

TEST_F(ImageManagerTest, ShortNamesNormaliseAndDockerIoEndpoint) {
  reg_.AddHost("registry-1.docker.io");
  reg_.Push("library/busybox", "latest", img_);
  auto m = NewManager();
  auto img = m->Pull("busybox", {});
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->repo_tags, std::vector<std::string>{"docker.io/library/busybox:latest"});
  EXPECT_TRUE(m->Get("busybox").has_value());
  EXPECT_TRUE(m->Get("library/busybox:latest").has_value());
  EXPECT_TRUE(m->Get("docker.io/library/busybox").has_value());
  EXPECT_EQ(reg_.urls()[0], "https://registry-1.docker.io/v2/library/busybox/manifests/latest");
}

TEST_F(ImageManagerTest, RepullIsOneManifestGet) {
  auto m = NewManager();
  ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  int manifests = reg_.manifest_gets(), blobs = reg_.blob_gets();
  EXPECT_EQ(blobs, 3);
  ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  EXPECT_EQ(reg_.manifest_gets(), manifests + 1);
  EXPECT_EQ(reg_.blob_gets(), blobs);
  // By digest with the manifest stored: no request at all.
  ASSERT_TRUE(m->Pull("reg.test/team/app@" + img_.manifest_digest, {}).ok());
  EXPECT_EQ(reg_.manifest_gets(), manifests + 1);
  EXPECT_EQ(reg_.blob_gets(), blobs);
}

TEST_F(ImageManagerTest, PullByDigestAndTagAtDigest) {
  auto m = NewManager();
  auto a = m->Pull("reg.test/team/app@" + img_.manifest_digest, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->repo_tags.empty());
  EXPECT_EQ(a->repo_digests.size(), 1u);
  // tag@digest: the digest wins, even against a tag that names nothing.
  auto b = m->Pull("reg.test/team/app:nonexistent@" + img_.manifest_digest, {});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->id, a->id);
  // A digest the registry does not have.
  auto c = m->Pull("reg.test/team/app@sha256:" + std::string(64, 'a'), {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound) << c.status();
  EXPECT_EQ(m->Pull("reg.test/team/app:nope", {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(m->Pull("reg.test/Team/app", {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageManagerTest, IndexPicksConfiguredPlatform) {
  auto arm = MakeImage({MakeLayer({File("arch", "arm64")})}, true, "", "arm64");
  auto amd = MakeImage({MakeLayer({File("arch", "amd64")}, Compression::kGzip, true)}, true);
  reg_.Push("multi", "untagged-arm", arm);
  reg_.Push("multi", "untagged-amd", amd);
  std::string idx = MakeIndex({{&arm, "linux/arm64/v8"}, {&amd, "linux/amd64"}});
  reg_.PutManifest("multi", "latest", idx, kMediaTypeOciIndex);
  auto m = NewManager();
  auto img = m->Pull("reg.test/multi", {});
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->id, amd.config_digest);
  EXPECT_EQ(img->repo_digests[0], "reg.test/multi@" + Sha256Digest(idx)) << "the repo digest is the index's";
  EXPECT_EQ(ReadFile(img->layer_dirs[0] + "/arch").value_or(""), "amd64");
  EXPECT_EQ(reg_.blob_gets(arm.layers[0].digest), 0);

  ImageOptions o;
  o.platform_arch = "arm64";
  std::string other_root = dir_ + "/arm";
  o.root = other_root;
  o.preserve_owner = false;
  ImageManager arm_mgr(o, std::make_unique<TransportRef>(&reg_));
  ASSERT_TRUE(arm_mgr.Init().ok());
  auto a = arm_mgr.Pull("reg.test/multi:latest", {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->id, arm.config_digest);

  o.platform_arch = "s390x";
  o.root = dir_ + "/s390x";
  ImageManager none(o, std::make_unique<TransportRef>(&reg_));
  ASSERT_TRUE(none.Init().ok());
  EXPECT_EQ(none.Pull("reg.test/multi:latest", {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ImageManagerTest, ZstdUncompressedAndOciLayers) {
  auto img = MakeImage({MakeLayer({File("z", "zstd")}, Compression::kZstd),
                        MakeLayer({File("u", "plain")}, Compression::kNone, true),
                        MakeLayer({File("g", "gzip")}, Compression::kGzip, true)},
                       true);
  reg_.Push("mixed", "v1", img);
  auto m = NewManager();
  auto got = m->Pull("reg.test/mixed:v1", {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(ReadFile(got->layer_dirs[0] + "/z").value_or(""), "zstd");
  EXPECT_EQ(ReadFile(got->layer_dirs[1] + "/u").value_or(""), "plain");
  EXPECT_EQ(ReadFile(got->layer_dirs[2] + "/g").value_or(""), "gzip");
}

TEST_F(ImageManagerTest, CorruptBlobIsDataLossAndLeavesStoreClean) {
  // Same size, different bytes; then a longer blob; then valid gzip of
  // other content.
  std::string same = top_.blob;
  same[same.size() / 2] ^= 0x55;
  const std::vector<std::string> corruptions = {same, top_.blob + "trailing", testing::Gzip("not a tar at all")};
  auto m = NewManager();
  for (const std::string& bad : corruptions) {
    reg_.OverrideBlob(top_.digest, bad);
    auto img = m->Pull("reg.test/team/app:v1", {});
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.status().code(), absl::StatusCode::kDataLoss) << img.status();
    EXPECT_NE(img.status().message().find(top_.digest), std::string::npos) << img.status();
    EXPECT_TRUE(m->List().empty());
    EXPECT_TRUE(Names("ingest").empty());
    // Not even the good base layer or the config stay: a failed pull
    // leaves nothing of itself.
    EXPECT_TRUE(Names("blobs/sha256").empty());
    m->WaitForTrash();  // layer dirs are deleted in the background
    EXPECT_TRUE(Names("layers").empty());
  }
  // Nothing referenced survives a restart either.
  m = NewManager();
  m->WaitForTrash();  // layer dirs are deleted in the background
  EXPECT_TRUE(Names("layers").empty());
  EXPECT_TRUE(Names("blobs/sha256").empty());
  // Fixed registry: the pull now works.
  reg_.OverrideBlob(top_.digest, top_.blob);
  EXPECT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
}

TEST_F(ImageManagerTest, CorruptManifestAndConfigAreDataLoss) {
  auto m = NewManager();
  reg_.OverrideBlob(img_.config_digest, img_.config + " ");
  auto r = m->Pull("reg.test/team/app:v1", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  reg_.OverrideBlob(img_.config_digest, img_.config);
  reg_.PutManifest("team/app", img_.manifest_digest, img_.manifest + " ", img_.manifest_media_type);
  r = m->Pull("reg.test/team/app@" + img_.manifest_digest, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(Names("blobs/sha256").empty());
}

TEST_F(ImageManagerTest, DiffIdMismatchIsDataLoss) {
  auto img = img_;
  nlohmann::json cfg = nlohmann::json::parse(img.config);
  cfg["rootfs"]["diff_ids"][1] = Sha256Digest("something else");
  std::string config = cfg.dump();
  nlohmann::json man = nlohmann::json::parse(img.manifest);
  man["config"]["digest"] = Sha256Digest(config);
  man["config"]["size"] = config.size();
  reg_.PutBlob(config);
  reg_.PutManifest("team/app", "bad", man.dump(), kMediaTypeDockerManifest);
  auto m = NewManager();
  auto r = m->Pull("reg.test/team/app:bad", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find("diff ID"), std::string::npos) << r.status();
}

TEST_F(ImageManagerTest, ForeignLayersAreRefusedBeforeDownloading) {
  nlohmann::json man = nlohmann::json::parse(img_.manifest);
  man["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
  man["layers"][0]["urls"] = {"https://example.com/layer"};
  reg_.PutManifest("team/app", "foreign", man.dump(), kMediaTypeDockerManifest);
  auto m = NewManager();
  auto r = m->Pull("reg.test/team/app:foreign", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("foreign"), std::string::npos);
  EXPECT_EQ(reg_.blob_gets(), 0);
}

TEST_F(ImageManagerTest, ConcurrentPullsShareDownloads) {
  auto m = NewManager();
  reg_.SetGate(false);
  absl::StatusOr<Image> a, b;
  std::thread ta([&] { a = m->Pull("reg.test/team/app:v1", {}); });
  reg_.WaitBlocked(1);
  std::thread tb([&] { b = m->Pull("reg.test/team/app@" + img_.manifest_digest, {}); });
  // Let the second pull reach the shared download before releasing it.
  while (reg_.manifest_gets() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  reg_.SetGate(true);
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(reg_.blob_gets(img_.config_digest), 1);
  EXPECT_EQ(reg_.blob_gets(base_.digest), 1);
  EXPECT_EQ(reg_.blob_gets(top_.digest), 1);
  ASSERT_EQ(m->List().size(), 1u);
  EXPECT_EQ(m->List()[0].repo_tags.size(), 1u);
}

TEST(SingleflightTest, SharesOneCall) {
  Singleflight<int> sf;
  std::atomic<int> calls{0};
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<std::thread> ts;
  std::vector<int> results(8);
  std::atomic<int> shared_count{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&, i] {
      bool shared = false;
      results[i] = sf.Do(
          "k",
          [&] {
            calls++;
            std::unique_lock<std::mutex> l(mu);
            cv.wait(l, [&] { return release; });
            return 42;
          },
          &shared);
      if (shared) shared_count++;
    });
  }
  while (calls.load() == 0) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  for (auto& t : ts) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(shared_count.load(), 7);
  for (int r : results) EXPECT_EQ(r, 42);
  EXPECT_EQ(sf.InFlight(), 0u);
  EXPECT_EQ(sf.Do("k", [] { return 7; }), 7) << "the key is free again";
}

TEST_F(ImageManagerTest, BasicAuth) {
  reg_.SetAuth(FakeRegistry::Auth::kBasic, "alice", "s3cret");
  auto m = NewManager();
  auto r = m->Pull("reg.test/team/app:v1", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  AuthCredentials wrong;
  wrong.username = "alice";
  wrong.password = "nope";
  r = m->Pull("reg.test/team/app:v1", wrong);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  AuthCredentials good;
  good.auth = "YWxpY2U6czNjcmV0";  // alice:s3cret
  r = m->Pull("reg.test/team/app:v1", good);
  ASSERT_TRUE(r.ok()) << r.status();

  // Credentials from the configuration when the request has none.
  ImageOptions o;
  o.hosts["reg.test"].username = "alice";
  o.hosts["reg.test"].password = "s3cret";
  o.root = dir_ + "/cfg";
  o.preserve_owner = false;
  ImageManager cm(o, std::make_unique<TransportRef>(&reg_));
  ASSERT_TRUE(cm.Init().ok());
  EXPECT_TRUE(cm.Pull("reg.test/team/app:v1", {}).ok());
}

TEST_F(ImageManagerTest, BearerTokenFlow) {
  reg_.SetAuth(FakeRegistry::Auth::kBearer);  // anonymous tokens
  auto m = NewManager();
  auto r = m->Pull("reg.test/team/app:v1", {});
  ASSERT_TRUE(r.ok()) << r.status();
  int tokens = reg_.token_gets();
  EXPECT_GE(tokens, 1);
  EXPECT_LE(tokens, 4) << "tokens are cached, not fetched per request";

  reg_.SetAuth(FakeRegistry::Auth::kBearer, "bob", "pw");  // token server wants credentials
  auto m2 = NewManager();
  ASSERT_TRUE(m2->Remove("reg.test/team/app:v1", nullptr).ok());
  r = m2->Pull("reg.test/team/app:v1", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  AuthCredentials bob;
  bob.username = "bob";
  bob.password = "pw";
  r = m2->Pull("reg.test/team/app:v1", bob);
  ASSERT_TRUE(r.ok()) << r.status();
  // A registry token is sent as is.
  AuthCredentials tok;
  tok.registry_token = "tok-123";
  ASSERT_TRUE(m2->Remove("reg.test/team/app:v1", nullptr).ok());
  r = m2->Pull("reg.test/team/app:v1", tok);
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST_F(ImageManagerTest, MirrorsThenHost) {
  ImageOptions o;
  o.hosts["nonexistent.invalid"].mirrors = {"http://mirror.test", "https://second.test/v2/"};
  o.hosts["docker.io"].mirrors = {"http://127.0.0.1:5000"};
  o.hosts["myreg.local:5000"].insecure = true;
  auto m = NewManager(o);
  EXPECT_EQ(*m->Endpoints("nonexistent.invalid/team/app:v1"),
            (std::vector<std::string>{"http://mirror.test", "https://second.test", "https://nonexistent.invalid"}));
  EXPECT_EQ(*m->Endpoints("busybox"),
            (std::vector<std::string>{"http://127.0.0.1:5000", "https://registry-1.docker.io"}));
  EXPECT_EQ(*m->Endpoints("localhost:5000/x"), std::vector<std::string>{"http://localhost:5000"});
  EXPECT_EQ(*m->Endpoints("127.0.0.1:5000/x"), std::vector<std::string>{"http://127.0.0.1:5000"});
  EXPECT_EQ(*m->Endpoints("myreg.local:5000/x"),
            (std::vector<std::string>{"https://myreg.local:5000", "http://myreg.local:5000"}));
  EXPECT_EQ(*m->Endpoints("quay.io/x"), std::vector<std::string>{"https://quay.io"});
  EXPECT_FALSE(m->Endpoints("BAD").ok());

  // Neither the upstream nor the second mirror resolve; the first serves.
  reg_.AddHost("mirror.test");
  auto r = m->Pull("nonexistent.invalid/team/app:v1", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->repo_tags[0], "nonexistent.invalid/team/app:v1");
  for (const std::string& u : reg_.urls()) EXPECT_TRUE(absl::StartsWith(u, "http://mirror.test/v2/")) << u;

  // An image nobody has: the error is the mirror's NOT_FOUND (more telling
  // than "could not resolve"), naming every endpoint.
  auto miss = m->Pull("nonexistent.invalid/team/other:v1", {});
  ASSERT_FALSE(miss.ok());
  EXPECT_EQ(miss.status().code(), absl::StatusCode::kNotFound) << miss.status();
  EXPECT_NE(miss.status().message().find("nonexistent.invalid"), std::string::npos) << miss.status();
}

TEST_F(ImageManagerTest, InsecureHostTriesHttpsThenHttp) {
  ImageOptions o;
  o.hosts["plain.test:5000"].insecure = true;
  reg_.AddHost("plain.test:5000");
  reg_.SetHttpOnly("plain.test:5000");
  reg_.Push("team/app", "v1", img_);
  auto m = NewManager(o);
  auto r = m->Pull("plain.test:5000/team/app:v1", {});
  ASSERT_TRUE(r.ok()) << r.status();
  auto urls = reg_.urls();
  EXPECT_TRUE(absl::StartsWith(urls[0], "https://plain.test:5000/")) << urls[0];
  EXPECT_TRUE(absl::StartsWith(urls[1], "http://plain.test:5000/")) << urls[1];
  // Blobs go straight to the endpoint that answered.
  for (size_t i = 2; i < urls.size(); ++i) EXPECT_TRUE(absl::StartsWith(urls[i], "http://")) << urls[i];
}

TEST_F(ImageManagerTest, MirrorFirstThenHost) {
  ImageOptions o;
  o.hosts["reg.test"].mirrors = {"http://mirror.test"};
  auto other = MakeImage({MakeLayer({File("o", "o")})});

  // The mirror has the image: the host is never asked.
  FakeRegistry both;
  both.AddHost("mirror.test");
  both.AddHost("reg.test");
  both.Push("team/other", "v1", other);
  o.root = dir_ + "/1";
  o.preserve_owner = false;
  ImageManager m1(o, std::make_unique<TransportRef>(&both));
  ASSERT_TRUE(m1.Init().ok());
  auto r = m1.Pull("reg.test/team/other:v1", {});
  ASSERT_TRUE(r.ok()) << r.status();
  for (const std::string& u : both.urls()) EXPECT_TRUE(absl::StartsWith(u, "http://mirror.test/")) << u;

  // The mirror is down: the host serves, blobs included.
  FakeRegistry host_only;
  host_only.AddHost("reg.test");
  host_only.Push("team/other", "v1", other);
  o.root = dir_ + "/2";
  ImageManager m2(o, std::make_unique<TransportRef>(&host_only));
  ASSERT_TRUE(m2.Init().ok());
  r = m2.Pull("reg.test/team/other:v1", {});
  ASSERT_TRUE(r.ok()) << r.status();
  auto urls = host_only.urls();
  EXPECT_TRUE(absl::StartsWith(urls[0], "http://mirror.test/"));
  for (size_t i = 1; i < urls.size(); ++i) EXPECT_TRUE(absl::StartsWith(urls[i], "https://reg.test/")) << urls[i];
}

TEST_F(ImageManagerTest, UntagRemoveAndGc) {
  auto other = MakeImage({base_, MakeLayer({File("other", "o")})});  // shares the base layer
  reg_.Push("team/app", "v2", img_);
  reg_.Push("team/other", "v1", other);
  auto m = NewManager();
  ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  ASSERT_TRUE(m->Pull("reg.test/team/app:v2", {}).ok());
  auto o = m->Pull("reg.test/team/other:v1", {});
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(m->List().size(), 2u);
  EXPECT_EQ(Names("layers").size(), 3u);
  auto usage_before = m->Usage();
  EXPECT_GT(usage_before.used_bytes, 0u);
  EXPECT_GT(usage_before.inodes_used, 0u);
  EXPECT_EQ(usage_before.mountpoint, dir_ + "/images");

  // Untag: the other tag keeps the image.
  ASSERT_TRUE(m->Remove("reg.test/team/app:v1", nullptr).ok());
  auto app = m->Get(img_.config_digest);
  ASSERT_TRUE(app.has_value());
  EXPECT_EQ(app->repo_tags, std::vector<std::string>{"reg.test/team/app:v2"});
  EXPECT_EQ(app->repo_digests.size(), 1u);
  EXPECT_FALSE(m->Get("reg.test/team/app:v1").has_value());

  // The last reference, but in use.
  auto in_use = [&](const std::string& id) { return id == img_.config_digest; };
  EXPECT_EQ(m->Remove("reg.test/team/app:v2", in_use).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m->Remove(img_.config_digest, in_use).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(m->Get("reg.test/team/app:v2").has_value());

  // Removing the last tag deletes; the shared base layer stays for "other".
  ASSERT_TRUE(m->Remove("reg.test/team/app:v2", nullptr).ok());
  EXPECT_FALSE(m->Get(img_.config_digest).has_value());
  EXPECT_EQ(m->List().size(), 1u);
  m->WaitForTrash();  // layer dirs are deleted in the background
  EXPECT_EQ(Names("layers").size(), 2u);
  EXPECT_FALSE(PathExists(dir_ + "/images/blobs/sha256/" + DigestHex(top_.digest)));
  EXPECT_FALSE(PathExists(dir_ + "/images/blobs/sha256/" + DigestHex(img_.config_digest)));
  EXPECT_TRUE(PathExists(dir_ + "/images/blobs/sha256/" + DigestHex(base_.digest)));
  EXPECT_TRUE(PathExists(o->layer_dirs[0] + "/bin/sh"));
  EXPECT_LT(m->Usage().used_bytes, usage_before.used_bytes);

  EXPECT_EQ(m->Remove("reg.test/team/app:v2", nullptr).code(), absl::StatusCode::kNotFound);
  // By (short) ID: everything goes.
  ASSERT_TRUE(m->Remove(DigestHex(o->id).substr(0, 10), nullptr).ok());
  EXPECT_TRUE(m->List().empty());
  m->WaitForTrash();  // layer dirs are deleted in the background
  EXPECT_TRUE(Names("layers").empty());
  EXPECT_TRUE(Names("blobs/sha256").empty());
  EXPECT_EQ(m->Usage().used_bytes, 0u);
}

TEST_F(ImageManagerTest, RemoveByDigestRefAndTagMoves) {
  auto m = NewManager();
  ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  // The tag moves to a new image; the old one keeps its digest reference.
  auto newer = MakeImage({MakeLayer({File("new", "n")})});
  reg_.Push("team/app", "v1", newer);
  auto n = m->Pull("reg.test/team/app:v1", {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->id, newer.config_digest);
  auto old = m->Get(img_.config_digest);
  ASSERT_TRUE(old.has_value());
  EXPECT_TRUE(old->repo_tags.empty());
  EXPECT_EQ(m->Get("reg.test/team/app:v1")->id, newer.config_digest);
  // Removing the old image by its digest reference deletes it.
  ASSERT_TRUE(m->Remove("reg.test/team/app@" + img_.manifest_digest, nullptr).ok());
  EXPECT_FALSE(m->Get(img_.config_digest).has_value());
  EXPECT_EQ(m->List().size(), 1u);
}

TEST_F(ImageManagerTest, SurvivesRestartAndCleansLeftovers) {
  {
    auto m = NewManager();
    ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  }
  // Leftovers of a crash: an ingest file, a half-unpacked layer, an orphan blob.
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/images/ingest/abc-123", "partial").ok());
  ASSERT_TRUE(MkdirAll(dir_ + "/images/layers/.tmp-abc-1/diff").ok());
  ASSERT_TRUE(MkdirAll(dir_ + "/images/layers/" + std::string(64, 'c') + "/diff").ok());
  std::string orphan = "orphan";
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/images/blobs/sha256/" + DigestHex(Sha256Digest(orphan)), orphan).ok());
  int blobs = reg_.blob_gets();
  auto m = NewManager();
  ASSERT_EQ(m->List().size(), 1u);
  EXPECT_TRUE(m->Get("reg.test/team/app:v1").has_value());
  EXPECT_EQ(m->Get("reg.test/team/app:v1")->uid, 1000);
  EXPECT_TRUE(Names("ingest").empty());
  m->WaitForTrash();
  EXPECT_EQ(Names("layers").size(), 2u);
  EXPECT_EQ(Names("blobs/sha256").size(), 4u);  // manifest, config, 2 layers
  ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  EXPECT_EQ(reg_.blob_gets(), blobs);

  // A lost layer dir drops the image at start (pull it again), never crashes.
  auto img = m->Get("reg.test/team/app:v1");
  m.reset();
  ASSERT_TRUE(RemoveAll(img->layer_dirs[1] + "/..").ok());
  m = NewManager();
  EXPECT_TRUE(m->List().empty());
  ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/images/images.json", "garbage").ok());
  m = NewManager();
  EXPECT_TRUE(m->List().empty());
}

TEST_F(ImageManagerTest, LayersNotSyncedBeforeARebootAreDropped) {
  ImageOptions boot_a, boot_b;
  boot_a.boot_id = "boot-a";
  boot_b.boot_id = "boot-b";
  {
    auto m = NewManager(boot_a);
    ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  }  // a clean stop syncs: the layers survive a reboot
  auto synced = ReadFile(dir_ + "/images/layers.synced");
  ASSERT_TRUE(synced.ok());
  EXPECT_NE(synced->find("boot-a"), std::string::npos);
  {
    auto m = NewManager(boot_b);
    ASSERT_EQ(m->List().size(), 1u);
    EXPECT_EQ(Names("layers").size(), 2u);
  }
  // The machine went down before the sync thread recorded boot-b's layers:
  // a restart in the same boot keeps them (the page cache has them all), a
  // new boot drops them and the image with them.
  ASSERT_TRUE(RemoveAll(dir_ + "/images/layers").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/images/images.json", "{\"version\":1,\"images\":[]}").ok());
  {
    auto m = NewManager(boot_b);
    ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
  }
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/images/layers.synced", "{\"boot_id\":\"boot-b\",\"seq\":0}").ok());
  {
    auto m = NewManager(boot_b);
    EXPECT_EQ(m->List().size(), 1u);
    EXPECT_EQ(Names("layers").size(), 2u);
  }  // ... and syncs them at its stop
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/images/layers.synced", "{\"boot_id\":\"boot-b\",\"seq\":1}").ok());
  {
    ImageOptions boot_c;
    boot_c.boot_id = "boot-c";
    auto m = NewManager(boot_c);
    EXPECT_TRUE(m->List().empty());
    // #1 was synced, #2 was not; #1 alone is no image, so it goes too.
    EXPECT_TRUE(Names("layers").empty());
    ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
    EXPECT_EQ(Names("layers").size(), 2u);
  }
}

// The seq recorded in layers.synced, or -1 while there is none.
int64_t SyncedSeq(const std::string& dir) {
  auto data = ReadFile(dir + "/images/layers.synced");
  if (!data.ok()) return -1;
  auto j = nlohmann::json::parse(*data, nullptr, false);
  return j.is_object() && j.contains("seq") ? j["seq"].get<int64_t>() : -1;
}

bool WaitForSyncedSeq(const std::string& dir, int64_t seq) {
  for (absl::Time end = absl::Now() + absl::Seconds(20); absl::Now() < end; absl::SleepFor(absl::Milliseconds(10)))
    if (SyncedSeq(dir) >= seq) return true;
  return false;
}

TEST_F(ImageManagerTest, LayersBecomeDurableOnceCommitsStop) {
  ImageOptions waits;  // a sync only after an hour without commits, or an hour after the first
  waits.sync_quiet = absl::Hours(1);
  waits.sync_max_delay = absl::Hours(1);
  {
    auto m = NewManager(waits);
    ASSERT_TRUE(m->Pull("reg.test/team/app:v1", {}).ok());
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_EQ(SyncedSeq(dir_), -1) << "synced while commits could still follow";
  }  // a clean stop does not wait
  EXPECT_EQ(SyncedSeq(dir_), 2);

  ImageOptions quiet;  // the burst is over 50 ms after the last commit
  quiet.sync_quiet = absl::Milliseconds(50);
  {
    auto m = NewManager(quiet);
    reg_.Push("team/app", "v2", MakeImage({base_, MakeLayer({File("v2", "2")})}));
    ASSERT_TRUE(m->Pull("reg.test/team/app:v2", {}).ok());
    EXPECT_TRUE(WaitForSyncedSeq(dir_, 3)) << SyncedSeq(dir_);
  }

  ImageOptions capped;  // never quiet long enough, but capped at 50 ms
  capped.sync_quiet = absl::Hours(1);
  capped.sync_max_delay = absl::Milliseconds(50);
  {
    auto m = NewManager(capped);
    reg_.Push("team/app", "v3", MakeImage({base_, MakeLayer({File("v3", "3")})}));
    ASSERT_TRUE(m->Pull("reg.test/team/app:v3", {}).ok());
    EXPECT_TRUE(WaitForSyncedSeq(dir_, 4)) << SyncedSeq(dir_);
  }
}

// Many images sharing a base layer: every one listed and found by its tag.
// (How fast List and Get are with many images is pull_bench's to measure.)
TEST_F(ImageManagerTest, ManyImagesSharingALayer) {
  auto m = NewManager();
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    auto img = MakeImage({base_, MakeLayer({File("n", std::to_string(i))})});
    reg_.Push("many", absl::StrCat("t", i), img);
    auto img_i = m->Pull(absl::StrCat("reg.test/many:t", i), {});
    ASSERT_TRUE(img_i.ok()) << img_i.status();
    ids.insert(img_i->id);
  }
  EXPECT_EQ(ids.size(), 100u);
  EXPECT_EQ(m->List().size(), 100u);
  EXPECT_EQ(Names("layers").size(), 101u);  // the shared base once, plus one each
  for (int i = 0; i < 100; ++i) {
    auto got = m->Get(absl::StrCat("reg.test/many:t", i));
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(got->repo_tags, std::vector<std::string>{absl::StrCat("reg.test/many:t", i)});
  }
}

}  // namespace
}  // namespace crisp::images
