// Shared by the float64 gradient checks of the layers (test_layers_gradcheck.cpp,
// test_layers_breadth_gradcheck.cpp).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "framework/gradcheck.hpp"
#include "framework/module.hpp"

namespace tapegrad::fixture {

/// gradcheck over `inputs` plus every parameter of m (named); expects a pass below 1e-7.
/// TAPEGRAD_PRINT_ERRORS=1 prints each test's maximum relative error.
inline void expect_gradcheck(const Module& m, std::vector<Tensor> inputs, std::vector<std::string> names,
                             const std::function<Tensor()>& f) {
  for (const auto& [name, p] : m.named_parameters()) {
    inputs.push_back(p);
    names.push_back(name);
  }
  GradcheckOptions opt;
  opt.names = names;
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return f(); }, inputs, opt);
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_LT(r.max_relative_error, 1e-7) << r.report();
  if (std::getenv("TAPEGRAD_PRINT_ERRORS"))
    std::printf("  %-50s max relative error %.3g\n",
                ::testing::UnitTest::GetInstance()->current_test_info()->name(), r.max_relative_error);
}

}  // namespace tapegrad::fixture
