// Tensor creation, metadata, printing, stability at extreme inputs and every error path.
#include <gtest/gtest.h>

#include <sstream>

#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception";
  return "";
}
}  // namespace

TEST(Tensor, Creation) {
  EXPECT_EQ(zeros({2, 3}).dtype(), DType::Float32);
  EXPECT_EQ(zeros({2, 3}, DType::Float64).numel(), 6u);
  EXPECT_DOUBLE_EQ(ones({2}).at(1), 1.0);
  EXPECT_DOUBLE_EQ(full({2, 2}, 2.5).at(3), 2.5);
  Tensor r = arange(0, 5, 2);
  ASSERT_EQ(r.shape(), Shape{3});
  EXPECT_DOUBLE_EQ(r.at(2), 4.0);
  Tensor t = tensor({{1, 2, 3}, {4, 5, 6}}, DType::Float64);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_DOUBLE_EQ(t.at(4), 5.0);
  Tensor t3 = tensor({{{1, 2}}, {{3, 4}}});
  EXPECT_EQ(t3.shape(), (Shape{2, 1, 2}));
  xt::xarray<double> raw = {{1.0, 2.0}, {3.0, 4.0}};
  Tensor fx(raw);
  EXPECT_EQ(fx.dtype(), DType::Float64);
  EXPECT_DOUBLE_EQ(fx.at(3), 4.0);
  EXPECT_DOUBLE_EQ(scalar(3.0).item(), 3.0);
}

TEST(Tensor, SeededRandomIsReproducible) {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({100}, g1), b = randn({100}, g2), c = randn({100}, g3);
  EXPECT_EQ(a.data<float>(), b.data<float>());
  EXPECT_NE(a.data<float>(), c.data<float>());
  Tensor u = uniform({1000}, -0.5, 0.5, g1, DType::Float64);
  for (double v : u.data<double>()) {
    EXPECT_GE(v, -0.5);
    EXPECT_LT(v, 0.5);
  }
  double m = mean(randn({20000}, g1, DType::Float64)).item();
  EXPECT_NEAR(m, 0.0, 0.03);
}

TEST(Tensor, PrintingLikePyTorch) {
  Tensor t = tensor({{1, -2}, {3.5, 4}}).set_name("w");
  std::string s = fmt::format("{}", t);
  EXPECT_NE(s.find("tensor([[ 1.0000, -2.0000],"), std::string::npos) << s;
  EXPECT_NE(s.find("shape=(2, 2)"), std::string::npos) << s;
  EXPECT_NE(s.find("dtype=float32"), std::string::npos) << s;
  EXPECT_NE(s.find("name='w'"), std::string::npos) << s;
  std::ostringstream os;
  os << tanh(t.requires_grad_());
  EXPECT_NE(os.str().find("op=tanh"), std::string::npos) << os.str();
  std::string big = fmt::format("{}", zeros({100, 100}));
  EXPECT_NE(big.find("..."), std::string::npos);
  EXPECT_LT(big.size(), 1000u);
  tape().clear();
}

TEST(Stability, SigmoidAtExtremes) {
  Tensor x = tensor({-1e4, -800, -50, 0, 50, 800, 1e4}, DType::Float64);
  Tensor s = sigmoid(x);
  for (std::size_t i = 0; i < x.numel(); ++i) EXPECT_TRUE(std::isfinite(s.at(i)));
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(3), 0.5);
  EXPECT_DOUBLE_EQ(s.at(6), 1.0);
  EXPECT_NEAR(s.at(2), std::exp(-50.0), 1e-30);
  Tensor xf = tensor({-1e4, 1e4}, DType::Float32).requires_grad_();
  Tensor sf = sigmoid(xf);
  sum(sf).backward();
  EXPECT_EQ(xf.grad().at(0), 0.0);
  EXPECT_EQ(xf.grad().at(1), 0.0);
}

TEST(Stability, LogSoftmaxAndCrossEntropyAtExtremes) {
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor logits = tensor({{1e4, -1e4, 0}, {-1e4, -1e4, -1e4}}, dt).requires_grad_();
    Tensor ls = log_softmax(logits, 1);
    for (std::size_t i = 0; i < ls.numel(); ++i) EXPECT_FALSE(std::isnan(ls.at(i)));
    EXPECT_DOUBLE_EQ(ls.at(0), 0.0);
    EXPECT_NEAR(ls.at(3), -std::log(3.0), 1e-6);
    tape().clear();
    Tensor loss = cross_entropy(logits, {1, 2});
    EXPECT_NEAR(loss.item(), (2e4 + std::log(3.0)) / 2, 1e-2);
    loss.backward();
    for (std::size_t i = 0; i < 6; ++i) EXPECT_TRUE(std::isfinite(logits.grad().at(i)));
    EXPECT_NEAR(logits.grad().at(0), 0.5, 1e-6);   // softmax 1 at the argmax, /N
    EXPECT_NEAR(logits.grad().at(1), -0.5, 1e-6);  // target
  }
}

