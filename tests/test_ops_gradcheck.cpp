// Every primitive op, gradient-checked in float64 against central differences, including
// broadcast shapes ((3,1)+(1,4), (2,3)+(3,), scalar with matrix), and second derivatives
// (gradgradcheck) for the ops the GRU uses.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "framework/tapegrad.hpp"

#include <xtensor/xoperation.hpp>

using namespace tapegrad;

namespace {

Tensor param(const Shape& shape, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator gen(seed);
  return uniform(shape, lo, hi, gen, DType::Float64).requires_grad_();
}

void expect_gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_EQ(r.inputs.size(), inputs.size());
  for (const auto& c : r.inputs) EXPECT_LT(c.relative_error, 1e-7) << c.name;
}

void expect_gradgradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradgradcheck(f, inputs);
  EXPECT_TRUE(r.passed) << r.report();
}

using Fn = std::function<Tensor(const Tensor&, const Tensor&)>;

struct BinaryCase {
  const char* name;
  Fn f;
  bool positive_b;  // b must stay away from 0 / negative (div, pow)
};

const std::vector<std::pair<Shape, Shape>> kBroadcastShapes = {
    {{2, 3}, {2, 3}}, {{3, 1}, {1, 4}}, {{2, 3}, {3}}, {{}, {2, 3}}, {{2, 3}, {}}, {{4, 1, 3}, {2, 1}}};

}  // namespace

TEST(OpsGradcheck, BinaryOpsWithBroadcasting) {
  std::vector<BinaryCase> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, false},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, false},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, false},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, true},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, true},
  };
  for (const auto& c : cases)
    for (const auto& [sa, sb] : kBroadcastShapes) {
      SCOPED_TRACE(std::string(c.name) + " " + shape_str(sa) + " with " + shape_str(sb));
      bool positive = c.positive_b;
      Tensor a = positive ? param(sa, 1, 0.5, 2.0) : param(sa, 1);
      Tensor b = positive ? param(sb, 2, 0.5, 2.0) : param(sb, 2);
      expect_gradcheck([&](const std::vector<Tensor>& x) { return c.f(x[0], x[1]); }, {a, b});
    }
}

TEST(OpsGradcheck, UnaryOps) {
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> cases = {
      {"neg", [](const Tensor& a) { return neg(a); }},
      {"exp", [](const Tensor& a) { return exp(a); }},
      {"log", [](const Tensor& a) { return log(add(abs(a), 0.5)); }},
      {"sqrt", [](const Tensor& a) { return sqrt(add(abs(a), 0.5)); }},
      {"abs", [](const Tensor& a) { return abs(a); }},
      {"tanh", [](const Tensor& a) { return tanh(a); }},
      {"sigmoid", [](const Tensor& a) { return sigmoid(a); }},
      {"relu", [](const Tensor& a) { return relu(a); }},
      {"pow_scalar", [](const Tensor& a) { return pow(a, 3.0); }},
      {"clamp", [](const Tensor& a) { return clamp(a, -0.5, 0.4); }},
      {"add_scalar", [](const Tensor& a) { return a + 2.5; }},
      {"mul_scalar", [](const Tensor& a) { return a * -1.5; }},
      {"rsub_scalar", [](const Tensor& a) { return 1.0 - a; }},
      {"scalar_div", [](const Tensor& a) { return 2.0 / add(abs(a), 0.5); }},
  };
  Tensor a = param({3, 4}, 3);
  // Keep away from the kinks of abs/relu/clamp, where the derivative is undefined.
  {
    NoGradGuard g;
    for (auto& v : a.data<double>())
      if (std::abs(v) < 0.05 || std::abs(v - 0.4) < 0.05 || std::abs(v + 0.5) < 0.05) v += 0.11;
  }
  for (const auto& [name, f] : cases) {
    SCOPED_TRACE(name);
    expect_gradcheck([&](const std::vector<Tensor>& x) { return f(x[0]); }, {a});
  }
}

