// The ops' conventions against PyTorch's (tests/fixtures/op_conventions_f64.npz, made by
// tools/make_fixtures.py, fx_op_conventions): negative axes, keepdims, broadcasting, and the
// gradient where a formula gives 0·∞ or has a kink (relu, abs and clamp at their edges, sqrt and
// pow at 0). gradcheck (test_ops_gradcheck.cpp) shows each VJP is the derivative of its own
// forward; these cases show that the forward and that choice are PyTorch's. Each case is the
// fixture script's case of the same name, on the same inputs: input i is ramp(shape, base, step)
// = base + step·k in row-major order; every gradient is of sum(y ⊙ w), w_k = cos(k).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fixture_support.hpp"
#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {

struct Input {
  Shape shape;
  double base, step;
};

struct Case {
  std::string name;
  std::vector<Input> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> op;
};

Tensor ramp(const Input& in) {
  std::size_t n = 1;
  for (std::size_t d : in.shape) n *= d;
  std::vector<double> v(n);
  for (std::size_t k = 0; k < n; ++k) v[k] = in.base + in.step * double(k);
  return from_vector(v, in.shape, DType::Float64).requires_grad_();
}

/// Equal to 1e-12 relative (of max(1, |expected|)); an infinity or NaN must be the same.
void expect_matches(const Tensor& actual, const Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const double* a = actual.data<double>().data();
  const double* e = expected.data<double>().data();
  for (std::size_t i = 0; i < actual.numel(); ++i) {
    if (std::isnan(e[i]) || std::isinf(e[i])) {
      EXPECT_TRUE(std::isnan(e[i]) ? std::isnan(a[i]) : a[i] == e[i])
          << what << "[" << i << "]: " << a[i] << " vs torch " << e[i];
      continue;
    }
    EXPECT_LE(std::fabs(a[i] - e[i]), 1e-12 * std::max(1.0, std::fabs(e[i])))
        << what << "[" << i << "]: " << a[i] << " vs torch " << e[i];
  }
}

Tensor cond_gt0(const Tensor& x) { return gt(x, 0.0); }