TEST(Errors, ShapeMismatchNamesOpAndShapes) {
  std::string m = message_of<ShapeError>([] { add(zeros({2, 3}), zeros({4})); });
  EXPECT_NE(m.find("add"), std::string::npos) << m;
  EXPECT_NE(m.find("(2, 3)"), std::string::npos) << m;
  EXPECT_NE(m.find("(4,)"), std::string::npos) << m;
  m = message_of<ShapeError>([] { matmul(zeros({2, 3}), zeros({4, 5})); });
  EXPECT_NE(m.find("matmul"), std::string::npos) << m;
  EXPECT_NE(m.find("(2, 3)"), std::string::npos) << m;
  m = message_of<ShapeError>([] { reshape(zeros({2, 3}), Shape{4}); });
  EXPECT_NE(m.find("reshape"), std::string::npos) << m;
  m = message_of<ShapeError>([] { chunk(zeros({2, 5}), 3, 1); });
  EXPECT_NE(m.find("chunk"), std::string::npos) << m;
  m = message_of<ShapeError>([] { concat({zeros({2, 3}), zeros({3, 3})}, 1); });
  EXPECT_NE(m.find("concat"), std::string::npos) << m;
  m = message_of<ShapeError>([] { cross_entropy(zeros({2, 3}), {0}); });
  EXPECT_NE(m.find("cross_entropy"), std::string::npos) << m;
}

TEST(Errors, DTypeMixing) {
  std::string m = message_of<DTypeError>([] { mul(zeros({2}, DType::Float32), zeros({2}, DType::Float64)); });
  EXPECT_NE(m.find("mul"), std::string::npos) << m;
  EXPECT_NE(m.find("float32"), std::string::npos) << m;
  EXPECT_NE(m.find("float64"), std::string::npos) << m;
  EXPECT_THROW(zeros({2}).data<double>(), DTypeError);
}

TEST(Errors, OutOfRangeIndices) {
  std::string m = message_of<IndexError>([] { index_select(zeros({3, 2}), 0, {0, 3}); });
  EXPECT_NE(m.find("index_select"), std::string::npos) << m;
  EXPECT_NE(m.find("3"), std::string::npos) << m;
  EXPECT_THROW(index_select(zeros({3, 2}), 0, {-1}), IndexError);
  EXPECT_THROW(narrow(zeros({3, 2}), 0, 2, 2), IndexError);
  EXPECT_THROW(sum(zeros({3, 2}), {2}), IndexError);
  EXPECT_THROW(cross_entropy(zeros({2, 3}), {0, 3}), IndexError);
  EXPECT_THROW(zeros({2}).at(5), IndexError);
  xt::xarray<std::int64_t> bad = {{0, 5}};
  EXPECT_THROW(gather(zeros({1, 3}), 1, bad), IndexError);
}

TEST(Errors, AutogradMisuse) {
  EXPECT_THROW(zeros({1}).backward(), AutogradError);  // does not require grad
  Tensor x = zeros({2}).requires_grad_();
  EXPECT_THROW((x * 2.0).backward(), AutogradError);   // non-scalar, no seed
  tape().clear();
  EXPECT_THROW(zeros({2}).register_hook([](const Tensor&) {}), AutogradError);
  EXPECT_THROW(add(Tensor(), zeros({1})), ValueError);
}

TEST(Anomaly, ForwardNaNIsReportedWithOpAndIndex) {
  AnomalyGuard on;
  Tensor x = tensor({0.0, 1.0}, DType::Float64).requires_grad_();
  std::string m = message_of<AnomalyError>([&] { log(x); });
  EXPECT_NE(m.find("log"), std::string::npos) << m;
  EXPECT_NE(m.find("(2,)"), std::string::npos) << m;
  tape().clear();
}

TEST(Anomaly, ZeroOverZeroInABackwardIsReported) {
  // d/dx sqrt(x) at 0 with an upstream gradient of exactly 0: 0 · 0.5 / sqrt(0) = 0/0 = NaN.
  Tensor x = tensor({0.0, 4.0}, DType::Float64).requires_grad_();
  Tensor y = sum(sqrt(x) * 0.0);
  AnomalyGuard on;
  std::string m = message_of<AnomalyError>([&] { y.backward(); });
  EXPECT_NE(m.find("backward of 'sqrt'"), std::string::npos) << m;
  EXPECT_NE(m.find("(2,)"), std::string::npos) << m;
  tape().clear();
}

