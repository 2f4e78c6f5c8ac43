// The image RPCs through crispd's socket, against real registries: Debian's
// docker-registry on loopback ports with the fixture images
// (test/testing/fixture_registry.h), one open and one with Basic auth. The
// daemon maps docker.io to a closed port (pulls fail fast) and the
// unresolvable host "nonexistent.invalid" to the open registry (a mirror).
// A third registry serves the open one's storage over HTTPS with a CA made at
// test time: "tls.invalid" is mirrored to it by IP with that CA in
// registry.ca_files, "untrusted.invalid" by name without it.
// Unpacking details (whiteouts, owners, hostile tars) are covered below the
// socket by test/integration/images and test/unit/images.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "images/digest.h"
#include "test/e2e/harness.h"
#include "test/testing/fixture_registry.h"
#include "test/testing/test_certs.h"

namespace crisp::e2e {
namespace {

using Stub = cri::ImageService::Stub;

class ImageTest : public E2eTest {
 protected:
  static void SetUpTestSuite() {
    skip_ = testing::FixtureRegistries::SkipReason();
    if (skip_.empty()) {
      auto r = testing::FixtureRegistries::Start(CRISP_FIXTURES_DIR, CRISP_FIXTURE_CACHE);
      if (r.ok()) {
        reg_ = std::move(*r);
      } else {
        skip_ = "cannot start the fixture registries: " + std::string(r.status().message());
        ADD_FAILURE() << skip_;
      }
    }
    DaemonOptions o;
    o.extra_yaml = "registry:\n  mirrors:\n    docker.io: [\"http://127.0.0.1:9\"]\n";
    std::string ca_files;
    if (reg_) {
      absl::StrAppend(&o.extra_yaml, "    nonexistent.invalid: [\"http://", reg_->open(), "\"]\n");
      auto tls = StartTlsRegistry();
      if (tls.ok()) {
        absl::StrAppend(&o.extra_yaml, "    tls.invalid: [\"https://", *tls, "\"]\n",
                        "    untrusted.invalid: [\"https://localhost:", tls->substr(tls->find(':') + 1),
                        "\"]\n");
        ca_files = absl::StrCat("  ca_files:\n    \"", *tls, "\": \"", tls_dir_, "/registry-ca.pem\"\n");
      } else {
        ADD_FAILURE() << "cannot start the TLS registry: " << tls.status();
      }
    }
    o.extra_yaml += ca_files;
    StartDaemon(o);
    // Anything the daemon sets up once on its first pull must not count as
    // a leak: pull once before the per-test fd baseline, so that the leak
    // check sees fds that grow with every pull. (Pooled TCP connections to
    // registries are not counted.)
    if (daemon_) {
      cri::PullImageRequest req;
      req.mutable_image()->set_image("busybox:warmup");
      cri::PullImageResponse resp;
      (void)daemon_->client().Image(&Stub::PullImage, req, &resp);
    }
  }
  static void TearDownTestSuite() {
    E2eTest::TearDownTestSuite();
    reg_.reset();
    if (!tls_dir_.empty()) {
      EXPECT_TRUE(RemoveAll(tls_dir_).ok());
      tls_dir_.clear();
    }
  }
  // Makes a CA and a certificate for localhost and 127.0.0.1 in a new temp
  // dir and starts the HTTPS registry with them; its "127.0.0.1:PORT".
  static absl::StatusOr<std::string> StartTlsRegistry() {
    char tmpl[] = "/tmp/crisp-e2e-tls.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    tls_dir_ = tmpl;
    auto certs = testing::MakeTestCerts(tls_dir_, "registry", {"localhost"}, {"127.0.0.1"});
    if (!certs.ok()) return certs.status();
    return reg_->StartTls(certs->server_cert, certs->server_key);
  }
  void TearDown() override {
    // Every test starts with an empty store.
    if (daemon_ && !IsSkipped()) {
      cri::ListImagesResponse l;
      EXPECT_TRUE(c().Image(&Stub::ListImages, cri::ListImagesRequest(), &l).ok());
      for (const auto& img : l.images()) EXPECT_TRUE(Remove(img.id()).ok()) << img.id();
    }
    E2eTest::TearDown();
  }
  CriClient& c() { return daemon_->client(); }
  static const testing::FixtureRegistries& reg() { return *reg_; }
  static std::string Open(const std::string& repo) { return reg_->Open(repo); }

