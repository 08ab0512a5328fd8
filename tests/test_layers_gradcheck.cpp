// Float64 gradient checks of the layers (central differences against the tape), the GRU bias
// identities, and the equivalence of GRU's integer-id input path with the one-hot matmul path.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmath.hpp>

#include "framework/gradcheck.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"
#include "layers/layers.hpp"
#include "gradcheck_support.hpp"

using namespace tapegrad;
using tapegrad::fixture::expect_gradcheck;

namespace {

constexpr DType f64 = DType::Float64;

Tensor input(const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  return uniform(shape, -1, 1, gen, f64).requires_grad_();
}

Tensor flat(const Tensor& t) { return reshape(t, std::vector<std::ptrdiff_t>{-1}); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return xt::amax(xt::abs(a.to_f64() - b.to_f64()))();
}

}  // namespace

TEST(LayersGradcheck, GRUCellBothVariants) {
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    Generator gen(1);
    GRUCell cell(GRUCellOptions(5, 4).reset_after(reset_after), gen);
    cell.to(f64);
    Tensor x = input({3, 5}, 2), h = input({3, 4}, 3);
    expect_gradcheck(cell, {x, h}, {"x", "h"}, [&] { return cell(x, h); });
  }
}

TEST(LayersGradcheck, GRUUnrolledOverEightSteps) {
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    Generator gen(4);
    GRU gru(GRUOptions(3, 4).num_layers(2).reset_after(reset_after), gen);
    gru.set_path(GRU::Path::Composed);  // unrolled: every step on the tape (the fused node has its own gradcheck)
    gru.to(f64);
    Tensor x = input({2, 8, 3}, 5), h0 = input({2, 2, 4}, 6);  // B = 2, T = 8
    expect_gradcheck(gru, {x, h0}, {"x", "h0"}, [&] {
      GRU::Output out = gru(x, h0);
      return concat({flat(out.output), flat(out.h_n)});
    });
  }
}

TEST(LayersGradcheck, LSTMCell) {
  Generator gen(7);
  LSTMCell cell(LSTMCellOptions(5, 4), gen);
  cell.to(f64);
  Tensor x = input({3, 5}, 8), h = input({3, 4}, 9), c = input({3, 4}, 10);
  expect_gradcheck(cell, {x, h, c}, {"x", "h", "c"}, [&] {
    LSTMCell::State s = cell(x, h, c);
    return concat({flat(s.h), flat(s.c)});
  });
}

TEST(LayersGradcheck, RNNCell) {
  Generator gen(11);
  RNNCell cell(RNNCellOptions(5, 4), gen);
  cell.to(f64);
  Tensor x = input({3, 5}, 12), h = input({3, 4}, 13);
  expect_gradcheck(cell, {x, h}, {"x", "h"}, [&] { return cell(x, h); });
}

TEST(LayersGradcheck, LinearAndEmbedding) {
  Generator gen(14);
  Linear lin(5, 3, gen);
  lin.to(f64);
  Tensor x2 = input({4, 5}, 15), x3 = input({2, 4, 5}, 16);
  expect_gradcheck(lin, {x2}, {"x"}, [&] { return lin(x2); });
  expect_gradcheck(lin, {x3}, {"x"}, [&] { return lin(x3); });
  Embedding emb(6, 3, gen);
  emb.to(f64);
  expect_gradcheck(emb, {}, {}, [&] { return emb({2, 0, 2, 5, 1, 2}, {2, 3}); });
}

// b_ir and b_hr (b_iz and b_hz) only ever appear as a sum, so their gradients are the same
// numbers, summed in the same order: exactly equal. b_hn sits inside r ⊙ (W_hn h + b_hn) when
// the reset comes after, so its gradient is r times b_in's; with the reset before, b_in and
// b_hn are again a plain sum and equal.
TEST(LayersGradcheck, GRUCellBiasGradientIdentities) {
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    Generator gen(17);
    GRUCell cell(GRUCellOptions(5, 4).reset_after(reset_after), gen);
    cell.to(f64);
    Tensor x = input({3, 5}, 18), h = input({3, 4}, 19);
    Generator sg(20);
    cell(x, h).backward(uniform({3, 4}, -1, 1, sg, f64));
    const std::size_t H = 4;
    Tensor gi = cell.bias_ih.grad(), gh = cell.bias_hh.grad();
    for (std::size_t j = 0; j < 2 * H; ++j)  // r and z rows
      EXPECT_EQ(gi.at(j), gh.at(j)) << "row " << j;
    Tensor g_in = narrow(gi, 0, 2 * H, H), g_hn = narrow(gh, 0, 2 * H, H);
    if (reset_after) {
      EXPECT_GT(max_abs_diff(g_in, g_hn), 1e-3);
      // dL/db_hn = Σ_batch r ⊙ dL/d(pre-activation of n) while dL/db_in is the same without r.
    } else {
      EXPECT_LT(max_abs_diff(g_in, g_hn), 1e-15);
    }
  }
}

// Over a sequence the same identity holds up to summation order: b_ih's gradient is one sum over
// B·T rows of the (B, T, 3H) projection, b_hh's accumulates step by step.
TEST(LayersGradcheck, GRUSequenceBiasGradientIdentity) {
  Generator gen(21);
  GRU gru(GRUOptions(3, 4), gen);
  gru.set_path(GRU::Path::Composed);  // b_hh's gradient accumulated step by step on the tape
  gru.to(f64);
  Tensor x = input({2, 8, 3}, 22);
  Generator sg(23);
  gru(x).output.backward(uniform({2, 8, 4}, -1, 1, sg, f64));
  Tensor gi = gru.bias_ih[0].grad(), gh = gru.bias_hh[0].grad();
  EXPECT_LT(max_abs_diff(narrow(gi, 0, 0, 8), narrow(gh, 0, 0, 8)), 1e-13);
  EXPECT_GT(max_abs_diff(narrow(gi, 0, 8, 4), narrow(gh, 0, 8, 4)), 1e-3);
}

