// Index ops (argmax, argmin, topk, multinomial, masked_fill), select with negative indices, and
// mse refusing a broadcast between prediction and target; transpose (permute of the last two
// axes) equal to xtensor's.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "framework/gradcheck.hpp"
#include "framework/tapegrad.hpp"

#include <xtensor/xmanipulation.hpp>

using namespace tapegrad;

TEST(OpsIndex, ArgmaxAndArgminAlongAnyAxis) {
  Tensor a = tensor({{1.0, 5.0, 5.0}, {7.0, -2.0, 3.0}}, DType::Float64);
  IndexTensor m = argmax(a);  // last axis
  EXPECT_EQ(m.shape, (Shape{2}));
  EXPECT_EQ(m.values, (std::vector<std::int64_t>{1, 0}));  // the first of two equal maxima
  EXPECT_EQ(argmax(a, 0).values, (std::vector<std::int64_t>{1, 0, 0}));
  EXPECT_EQ(argmin(a, -1).values, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(argmax(a, 1, /*keepdims=*/true).shape, (Shape{2, 1}));
  Tensor n = tensor({1.0, NAN, 3.0}, DType::Float64);
  EXPECT_EQ(argmax(n).values[0], 1);  // NaN counts as the largest, as in PyTorch
  // Usable as class targets.
  Tensor logits = tensor({{0.1, 2.0}, {3.0, 0.5}});
  EXPECT_NEAR(cross_entropy(logits, argmax(logits)).item(),
              cross_entropy(logits, std::vector<std::int64_t>{1, 0}).item(), 0);
  EXPECT_THROW(argmax(scalar(1.0)), ShapeError);
  EXPECT_THROW(argmax(zeros({2, 0}), 1), ShapeError);
  EXPECT_THROW(argmax(a, 2), IndexError);
}

TEST(OpsIndex, TopkValuesIndicesAndGradient) {
  Tensor a = tensor({{0.3, 0.9, -1.0, 0.5}, {2.0, 1.0, 4.0, 3.0}}, DType::Float64).requires_grad_();
  TopK t = topk(a, 2);
  EXPECT_EQ(t.indices.values, (std::vector<std::int64_t>{1, 3, 2, 3}));
  EXPECT_EQ(t.values.shape(), (Shape{2, 2}));
  EXPECT_DOUBLE_EQ(t.values.at(0), 0.9);
  EXPECT_DOUBLE_EQ(t.values.at(3), 3.0);
  TopK low = topk(a, 1, 1, /*largest=*/false);
  EXPECT_EQ(low.indices.values, (std::vector<std::int64_t>{2, 1}));
  auto r = gradcheck([](const std::vector<Tensor>& in) { return sum(mul(topk(in[0], 3, 0 - 1).values, 1.5)); },
                     {a});
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_THROW(topk(a, 5), IndexError);
}

TEST(OpsIndex, MultinomialFrequenciesAndErrors) {
  Generator gen(11);
  Tensor p = tensor({0.1, 0.0, 0.6, 0.3}, DType::Float64);
  IndexTensor s = multinomial(p, 20000, /*replacement=*/true, gen);
  std::vector<double> freq(4, 0);
  for (auto v : s.values) freq[std::size_t(v)] += 1.0 / 20000;
  EXPECT_NEAR(freq[0], 0.1, 0.01);
  EXPECT_EQ(freq[1], 0.0);  // a zero probability is never drawn
  EXPECT_NEAR(freq[2], 0.6, 0.015);
  EXPECT_NEAR(freq[3], 0.3, 0.015);
  IndexTensor rows = multinomial(tensor({{1.0, 1.0, 1.0}, {0.5, 0.2, 2.0}}), 3, /*replacement=*/false, gen);
  EXPECT_EQ(rows.shape, (Shape{2, 3}));
  EXPECT_EQ(std::set<std::int64_t>(rows.values.begin(), rows.values.begin() + 3).size(), 3u);
  Generator a(5), b(5);
  EXPECT_EQ(multinomial(p, 50, true, a).values, multinomial(p, 50, true, b).values);  // seeded
  EXPECT_THROW(multinomial(tensor({{0.0, 0.0}}), 1, true, gen), ValueError);
  EXPECT_THROW(multinomial(tensor({1.0, -0.5}), 1, true, gen), ValueError);
  EXPECT_THROW(multinomial(tensor({1.0, NAN}), 1, true, gen), ValueError);
  EXPECT_THROW(multinomial(tensor({1.0, 0.0}), 2, false, gen), ValueError);
  EXPECT_THROW(multinomial(zeros({2, 2, 2}), 1, true, gen), ShapeError);
}

TEST(OpsIndex, MaskedFillValuesGradientAndShapes) {
  Tensor a = tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, DType::Float64).requires_grad_();
  Tensor mask = tensor({0.0, 1.0, 0.0}, DType::Float64);  // broadcast over rows
  Tensor out = masked_fill(a, mask, -1e9);
  EXPECT_EQ(out.at(1), -1e9);
  EXPECT_EQ(out.at(3), 4.0);
  sum(out).backward();
  EXPECT_EQ(a.grad().at(1), 0.0);  // no gradient where filled
  EXPECT_EQ(a.grad().at(0), 1.0);
  EXPECT_THROW(masked_fill(a, zeros({3, 3}, DType::Float64), 0), ShapeError);
  EXPECT_THROW(masked_fill(a, zeros({4}, DType::Float64), 0), ShapeError);
}

