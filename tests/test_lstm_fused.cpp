// The fused LSTM (layers/fast/lstm_fused.hpp) against the composed LSTM (layers/lstm.cpp): equal
// values (output, h_n, c_n) and equal gradients of every parameter, x, h0 and c0, in float64 (to
// 1e-12) and float32 (to 1e-5), for 1 and 2 layers, one and two directions, batch-first and
// time-major, with and without each initial state, B = 3 and B = 1 (the gemv path), hidden sizes
// with and without a SIMD tail, a batch large enough for the second thread, and T = 1; then
// second derivatives (a create_graph backward through the fused node) and gradgradcheck.
// The loss L = Σ output ⊙ w_out + Σ h_n ⊙ w_h + Σ c_n ⊙ w_c sends a gradient through all outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "framework/gradcheck.hpp"
#include "framework/ops.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"
#include "layers/fast/lstm_fused.hpp"
#include "layers/lstm.hpp"
#include "fused_support.hpp"

using namespace tapegrad;
using fixture::expect_close;
using fixture::first_and_second_derivatives;

namespace {

struct Case {
  std::size_t layers, B, T, I, H;
  bool h0, c0, bidirectional, batch_first;
  DType dtype;
  std::string name() const {
    return fmt::format("L={} B={} T={} I={} H={} {}{}{}{} {}", layers, B, T, I, H, h0 ? "h0 " : "",
                       c0 ? "c0 " : "", bidirectional ? "bidirectional " : "",
                       batch_first ? "batch-first" : "time-major", dtype_name(dtype));
  }
  std::size_t D() const { return bidirectional ? 2 : 1; }
};

/// Everything one forward + backward produces, as float64 arrays.
struct Result {
  xt::xarray<double> output, h_n, c_n;
  std::vector<xt::xarray<double>> grads;  // parameters in order, then x, h0, c0 (when given)
  bool fused = false;
};

enum class Via { FusedFunction, Composed, Auto };

Result run(LSTM& lstm, Via via, const Tensor& x, const Tensor& h0, const Tensor& c0,
           const Tensor& w_out, const Tensor& w_h, const Tensor& w_c) {
  lstm.zero_grad();
  for (const Tensor* t : {&x, &h0, &c0})
    if (t->defined()) const_cast<Tensor*>(t)->zero_grad();
  lstm.set_path(via == Via::Composed ? LSTM::Path::Composed : LSTM::Path::Auto);
  LSTM::Output o = via == Via::FusedFunction ? lstm_forward_fused(lstm, x, h0, c0) : lstm.forward(x, h0, c0);
  Tensor loss = sum(o.output * w_out) + sum(o.h_n * w_h) + sum(o.c_n * w_c);
  loss.backward();
  Result r{o.output.to_f64(), o.h_n.to_f64(), o.c_n.to_f64(), {}, o.fused};
  for (const Tensor& p : lstm.parameters()) r.grads.push_back(p.grad().to_f64());
  for (const Tensor* t : {&x, &h0, &c0})
    if (t->defined()) r.grads.push_back(t->grad().to_f64());
  return r;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name());
  Generator gen(42);
  LSTM lstm(LSTMOptions(c.I, c.H).num_layers(c.layers).bidirectional(c.bidirectional).batch_first(c.batch_first),
            gen);
  lstm.to(c.dtype);
  const Shape xs = c.batch_first ? Shape{c.B, c.T, c.I} : Shape{c.T, c.B, c.I};
  const Shape os = c.batch_first ? Shape{c.B, c.T, c.D() * c.H} : Shape{c.T, c.B, c.D() * c.H};
  const Shape ss{c.layers * c.D(), c.B, c.H};
  Tensor x = randn(xs, gen, c.dtype).requires_grad_();
  Tensor h0 = c.h0 ? mul(randn(ss, gen, c.dtype), 0.5).detach().requires_grad_() : Tensor();
  Tensor c0 = c.c0 ? mul(randn(ss, gen, c.dtype), 0.5).detach().requires_grad_() : Tensor();
  Tensor w_out = randn(os, gen, c.dtype), w_h = randn(ss, gen, c.dtype), w_c = randn(ss, gen, c.dtype);

  Result composed = run(lstm, Via::Composed, x, h0, c0, w_out, w_h, w_c);
  Result fused = run(lstm, Via::FusedFunction, x, h0, c0, w_out, w_h, w_c);
  Result automatic = run(lstm, Via::Auto, x, h0, c0, w_out, w_h, w_c);
  EXPECT_FALSE(composed.fused);
  EXPECT_TRUE(fused.fused);
  EXPECT_TRUE(automatic.fused);
  // LSTM::forward on its default path is the fused kernel itself: bit for bit.
  EXPECT_EQ(automatic.output, fused.output);
  ASSERT_EQ(automatic.grads.size(), fused.grads.size());
  for (std::size_t i = 0; i < fused.grads.size(); ++i) EXPECT_EQ(automatic.grads[i], fused.grads[i]);
  const double tol = c.dtype == DType::Float64 ? 1e-12 : 1e-5;
  expect_close(fused.output, composed.output, tol, "output");
  expect_close(fused.h_n, composed.h_n, tol, "h_n");
  expect_close(fused.c_n, composed.c_n, tol, "c_n");
  ASSERT_EQ(fused.grads.size(), composed.grads.size());
  auto names = lstm.named_parameters();
  std::vector<std::string> extra{"x"};
  if (c.h0) extra.push_back("h0");
  if (c.c0) extra.push_back("c0");
  for (std::size_t i = 0; i < fused.grads.size(); ++i) {
    const std::string what = i < names.size() ? names[i].first : extra.at(i - names.size());
    expect_close(fused.grads[i], composed.grads[i], tol, "gradient of " + what);
  }
}

}  // namespace

