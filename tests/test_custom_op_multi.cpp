// Custom ops with several outputs (framework/custom_op.hpp, the CustomForwardMulti overload):
// each output gets its own gradient in the backward, gradcheck covers every output through
// flatten_outputs, wrong backwards are caught, and errors name the op and the input.
#include <gtest/gtest.h>

#include "framework/custom_op.hpp"
#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {

Tensor param(const Shape& shape, std::uint64_t seed, const char* name) {
  Generator gen(seed);
  return uniform(shape, -1.5, 1.5, gen, DType::Float64).requires_grad_().set_name(name);
}

/// Two outputs of (x, w): p = x ⊙ w, q = tanh(x) + w. `bug` drops q's contribution to dL/dx.
std::vector<Tensor> two_outputs(const Tensor& x, const Tensor& w, bool bug = false) {
  return apply_custom(
      "two_outputs", {x, w},
      [](CustomContext& ctx, const std::vector<Tensor>& in) -> std::vector<Tensor> {
        ctx.save_for_backward({in[0], in[1]});
        return {in[0] * in[1], tanh(in[0]) + in[1]};
      },
      [bug](CustomContext& ctx, const std::vector<Tensor>& g) -> std::vector<Tensor> {
        const Tensor &x = ctx.saved_tensors()[0], &w = ctx.saved_tensors()[1];
        Tensor t = tanh(x);
        Tensor dx = g[0] * w;
        if (!bug) dx = dx + g[1] * (1.0 - t * t);
        return {dx, g[0] * x + g[1]};
      });
}

/// An LSTM cell (gate rows i, f, g, o) with a hand-written backward: the case this API exists for.
std::vector<Tensor> lstm_cell(const std::vector<Tensor>& in) {
  return apply_custom(
      "lstm_cell", in,
      [](CustomContext& ctx, const std::vector<Tensor>& v) -> std::vector<Tensor> {
        const Tensor &x = v[0], &h = v[1], &c = v[2];
        auto gates = chunk(matmul(x, v[3], false, true) + v[5] + matmul(h, v[4], false, true) + v[6],
                           4, -1);
        Tensor i = sigmoid(gates[0]), f = sigmoid(gates[1]), g = tanh(gates[2]),
               o = sigmoid(gates[3]);
        Tensor c2 = f * c + i * g, tc = tanh(c2);
        ctx.save_for_backward({x, h, c, v[3], v[4], i, f, g, o, tc});
        return {o * tc, c2};
      },
      [](CustomContext& ctx, const std::vector<Tensor>& go) -> std::vector<Tensor> {
        const auto& s = ctx.saved_tensors();
        const Tensor &x = s[0], &h = s[1], &c = s[2], &W_ih = s[3], &W_hh = s[4];
        const Tensor &i = s[5], &f = s[6], &g = s[7], &o = s[8], &tc = s[9];
        Tensor dc = go[1] + go[0] * o * (1.0 - tc * tc);
        Tensor di = dc * g * i * (1.0 - i), df = dc * c * f * (1.0 - f),
               dg = dc * i * (1.0 - g * g), dgo = go[0] * tc * o * (1.0 - o);
        Tensor da = concat({di, df, dg, dgo}, -1);  // (B, 4H)
        Tensor db = sum(da, {0});
        return {matmul(da, W_ih), matmul(da, W_hh), dc * f, matmul(da, x, true, false),
                matmul(da, h, true, false), db, db};
      });
}

TEST(CustomOpMulti, ValuesAndGradientsOfEachOutput) {
  Tensor x = param({2, 3}, 1, "x"), w = param({2, 3}, 2, "w");
  auto out = two_outputs(x, w);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].shape(), (Shape{2, 3}));
  for (std::size_t k = 0; k < 6; ++k) {
    EXPECT_DOUBLE_EQ(out[0].at(k), x.at(k) * w.at(k));
    EXPECT_DOUBLE_EQ(out[1].at(k), std::tanh(x.at(k)) + w.at(k));
  }
  // Only the second output used: the first one's gradient is zero, not missing.
  sum(out[1]).backward();
  for (std::size_t k = 0; k < 6; ++k) {
    double t = std::tanh(x.at(k));
    EXPECT_NEAR(x.grad().at(k), 1 - t * t, 1e-15);
    EXPECT_DOUBLE_EQ(w.grad().at(k), 1.0);
  }
}

TEST(CustomOpMulti, GradcheckThroughFlattenOutputsCatchesAWrongSecondOutput) {
  Tensor x = param({2, 3}, 3, "x"), w = param({2, 3}, 4, "w");
  auto good = gradcheck(
      [](const std::vector<Tensor>& v) { return flatten_outputs(two_outputs(v[0], v[1])); },
      {x, w});
  EXPECT_TRUE(good.passed) << good.report();
  auto bad = gradcheck(
      [](const std::vector<Tensor>& v) { return flatten_outputs(two_outputs(v[0], v[1], true)); },
      {x, w});
  EXPECT_FALSE(bad.passed) << bad.report();
  EXPECT_FALSE(bad.inputs.at(0).passed);  // dL/dx is the wrong one
  EXPECT_TRUE(bad.inputs.at(1).passed);
}

TEST(CustomOpMulti, LstmCellBackwardAsOneOpMatchesTheTapeAndGradcheck) {
  const std::size_t B = 2, I = 3, H = 4;
  std::vector<Tensor> in = {param({B, I}, 5, "x"),     param({B, H}, 6, "h"),
                            param({B, H}, 7, "c"),     param({4 * H, I}, 8, "weight_ih"),
                            param({4 * H, H}, 9, "weight_hh"), param({4 * H}, 10, "bias_ih"),
                            param({4 * H}, 11, "bias_hh")};
  auto r = gradcheck([](const std::vector<Tensor>& v) { return flatten_outputs(lstm_cell(v)); }, in);
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(CustomOpMulti, ErrorsNameTheOpAndTheInput) {
  Tensor x = param({2, 3}, 12, "x"), w = param({2, 3}, 13, "w");
  auto out = apply_custom(
      "bad_shape2", {x, w},
      [](CustomContext&, const std::vector<Tensor>& in) -> std::vector<Tensor> {
        return {in[0] * in[1], in[0] + in[1]};
      },
      [](CustomContext&, const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {g[0], sum(g[1], {0})};
      });
  try {
    sum(out[0] + out[1]).backward();
    FAIL() << "expected an AutogradError";
  } catch (const AutogradError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("custom op 'bad_shape2'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("input #1 'w'"), std::string::npos) << msg;
  }
  EXPECT_THROW(apply_custom(
                   "mixed", {x},
                   [](CustomContext&, const std::vector<Tensor>& in) -> std::vector<Tensor> {
                     return {in[0], in[0].to(DType::Float32)};
                   },
                   [](CustomContext&, const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     return {g[0]};
                   }),
               ValueError);
}

TEST(CustomOpMulti, SingleOutputApiUnchanged) {
  Tensor x = param({3}, 14, "x");
  Tensor y = apply_custom(
      "double", {x}, [](CustomContext&, const std::vector<Tensor>& in) { return in[0] * 2.0; },
      [](CustomContext&, const Tensor& g) -> std::vector<Tensor> { return {g * 2.0}; });
  sum(y).backward();
  for (std::size_t k = 0; k < 3; ++k) EXPECT_DOUBLE_EQ(x.grad().at(k), 2.0);
}

}  // namespace
