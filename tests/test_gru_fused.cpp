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
#include "fused_support.hpp"

using namespace tapegrad;
using fixture::expect_close;
using fixture::first_and_second_derivatives;

namespace {

struct Case {
  std::size_t layers, B, T, V, H;
  bool ids, h0;
  DType dtype;
  bool bidirectional = false;
  std::string name() const {
    return fmt::format("L={} B={} T={} V={} H={} {} {} {}{}", layers, B, T, V, H, ids ? "ids" : "dense",
                       h0 ? "h0" : "no-h0", dtype_name(dtype), bidirectional ? " bidirectional" : "");
  }
  std::size_t D() const { return bidirectional ? 2 : 1; }
};

/// Everything one forward + backward produces, as float64 arrays.
struct Result {
  xt::xarray<double> output, h_n;
  std::vector<xt::xarray<double>> grads;  // parameters in order, then x (dense), then h0
};

/// How run() calls the GRU: the fused functions directly, or GRU::forward with a path.
enum class Via { FusedFunction, Composed, Auto };

Result run(GRU& gru, const Case& c, Via via, const std::vector<std::int64_t>& ids, const Tensor& x,
           const Tensor& h0, const Tensor& w_out, const Tensor& w_hn) {
  gru.zero_grad();
  if (x.defined()) const_cast<Tensor&>(x).zero_grad();
  if (h0.defined()) const_cast<Tensor&>(h0).zero_grad();
  const bool fused = via == Via::FusedFunction;
  gru.set_path(via == Via::Composed ? GRU::Path::Composed : GRU::Path::Auto);
  GRU::Output o = c.ids ? (fused ? gru_forward_ids_fused(gru, ids, c.B, c.T, c.V, h0)
                                 : gru.forward_ids(ids, c.B, c.T, c.V, h0))
                        : (fused ? gru_forward_fused(gru, x, h0) : gru.forward(x, h0));
  EXPECT_EQ(o.fused, via != Via::Composed);  // Auto picks the fused kernel here
  Tensor loss = sum(o.output * w_out) + sum(o.h_n * w_hn);
  loss.backward();
  Result r{o.output.to_f64(), o.h_n.to_f64(), {}};
  for (const Tensor& p : gru.parameters()) r.grads.push_back(p.grad().to_f64());
  if (x.defined()) r.grads.push_back(x.grad().to_f64());
  if (h0.defined()) r.grads.push_back(h0.grad().to_f64());
  return r;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name());
  Generator gen(42);
  GRU gru(GRUOptions(c.V, c.H).num_layers(c.layers).bidirectional(c.bidirectional), gen);
  gru.to(c.dtype);
  std::vector<std::int64_t> ids;
  Tensor x, h0;
  if (c.ids)
    for (std::size_t i = 0; i < c.B * c.T; ++i) ids.push_back(std::int64_t(gen.integer(c.V)));
  else
    x = randn({c.B, c.T, c.V}, gen, c.dtype).requires_grad_();
  if (c.h0) h0 = mul(randn({c.layers * c.D(), c.B, c.H}, gen, c.dtype), 0.5).detach().requires_grad_();
  Tensor w_out = randn({c.B, c.T, c.D() * c.H}, gen, c.dtype);
  Tensor w_hn = randn({c.layers * c.D(), c.B, c.H}, gen, c.dtype);