const std::vector<Case>& cases() {
  using X = const std::vector<Tensor>&;
  static const std::vector<Case> all = {
      {"add_bcast", {{{2, 3, 4}, -1, 0.1}, {{3, 1}, 0.5, 0.3}}, [](X x) { return x[0] + x[1]; }},
      {"sub_bcast", {{{4}, -1, 0.5}, {{2, 1, 4}, 0.5, 0.3}}, [](X x) { return x[0] - x[1]; }},
      {"mul_bcast", {{{2, 1, 4}, -1, 0.25}, {{3, 1}, 0.5, 0.3}}, [](X x) { return x[0] * x[1]; }},
      {"div_bcast", {{{2, 3}, -1, 0.25}, {{3}, 0.5, 0.3}}, [](X x) { return x[0] / x[1]; }},
      {"pow_scalar", {{{5}, 0.5, 0.5}}, [](X x) { return pow(x[0], 2.5); }},
      {"pow_neg_base", {{{5}, -2, 0.75}}, [](X x) { return pow(x[0], 3.0); }},
      {"pow_zero_exponent", {{{3}, 0, 1}}, [](X x) { return pow(x[0], 0.0); }},
      {"pow_tensor", {{{4}, 0.5, 0.5}, {{4}, -1, 0.5}}, [](X x) { return pow(x[0], x[1]); }},
      {"pow_zero_base", {{{3}, 0, 1}, {{3}, 0, 1}}, [](X x) { return pow(x[0], x[1]); }},
      {"rsub", {{{3}, -1, 1}}, [](X x) { return 2.0 - x[0]; }},
      {"exp_log", {{{4}, 0.25, 0.5}}, [](X x) { return log(exp(x[0]) + x[0]); }},
      {"sqrt_zero", {{{3}, 0, 1}}, [](X x) { return sqrt(x[0]); }},
      {"abs_zero", {{{5}, -2, 1}}, [](X x) { return abs(x[0]); }},
      {"relu_zero", {{{5}, -2, 1}}, [](X x) { return relu(x[0]); }},
      {"clamp_edges", {{{7}, -1.5, 0.5}}, [](X x) { return clamp(x[0], -1.0, 1.0); }},
      {"tanh_sigmoid", {{{5}, -2, 1}}, [](X x) { return tanh(x[0]) * sigmoid(x[0]); }},
      {"where_bcast", {{{2, 3}, -1, 0.5}, {{3}, 5, 1}}, [](X x) { return where(cond_gt0(x[0]), x[0], x[1]); }},
      {"sum_axes", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return sum(x[0], Axes{0, -1}); }},
      {"sum_keepdims", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return sum(x[0], Axes{-2}, true); }},
      {"mean_keepdims", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return mean(x[0], Axes{0, 2}, true); }},
      {"mean_all", {{{2, 3}, -1, 0.1}}, [](X x) { return mean(x[0]); }},
      {"max_axis", {{{2, 3, 4}, -1, 0.37}}, [](X x) { return max(x[0], -2); }},
      {"max_keepdims", {{{2, 3, 4}, -1, 0.37}}, [](X x) { return max(x[0], 0, true); }},
      {"softmax_axis", {{{2, 3, 4}, -1, 0.37}}, [](X x) { return softmax(x[0], -2); }},
      {"log_softmax_axis", {{{2, 3, 4}, -1, 0.37}}, [](X x) { return log_softmax(x[0], 0); }},
      {"transpose_neg", {{{2, 3, 4}, -1, 0.37}}, [](X x) { return transpose(x[0], -1, 0); }},
      {"permute", {{{2, 3, 4}, -1, 0.37}}, [](X x) { return permute(x[0], {2, 0, 1}); }},
      {"matmul_tt", {{{3, 2}, -1, 0.37}, {{4, 3}, 0.5, 0.1}}, [](X x) { return matmul(x[0], x[1], true, true); }},
      {"matmul_batched", {{{2, 3, 4}, -1, 0.1}, {{4, 5}, 0.5, 0.1}}, [](X x) { return matmul(x[0], x[1]); }},
      {"matmul_batch_batch", {{{2, 3, 4}, -1, 0.1}, {{2, 4, 5}, 0.5, 0.1}}, [](X x) { return matmul(x[0], x[1]); }},
      {"linear_3d", {{{2, 3, 4}, -1, 0.1}, {{5, 4}, 0.5, 0.1}, {{5}, 0.1, 0.2}},
       [](X x) { return linear(x[0], x[1], x[2]); }},
      {"cross_entropy_mean", {{{3, 4}, -1, 0.37}}, [](X x) { return cross_entropy(x[0], {3, 0, 1}); }},
      {"cross_entropy_sum", {{{3, 4}, -1, 0.37}},
       [](X x) { return cross_entropy(x[0], {3, 0, 1}, Reduction::Sum); }},
      {"cross_entropy_none", {{{3, 4}, -1, 0.37}},
       [](X x) { return cross_entropy(x[0], {3, 0, 1}, Reduction::None); }},
      {"mse_sum", {{{3, 4}, -1, 0.37}, {{3, 4}, 1, -0.2}}, [](X x) { return mse(x[0], x[1], Reduction::Sum); }},
      {"masked_fill_bcast", {{{2, 3}, -1, 0.5}},
       [](X x) { return masked_fill(x[0], from_vector({1, 0, 1}, {3}, DType::Float64), -7.0); }},
      {"gather_repeats", {{{3, 4}, -1, 0.37}}, [](X x) {
         xt::xarray<std::int64_t> index = {{0, 0}, {3, 3}, {1, 2}};
         return gather(x[0], 1, index);
       }},
      {"index_select_repeats", {{{3, 4}, -1, 0.37}}, [](X x) { return index_select(x[0], 0, {2, 2, 0}); }},
      {"topk_largest", {{{2, 5}, -1, 0.37}}, [](X x) { return topk(x[0], 2, -1).values; }},
      {"topk_smallest", {{{2, 5}, -1, 0.37}}, [](X x) { return topk(x[0], 3, 1, false).values; }},
      {"narrow_neg", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return narrow(x[0], -1, 1, 2); }},
      {"chunk_neg", {{{2, 6}, -1, 0.1}}, [](X x) { return chunk(x[0], 3, -1)[2]; }},
      {"select_neg", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return select(x[0], -2, -1); }},
      {"split_neg", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return split(x[0], {1, 3}, -1)[1]; }},
      {"concat_neg", {{{2, 3}, -1, 0.1}, {{2, 2}, 1, 0.1}}, [](X x) { return concat({x[0], x[1]}, -1); }},
      {"stack_neg1", {{{2, 3}, -1, 0.1}, {{2, 3}, 1, 0.1}}, [](X x) { return stack({x[0], x[1]}, -1); }},
      {"stack_neg3", {{{2, 3}, -1, 0.1}, {{2, 3}, 1, 0.1}}, [](X x) { return stack({x[0], x[1]}, -3); }},
      {"unsqueeze_neg", {{{2, 3}, -1, 0.1}}, [](X x) { return unsqueeze(x[0], -1) * unsqueeze(x[0], -2); }},
      {"unsqueeze_neg3", {{{2, 3}, -1, 0.1}}, [](X x) { return unsqueeze(x[0], -3); }},
      {"squeeze_neg", {{{2, 1, 3}, -1, 0.1}}, [](X x) { return squeeze(x[0], -2); }},
      {"broadcast_to", {{{3, 1}, -1, 0.5}}, [](X x) { return broadcast_to(x[0], {2, 3, 4}); }},
      {"reshape_infer", {{{2, 3, 4}, -1, 0.1}}, [](X x) { return reshape(x[0], {-1, 6}); }},
      {"scalar_ops", {{{3}, 1, 1}}, [](X x) { return 2.0 / x[0] - x[0] / 4.0; }},
  };
  return all;
}

