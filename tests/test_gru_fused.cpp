// The fused GRU (layers/fast/gru_fused.hpp) against the composed GRU (layers/gru.hpp): equal values
// (output and h_n) and equal gradients of every parameter, the dense input and h0, in float64
// (to 1e-12) and float32 (to 1e-5), for 1 and 2 layers, one-hot ids and dense inputs, with and
// without h0, for B = 3 and B = 1 (the gemv path) and hidden sizes with and without a SIMD tail.
// The loss L = sum(output ⊙ w_out) + sum(h_n ⊙ w_hn) sends a gradient through both outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "framework/gradcheck.hpp"
#include "framework/ops.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"
#include "layers/gru.hpp"
#include "layers/fast/gru_fused.hpp"

using namespace tapegrad;

namespace {

struct Case {
  std::size_t layers, B, T, V, H;
  bool ids, h0;
  DType dtype;
  std::string name() const {
    return fmt::format("L={} B={} T={} V={} H={} {} {} {}", layers, B, T, V, H, ids ? "ids" : "dense",
                       h0 ? "h0" : "no-h0", dtype_name(dtype));
  }
};

/// Everything one forward + backward produces, as float64 arrays.
struct Result {
  xt::xarray<double> output, h_n;
  std::vector<xt::xarray<double>> grads;  // parameters in order, then x (dense), then h0
};

Result run(GRU& gru, const Case& c, bool fused, const std::vector<std::int64_t>& ids, const Tensor& x,
           const Tensor& h0, const Tensor& w_out, const Tensor& w_hn) {
  gru.zero_grad();
  if (x.defined()) const_cast<Tensor&>(x).zero_grad();
  if (h0.defined()) const_cast<Tensor&>(h0).zero_grad();
  GRU::Output o = c.ids ? (fused ? gru_forward_ids_fused(gru, ids, c.B, c.T, c.V, h0)
                                 : gru.forward_ids(ids, c.B, c.T, c.V, h0))
                        : (fused ? gru_forward_fused(gru, x, h0) : gru.forward(x, h0));
  Tensor loss = sum(o.output * w_out) + sum(o.h_n * w_hn);
  loss.backward();
  Result r{o.output.to_f64(), o.h_n.to_f64(), {}};
  for (const Tensor& p : gru.parameters()) r.grads.push_back(p.grad().to_f64());
  if (x.defined()) r.grads.push_back(x.grad().to_f64());
  if (h0.defined()) r.grads.push_back(h0.grad().to_f64());
  return r;
}

/// max |a − b| ≤ tol · max(1, max |a|).
void expect_close(const xt::xarray<double>& a, const xt::xarray<double>& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a.data()[i] - b.data()[i]));
    scale = std::max(scale, std::abs(a.data()[i]));
  }
  EXPECT_LE(diff, tol * scale) << what;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name());
  Generator gen(42);
  GRU gru(GRUOptions(c.V, c.H).num_layers(c.layers), gen);
  gru.to(c.dtype);
  std::vector<std::int64_t> ids;
  Tensor x, h0;
  if (c.ids)
    for (std::size_t i = 0; i < c.B * c.T; ++i) ids.push_back(std::int64_t(gen.integer(c.V)));
  else
    x = randn({c.B, c.T, c.V}, gen, c.dtype).requires_grad_();
  if (c.h0) h0 = mul(randn({c.layers, c.B, c.H}, gen, c.dtype), 0.5).detach().requires_grad_();
  Tensor w_out = randn({c.B, c.T, c.H}, gen, c.dtype);
  Tensor w_hn = randn({c.layers, c.B, c.H}, gen, c.dtype);

  Result composed = run(gru, c, false, ids, x, h0, w_out, w_hn);
  Result fused = run(gru, c, true, ids, x, h0, w_out, w_hn);
  const double tol = c.dtype == DType::Float64 ? 1e-12 : 1e-5;
  expect_close(fused.output, composed.output, tol, "output");
  expect_close(fused.h_n, composed.h_n, tol, "h_n");
  ASSERT_EQ(fused.grads.size(), composed.grads.size());
  auto names = gru.named_parameters();
  for (std::size_t i = 0; i < fused.grads.size(); ++i) {
    std::string what = i < names.size() ? names[i].first : (x.defined() && i == names.size()) ? "x" : "h0";
    expect_close(fused.grads[i], composed.grads[i], tol, "gradient of " + what);
  }
}

}  // namespace

