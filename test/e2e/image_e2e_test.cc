// The image RPCs through crispd's socket: what needs no registry. Pulls from a
// real registry are covered against docker-registry by the images
// integration tests (test/integration/images).
#include "test/e2e/harness.h"

namespace crisp::e2e {
namespace {

using Stub = cri::ImageService::Stub;

class ImageTest : public E2eTest {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    // Pulls of docker.io images go to a closed loopback port: fast, certain failure.
    o.extra_yaml = "registry:\n  mirrors:\n    docker.io: [\"http://127.0.0.1:9\"]\n";
    StartDaemon(o);
    // libcurl sets up its resolver and connection pool (a few fds) on the
    // first pull; do that before the per-test fd baseline, so that the leak
    // check sees fds that grow with every pull.
    if (daemon_) {
      cri::PullImageRequest req;
      req.mutable_image()->set_image("busybox:warmup");
      cri::PullImageResponse resp;
      (void)daemon_->client().Image(&Stub::PullImage, req, &resp);
    }
  }
  CriClient& c() { return daemon_->client(); }
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

}  // namespace
}  // namespace crisp::e2e