class OpConventions : public ::testing::TestWithParam<std::size_t> {};

TEST_P(OpConventions, ValuesAndGradientsAreTorchs) {
  static const fixture::Fixture f("op_conventions", fixture::kPrecisions[0]);  // float64
  const Case& c = cases().at(GetParam());
  std::vector<Tensor> xs;
  for (const Input& in : c.inputs) xs.push_back(ramp(in));
  Tensor y = c.op(xs);
  expect_matches(y, f.get(c.name + ".y"), c.name + ".y");
  std::vector<double> w(y.numel());
  for (std::size_t k = 0; k < w.size(); ++k) w[k] = std::cos(double(k));
  sum(mul(y, from_vector(w, y.shape(), DType::Float64))).backward();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const std::string key = c.name + ".g" + std::to_string(i);
    ASSERT_TRUE(xs[i].grad().defined()) << key;
    expect_matches(xs[i].grad(), f.get(key), key);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, OpConventions, ::testing::Range<std::size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<std::size_t>& info) { return cases()[info.param].name; });

// Every case of the fixture is run here (a case added to the script alone would go untested).
TEST(OpConventionsFixture, HoldsExactlyTheCasesRunHere) {
  const fixture::Fixture f("op_conventions", fixture::kPrecisions[0]);
  std::size_t expected_keys = 0;
  for (const Case& c : cases()) expected_keys += 1 + c.inputs.size();
  EXPECT_EQ(f.archive.size(), expected_keys);
}

}  // namespace

namespace {

/// Same value, or both NaN; a zero's sign counts.
template <class T>
bool same_value(T a, T b) {
  return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
}

template <class T>
void expect_pow_is_std_pow(DType dtype) {
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> xs = {T(0), -T(0), T(1), T(-1), T(2), T(-2), T(0.5), T(-0.5), inf, -inf, nan,
                             std::numeric_limits<T>::denorm_min(), T(10), std::numeric_limits<T>::max()};
  const std::vector<T> ys = {T(0), -T(0), T(1), T(-1), T(2), T(3), T(-3), T(0.5), T(-0.5), T(2.5),
                             inf, -inf, nan, T(400), T(-1025), T(1e10)};
  // Every pair, as two flat tensors: the special values land inside SIMD-width blocks and in
  // the tails, in both orders. Repeated to 2^16 elements, so that the two-core path runs too.
  for (std::size_t copies : {std::size_t(1), std::size_t(300)}) {
    std::vector<double> a, b;
    for (std::size_t c = 0; c < copies; ++c)
      for (T x : xs)
        for (T y : ys) a.push_back(double(x)), b.push_back(double(y));
    const Shape shape{a.size()};
    Tensor ta = cast(from_vector(a, shape, DType::Float64), dtype);
    Tensor tb = cast(from_vector(b, shape, DType::Float64), dtype);
    Tensor out = pow(ta, tb);
    const T* pa = ta.data<T>().data();
    const T* pb = tb.data<T>().data();
    const T* po = out.data<T>().data();
    for (std::size_t i = 0; i < a.size(); ++i)
      ASSERT_TRUE(same_value(po[i], T(std::pow(pa[i], pb[i]))))
          << dtype_name(dtype) << " pow(" << pa[i] << ", " << pb[i] << ") = " << po[i] << ", std::pow "
          << std::pow(pa[i], pb[i]) << " (element " << i << " of " << a.size() << ")";
  }
  // A scalar exponent, and a broadcast (x down, y across: xtensor's general path).
  Tensor col = cast(from_vector(std::vector<double>(xs.begin(), xs.end()), {xs.size(), 1}, DType::Float64), dtype);
  Tensor row = cast(from_vector(std::vector<double>(ys.begin(), ys.end()), {ys.size()}, DType::Float64), dtype);
  Tensor grid = pow(col, row);
  for (std::size_t i = 0; i < xs.size(); ++i)
    for (std::size_t j = 0; j < ys.size(); ++j) {
      const T x = col.data<T>().data()[i], y = row.data<T>().data()[j];
      EXPECT_TRUE(same_value(grid.data<T>().data()[i * ys.size() + j], T(std::pow(x, y))))
          << dtype_name(dtype) << " broadcast pow(" << x << ", " << y << ")";
      Tensor s = pow(col, double(y));
      EXPECT_TRUE(same_value(s.data<T>().data()[i], T(std::pow(x, y))))
          << dtype_name(dtype) << " pow(" << x << ", scalar " << y << ")";
    }
}

}  // namespace