TEST(Anomaly, BackwardNaNIsReported) {
  Tensor x = tensor({0.0}, DType::Float64).requires_grad_();
  Tensor y = sqrt(x);  // forward 0 is fine; backward divides by 0 → inf
  AnomalyGuard on;
  std::string m = message_of<AnomalyError>([&] { sum(y).backward(); });
  EXPECT_NE(m.find("sqrt"), std::string::npos) << m;
  tape().clear();
}

// stack is one op: the same values as unsqueezing every part and concatenating them, on every
// axis (negative ones too), with one node on the tape instead of one per part plus a concat, and
// each part's gradient its own slice of the incoming one.
TEST(Stack, EqualsConcatOfUnsqueezedPartsOnEveryAxisWithOneNode) {
  Generator gen(7);
  for (std::ptrdiff_t axis = -3; axis <= 2; ++axis) {
    tape().clear();
    std::vector<Tensor> parts;
    for (int i = 0; i < 4; ++i) parts.push_back(randn({2, 3}, gen, DType::Float64).requires_grad_());
    const std::size_t before = tape().size();
    Tensor s = stack(parts, axis);
    EXPECT_EQ(tape().size(), before + 1) << "axis " << axis << "\n" << tape().listing();
    std::vector<Tensor> unsqueezed;
    for (const Tensor& p : parts) unsqueezed.push_back(unsqueeze(p, axis));
    Tensor expected = concat(unsqueezed, axis);
    ASSERT_EQ(s.shape(), expected.shape()) << "axis " << axis;
    for (std::size_t k = 0; k < s.numel(); ++k)
      EXPECT_EQ(s.data<double>().data()[k], expected.data<double>().data()[k]) << "axis " << axis << " element " << k;
    // A weight per element, so that every part's gradient is a different slice.
    Tensor w = randn(s.shape(), gen, DType::Float64);
    sum(mul(s, w)).backward();
    const std::size_t ax = std::size_t(axis < 0 ? axis + 3 : axis);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      Tensor slice = select(w, std::ptrdiff_t(ax), std::ptrdiff_t(i));
      ASSERT_EQ(parts[i].grad().shape(), slice.shape());
      for (std::size_t k = 0; k < slice.numel(); ++k)
        EXPECT_EQ(parts[i].grad().data<double>().data()[k], slice.data<double>().data()[k])
            << "axis " << axis << " part " << i;
    }
  }
  // Negative axes count among the result's axes, as torch.unsqueeze and torch.stack do (−1 is the
  // new last axis; an earlier version put it first).
  const std::vector<Tensor> four(4, zeros({2, 3}));
  EXPECT_EQ(unsqueeze(zeros({2, 3}), -1).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(unsqueeze(zeros({2, 3}), -3).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(stack(four, -1).shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(stack(four, -2).shape(), (Shape{2, 4, 3}));
  EXPECT_EQ(stack(four, -3).shape(), (Shape{4, 2, 3}));
  // A part used twice gets both slices; a 0-d part stacks into a vector.
  Tensor x = scalar(2.0, DType::Float64).requires_grad_();
  Tensor v = stack({x, x, x}, 0);
  EXPECT_EQ(v.shape(), Shape{3});
  sum(v).backward();
  EXPECT_EQ(x.grad().item(), 3.0);
}

TEST(Stack, ErrorsNameTheOpTheShapesAndTheDTypes) {
  std::string m = message_of<ShapeError>([] { stack({zeros({2, 3}), zeros({3, 2})}, 0); });
  EXPECT_NE(m.find("stack"), std::string::npos) << m;
  EXPECT_NE(m.find("(2, 3)"), std::string::npos) << m;
  EXPECT_NE(m.find("(3, 2)"), std::string::npos) << m;
  m = message_of<DTypeError>([] { stack({zeros({2}, DType::Float32), zeros({2}, DType::Float64)}, 0); });
  EXPECT_NE(m.find("stack"), std::string::npos) << m;
  m = message_of<ValueError>([] { stack({}, 0); });
  EXPECT_NE(m.find("stack"), std::string::npos) << m;
  m = message_of<IndexError>([] { stack({zeros({2, 3})}, 3); });
  EXPECT_NE(m.find("stack"), std::string::npos) << m;
}
