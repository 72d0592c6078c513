#pragma once
// CI never hides a failure: a test that lacks an input it needs (golden files, matplotlib) skips
// on a developer's machine but fails under CI=true. Only the CUDA tests may skip in CI, for want
// of a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace adaspan::testing {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

}  // namespace adaspan::testing

// Skips the test with `reason`, or fails it under CI=true.
#define ADASPAN_SKIP_OUTSIDE_CI(reason)                           \
  do {                                                            \
    if (::adaspan::testing::in_ci()) {                            \
      FAIL() << "CI=true, so this cannot be skipped: " << reason; \
    }                                                             \
    GTEST_SKIP() << reason;                                       \
  } while (0)