TEST(OpsGradcheck, Where) {
  Tensor cond = tensor({{1, 0, 1}, {0, 0, 1}}, DType::Float64);
  for (const auto& [sa, sb] : std::vector<std::pair<Shape, Shape>>{{{2, 3}, {2, 3}}, {{2, 3}, {3}}, {{}, {2, 3}}}) {
    Tensor a = param(sa, 4), b = param(sb, 5);
    expect_gradcheck([&](const std::vector<Tensor>& x) { return where(cond, x[0], x[1]); }, {a, b});
  }
}

TEST(OpsGradcheck, Reductions) {
  Tensor a = param({2, 3, 4}, 6);
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0]); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return mean(x[0]); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0], {1}); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum(x[0], {0, 2}, true); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return mean(x[0], {-1}, false); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return max(x[0], 1); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return max(x[0], -1, true); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return softmax(x[0], -1); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return softmax(x[0], 0); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return log_softmax(x[0], 1); }, {a});
}

TEST(OpsGradcheck, Losses) {
  Tensor logits = param({5, 7}, 7, -3, 3);
  std::vector<std::int64_t> t = {0, 6, 3, 3, 1};
  expect_gradcheck([&](const std::vector<Tensor>& x) { return cross_entropy(x[0], t); }, {logits});
  expect_gradcheck([&](const std::vector<Tensor>& x) { return cross_entropy(x[0], t, Reduction::Sum); }, {logits});
  expect_gradcheck([&](const std::vector<Tensor>& x) { return cross_entropy(x[0], t, Reduction::None); }, {logits});
  Tensor a = param({4, 3}, 8), b = param({4, 3}, 9);
  expect_gradcheck([](const std::vector<Tensor>& x) { return mse(x[0], x[1]); }, {a, b});
}

TEST(OpsGradcheck, Matmul) {
  Tensor a = param({3, 4}, 10), b = param({4, 5}, 11);
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {a, b});
  Tensor at = param({4, 3}, 12), bt = param({5, 4}, 13);
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1], true, false); }, {at, b});
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1], false, true); }, {a, bt});
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1], true, true); }, {at, bt});
  // Batched: (B, M, K) @ (K, N) and (B, M, K) @ (B, K, N), with transpose flags.
  Tensor a3 = param({2, 3, 4}, 14), b3 = param({2, 4, 5}, 15), b3t = param({2, 5, 4}, 16);
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {a3, b});
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1], false, true); }, {a3, bt});
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {a3, b3});
  expect_gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1], false, true); }, {a3, b3t});
}

TEST(OpsGradcheck, Linear) {
  // x Wᵀ + b in one op: all three gradients, without a bias, a 3-D x, and second derivatives.
  Tensor x = param({3, 4}, 40), w = param({5, 4}, 41), b = param({5}, 42);
  expect_gradcheck([](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); }, {x, w, b});
  expect_gradcheck([](const std::vector<Tensor>& t) { return linear(t[0], t[1]); }, {x, w});
  Tensor x3 = param({2, 3, 4}, 43);
  expect_gradcheck([](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); }, {x3, w, b});
  expect_gradgradcheck(
      [](const std::vector<Tensor>& t) { return sum(tanh(linear(t[0], t[1], t[2])) * t[0].sum()); },
      {x, w, b});
}

