#include "runtime/stdio_frame.h"

#include <gtest/gtest.h>

namespace crisp::runtime {
namespace {

TEST(StdioFrame, RoundTripsFramesFedByteByByte) {
  std::string wire = EncodeFrame(FrameType::kStdout, "hello") + EncodeResize(80, 300) +
                     EncodeFrame(FrameType::kCloseStdin, "") + EncodeExit(-1, "not found");
  FrameReader r;
  std::vector<std::pair<FrameType, std::string>> got;
  for (char c : wire) {
    r.Feed(&c, 1);
    FrameType t;
    std::string p;
    while (r.Next(&t, &p)) got.emplace_back(t, p);
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].first, FrameType::kStdout);
  EXPECT_EQ(got[0].second, "hello");
  uint16_t w = 0, h = 0;
  ASSERT_TRUE(DecodeResize(got[1].second, &w, &h));
  EXPECT_EQ(w, 80);
  EXPECT_EQ(h, 300);
  EXPECT_EQ(got[2].first, FrameType::kCloseStdin);
  int32_t code = 0;
  std::string msg;
  ASSERT_TRUE(DecodeExit(got[3].second, &code, &msg));
  EXPECT_EQ(code, -1);
  EXPECT_EQ(msg, "not found");
  EXPECT_EQ(r.pending(), 0u);
}

TEST(StdioFrame, RejectsUnknownTypeAndOversizedFrames) {
  FrameReader bad_type;
  std::string f = EncodeFrame(FrameType::kStdin, "x");
  f[0] = 9;
  bad_type.Feed(f.data(), f.size());
  FrameType t;
  std::string p;
  EXPECT_FALSE(bad_type.Next(&t, &p));
  EXPECT_TRUE(bad_type.error());

  FrameReader big;
  char hdr[5] = {1, 0x7f, 0, 0, 0};
  big.Feed(hdr, 5);
  EXPECT_FALSE(big.Next(&t, &p));
  EXPECT_TRUE(big.error());
  EXPECT_FALSE(DecodeResize("abc", nullptr, nullptr));
}

}  // namespace
}  // namespace crisp::runtime
