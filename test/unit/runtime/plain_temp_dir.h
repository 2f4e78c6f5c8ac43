#pragma once
// A fresh temp dir per test using libc only, for tests of the absl-free shim library: linking
// crisp_common (test/testing/temp_dir.h) would hide an accidental absl dependency of crisp_shim_lib.
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include <string>

#include "gtest/gtest.h"

namespace crisp::testing {

class PlainTempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/crisp-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (dir_.empty()) return;
    auto rm = [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); };
    ASSERT_EQ(::nftw(dir_.c_str(), rm, 16, FTW_DEPTH | FTW_PHYS), 0) << dir_;
  }
  std::string dir_;
};

}  // namespace crisp::testing
