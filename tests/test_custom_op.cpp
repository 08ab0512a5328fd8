// Custom ops (framework/custom_op.hpp): recorded like a built-in, validated by gradcheck,
// wrong backwards caught (gradcheck names the worst element) or rejected (errors name the op).
#include <gtest/gtest.h>

#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmath.hpp>

#include "framework/custom_op.hpp"
#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {

Tensor param(const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  return uniform(shape, -3.0, 3.0, gen, DType::Float64).requires_grad_();
}

/// softplus(x) = log(1 + eˣ), stable form max(x, 0) + log1p(e^−|x|); d/dx = σ(x).
/// The forward works on xtensor values; `bug` scales the gradient of element 5 (flat) by 1.5.
Tensor softplus(const Tensor& x, bool bug = false) {
  return apply_custom(
      bug ? "softplus_buggy" : "softplus", {x},
      [](CustomContext& ctx, const std::vector<Tensor>& in) {
        ctx.save_for_backward({in[0]});
        const auto& v = in[0].data<double>();
        return Tensor(xt::xarray<double>(xt::maximum(v, 0.0) + xt::log1p(xt::exp(-xt::abs(v)))));
      },
      [bug](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
        Tensor dx = g * sigmoid(ctx.saved_tensors()[0]);  // tapegrad ops: differentiable again
        if (bug) {
          Tensor scale = ones_like(dx);
          scale.data<double>().data()[5] = 1.5;
          dx = dx * scale;
        }
        return {dx};
      });
}

/// The same op as a struct (torch.autograd.Function style), saving its output: y·(1 − y)
/// is the logistic's derivative.
struct Logistic : CustomFunction<Logistic> {
  static constexpr const char* name = "logistic";
  static Tensor forward(CustomContext& ctx, const std::vector<Tensor>& in) {
    Tensor y = 1.0 / (1.0 + exp(-in[0]));
    ctx.save_for_backward({y});
    return y;
  }
  static std::vector<Tensor> backward(CustomContext& ctx, const Tensor& g) {
    const Tensor& y = ctx.saved_tensors()[0];
    return {g * y * (1.0 - y)};
  }
};

}  // namespace

TEST(CustomOp, SoftplusPassesFloat64Gradcheck) {
  Tensor x = param({3, 4}, 1);
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return softplus(in[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_LT(r.max_relative_error, 1e-8);
}

TEST(CustomOp, IsRecordedLikeABuiltIn) {
  Tensor x = param({2, 3}, 2);
  Tensor y = softplus(x);
  EXPECT_STREQ(y.op(), "softplus");
  EXPECT_FALSE(y.is_leaf());
  EXPECT_NE(tape().listing().find("softplus"), std::string::npos) << tape().listing();
  sum(y * 2.0).backward();
  for (std::size_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(x.grad().at(i), 2.0 / (1.0 + std::exp(-x.at(i))), 1e-14);
  // Without an input that requires grad, nothing is recorded.
  std::size_t before = tape().size();
  Tensor c = softplus(x.detach());
  EXPECT_EQ(tape().size(), before);
  EXPECT_STREQ(c.op(), "softplus");
}

TEST(CustomOp, StructStyleAndDoubleBackward) {
  Tensor x = param({2, 3}, 3);
  auto f = [](const std::vector<Tensor>& in) { return Logistic::apply({in[0]}); };
  EXPECT_TRUE(gradcheck(f, {x}).passed);
  // Backwards written with tapegrad ops on saved inputs/outputs differentiate again.
  GradcheckResult rr = gradgradcheck(f, {x});
  EXPECT_TRUE(rr.passed) << rr.report();
  GradcheckResult rs =
      gradgradcheck([](const std::vector<Tensor>& in) { return softplus(in[0]); }, {x});
  EXPECT_TRUE(rs.passed) << rs.report();
}

TEST(CustomOp, BuggyBackwardFailsGradcheckNamingTheWorstElement) {
  Tensor x = param({3, 4}, 4);
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& in) { return softplus(in[0], true); }, {x});
  ASSERT_FALSE(r.passed);
  ASSERT_EQ(r.inputs.size(), 1u);
  // Flat element 5 of a (3, 4) tensor is (1, 1): the only wrong one.
  EXPECT_EQ(r.inputs[0].worst_index, (std::vector<std::size_t>{1, 1}));
  EXPECT_NEAR(r.inputs[0].analytic / r.inputs[0].numeric, 1.5, 1e-6);
  std::string report = r.report();
  EXPECT_NE(report.find("(1, 1)"), std::string::npos) << report;
  EXPECT_NE(report.find("FAIL"), std::string::npos) << report;
}

TEST(CustomOp, WrongGradientShapeNamesTheOp) {
  Tensor x = param({2, 3}, 5);
  Tensor y = apply_custom(
      "bad_shape", {x}, [](CustomContext&, const std::vector<Tensor>& in) { return in[0] * 2.0; },
      [](CustomContext&, const Tensor& g) -> std::vector<Tensor> { return {sum(g, {0})}; });
  try {
    sum(y).backward();
    FAIL() << "expected an AutogradError";
  } catch (const AutogradError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("custom op 'bad_shape'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(3,)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 3)"), std::string::npos) << msg;
  }
}

TEST(CustomOp, WrongGradientCountAndDtypeNameTheOp) {
  Tensor a = param({2}, 6), b = param({2}, 7);
  Tensor y = apply_custom(
      "bad_count", {a, b},
      [](CustomContext&, const std::vector<Tensor>& in) { return in[0] * in[1]; },
      [](CustomContext&, const Tensor& g) -> std::vector<Tensor> { return {g}; });
  EXPECT_THROW(
      {
        try {
          sum(y).backward();
        } catch (const AutogradError& e) {
          EXPECT_NE(std::string(e.what()).find(
                        "custom op 'bad_count': backward returned 1 gradient(s) for 2"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      AutogradError);
  Tensor z = apply_custom(
      "bad_dtype", {a}, [](CustomContext&, const std::vector<Tensor>& in) { return in[0] * 1.0; },
      [](CustomContext&, const Tensor& g) -> std::vector<Tensor> {
        return {cast(g, DType::Float32)};
      });
  try {
    sum(z).backward();
    FAIL() << "expected an AutogradError";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("custom op 'bad_dtype'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("float32"), std::string::npos) << e.what();
  }
}

TEST(CustomOp, ReturningAnInputDoesNotRelabelIt) {
  Tensor x = param({3}, 8);
  Tensor y = apply_custom(
      "identity", {x}, [](CustomContext&, const std::vector<Tensor>& in) { return in[0]; },
      [](CustomContext&, const Tensor& g) -> std::vector<Tensor> { return {g}; });
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(y.is_same(x));
  sum(y).backward();
  EXPECT_DOUBLE_EQ(x.grad().at(0), 1.0);
}

TEST(CustomOp, UndefinedGradientMeansNone) {
  Tensor a = param({2}, 9), b = param({2}, 10);
  Tensor y = apply_custom(
      "only_a", {a, b}, [](CustomContext&, const std::vector<Tensor>& in) { return in[0] + in[1]; },
      [](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
        EXPECT_TRUE(ctx.needs_input_grad(0));
        return {g, Tensor()};
      });
  sum(y).backward();
  EXPECT_DOUBLE_EQ(a.grad().at(1), 1.0);
  EXPECT_FALSE(b.grad().defined());
}