TEST(OpsGradcheck, LinearIsMatmulPlusBiasAndNamesItselfInErrors) {
  // Forward and every gradient bit-identical to matmul(x, W, false, true) + b at the sizes the
  // GRU uses (one rounding of each sum; the inner dimension is not split into blocks here).
  struct Size {
    std::size_t n, in, out;
  };
  for (DType dtype : {DType::Float32, DType::Float64})
    for (Size z : {Size{1, 3, 2}, Size{32, 128, 384}, Size{64, 128, 384}, Size{7, 65, 128}}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << z.n << "x" << z.in << " -> " << z.out);
      Generator gen(z.n + z.in);
      Tensor x = randn({z.n, z.in}, gen, dtype).requires_grad_();
      Tensor w = randn({z.out, z.in}, gen, dtype).requires_grad_();
      Tensor b = randn({z.out}, gen, dtype).requires_grad_();
      const Tensor seed = randn({z.n, z.out}, gen, dtype);
      Tensor y = linear(x, w, b);
      EXPECT_STREQ(y.op(), "linear");
      backward(y, seed);
      const Tensor gx = x.grad(), gw = w.grad(), gb = b.grad();
      x.zero_grad(), w.zero_grad(), b.zero_grad();
      Tensor ref = matmul(x, w, false, true) + b;
      backward(ref, seed);
      auto same = [](const Tensor& p, const Tensor& q) {
        return p.shape() == q.shape() && bool(xt::all(xt::equal(p.to_f64(), q.to_f64())));
      };
      EXPECT_TRUE(same(y, ref));
      EXPECT_TRUE(same(gx, x.grad()));
      EXPECT_TRUE(same(gw, w.grad()));
      EXPECT_TRUE(same(gb, b.grad()));
    }
  Tensor x = ones({2, 3}, DType::Float64), w = ones({4, 3}, DType::Float64);
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message([&] { linear(x, w, ones({3}, DType::Float64)); }).find("linear: expects x (N, in)"), std::string::npos);
  EXPECT_NE(message([&] { linear(x, ones({4, 2}, DType::Float64), ones({4}, DType::Float64)); }).find("weight (4, 2)"), std::string::npos);
  EXPECT_NE(message([&] { linear(x, w, ones({4}, DType::Float32)); }).find("linear"), std::string::npos);
  EXPECT_NE(message([&] { linear(Tensor(), w, ones({4}, DType::Float64)); }).find("linear"), std::string::npos);
  EXPECT_NE(message([&] { linear(x, Tensor()); }).find("linear"), std::string::npos);
  EXPECT_NO_THROW(linear(x, w, ones({4}, DType::Float64)));
  EXPECT_EQ(linear(zeros({0, 3}, DType::Float64), w, ones({4}, DType::Float64)).shape(), (Shape{0, 4}));
  Tensor empty_in = linear(zeros({2, 0}, DType::Float64), zeros({4, 0}, DType::Float64), full({4}, 2.0, DType::Float64));
  EXPECT_EQ(empty_in.at(7), 2.0);  // no inner dimension: every row is the bias
}

TEST(OpsGradcheck, ShapeOps) {
  Tensor a = param({2, 3, 4}, 17);
  expect_gradcheck([](const std::vector<Tensor>& x) { return reshape(x[0], std::vector<std::ptrdiff_t>{4, -1}); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return transpose(x[0]); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return permute(x[0], {2, 0, 1}); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return narrow(x[0], 1, 1, 2); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return select(x[0], 2, 3); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return slice_rows(x[0], 1, 2); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) {
    auto parts = chunk(x[0], 2, -1);  // the GRU's gate split, along the last axis
    return add(mul(parts[0], parts[1]), parts[0]);
  }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) {
    auto parts = split(x[0], {1, 2}, 1);
    return concat({parts[1], tanh(parts[0]), x[0]}, 1);
  }, {a});
  Tensor b = param({2, 3, 4}, 18);
  expect_gradcheck([](const std::vector<Tensor>& x) { return stack({x[0], x[1]}, 1); }, {a, b});
  expect_gradcheck([](const std::vector<Tensor>& x) { return index_select(x[0], 0, {1, 0, 1}); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return index_select(x[0], 2, {3, 3, 0}); }, {a});
  xt::xarray<std::int64_t> idx = {{{0, 2}, {1, 1}, {2, 0}}, {{1, 0}, {0, 0}, {2, 2}}};
  Tensor c = param({2, 3, 3}, 19);
  expect_gradcheck([&](const std::vector<Tensor>& x) { return gather(x[0], 2, idx); }, {c});
  Tensor g = param({2, 3, 2}, 20);
  expect_gradcheck([&](const std::vector<Tensor>& x) { return scatter_add({2, 3, 3}, 2, idx, x[0]); }, {g});
  expect_gradcheck([](const std::vector<Tensor>& x) { return pad_narrow(x[0], 1, 1, 5); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return index_add({4, 3, 4}, 0, {3, 1}, x[0]); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return broadcast_to(x[0], {5, 2, 3, 4}); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& x) { return sum_to(x[0], {3, 1}); }, {a});
}