// forward_ids gathers columns of weight_ih_l0 instead of multiplying by a one-hot matrix: the
// values are bit-identical (a one-hot row times W picks the entries exactly) and the gradients
// agree to rounding (the matmul sums zeros in another order).
TEST(LayersGradcheck, OneHotIdsPathEqualsMatmulPath) {
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    const std::size_t B = 3, T = 6, V = 7;
    Generator gen(24);
    GRU gru(GRUOptions(V, 4).num_layers(2).reset_after(reset_after), gen);
    gru.set_path(GRU::Path::Composed);
    gru.to(f64);
    std::vector<std::int64_t> ids;
    for (std::size_t i = 0; i < B * T; ++i)
      ids.push_back(static_cast<std::int64_t>((i * 5 + i / 4) % V));
    Tensor h0 = input({2, B, 4}, 25);
    Generator sg(26);
    Tensor seed = uniform({B, T, 4}, -1, 1, sg, f64);

    auto run = [&](bool use_ids) {
      gru.zero_grad();
      h0.zero_grad();
      Tensor x = reshape(one_hot(ids, V, f64), Shape{B, T, V});
      GRU::Output out = use_ids ? gru.forward_ids(ids, B, T, V, h0) : gru.forward(x, h0);
      out.output.backward(seed);
      std::vector<Tensor> res = {out.output.detach(), out.h_n.detach(), h0.grad()};
      for (auto& p : gru.parameters()) res.push_back(p.grad());
      return res;
    };
    std::vector<Tensor> a = run(true), b = run(false);
    EXPECT_EQ(a[0].to_f64(), b[0].to_f64());  // output: bit-identical
    EXPECT_EQ(a[1].to_f64(), b[1].to_f64());  // h_n
    for (std::size_t i = 2; i < a.size(); ++i) EXPECT_LT(max_abs_diff(a[i], b[i]), 1e-14) << i;
    // ...and the ids path itself passes gradcheck.
    expect_gradcheck(gru, {h0}, {"h0"}, [&] { return gru.forward_ids(ids, B, T, V, h0).output; });
  }
}

TEST(LayersGradcheck, ForwardIdsChecksItsArguments) {
  GRU gru(GRUOptions(5, 4));
  EXPECT_THROW(gru.forward_ids({0, 1}, 1, 2, 6), ShapeError);  // V ≠ input_size
  EXPECT_THROW(gru.forward_ids({0, 1, 2}, 1, 2, 5), ShapeError);
  EXPECT_THROW(gru.forward_ids({0, 5}, 1, 2, 5), IndexError);
}

// h_t and the gates are tape tensors: hooks see their gradients. Recording gates changes no
// gradient; with recording off nothing is stored.
TEST(LayersGradcheck, HooksOnStepsAndGateRecording) {
  Generator gen(27);
  GRU gru(GRUOptions(3, 4).num_layers(2), gen);
  gru.set_path(GRU::Path::Composed);  // hooks on h_t need the per-step graph
  gru.to(f64);
  Tensor x = input({2, 5, 3}, 28);

  GRU::Output out = gru(x);
  EXPECT_TRUE(gru.gate_records().empty());
  Tensor seen;
  out.steps[0][2].register_hook([&](const Tensor& g) { seen = g.detach(); });
  out.steps[1][4].retain_grad();
  sum(out.output).backward();
  ASSERT_TRUE(seen.defined());
  EXPECT_EQ(seen.shape(), (Shape{2, 4}));
  // h_T of the last layer is the output's last step: its gradient is all ones (plus nothing).
  EXPECT_EQ(out.steps[1][4].grad().to_f64(), xt::ones<double>({2, 4}));
  std::vector<Tensor> plain;
  for (auto& p : gru.parameters()) plain.push_back(p.grad()), p.zero_grad();

  gru.set_record_gates(true);
  GRU::Output rec = gru(x);
  EXPECT_EQ(rec.output.to_f64(), out.output.to_f64());
  sum(rec.output).backward();
  auto params = gru.parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    EXPECT_EQ(params[i].grad().to_f64(), plain[i].to_f64());
  ASSERT_EQ(gru.gate_records().size(), 2u);
  ASSERT_EQ(gru.gate_records()[1].size(), 5u);
  const auto& r = gru.gate_records()[1][4];
  EXPECT_EQ(r.h.to_f64(), out.steps[1][4].to_f64());
  EXPECT_EQ(r.h_prev.to_f64(), out.steps[1][3].to_f64());
  // h = (1 − z) ⊙ n + z ⊙ h_prev
  xt::xarray<double> z = r.z.to_f64();
  xt::xarray<double> h = (1.0 - z) * r.n.to_f64() + z * r.h_prev.to_f64();
  EXPECT_LT(xt::amax(xt::abs(h - r.h.to_f64()))(), 1e-15);

  // Gates of a cell are tape tensors too.
  GRUCell cell(GRUCellOptions(3, 4), gen);
  cell.to(f64);
  GRUCell::Step s = cell.forward_with_gates(input({2, 3}, 29), input({2, 4}, 30));
  s.z.retain_grad();
  sum(s.h_new).backward();
  EXPECT_TRUE(s.z.grad().defined());
}
