// Double backward: gradgradcheck (second derivatives of a create_graph backward against central
// differences of first derivatives, float64) for every primitive the GRU uses, alone and with
// broadcasting and transpose flags, then for whole GRUCell / GRU losses.
// A purely linear op has zero second derivative, so each op is combined with a product where
// needed: that makes its VJP's own recorded ops (sum_to, broadcast_to, pad, ...) matter.
#include <gtest/gtest.h>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

Tensor param(const Shape& shape, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator gen(seed);
  return uniform(shape, lo, hi, gen, DType::Float64).requires_grad_();
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

void expect_gradgrad(const char* what, const Fn& f, const std::vector<Tensor>& inputs) {
  SCOPED_TRACE(what);
  GradcheckResult r = gradgradcheck(f, inputs);
  EXPECT_TRUE(r.passed) << r.report();
  // A second derivative that is identically zero would pass trivially: make sure it is not.
  double largest = 0;
  for (const auto& c : r.inputs) largest = std::max(largest, std::fabs(c.numeric));
  EXPECT_GT(largest, 0.0) << "second derivative is zero: the check proves nothing\n" << r.report();
}

const std::vector<std::pair<Shape, Shape>> kBroadcast = {
    {{2, 3}, {2, 3}}, {{3, 1}, {1, 4}}, {{2, 3}, {3}}, {{}, {2, 3}}, {{2, 1, 3}, {4, 1}}};

}  // namespace

TEST(DoubleBackward, MatmulWithEveryTransposeFlag) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = ta ? param({4, 3}, 1) : param({3, 4}, 1);
      Tensor b = tb ? param({5, 4}, 2) : param({4, 5}, 2);
      std::string what = fmt::format("matmul ta={} tb={}", ta, tb);
      expect_gradgrad(what.c_str(),
                      [=](const std::vector<Tensor>& x) { return matmul(x[0], x[1], ta, tb); },
                      {a, b});
    }
  // Batched, as GRU's input projection: (B, T, in) @ W_ihᵀ and (B, M, K) @ (B, K, N).
  Tensor a3 = param({2, 3, 4}, 3), w = param({5, 4}, 4), b3 = param({2, 4, 5}, 5);
  expect_gradgrad("matmul 3-D @ 2-D^T",
                  [](const std::vector<Tensor>& x) { return matmul(x[0], x[1], false, true); },
                  {a3, w});
  expect_gradgrad("matmul 3-D @ 3-D",
                  [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {a3, b3});
}

TEST(DoubleBackward, BroadcastingArithmetic) {
  for (const auto& [sa, sb] : kBroadcast) {
    SCOPED_TRACE(shape_str(sa) + " with " + shape_str(sb));
    Tensor a = param(sa, 6), b = param(sb, 7);
    expect_gradgrad("mul", [](const std::vector<Tensor>& x) { return mul(x[0], x[1]); }, {a, b});
    expect_gradgrad(
        "add*sub",
        [](const std::vector<Tensor>& x) { return mul(add(x[0], x[1]), sub(x[0], x[1])); }, {a, b});
    expect_gradgrad(
        "sub*b", [](const std::vector<Tensor>& x) { return mul(sub(x[0], x[1]), x[1]); }, {a, b});
  }
}

TEST(DoubleBackward, ScalarOpsAndRsub) {
  Tensor a = param({2, 3}, 8);
  expect_gradgrad("rsub (1 - z) * z",
                  [](const std::vector<Tensor>& x) { return mul(rsub(x[0], 1.0), x[0]); }, {a});
  expect_gradgrad("add_scalar, mul_scalar",
                  [](const std::vector<Tensor>& x) {
                    Tensor y = add(mul(x[0], -1.5), 0.25);
                    return mul(y, y);
                  },
                  {a});
}

TEST(DoubleBackward, Activations) {
  Tensor a = param({3, 4}, 9, -3.0, 3.0);
  expect_gradgrad("sigmoid", [](const std::vector<Tensor>& x) { return sigmoid(x[0]); }, {a});
  expect_gradgrad("tanh", [](const std::vector<Tensor>& x) { return tanh(x[0]); }, {a});
  // Their VJPs (tanh_backward, sigmoid_backward) differentiated twice: third derivatives.
  expect_gradgrad("grad of tanh",
                  [](const std::vector<Tensor>& x) {
                    GradModeGuard on(true);
                    Tensor y = sum(tanh(x[0]));
                    return grad(y, {x[0]}, Tensor(), true, true)[0];
                  },
                  {a});
}