// pow is the C library's in every build and at every position of a tensor: xsimd's vector pow,
// which pow used to evaluate, gave pow(0, 0) = 0, pow(0, −1) = 0, NaN for pow(±inf, 0) and
// pow(1, inf), flushed denormal results and lost the sign of pow(−2, 1e10) in float, wherever a
// SIMD batch held the element (CI's portable build found the first). PyTorch agrees with the C
// library on every special value here, except torch.pow(x, 0.5) at −0 and −inf (its √ gives −0
// and NaN); tapegrad keeps the C library's there.
TEST(Pow, SpecialValuesAreTheCLibrarysInEveryPositionAndBuild) {
  expect_pow_is_std_pow<double>(DType::Float64);
  expect_pow_is_std_pow<float>(DType::Float32);
}

namespace {
template <class T>
void expect_pytorch_forms(DType dtype) {
  // Random values of both signs and many magnitudes (1e-30 … 1e30), 70,001 of them: the
  // two-core path and a tail. Each exponent's result against torch.pow's form, bit for bit
  // (x·x·x differs from std::pow(x, 3) in the last bit for about 14 % of float64 values).
  Generator gen(11);
  Tensor u = randn({70001}, gen, DType::Float64);
  std::vector<double> v(u.numel());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double r = u.data<double>().data()[i];
    v[i] = r * std::pow(10.0, std::fmod(std::abs(r) * 1e4, 60.0) - 30.0);
  }
  Tensor x = cast(from_vector(v, {v.size()}, DType::Float64), dtype);
  const T* px = x.data<T>().data();
  struct Form {
    double p;
    std::function<T(T)> f;
  };
  const std::vector<Form> forms = {{2.0, [](T a) { return a * a; }},
                                   {3.0, [](T a) { return a * a * a; }},
                                   {-1.0, [](T a) { return T(1) / a; }},
                                   {-2.0, [](T a) { return T(1) / (a * a); }},
                                   {0.5, [](T a) { return std::sqrt(a) + T(0); }},
                                   {1.0, [](T a) { return a; }},
                                   {0.0, [](T) { return T(1); }},
                                   {2.5, [](T a) { return std::pow(a, T(2.5)); }}};
  for (const Form& form : forms) {
    Tensor y = pow(x, form.p);
    const T* py = y.data<T>().data();
    std::size_t bad = 0;
    for (std::size_t i = 0; i < v.size(); ++i) bad += !same_value(py[i], form.f(px[i]));
    EXPECT_EQ(bad, 0u) << dtype_name(dtype) << " pow(x, " << form.p << ")";
  }
}
}  // namespace

// pow with a number as exponent takes PyTorch's forms for 2, 3, −1, −2 and ½ (x·x, x·x·x, 1/x,
// 1/(x·x), √x) and std::pow for the others: the bits torch.pow gives.
TEST(Pow, ScalarExponentsTakePyTorchsForms) {
  expect_pytorch_forms<double>(DType::Float64);
  expect_pytorch_forms<float>(DType::Float32);
}