TEST(LSTMFused, EqualsComposedInValuesAndGradients) {
  for (DType dtype : {DType::Float64, DType::Float32})
    for (std::size_t layers : {1, 2})
      for (auto [h0, c0] : {std::pair{false, false}, {true, true}, {true, false}, {false, true}})
        for (auto [B, H] : {std::pair<std::size_t, std::size_t>{3, 6}, {1, 20}})
          for (bool bidirectional : {false, true})
            for (bool batch_first : {true, false})
              check_case({layers, B, 5, 7, H, h0, c0, bidirectional, batch_first, dtype});
}

TEST(LSTMFused, LongerSequenceAndWideHidden) {
  check_case({1, 4, 40, 11, 37, true, true, false, true, DType::Float64});
  check_case({2, 2, 12, 9, 33, true, false, true, false, DType::Float32});
}

TEST(LSTMFused, LargeEnoughForTheSecondThread) {
  // 4H·H·B·T ≥ 2^23 on two cores: the hidden units are shared by two threads (H = 72: 48 + 24,
  // SIMD tails in the second part; B = 1: the gemv path on both).
  check_case({2, 16, 40, 10, 64, true, true, false, true, DType::Float64});
  check_case({1, 17, 40, 10, 64, false, false, true, true, DType::Float32});
  check_case({1, 8, 60, 5, 72, true, true, false, false, DType::Float64});
  check_case({1, 1, 300, 5, 96, true, true, false, true, DType::Float64});
}

TEST(LSTMFused, SingleStep) {
  check_case({2, 3, 1, 5, 4, true, true, false, true, DType::Float64});
  check_case({1, 1, 1, 5, 4, false, false, true, false, DType::Float64});
  // Fewer than 4 rows in all (B · T): W_hh is not packed, the kernel's sums are formed in place.
  check_case({1, 1, 3, 5, 37, true, true, false, true, DType::Float32});
  check_case({2, 1, 2, 5, 33, true, false, true, true, DType::Float64});
  check_case({1, 1, 2, 5, 260, true, true, false, true, DType::Float32});  // 4H·H ≥ 2^18: two cores
}

// One sequence through several steps against a weight of 4H·H ≥ 2^18 multiply-adds: W_hh packed,
// its panels run as two halves on the two cores at every step (fused_kernels.hpp, StepWeight).
TEST(LSTMFused, OneSequenceAgainstAWideWeightOnTwoCores) {
  check_case({1, 1, 6, 5, 260, true, true, false, true, DType::Float32});
  check_case({2, 1, 4, 5, 260, false, false, true, false, DType::Float64});
}

TEST(LSTMFused, NoGradForwardGivesTheSameValues) {
  Generator gen(3);
  LSTM lstm(LSTMOptions(6, 8).num_layers(2).batch_first(true), gen);
  lstm.to(DType::Float64);
  Tensor x = randn({2, 7, 6}, gen, DType::Float64);
  lstm.set_path(LSTM::Path::Composed);
  LSTM::Output a = lstm.forward(x);
  NoGradGuard no_grad;
  LSTM::Output b = lstm_forward_fused(lstm, x);
  EXPECT_FALSE(b.output.requires_grad());
  expect_close(b.output.to_f64(), a.output.to_f64(), 1e-12, "output");
  expect_close(b.h_n.to_f64(), a.h_n.to_f64(), 1e-12, "h_n");
  expect_close(b.c_n.to_f64(), a.c_n.to_f64(), 1e-12, "c_n");
}

TEST(LSTMFused, RetainGraphBackwardTwiceAccumulates) {
  Generator gen(9);
  LSTM lstm(LSTMOptions(5, 6).batch_first(true), gen);
  lstm.to(DType::Float64);
  Tensor x = randn({2, 3, 5}, gen, DType::Float64);
  LSTM::Output o = lstm.forward(x);
  Tensor loss = sum(o.output) + sum(o.c_n);
  loss.backward(Tensor(), /*retain_graph=*/true);
  xt::xarray<double> once = lstm.weight_hh[0].grad().to_f64();
  loss.backward();
  expect_close(lstm.weight_hh[0].grad().to_f64(), 2.0 * once, 1e-12, "twice");
}