  // PullImage; `image_ref` gets the answer's image_ref.
  grpc::Status Pull(const std::string& ref, std::string* image_ref = nullptr,
                    const cri::AuthConfig* auth = nullptr) {
    cri::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    if (auth) *req.mutable_auth() = *auth;
    cri::PullImageResponse resp;
    grpc::Status s = c().Image(&Stub::PullImage, req, &resp);
    if (image_ref) *image_ref = resp.image_ref();
    return s;
  }
  // ImageStatus; an empty Image (no id) when it is not there.
  cri::Image Status(const std::string& ref, std::string* info = nullptr) {
    cri::ImageStatusRequest req;
    req.mutable_image()->set_image(ref);
    req.set_verbose(info != nullptr);
    cri::ImageStatusResponse resp;
    grpc::Status s = c().Image(&Stub::ImageStatus, req, &resp);
    EXPECT_TRUE(s.ok()) << ref << ": " << s.error_message();
    if (info) *info = resp.info().count("info") ? resp.info().at("info") : "";
    return resp.image();
  }
  grpc::Status Remove(const std::string& ref) {
    cri::RemoveImageRequest req;
    req.mutable_image()->set_image(ref);
    cri::RemoveImageResponse resp;
    return c().Image(&Stub::RemoveImage, req, &resp);
  }
  std::vector<cri::Image> List(const std::string& filter = "") {
    cri::ListImagesRequest req;
    if (!filter.empty()) req.mutable_filter()->mutable_image()->set_image(filter);
    cri::ListImagesResponse resp;
    EXPECT_TRUE(c().Image(&Stub::ListImages, req, &resp).ok());
    return {resp.images().begin(), resp.images().end()};
  }
  std::pair<uint64_t, uint64_t> FsUsed() {
    cri::ImageFsInfoResponse r;
    EXPECT_TRUE(c().Image(&Stub::ImageFsInfo, cri::ImageFsInfoRequest(), &r).ok());
    if (r.image_filesystems_size() != 1) return {0, 0};
    return {r.image_filesystems(0).used_bytes().value(), r.image_filesystems(0).inodes_used().value()};
  }