// max along an axis keeps the first maximum of each run, or its first NaN, and its gradient goes
// there alone (PyTorch's choice for ties), on every axis: the last (one run after the other) and
// the others (whole rows of runs at a time, ops_reduce.cpp). Values with many ties, NaN and −inf.
TEST(MaxAlongAnAxis, FirstMaximumOrNaNOnEveryAxis) {
  const Shape shape{5, 7, 9};
  const double choices[] = {-1.0, 0.0, 1.0, 2.0, -INFINITY, NAN};
  std::vector<double> v(5 * 7 * 9);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = choices[(i * 7 + i / 5) % (i % 11 == 0 ? 6 : 5)];
  for (DType dtype : {DType::Float32, DType::Float64})
    for (std::size_t axis = 0; axis < 3; ++axis) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " axis " << axis);
      Tensor x = cast(from_vector(v, shape, DType::Float64), dtype).requires_grad_();
      Tensor m = max(x, std::ptrdiff_t(axis));
      backward(m, ones_like(m));
      const std::size_t len = shape[axis], inner = axis == 2 ? 1 : axis == 1 ? 9 : 63,
                        outer = v.size() / (len * inner);
      std::vector<double> want_grad(v.size(), 0.0);
      for (std::size_t o = 0; o < outer; ++o)
        for (std::size_t i = 0; i < inner; ++i) {
          std::size_t best = 0;
          for (std::size_t k = 1; k < len; ++k) {
            const double a = v[(o * len + k) * inner + i], b = v[(o * len + best) * inner + i];
            if (a > b || (std::isnan(a) && !std::isnan(b))) best = k;
          }
          const double want = v[(o * len + best) * inner + i], got = m.at(o * inner + i);
          if (std::isnan(want))
            EXPECT_TRUE(std::isnan(got)) << "run " << o << ", " << i;
          else
            EXPECT_EQ(got, want) << "run " << o << ", " << i;
          want_grad[(o * len + best) * inner + i] = 1.0;
        }
      for (std::size_t e = 0; e < v.size(); ++e) ASSERT_EQ(x.grad().at(e), want_grad[e]) << "gradient element " << e;
    }
}

// relu as torch.relu (PyTorch 1.13, printed by torch.relu and its backward on these inputs):
// NaN stays NaN, −0 stays −0, and the gradient passes where x > 0 or x is NaN, else exactly 0.
TEST(Relu, IsPyTorchs) {
  const std::vector<double> in = {NAN, -0.0, 0.0, -1.0, 2.0};
  for (DType dtype : {DType::Float32, DType::Float64})
    for (std::size_t copies : {std::size_t(1), std::size_t(20000)}) {  // one call and two cores
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << copies << " copies");
      std::vector<double> v;
      for (std::size_t c = 0; c < copies; ++c) v.insert(v.end(), in.begin(), in.end());
      Tensor x = cast(from_vector(v, {v.size()}, DType::Float64), dtype).requires_grad_();
      Tensor y = relu(x);
      backward(y, full(y.shape(), -3.0, dtype));
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::size_t k = i % in.size();
        if (k == 0) {
          ASSERT_TRUE(std::isnan(y.at(i)));
        } else {
          ASSERT_EQ(y.at(i), k == 4 ? 2.0 : 0.0) << "element " << i;
          ASSERT_EQ(std::signbit(y.at(i)), k == 1) << "element " << i;  // −0 stays −0
        }
        ASSERT_EQ(x.grad().at(i), k == 0 || k == 4 ? -3.0 : 0.0) << "gradient " << i;
        ASSERT_FALSE(std::signbit(x.grad().at(i)) && x.grad().at(i) == 0.0) << "gradient " << i << " is −0";
      }
    }
}

// max over a non-empty axis of a tensor with an empty axis elsewhere: an empty result of the
// reduced shape, and an empty gradient (tests/fuzz/fuzz_api.cpp found a read through the null
// data of a (·, ·, 0) tensor reduced over a middle axis).
TEST(MaxAlongAnAxis, EmptyTensorsGiveEmptyResults) {
  for (DType dtype : {DType::Float32, DType::Float64})
    for (const Shape& shape : {Shape{2, 3, 0}, Shape{0, 3, 2}, Shape{2, 0, 3, 1}})
      for (std::ptrdiff_t axis : {0, 1, 2}) {
        if (shape[std::size_t(axis)] == 0) continue;  // an empty axis itself: a ShapeError
        SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << shape_str(shape) << " axis " << axis);
        Tensor x = zeros(shape, dtype).requires_grad_();
        for (bool keepdims : {false, true}) {
          Tensor m = max(x, axis, keepdims);
          Shape want = shape;
          if (keepdims) want[std::size_t(axis)] = 1;
          else want.erase(want.begin() + axis);
          EXPECT_EQ(m.shape(), want);
          backward(m, zeros(m.shape(), dtype));
          EXPECT_EQ(x.grad().shape(), shape);
          x.zero_grad();
        }
      }
}
