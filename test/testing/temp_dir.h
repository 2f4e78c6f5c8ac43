#pragma once
// A fixture with a fresh temp dir per test, removed afterwards.
#include <stdlib.h>

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"

namespace crisp::testing {

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/crisp-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      ASSERT_TRUE(RemoveAll(dir_).ok());
    }
  }
  std::string dir_;
};

}  // namespace crisp::testing