  Result composed = run(gru, c, Via::Composed, ids, x, h0, w_out, w_hn);
  Result fused = run(gru, c, Via::FusedFunction, ids, x, h0, w_out, w_hn);
  Result automatic = run(gru, c, Via::Auto, ids, x, h0, w_out, w_hn);
  // GRU::forward on its default path is the fused kernel itself: bit for bit.
  EXPECT_EQ(automatic.output, fused.output);
  ASSERT_EQ(automatic.grads.size(), fused.grads.size());
  for (std::size_t i = 0; i < fused.grads.size(); ++i) EXPECT_EQ(automatic.grads[i], fused.grads[i]);
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
            for (bool bidirectional : {false, true})
              check_case({layers, B, 5, 7, H, ids, h0, dtype, bidirectional});
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

// A recurrent weight's gradient of more than 1 MiB (3H·H elements) runs on the engine's kernel
// with both operands packed across the sequences (gru_fused.cpp, recurrent_weight_gradient):
// H = 300 (2H = 600 is no multiple of its 128-row blocks), with and without h0, one step (only h0's
// pairs, or none), one half or two, and more than 512 pairs (two kernel calls per block).
TEST(GRUFused, WideRecurrentWeightGradientOnTheEngine) {
  check_case({1, 3, 5, 7, 300, true, false, DType::Float64});
  check_case({1, 3, 5, 7, 300, false, true, DType::Float32});
  check_case({1, 3, 1, 7, 300, false, true, DType::Float64});
  check_case({1, 3, 1, 7, 300, true, false, DType::Float64});
  check_case({1, 4, 300, 6, 300, true, true, DType::Float64});   // 3H·H·B·T ≥ 2^23: two halves, 600 pairs each
  check_case({2, 4, 150, 6, 300, false, false, DType::Float32});
}

// One sequence (or a few: fewer rows than the kernel's register block) against a recurrent
// weight of 2^18 multiply-adds a step or more: the weight's panels run as two halves on the two
// cores at every step (fused_kernels.hpp, StepWeight::multiply), `char_gru score`'s case.
TEST(GRUFused, OneSequenceAgainstAWideWeightOnTwoCores) {
  check_case({1, 1, 6, 7, 300, true, false, DType::Float32});
  check_case({2, 1, 4, 5, 300, false, true, DType::Float64});
  check_case({1, 2, 3, 5, 300, true, true, DType::Float64});
}

TEST(GRUFused, SingleStep) {
  check_case({2, 3, 1, 5, 4, false, true, DType::Float64});
  check_case({1, 1, 1, 5, 4, true, false, DType::Float64});
  // Fewer than 4 rows in all (B · T), as sampling feeds them: W_hh is not packed (the kernel's
  // sums formed in place), and with fewer rows than V the ids' columns of W_ih are copied
  // instead of W_ih transposed.
  check_case({1, 1, 3, 9, 37, true, true, DType::Float32});
  check_case({2, 1, 2, 9, 33, true, false, DType::Float64, true});
  check_case({1, 1, 3, 2, 5, true, false, DType::Float64});  // B · T ≥ V: W_ih transposed
  check_case({1, 1, 2, 9, 300, true, true, DType::Float32});  // 3H·H ≥ 2^18: on two cores
}

TEST(GRUFused, NoGradForwardGivesTheSameValues) {
  Generator gen(3);
  GRU gru(GRUOptions(6, 8).num_layers(2), gen);
  gru.to(DType::Float64);
  Tensor x = randn({2, 7, 6}, gen, DType::Float64);
  gru.set_path(GRU::Path::Composed);
  GRU::Output a = gru.forward(x);
  NoGradGuard no_grad;
  GRU::Output b = gru_forward_fused(gru, x);
  EXPECT_FALSE(b.output.requires_grad());
  expect_close(b.output.to_f64(), a.output.to_f64(), 1e-12, "output");
  expect_close(b.h_n.to_f64(), a.h_n.to_f64(), 1e-12, "h_n");
  EXPECT_TRUE(b.steps.empty());
}

namespace {

/// gru_layer_fused's inputs {x (B, T, I), w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H), h0 (B, H)},
/// float64, all requiring grad (weights 0.5·N(0, 1), the rest N(0, 1)), drawn in that order.
std::vector<Tensor> fused_layer_inputs(std::uint64_t seed, std::size_t B, std::size_t T,
                                       std::size_t I, std::size_t H) {
  Generator gen(seed);
  const DType f64 = DType::Float64;
  Tensor x = randn({B, T, I}, gen, f64).requires_grad_();
  Tensor w_ih = mul(randn({3 * H, I}, gen, f64), 0.5).detach().requires_grad_();
  Tensor w_hh = mul(randn({3 * H, H}, gen, f64), 0.5).detach().requires_grad_();
  Tensor b_ih = randn({3 * H}, gen, f64).requires_grad_();
  Tensor b_hh = randn({3 * H}, gen, f64).requires_grad_();
  Tensor h0 = randn({B, H}, gen, f64).requires_grad_();
  return {x, w_ih, w_hh, b_ih, b_hh, h0};
}

Tensor fused_layer(const std::vector<Tensor>& in) {
  return gru_layer_fused(in[0], in[1], in[2], in[3], in[4], in[5]);
}

}  // namespace

TEST(GRUFused, GradcheckOfTheLayer) {
  auto r = gradcheck(fused_layer, fused_layer_inputs(5, 2, 4, 3, 4));
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

TEST(GRUFused, DoubleBackwardRecomputesWithOpsAndEqualsComposed) {
  // A create_graph backward through the fused node runs the BPTT written with tapegrad ops:
  // first and second derivatives equal the composed GRU's, for dense x with an (L, B, H) h0
  // (2 layers: layer 1 reads layer 0's fused output) and for one-hot ids.
  for (bool ids_input : {false, true})
  for (std::size_t D : {1, 2}) {
    SCOPED_TRACE(fmt::format("{}, {} direction(s)", ids_input ? "ids" : "dense", D));
    Generator gen(11);
    GRU gru(GRUOptions(3, 4).num_layers(2).bidirectional(D == 2), gen);
    gru.to(DType::Float64);
    Tensor x = randn({2, 3, 3}, gen, DType::Float64).requires_grad_();
    Tensor h0 = randn({2 * D, 2, 4}, gen, DType::Float64).requires_grad_();
    const std::vector<std::int64_t> ids{0, 2, 1, 1, 0, 2};
    Tensor w = randn({2, 3, 4 * D}, gen, DType::Float64);
    // First derivatives (create_graph), then a Hessian-vector product (fused_support.hpp).
    auto second_order = [&](GRU::Path path) {
      gru.set_path(path);
      GRU::Output o = ids_input ? gru.forward_ids(ids, 2, 3, 3, h0) : gru.forward(x, h0);
      EXPECT_EQ(o.fused, path == GRU::Path::Auto);
      Tensor loss = sum(tanh(o.output) * w) + sum(o.h_n * o.h_n);
      std::vector<Tensor> wrt = gru.parameters();
      wrt.push_back(h0);
      if (!ids_input) wrt.push_back(x);
      return first_and_second_derivatives(loss, wrt);
    };
    auto composed = second_order(GRU::Path::Composed);
    auto fused = second_order(GRU::Path::Auto);
    ASSERT_EQ(fused.size(), composed.size());
    for (std::size_t i = 0; i < fused.size(); ++i)
      expect_close(fused[i], composed[i], 1e-12, fmt::format("{} derivative #{}",
                                                             i < fused.size() / 2 ? "first" : "second", i));
  }
}

TEST(GRUFused, GradgradcheckThroughTheFusedNode) {
  auto r = gradgradcheck(fused_layer, fused_layer_inputs(13, 2, 3, 2, 3));
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(GRUFused, AutoPathChoosesAndStepsExplainThemselves) {
  Generator gen(17);
  GRU gru(GRUOptions(3, 4), gen);
  Tensor x = randn({2, 5, 3}, gen);
  GRU::Output a = gru.forward(x);  // the default: fused
  EXPECT_TRUE(a.fused);
  EXPECT_TRUE(a.steps.empty());
  try {
    (void)a.steps[0];
    ADD_FAILURE() << "indexing the steps of a fused forward must raise";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("set_path(GRU::Path::Composed)"), std::string::npos) << e.what();
  }
  gru.set_record_gates(true);  // recording needs the per-step graph: composed
  GRU::Output b = gru.forward(x);
  EXPECT_FALSE(b.fused);
  EXPECT_EQ(b.steps[0].size(), 5u);
  EXPECT_EQ(gru.gate_records().at(0).size(), 5u);
  EXPECT_THROW((void)b.steps[1], IndexError);
  gru.set_record_gates(false);
  gru.set_path(GRU::Path::Composed);
  EXPECT_FALSE(gru.forward(x).fused);
  gru.set_path(GRU::Path::Fused);
  EXPECT_TRUE(gru.forward(x).fused);
  // Where the fused kernel does not apply, Auto falls back and Fused says why.
  GRU before(GRUOptions(3, 4).reset_after(false), gen);
  EXPECT_FALSE(before.forward(x).fused);
  GRU both(GRUOptions(3, 4).bidirectional(true), gen);  // the reverse direction: fused too
  EXPECT_TRUE(both.forward(x).fused);
  both.set_record_gates(true);
  EXPECT_FALSE(both.forward(x).fused);
  both.set_path(GRU::Path::Fused);
  EXPECT_THROW(both.forward(x), ValueError);  // recording needs the composed path
  before.set_path(GRU::Path::Fused);
  EXPECT_THROW(before.forward(x), ValueError);
  // The same argument checks (and messages) on both paths.
  for (GRU::Path path : {GRU::Path::Composed, GRU::Path::Auto}) {
    gru.set_path(path);
    EXPECT_THROW(gru.forward(randn({1, 2, 4}, gen)), ShapeError);
    EXPECT_THROW(gru.forward(x, zeros({1, 3, 4})), ShapeError);
    EXPECT_THROW(gru.forward_ids({0, 5}, 1, 2, 3), IndexError);
    EXPECT_THROW(gru.forward_ids({0, 1, 2}, 1, 2, 3), ShapeError);
  }
}

TEST(GRUFused, ResetBeforeAndBadInputAreRefused) {
  Generator gen(11);
  GRU gru(GRUOptions(3, 4), gen);
  gru.to(DType::Float64);
  Tensor x = randn({1, 2, 3}, gen, DType::Float64);
  GRU before(GRUOptions(3, 4).reset_after(false), gen);
  EXPECT_THROW(gru_forward_fused(before, x), ValueError);
  EXPECT_THROW(gru_forward_ids_fused(gru, {0, 5}, 1, 2, 3), IndexError);
  EXPECT_THROW(gru_forward_fused(gru, randn({1, 2, 4}, gen, DType::Float64)), ShapeError);
}