TEST(GRUFused, EqualsComposedInValuesAndGradients) {
  for (DType dtype : {DType::Float64, DType::Float32})
    for (std::size_t layers : {1, 2})
      for (bool ids : {true, false})
        for (bool h0 : {false, true})
          for (auto [B, H] : {std::pair<std::size_t, std::size_t>{3, 6}, {1, 20}})
            check_case({layers, B, 5, 7, H, ids, h0, dtype});
}

TEST(GRUFused, LongerSequenceAndWideHidden) {
  check_case({1, 4, 40, 11, 37, false, true, DType::Float64});
  check_case({2, 2, 12, 9, 33, true, true, DType::Float32});
}

TEST(GRUFused, LargeEnoughForTheSecondThread) {
  // 3H·H·B·T ≥ 2^23 on two cores: the batch runs as two halves on two threads.
  check_case({2, 16, 64, 10, 64, true, true, DType::Float64});
  check_case({1, 16, 64, 10, 64, false, false, DType::Float32});
}

TEST(GRUFused, SingleStep) {
  check_case({2, 3, 1, 5, 4, false, true, DType::Float64});
  check_case({1, 1, 1, 5, 4, true, false, DType::Float64});
}

TEST(GRUFused, NoGradForwardGivesTheSameValues) {
  Generator gen(3);
  GRU gru(GRUOptions(6, 8).num_layers(2), gen);
  gru.to(DType::Float64);
  Tensor x = randn({2, 7, 6}, gen, DType::Float64);
  GRU::Output a = gru.forward(x);
  NoGradGuard no_grad;
  GRU::Output b = gru_forward_fused(gru, x);
  EXPECT_FALSE(b.output.requires_grad());
  expect_close(b.output.to_f64(), a.output.to_f64(), 1e-12, "output");
  expect_close(b.h_n.to_f64(), a.h_n.to_f64(), 1e-12, "h_n");
  EXPECT_TRUE(b.steps.empty());
}

TEST(GRUFused, GradcheckOfTheLayer) {
  Generator gen(5);
  const DType f64 = DType::Float64;
  Tensor x = randn({2, 4, 3}, gen, f64).requires_grad_();
  Tensor w_ih = mul(randn({12, 3}, gen, f64), 0.5).detach().requires_grad_();
  Tensor w_hh = mul(randn({12, 4}, gen, f64), 0.5).detach().requires_grad_();
  Tensor b_ih = randn({12}, gen, f64).requires_grad_();
  Tensor b_hh = randn({12}, gen, f64).requires_grad_();
  Tensor h0 = randn({2, 4}, gen, f64).requires_grad_();
  auto r = gradcheck(
      [](const std::vector<Tensor>& in) { return gru_layer_fused(in[0], in[1], in[2], in[3], in[4], in[5]); },
      {x, w_ih, w_hh, b_ih, b_hh, h0});
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(GRUFused, RetainGraphBackwardTwiceAccumulates) {
  Generator gen(9);
  GRU gru(GRUOptions(5, 6), gen);
  gru.to(DType::Float64);
  Tensor x = randn({2, 3, 5}, gen, DType::Float64);
  Tensor loss = sum(gru_forward_fused(gru, x).output);
  loss.backward(Tensor(), /*retain_graph=*/true);
  xt::xarray<double> once = gru.weight_hh[0].grad().to_f64();
  loss.backward();
  expect_close(gru.weight_hh[0].grad().to_f64(), 2.0 * once, 1e-12, "twice");
}

TEST(GRUFused, DoubleBackwardAndResetBeforeAreRefused) {
  Generator gen(11);
  GRU gru(GRUOptions(3, 4), gen);
  gru.to(DType::Float64);
  Tensor x = randn({1, 2, 3}, gen, DType::Float64);
  Tensor loss = sum(gru_forward_fused(gru, x).output);
  EXPECT_THROW(grad(loss, {gru.weight_hh[0]}, Tensor(), true, true), AutogradError);
  tape().clear();

  GRU before(GRUOptions(3, 4).reset_after(false), gen);
  EXPECT_THROW(gru_forward_fused(before, x), ValueError);
  EXPECT_THROW(gru_forward_ids_fused(gru, {0, 5}, 1, 2, 3), IndexError);
  EXPECT_THROW(gru_forward_fused(gru, randn({1, 2, 4}, gen, DType::Float64)), ShapeError);
}