TEST(DoubleBackward, ShapeOps) {
  Tensor a = param({2, 3, 4}, 10), b = param({2, 3, 4}, 11);
  expect_gradgrad("narrow",
                  [](const std::vector<Tensor>& x) {
                    Tensor n = narrow(x[0], 2, 1, 2);
                    return mul(n, n);
                  },
                  {a});
  expect_gradgrad("chunk (gate split)",
                  [](const std::vector<Tensor>& x) {
                    auto g = chunk(x[0], 2, -1);  // (2, 3, 2) each
                    return mul(sigmoid(g[0]), g[1]);
                  },
                  {a});
  expect_gradgrad("reshape",
                  [](const std::vector<Tensor>& x) {
                    Tensor r = reshape(x[0], std::vector<std::ptrdiff_t>{6, -1});
                    return matmul(r, r, false, true);
                  },
                  {a});
  expect_gradgrad("concat",
                  [](const std::vector<Tensor>& x) {
                    Tensor c = concat({x[0], tanh(x[1])}, 1);  // (2, 6, 4)
                    return mul(c, c);
                  },
                  {a, b});
  expect_gradgrad("select + stack",
                  [](const std::vector<Tensor>& x) {
                    Tensor s = stack({select(x[0], 1, 0), select(x[1], 1, 2)}, 1);  // (2, 2, 4)
                    return mul(s, s);
                  },
                  {a, b});
  expect_gradgrad(
      "transpose",
      [](const std::vector<Tensor>& x) { return mul(transpose(x[0]), transpose(x[1])); }, {a, b});
  expect_gradgrad("index_select",
                  [](const std::vector<Tensor>& x) {
                    Tensor s = index_select(x[0], 2, {3, 0, 3});
                    return mul(s, s);
                  },
                  {a});
  expect_gradgrad("sum_to / broadcast_to",
                  [](const std::vector<Tensor>& x) {
                    Tensor s = sum_to(mul(x[0], x[1]), {3, 1});
                    return mul(broadcast_to(s, {2, 3, 4}), x[0]);
                  },
                  {a, b});
}

TEST(DoubleBackward, Losses) {
  Tensor logits = param({4, 5}, 12, -2.0, 2.0);
  std::vector<std::int64_t> t = {0, 4, 2, 2};
  expect_gradgrad("cross_entropy mean",
                  [&](const std::vector<Tensor>& x) { return cross_entropy(x[0], t); }, {logits});
  expect_gradgrad(
      "cross_entropy sum",
      [&](const std::vector<Tensor>& x) { return cross_entropy(x[0], t, Reduction::Sum); },
      {logits});
  expect_gradgrad("log_softmax", [](const std::vector<Tensor>& x) { return log_softmax(x[0], -1); },
                  {logits});
  expect_gradgrad("log_softmax axis 0",
                  [](const std::vector<Tensor>& x) { return log_softmax(x[0], 0); }, {logits});
  Tensor b = param({4, 5}, 13);
  expect_gradgrad("mse", [](const std::vector<Tensor>& x) { return mse(tanh(x[0]), x[1]); },
                  {logits, b});
}

TEST(DoubleBackward, WholeGRUCellLoss) {
  for (bool reset_after : {true, false}) {
    Generator gen(14);
    GRUCell cell(GRUCellOptions(3, 4).reset_after(reset_after), gen);
    cell.to(DType::Float64);
    Tensor x = param({2, 3}, 15), h = param({2, 4}, 16);
    std::string what = fmt::format("GRUCell reset_after={}", reset_after);
    // Inputs: x, h and the four parameters (gradgradcheck perturbs them in place).
    expect_gradgrad(what.c_str(),
                    [&](const std::vector<Tensor>& in) {
                      return cross_entropy(cell(in[0], in[1]), {1, 3});
                    },
                    {x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh});
  }
}

TEST(DoubleBackward, GRUOverASequence) {
  Generator gen(17);
  GRU gru(GRUOptions(3, 4), gen);
  gru.set_path(GRU::Path::Composed);  // the primitives' double backward (tests/test_gru_fused.cpp: the fused node's)
  Linear head(4, 5, gen);
  gru.to(DType::Float64);
  head.to(DType::Float64);
  Tensor x = param({2, 3, 3}, 18);  // (B, T, in)
  std::vector<Tensor> inputs = {x};
  for (const Tensor& p : gru.parameters()) inputs.push_back(p);
  expect_gradgrad(
      "GRU T=3 + Linear + cross_entropy",
      [&](const std::vector<Tensor>& in) {
        Tensor logits = head(gru(in[0]).output);  // (2, 3, 5)
        return CrossEntropyLoss()(logits, {0, 1, 2, 3, 4, 0});
      },
      inputs);
}