TEST(OpsGradcheck, CastSendsTheGradientBackInTheInputDtype) {
  // A float32 round trip loses digits, so central differences cannot check it: check directly.
  Tensor a = param({2, 3}, 30);
  Tensor y = cast(a, DType::Float32);
  EXPECT_EQ(y.dtype(), DType::Float32);
  sum(mul(y, 3.0)).backward();
  ASSERT_EQ(a.grad().dtype(), DType::Float64);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(a.grad().at(i), 3.0);
}

TEST(OpsGradcheck, SecondDerivativesOfGruPrimitives) {
  Tensor a = param({2, 3}, 21), b = param({3, 4}, 22), c = param({2, 4}, 23);
  expect_gradgradcheck([](const std::vector<Tensor>& x) { return sum(tanh(matmul(x[0], x[1]))); }, {a, b});
  expect_gradgradcheck([](const std::vector<Tensor>& x) { return sum(sigmoid(matmul(x[0], x[1])) * x[2]); }, {a, b, c});
  expect_gradgradcheck([](const std::vector<Tensor>& x) {
    Tensor z = sigmoid(x[0]);
    return sum((1.0 - z) * tanh(x[1]) + z * x[1] * x[1]);
  }, {a, param({2, 3}, 24)});
  expect_gradgradcheck([](const std::vector<Tensor>& x) {
    auto parts = chunk(matmul(x[0], x[1]), 2, -1);
    return sum(mul(parts[0], exp(parts[1])));
  }, {a, b});
  expect_gradgradcheck([](const std::vector<Tensor>& x) { return cross_entropy(matmul(x[0], x[1]), {1, 3}); }, {a, b});
  expect_gradgradcheck([](const std::vector<Tensor>& x) { return sum(log_softmax(x[0], 1) * x[0]); }, {a});
  expect_gradgradcheck([](const std::vector<Tensor>& x) { return sum(div(x[0], add(x[1] * x[1], 1.0))); }, {a, param({3}, 25)});
}

TEST(OpsGradcheck, JacobianOfSmallFunction) {
  Tensor x = param({3}, 26);
  JacobianCheck j = jacobian_check([](const std::vector<Tensor>& in) { return softmax(in[0] * 2.0, 0); }, {x});
  EXPECT_TRUE(j.passed) << j.max_abs_error;
  EXPECT_EQ(j.analytic.shape()[0], 3u);
  EXPECT_EQ(j.analytic.shape()[1], 3u);
  // Softmax Jacobian rows sum to zero.
  for (std::size_t r = 0; r < 3; ++r)
    EXPECT_NEAR(j.analytic(r, 0) + j.analytic(r, 1) + j.analytic(r, 2), 0.0, 1e-12);
}

TEST(OpsGradcheck, DetectsAWrongGradient) {
  // A function whose "gradient" is wrong: a hook doubles the gradient into x.
  Tensor x = param({4}, 27);
  auto r = gradcheck([](const std::vector<Tensor>& in) {
    Tensor y = tanh(in[0]);
    if (y.requires_grad()) y.register_hook([](const Tensor& g) { return mul(g, 2.0); });
    return sum(y);
  }, {x});
  EXPECT_FALSE(r.passed);
  EXPECT_GT(r.inputs[0].relative_error, 0.1);
  EXPECT_NE(r.report().find("FAIL"), std::string::npos);
}

TEST(OpsGradcheck, Float32WarnsAndFastModeWorks) {
  Generator gen(3);
  Tensor x = uniform({3, 3}, -1, 1, gen, DType::Float32).requires_grad_();
  auto r = gradcheck([](const std::vector<Tensor>& in) { return sum(tanh(in[0])); }, {x});
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings[0].find("float32"), std::string::npos);
  EXPECT_TRUE(r.passed) << r.report();
  GradcheckOptions fast;
  fast.fast = true;
  Tensor big = param({50, 40}, 28);
  Tensor w = param({40, 30}, 29);
  auto rf = gradcheck([](const std::vector<Tensor>& in) { return sum(tanh(matmul(in[0], in[1]))); }, {big, w}, fast);
  EXPECT_TRUE(rf.passed) << rf.report();
}