TEST(LSTMFused, DoubleBackwardRecomputesWithOpsAndEqualsComposed) {
  // A create_graph backward through the fused node runs the BPTT written with tapegrad ops:
  // first and second derivatives equal the composed LSTM's (2 layers, both directions, h0, c0).
  for (std::size_t D : {1, 2}) {
    SCOPED_TRACE(fmt::format("{} direction(s)", D));
    Generator gen(11);
    LSTM lstm(LSTMOptions(3, 4).num_layers(2).bidirectional(D == 2).batch_first(true), gen);
    lstm.to(DType::Float64);
    Tensor x = randn({2, 3, 3}, gen, DType::Float64).requires_grad_();
    Tensor h0 = randn({2 * D, 2, 4}, gen, DType::Float64).requires_grad_();
    Tensor c0 = randn({2 * D, 2, 4}, gen, DType::Float64).requires_grad_();
    Tensor w = randn({2, 3, 4 * D}, gen, DType::Float64);
    // First derivatives (create_graph), then a Hessian-vector product (fused_support.hpp).
    auto second_order = [&](LSTM::Path path) {
      lstm.set_path(path);
      LSTM::Output o = lstm.forward(x, h0, c0);
      EXPECT_EQ(o.fused, path == LSTM::Path::Auto);
      Tensor loss = sum(tanh(o.output) * w) + sum(o.h_n * o.h_n) + sum(o.c_n * o.c_n);
      std::vector<Tensor> wrt = lstm.parameters();
      wrt.insert(wrt.end(), {x, h0, c0});
      return first_and_second_derivatives(loss, wrt);
    };
    auto composed = second_order(LSTM::Path::Composed);
    auto fused = second_order(LSTM::Path::Auto);
    ASSERT_EQ(fused.size(), composed.size());
    for (std::size_t i = 0; i < fused.size(); ++i)
      expect_close(fused[i], composed[i], 1e-12,
                   fmt::format("{} derivative #{}", i < fused.size() / 2 ? "first" : "second", i));
  }
}

namespace {

/// One fused LSTM layer (1 layer, 1 direction, batch-first) as a function of
/// {x, w_ih, w_hh, b_ih, b_hh, h0, c0}, its outputs flattened into one vector.
Tensor fused_layer(const std::vector<Tensor>& in) {
  const std::size_t I = in[0].size(2), H = in[2].size(1);
  LSTM lstm(LSTMOptions(I, H).batch_first(true));
  lstm.weight_ih[0] = in[1], lstm.weight_hh[0] = in[2], lstm.bias_ih[0] = in[3], lstm.bias_hh[0] = in[4];
  LSTM::Output o = lstm_forward_fused(lstm, in[0], in[5], in[6]);
  return concat({reshape(o.output, {-1}), reshape(o.h_n, {-1}), reshape(o.c_n, {-1})}, 0);
}

std::vector<Tensor> fused_layer_inputs(std::uint64_t seed, std::size_t B, std::size_t T,
                                       std::size_t I, std::size_t H) {
  Generator gen(seed);
  const DType f64 = DType::Float64;
  std::vector<Tensor> in{randn({B, T, I}, gen, f64),     randn({4 * H, I}, gen, f64),
                         randn({4 * H, H}, gen, f64),    randn({4 * H}, gen, f64),
                         randn({4 * H}, gen, f64),       randn({1, B, H}, gen, f64),
                         randn({1, B, H}, gen, f64)};
  for (std::size_t i : {1, 2}) in[i] = mul(in[i], 0.5).detach();
  for (Tensor& t : in) t.requires_grad_();
  return in;
}

}  // namespace

TEST(LSTMFused, GradcheckOfTheLayer) {
  auto r = gradcheck(fused_layer, fused_layer_inputs(5, 2, 4, 3, 4));
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(LSTMFused, GradgradcheckThroughTheFusedNode) {
  auto r = gradgradcheck(fused_layer, fused_layer_inputs(13, 2, 3, 2, 3));
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(LSTMFused, PathsAndBadInput) {
  Generator gen(17);
  LSTM lstm(LSTMOptions(3, 4).batch_first(true), gen);
  Tensor x = randn({2, 5, 3}, gen);
  EXPECT_TRUE(lstm.uses_fused());
  EXPECT_TRUE(lstm.forward(x).fused);  // the default
  lstm.set_path(LSTM::Path::Composed);
  EXPECT_FALSE(lstm.forward(x).fused);
  lstm.set_path(LSTM::Path::Fused);
  EXPECT_TRUE(lstm.forward(x).fused);
  // The same argument checks (and error types) on both paths.
  for (LSTM::Path path : {LSTM::Path::Composed, LSTM::Path::Auto}) {
    lstm.set_path(path);
    EXPECT_THROW(lstm.forward(randn({1, 2, 4}, gen)), ShapeError);
    EXPECT_THROW(lstm.forward(x, zeros({1, 3, 4})), ShapeError);
    EXPECT_THROW(lstm.forward(x, Tensor(), zeros({2, 2, 4})), ShapeError);
    EXPECT_THROW(lstm.forward(zeros({2, 0, 3})), ShapeError);
    EXPECT_THROW(lstm.forward(randn({2, 5, 3}, gen, DType::Float64)), DTypeError);
    EXPECT_THROW(lstm.forward(zeros({0, 5, 3})), ShapeError);  // an empty batch, named as such
  }
}