TEST(OpsIndex, SelectTakesNegativeIndices) {
  Tensor a = arange(0, 12, 1, DType::Float64).reshape({3, 4});
  EXPECT_EQ(select(a, 1, -1).at(2), 11.0);  // a[:, -1]
  EXPECT_EQ(select(a, 0, -3).at(0), 0.0);
  EXPECT_THROW(select(a, 0, -4), IndexError);
  EXPECT_THROW(select(a, 0, 3), IndexError);
}

TEST(OpsIndex, MseRefusesABroadcastBetweenPredictionAndTarget) {
  try {
    mse(zeros({8, 1}), zeros({8}));
    FAIL() << "no error";
  } catch (const ShapeError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("mse"), std::string::npos) << m;
    EXPECT_NE(m.find("(8, 1)"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(mse(zeros({8}), ones({8})));
}

TEST(GradcheckReport, FastModeNamesADirectionNotAnElement) {
  Tensor x = randn({3, 4}, DType::Float64).requires_grad_();
  GradcheckOptions opt;
  opt.fast = true;
  auto r = gradcheck([](const std::vector<Tensor>& in) { return sum(tanh(in[0])); }, {x}, opt);
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_NE(r.report().find("direction #"), std::string::npos) << r.report();
  auto full = gradcheck([](const std::vector<Tensor>& in) { return sum(tanh(in[0])); }, {x});
  EXPECT_EQ(full.report().find("direction #"), std::string::npos) << full.report();
}

// permute's blocked copy for a swap of the last two axes (ops_shape.cpp) against xtensor's own
// transpose: matrices smaller and larger than its 32 × 32 tiles, odd sizes, batches, empty ones,
// and both orders of its inner loop (cols with fewer trailing zero bits than rows, or more).
TEST(OpsShape, TransposeOfTheLastTwoAxesEqualsXtensor) {
  const std::vector<Shape> shapes = {{1, 1},   {1, 7},      {7, 1},        {33, 65},
                                     {192, 27}, {64, 64},    {3, 31, 97},   {2, 2, 5, 40},
                                     {0, 5},    {4, 0, 3},   {48, 256},     {5, 24, 64},
                                     {256, 48}, {2, 40, 96}};
  for (DType dtype : {DType::Float32, DType::Float64})
    for (const Shape& shape : shapes) {
      SCOPED_TRACE(shape_str(shape) + " " + dtype_name(dtype));
      Generator gen(shape.size() + shape.back());
      const Tensor a = randn(shape, gen, dtype);
      std::vector<std::size_t> dims(shape.size());
      for (std::size_t i = 0; i < dims.size(); ++i) dims[i] = i;
      std::swap(dims[dims.size() - 2], dims[dims.size() - 1]);
      const Tensor t = transpose(a);
      const Tensor want = dtype == DType::Float32
                              ? Tensor(xt::xarray<float>(xt::transpose(a.data<float>(), dims)))
                              : Tensor(xt::xarray<double>(xt::transpose(a.data<double>(), dims)));
      ASSERT_EQ(t.shape(), want.shape());
      for (std::size_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.at(i), want.at(i)) << "element " << i;
      const Tensor back = transpose(t);  // and back again
      for (std::size_t i = 0; i < a.numel(); ++i) ASSERT_EQ(back.at(i), a.at(i)) << "element " << i;
    }
}
