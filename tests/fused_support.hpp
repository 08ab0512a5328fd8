// Shared by the tests that prove a fused kernel equal to its composed layer
// (test_gru_fused.cpp, test_lstm_fused.cpp).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/ops.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"

namespace tapegrad::fixture {

/// max |a − b| ≤ tol · max(1, max |a|).
inline void expect_close(const xt::xarray<double>& a, const xt::xarray<double>& b, double tol,
                         const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a.data()[i] - b.data()[i]));
    scale = std::max(scale, std::abs(a.data()[i]));
  }
  EXPECT_LE(diff, tol * scale) << what;
}

/// g = ∂loss/∂wrt (a create_graph backward), then ∂(Σ g ⊙ v)/∂wrt with v ~ N(0, 1) drawn from
/// Generator(seed): a Hessian-vector product. Returns the first derivatives, then the second, as
/// float64 arrays.
inline std::vector<xt::xarray<double>> first_and_second_derivatives(const Tensor& loss,
                                                                    const std::vector<Tensor>& wrt,
                                                                    std::uint64_t seed = 5) {
  std::vector<Tensor> g = grad(loss, wrt, Tensor(), true, true);
  Tensor gv;
  Generator vgen(seed);
  for (const Tensor& gi : g) {
    Tensor term = sum(gi * randn(gi.shape(), vgen, DType::Float64));
    gv = gv.defined() ? gv + term : term;
  }
  std::vector<Tensor> hv = grad(gv, wrt);
  std::vector<xt::xarray<double>> all;
  for (const Tensor& t : g) all.push_back(t.to_f64());
  for (const Tensor& t : hv) all.push_back(t.to_f64());
  return all;
}

}  // namespace tapegrad::fixture