  static std::unique_ptr<testing::FixtureRegistries> reg_;
  static std::string skip_;
  static std::string tls_dir_;  // the TLS registry's CA, certificate and key
};
std::unique_ptr<testing::FixtureRegistries> ImageTest::reg_;
std::string ImageTest::skip_;
std::string ImageTest::tls_dir_;

// Tests that need the registries.
class RegistryTest : public ImageTest {
 protected:
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ImageTest::SetUp();
  }
  // Pulls `ref` (a host served by a mirror) and checks that the image goes
  // by that name, with a repo digest under it too.
  void PullByMirror(const std::string& ref) {
    std::string id;
    grpc::Status s = Pull(ref, &id);
    ASSERT_TRUE(s.ok()) << s.error_message();
    cri::Image img = Status(ref);
    EXPECT_EQ(img.id(), id);
    ASSERT_EQ(img.repo_digests_size(), 1);
    std::string name = ref.substr(0, ref.rfind(':'));
    EXPECT_TRUE(absl::StartsWith(img.repo_digests(0), name + "@sha256:")) << img.repo_digests(0);
  }
};

TEST_F(ImageTest, FsInfoReportsTheImageStore) {
  cri::ImageFsInfoResponse r;
  ASSERT_TRUE(c().Image(&Stub::ImageFsInfo, cri::ImageFsInfoRequest(), &r).ok());
  ASSERT_EQ(r.image_filesystems_size(), 1);
  EXPECT_GT(r.image_filesystems(0).timestamp(), 0);
  EXPECT_FALSE(r.image_filesystems(0).fs_id().mountpoint().empty());
}

TEST_F(ImageTest, EmptyStore) {
  cri::ListImagesResponse l;
  ASSERT_TRUE(c().Image(&Stub::ListImages, cri::ListImagesRequest(), &l).ok());
  EXPECT_EQ(l.images_size(), 0);
  cri::ImageStatusRequest sreq;
  sreq.mutable_image()->set_image("busybox");
  cri::ImageStatusResponse s;
  ASSERT_TRUE(c().Image(&Stub::ImageStatus, sreq, &s).ok()) << "a missing image is not an error";
  EXPECT_FALSE(s.has_image());
  cri::RemoveImageRequest rreq;
  rreq.mutable_image()->set_image("busybox");
  cri::RemoveImageResponse rr;
  EXPECT_TRUE(c().Image(&Stub::RemoveImage, rreq, &rr).ok()) << "removing an unknown image is OK";
}

TEST_F(ImageTest, BadReferencesAreInvalidArgument) {
  for (const char* ref : {"", "library/UPPER", "busybox@sha256:short", "busybox:bad tag"}) {
    cri::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    cri::PullImageResponse resp;
    EXPECT_EQ(c().Image(&Stub::PullImage, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ref;
  }
  cri::ImageStatusRequest sreq;
  cri::ImageStatusResponse s;
  EXPECT_EQ(c().Image(&Stub::ImageStatus, sreq, &s).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ImageTest, UnreachableRegistryFailsCleanly) {
  cri::PullImageRequest req;
  req.mutable_image()->set_image("busybox:1.36");
  cri::PullImageResponse resp;
  grpc::Status s = c().Image(&Stub::PullImage, req, &resp, 60);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error_message().find("busybox"), std::string::npos) << s.error_message();
  cri::ListImagesResponse l;
  ASSERT_TRUE(c().Image(&Stub::ListImages, cri::ListImagesRequest(), &l).ok());
  EXPECT_EQ(l.images_size(), 0) << "nothing half-pulled is listed";
}

TEST_F(RegistryTest, PullByTagThenStatusAndListByEveryReferenceForm) {
  std::string ref = Open("crisp/busybox:latest");
  std::string image_ref;
  grpc::Status s = Pull(ref, &image_ref);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(absl::StartsWith(image_ref, "sha256:")) << image_ref;

  std::string info;
  cri::Image img = Status(ref, &info);
  EXPECT_EQ(img.id(), image_ref);
  EXPECT_EQ(std::vector<std::string>(img.repo_tags().begin(), img.repo_tags().end()),
            std::vector<std::string>{ref});
  ASSERT_EQ(img.repo_digests_size(), 1);
  std::string dref = img.repo_digests(0);
  EXPECT_TRUE(absl::StartsWith(dref, Open("crisp/busybox@sha256:"))) << dref;
  EXPECT_GT(img.size(), 1000000u);
  EXPECT_FALSE(img.has_uid());
  EXPECT_EQ(img.spec().image(), image_ref);
  EXPECT_FALSE(img.pinned());
  EXPECT_TRUE(absl::StrContains(info, "\"Cmd\":[\"/bin/sh\"]")) << info;

  std::string digest = dref.substr(dref.find('@') + 1);
  std::string hex = images::DigestHex(image_ref);
  for (const std::string& q : {image_ref, hex, hex.substr(0, 12), ref, Open("crisp/busybox"), dref,
                               Open("crisp/busybox:latest@") + digest}) {
    EXPECT_EQ(Status(q).id(), image_ref) << q;
  }
  EXPECT_EQ(Status(Open("crisp/busybox:nope")).id(), "");
  EXPECT_EQ(Status("busybox").id(), "") << "docker.io/library/busybox is another image";

  ASSERT_EQ(List().size(), 1u);
  EXPECT_EQ(List(ref).size(), 1u);
  EXPECT_EQ(List(image_ref).size(), 1u);
  EXPECT_EQ(List(Open("crisp/other:latest")).size(), 0u);

  // Pulling again with nothing new downloads no blob.
  int blobs = reg().Requests("/v2/crisp/busybox/blobs/");
  ASSERT_TRUE(Pull(ref).ok());
  EXPECT_EQ(reg().Requests("/v2/crisp/busybox/blobs/"), blobs);
}

TEST_F(RegistryTest, PullByDigestAndByTagAtDigest) {
  std::string id;
  ASSERT_TRUE(Pull(Open("crisp/busybox:latest"), &id).ok());
  std::string dref = Status(id).repo_digests(0);
  std::string digest = dref.substr(dref.find('@') + 1);
  ASSERT_TRUE(Remove(id).ok());
  ASSERT_EQ(Status(id).id(), "");

  std::string by_digest;
  grpc::Status s = Pull(dref, &by_digest);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(by_digest, id);
  cri::Image img = Status(dref);
  EXPECT_EQ(img.repo_tags_size(), 0);
  ASSERT_EQ(img.repo_digests_size(), 1);
  EXPECT_EQ(img.repo_digests(0), dref);

  // name:tag@digest: the digest wins; the tag is not recorded.
  std::string tag_at;
  s = Pull(Open("crisp/busybox:1.0@") + digest, &tag_at);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(tag_at, id);
  EXPECT_EQ(Status(Open("crisp/busybox:1.0")).id(), "");

  // A digest the registry does not have.
  s = Pull(Open("crisp/busybox@sha256:") + std::string(64, '0'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(RegistryTest, PullThroughAMirrorWhenTheUpstreamDoesNotResolve) {
  ASSERT_NO_FATAL_FAILURE(PullByMirror("nonexistent.invalid/crisp/busybox:latest"));
  // A host without a mirror that does not resolve fails cleanly.
  grpc::Status s = Pull("other.invalid/crisp/busybox:latest");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(RegistryTest, PullOverHttpsWithTheConfiguredCa) {
  ASSERT_NO_FATAL_FAILURE(PullByMirror("tls.invalid/crisp/busybox:latest"));
  // The same registry by a name whose host has no CA configured: the
  // certificate does not verify and the pull fails with OpenSSL's reason.
  grpc::Status s = Pull("untrusted.invalid/crisp/busybox:latest");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.error_message(), "certificate verify failed")) << s.error_message();
  EXPECT_EQ(Status("untrusted.invalid/crisp/busybox:latest").id(), "");
}

TEST_F(RegistryTest, BasicAuth) {
  std::string ref = reg().Auth("crisp/busybox:latest");
  auto denied = [](const grpc::Status& s) {
    return s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
           s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
  };
  grpc::Status anon = Pull(ref);
  EXPECT_TRUE(denied(anon)) << anon.error_code() << " " << anon.error_message();
  cri::AuthConfig wrong;
  wrong.set_username(testing::kFixtureUser);
  wrong.set_password("wrong");
  grpc::Status bad = Pull(ref, nullptr, &wrong);
  EXPECT_TRUE(denied(bad)) << bad.error_code() << " " << bad.error_message();
  EXPECT_TRUE(List().empty());

  cri::AuthConfig good;
  good.set_username(testing::kFixtureUser);
  good.set_password(testing::kFixturePass);
  std::string id;
  grpc::Status ok = Pull(ref, &id, &good);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(Status(ref).id(), id);
  ASSERT_TRUE(Remove(id).ok());
  cri::AuthConfig b64;  // the `auth` form: base64("user:pass")
  b64.set_auth("Y3Jpc3A6czNjcmV0");
  ok = Pull(ref, nullptr, &b64);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
}

TEST_F(RegistryTest, UntagThenRemoveAndImageFsInfoFollows) {
  auto [bytes0, inodes0] = FsUsed();
  std::string latest = Open("crisp/busybox:latest"), v1 = Open("crisp/busybox:1.0");
  std::string id, id1, multi;
  ASSERT_TRUE(Pull(latest, &id).ok());
  ASSERT_TRUE(Pull(v1, &id1).ok());
  ASSERT_EQ(id, id1);
  ASSERT_TRUE(Pull(Open("crisp/multilayer:latest"), &multi).ok());
  EXPECT_EQ(Status(multi).uid().value(), 1000);
  ASSERT_EQ(List().size(), 2u);
  EXPECT_EQ(Status(id).repo_tags_size(), 2);
  auto [bytes1, inodes1] = FsUsed();
  EXPECT_GT(bytes1, bytes0 + 1000000) << "the store grew by the unpacked image";
  EXPECT_GT(inodes1, inodes0 + 200);

  // Removing one of two tags only untags.
  ASSERT_TRUE(Remove(v1).ok());
  cri::Image img = Status(id);
  ASSERT_EQ(img.id(), id);
  EXPECT_EQ(std::vector<std::string>(img.repo_tags().begin(), img.repo_tags().end()),
            std::vector<std::string>{latest});
  EXPECT_EQ(Status(v1).id(), "");
  // The last tag deletes the image (its layer stays: multilayer shares it).
  ASSERT_TRUE(Remove(latest).ok());
  EXPECT_EQ(Status(id).id(), "");
  EXPECT_EQ(List().size(), 1u);
  // By id: everything goes, and the usage is back where it started.
  ASSERT_TRUE(Remove(multi).ok());
  EXPECT_TRUE(List().empty());
  auto [bytes2, inodes2] = FsUsed();
  EXPECT_LT(bytes2, bytes0 + 100000);
  EXPECT_LE(inodes2, inodes0 + 10);
  // Blobs go at once; a removed layer's dir is renamed to .trash-* at once
  // and its files are deleted in the background, soon.
  auto names = ListDir(daemon_->root() + "/images/blobs/sha256");
  EXPECT_TRUE(!names.ok() || names->empty());
  absl::Time give_up = absl::Now() + absl::Seconds(20);
  for (;;) {
    names = ListDir(daemon_->root() + "/images/layers");
    if (!names.ok() || names->empty()) break;
    for (const auto& n : *names) ASSERT_TRUE(absl::StartsWith(n, ".trash-")) << n;
    ASSERT_LT(absl::Now(), give_up) << "layer dirs still being deleted after 20 s";
    absl::SleepFor(absl::Milliseconds(20));
  }
  // Removing it again is fine.
  EXPECT_TRUE(Remove(multi).ok());
}

TEST_F(RegistryTest, ImageUserFields) {
  std::string id;
  ASSERT_TRUE(Pull(Open("crisp/oci:latest"), &id).ok());
  cri::Image img = Status(id);
  EXPECT_FALSE(img.has_uid());
  EXPECT_EQ(img.username(), "www-data");
  ASSERT_TRUE(Pull(Open("crisp/multiarch:latest"), &id).ok());
  std::string info;
  Status(id, &info);
  EXPECT_TRUE(absl::StrContains(info, "\"architecture\":\"amd64\"")) << info;
}

TEST_F(RegistryTest, CorruptedBlobIsDataLossAndNothingStays) {
  nlohmann::json man = reg().LayoutManifest("corrupt");
  std::string layer = man["layers"][1]["digest"];
  auto orig = reg().CorruptBlob(layer);
  ASSERT_TRUE(orig.ok()) << orig.status();
  std::string ref = Open("crisp/corrupt:latest");
  grpc::Status s = Pull(ref);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), images::DigestHex(layer))) << s.error_message();
  EXPECT_TRUE(List().empty());
  EXPECT_EQ(Status(ref).id(), "");
  auto ingest = ListDir(daemon_->root() + "/images/ingest");
  EXPECT_TRUE(!ingest.ok() || ingest->empty());
  auto blobs = ListDir(daemon_->root() + "/images/blobs/sha256");
  if (blobs.ok()) {
    for (const auto& b : *blobs) EXPECT_NE(b, images::DigestHex(layer));
  }
  // Repaired, the same pull works.
  ASSERT_TRUE(WriteFileAtomic(reg().BlobPath(layer), *orig).ok());
  s = Pull(ref);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

}  // namespace
}  // namespace crisp::e2e
