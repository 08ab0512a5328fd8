// The vector math of the elementwise ops exp, log, tanh and sigmoid and the Adam update
// (framework/vector_math.hpp), every build of it this CPU runs (native, avx512, avx2): each
// against std::exp, std::log and std::tanh evaluated in double (long double for float64), over
// lengths with and without a tail, in float32 and float64; the special values (±0, ±inf, NaN,
// overflow, underflow) and denormal inputs and results (where xsimd's own exp and log are wrong);
// that a result does not depend on its element's position (the tail goes through the same vector
// code) nor on how the ops split a large tensor between the cores; in-place use; Adam against its
// expressions; and how a process chooses a build (it follows the GEMM kernel,
// TAPEGRAD_GEMM_KERNEL). That the AVX2 and AVX-512 builds share no code with the rest of the
// library is test_gate_kernels' SharesNoCodeBetweenBuilds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "framework/packed_gemm.hpp"
#include "framework/parallel.hpp"
#include "framework/random.hpp"
#include "framework/tapegrad.hpp"
#include "framework/vector_math.hpp"
#include "arch_build_support.hpp"

using namespace tapegrad;
using detail::VectorMath;

namespace {


template <class T>
void (*function_of(const VectorMath<T>& m, const std::string& f))(const T*, T*, std::size_t) {
  if (f == "exp") return m.exp;
  if (f == "log") return m.log;
  if (f == "tanh") return m.tanh;
  return m.sigmoid;
}

/// The function in long double (float64's reference) or double (float32's).
long double reference(const std::string& f, long double x) {
  if (f == "exp") return std::exp(x);
  if (f == "log") return std::log(x);
  if (f == "tanh") return std::tanh(x);
  return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x));
}

/// Inputs where the function is finite and not denormal in T, spread over its range.
template <class T>
std::vector<T> inputs(const std::string& f, std::size_t n, Generator& gen) {
  const bool f32 = sizeof(T) == 4;
  std::vector<T> v(n);
  for (T& x : v) {
    if (f == "exp") x = T(gen.uniform(f32 ? -85.0 : -700.0, f32 ? 88.0 : 709.0));
    else if (f == "log") x = T(std::pow(10.0, gen.uniform(f32 ? -37.0 : -300.0, f32 ? 38.0 : 300.0)));
    else if (f == "tanh") x = T(gen.uniform(-12.0, 12.0));
    else x = T(gen.uniform(-80.0, 80.0));
  }
  return v;
}

/// Relative error allowed: a few units in the last place of T.
template <class T>
double tolerance() {
  return 4 * double(std::numeric_limits<T>::epsilon());
}

template <class T>
void check_against_reference() {
  Generator gen(71);
  for (const VectorMath<T>* m : detail::vector_maths<T>())
    for (const std::string f : {"exp", "log", "tanh", "sigmoid"})
      for (std::size_t n : {0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 1000}) {
        SCOPED_TRACE(std::string(m->name) + " " + f + " n = " + std::to_string(n));
        const std::vector<T> x = inputs<T>(f, n, gen);
        std::vector<T> y(n + 1, T(-7));  // one element past the end: must stay untouched
        function_of(*m, f)(x.data(), y.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
          const long double want = reference(f, (long double)x[i]);
          const double err = double(std::abs((long double)y[i] - want));
          // relative, except near a zero of the function (log near 1, tanh near 0): absolute there
          const double scale = f == "log" || f == "tanh" ? std::max(1.0, double(std::abs(want))) : double(std::abs(want));
          ASSERT_LE(err, tolerance<T>() * scale) << "x = " << x[i] << ": " << y[i] << " vs " << double(want);
        }
        EXPECT_EQ(y[n], T(-7));
      }
}

}  // namespace

TEST(VectorMath, EveryBuildMatchesTheStandardLibraryFloat32) { check_against_reference<float>(); }
TEST(VectorMath, EveryBuildMatchesTheStandardLibraryFloat64) { check_against_reference<double>(); }

template <class T>
void check_special_values() {
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  const T tiny = std::numeric_limits<T>::denorm_min(), big = T(1000);
  struct Case {
    const char* f;
    T x, want;
  };
  const Case cases[] = {
      {"exp", T(0), T(1)},         {"exp", -T(0), T(1)},       {"exp", inf, inf},
      {"exp", -inf, T(0)},         {"exp", big, inf},          {"exp", -big, T(0)},
      {"log", T(1), T(0)},         {"log", T(0), -inf},        {"log", -T(0), -inf},
      {"log", inf, inf},           {"log", T(-1), nan},        {"log", -inf, nan},
      {"tanh", T(0), T(0)},        {"tanh", inf, T(1)},        {"tanh", -inf, T(-1)},
      {"tanh", big, T(1)},         {"tanh", -big, T(-1)},      {"sigmoid", T(0), T(0.5)},
      {"sigmoid", inf, T(1)},      {"sigmoid", -inf, T(0)},    {"sigmoid", big, T(1)},
      {"sigmoid", -big, T(0)},     {"exp", nan, nan},          {"log", nan, nan},
      {"tanh", nan, nan},          {"sigmoid", nan, nan},
  };
  for (const VectorMath<T>* m : detail::vector_maths<T>())
    for (const Case& c : cases)
      for (std::size_t n : {1, 40}) {  // in the tail, and in whole vectors and the tail
        SCOPED_TRACE(std::string(m->name) + " " + c.f + "(" + std::to_string(double(c.x)) + "), n = " + std::to_string(n));
        std::vector<T> x(n, c.x), y(n);
        function_of(*m, c.f)(x.data(), y.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
          if (std::isnan(c.want)) {
            ASSERT_TRUE(std::isnan(y[i])) << i << ": " << y[i];
          } else {
            ASSERT_EQ(y[i], c.want) << i;
            ASSERT_EQ(std::signbit(y[i]), std::signbit(c.want)) << i;  // tanh(−0) is −0 below
          }
        }
      }
  for (const VectorMath<T>* m : detail::vector_maths<T>()) {
    SCOPED_TRACE(m->name);
    T x[2] = {-T(0), tiny}, y[2];
    m->tanh(x, y, 2);
    EXPECT_EQ(y[0], T(0));
    EXPECT_TRUE(std::signbit(y[0])) << "tanh(-0) = -0";
    m->log(x + 1, y + 1, 1);  // the smallest denormal
    EXPECT_NEAR(double(y[1]), std::log(double(tiny)), 1e-5 * std::abs(std::log(double(tiny))));
    m->exp(x + 1, y + 1, 1);
    EXPECT_EQ(y[1], T(1));
  }
}

TEST(VectorMath, SpecialValuesFloat32) { check_special_values<float>(); }
TEST(VectorMath, SpecialValuesFloat64) { check_special_values<double>(); }

template <class T>
void check_denormals() {
  // xsimd's exp returns 0 below ln(smallest normal) and its float64 log is wrong for denormal
  // inputs; the builds correct both (vector_math.inc): e^x into the denormal range (and σ(x) =
  // e^x / (1 + e^x) there) within a few ulp or one denormal step of the C library, and ln x of
  // denormal x within a few ulp
  const double step = double(std::numeric_limits<T>::denorm_min());
  const int min_exp = std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits;  // −149, −1074
  for (const VectorMath<T>* m : detail::vector_maths<T>()) {
    SCOPED_TRACE(m->name);
    for (int i = 0; i < 600; ++i) {
      const T x = T(double(min_exp) * 0.6931471805599453 * (0.8 + 0.25 * i / 600.0));  // e^x around the denormals
      const long double want = std::exp((long double)x);
      T y;
      m->exp(&x, &y, 1);
      ASSERT_LE(std::abs((long double)y - want), 4 * std::numeric_limits<T>::epsilon() * want + step) << "exp(" << x << ")";
      m->sigmoid(&x, &y, 1);
      ASSERT_LE(std::abs((long double)y - want / (1 + want)), 4 * std::numeric_limits<T>::epsilon() * want + step)
          << "sigmoid(" << x << ")";
      const T d = T(std::ldexp(1.0 + (i % 97) / 97.0, min_exp + i % (-min_exp - std::numeric_limits<T>::digits + 2)));
      m->log(&d, &y, 1);
      ASSERT_NEAR(double(y), double(std::log((long double)d)), tolerance<T>() * std::abs(double(std::log((long double)d))))
          << "log(" << d << ")";
    }
  }
}

TEST(VectorMath, DenormalsFloat32) { check_denormals<float>(); }
TEST(VectorMath, DenormalsFloat64) { check_denormals<double>(); }

TEST(VectorMath, AResultDoesNotDependOnItsPosition) {
  // the same input at every position of arrays of every length up to 70: one result, bit for bit,
  // in the whole vectors and in the padded tail alike
  Generator gen(5);
  for (const VectorMath<float>* m : detail::vector_maths<float>())
    for (const std::string f : {"exp", "log", "tanh", "sigmoid"})
      for (int trial = 0; trial < 50; ++trial) {
        const float v = inputs<float>(f, 1, gen)[0];
        std::vector<float> x(70, v), y(70);
        float alone;
        function_of(*m, f)(&v, &alone, 1);
        for (std::size_t n = 1; n <= 70; ++n) {
          function_of(*m, f)(x.data(), y.data(), n);
          for (std::size_t i = 0; i < n; ++i)
            ASSERT_EQ(std::memcmp(&y[i], &alone, sizeof(float)), 0)
                << m->name << " " << f << "(" << v << ") at " << i << " of " << n << ": " << y[i] << " vs " << alone;
        }
      }
}

TEST(VectorMath, InPlace) {
  Generator gen(9);
  for (const VectorMath<double>* m : detail::vector_maths<double>())
    for (const std::string f : {"exp", "log", "tanh", "sigmoid"}) {
      const std::vector<double> x = inputs<double>(f, 37, gen);
      std::vector<double> y(37), z = x;
      function_of(*m, f)(x.data(), y.data(), x.size());
      function_of(*m, f)(z.data(), z.data(), z.size());
      EXPECT_EQ(y, z) << m->name << " " << f;
    }
}

TEST(VectorMath, TheOpsUseTheProcesssBuild) {
  // exp, log, tanh and sigmoid on tensors: the process's build, bit for bit, also for a tensor
  // large enough to be split between two cores (the split falls anywhere: no result may move)
  Generator gen(3);
  const detail::VectorMath<float>& m = detail::vector_math<float>();
  for (std::size_t n : {std::size_t(45), detail::kParallelElements + 77}) {
    Tensor x = randn({n}, gen);
    auto* xd = x.data<float>().data();
    for (std::size_t i = 0; i < n; ++i) xd[i] = std::abs(xd[i]) + 0.01f;  // log's domain
    const std::vector<std::pair<Tensor, void (*)(const float*, float*, std::size_t)>> got{
        {exp(x), m.exp}, {log(x), m.log}, {tanh(x), m.tanh}, {sigmoid(neg(x)), m.sigmoid}};
    for (std::size_t k = 0; k < got.size(); ++k) {
      std::vector<float> in(xd, xd + n), want(n);
      if (k == 3)
        for (float& v : in) v = -v;
      got[k].second(in.data(), want.data(), n);
      EXPECT_EQ(std::memcmp(got[k].first.data<float>().data(), want.data(), n * sizeof(float)), 0)
          << "op " << k << ", n = " << n;
    }
  }
}

/// Adam's update as the expressions read, one number at a time, in long double.
template <class T>
void adam_reference(std::vector<long double>& p, const std::vector<T>& g_in, std::vector<long double>& m,
                    std::vector<long double>& v, std::vector<long double>* v_max, const detail::AdamStep<T>& h) {
  using L = long double;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (h.decoupled) p[i] = p[i] * L(h.decay);
    const L g = h.l2 ? L(g_in[i]) + L(h.weight_decay) * p[i] : L(g_in[i]);
    m[i] = L(h.beta1) * m[i] + L(h.one_minus_beta1) * g;
    v[i] = L(h.beta2) * v[i] + L(h.one_minus_beta2) * g * g;
    L second = v[i];
    if (v_max) second = (*v_max)[i] = std::max((*v_max)[i], v[i]);
    p[i] = p[i] + L(h.neg_step_size) * m[i] / (std::sqrt(second) / L(h.bias_correction2_sqrt) + L(h.eps));
  }
}

template <class T>
void check_adam() {
  // every build against the expressions in long double: Adam, Adam with L2 weight decay, AdamW,
  // amsgrad; lengths with and without a tail; three steps on the same state. p, m and v within a
  // few ulp (the builds round differently where they fuse multiply-adds)
  Generator gen(13);
  const long double tol = 16 * std::numeric_limits<T>::epsilon();
  for (const VectorMath<T>* k : detail::vector_maths<T>())
    for (int variant = 0; variant < 4; ++variant)
      for (std::size_t n : {1, 5, 16, 17, 40, 129}) {
        SCOPED_TRACE(std::string(k->name) + " variant " + std::to_string(variant) + " n = " + std::to_string(n));
        const bool decoupled = variant == 2, l2 = variant == 1, amsgrad = variant == 3;
        std::vector<T> p(n), m(n, T(0)), v(n, T(0)), vm(n, T(0));
        for (T& x : p) x = T(gen.uniform(-1, 1));
        std::vector<long double> p2(p.begin(), p.end()), m2(n, 0), v2(n, 0), vm2(n, 0);
        for (int t = 1; t <= 3; ++t) {
          std::vector<T> g(n);
          for (T& x : g) x = T(gen.uniform(-2, 2));
          const double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
          const detail::AdamStep<T> h{decoupled, T(1 - 0.01 * 0.1), l2,           T(0.1),
                                      T(0.9),    T(1 - 0.9),        T(0.999),     T(1 - 0.999),
                                      T(-0.01 / bc1),               T(std::sqrt(bc2)), T(1e-8)};
          k->adam(p.data(), g.data(), m.data(), v.data(), amsgrad ? vm.data() : nullptr, n, h);
          adam_reference(p2, g, m2, v2, amsgrad ? &vm2 : nullptr, h);
          for (std::size_t i = 0; i < n; ++i) {
            ASSERT_LE(std::abs(p[i] - p2[i]), tol * std::abs(p2[i]) + tol) << "step " << t << " p[" << i << "]";
            // m's two terms can cancel: within a few ulp of the larger
            ASSERT_LE(std::abs(m[i] - m2[i]), tol * (std::abs(m2[i]) + std::abs(g[i]))) << "step " << t << " m[" << i << "]";
            ASSERT_LE(std::abs(v[i] - v2[i]), tol * std::abs(v2[i])) << "step " << t << " v[" << i << "]";
            if (amsgrad) ASSERT_LE(std::abs(vm[i] - vm2[i]), tol * std::abs(vm2[i])) << "step " << t << " v_max[" << i << "]";
          }
        }
      }
}

TEST(VectorMath, AdamInEveryBuildFloat32) { check_adam<float>(); }
TEST(VectorMath, AdamInEveryBuildFloat64) { check_adam<double>(); }

TEST(VectorMath, BuildsAreListedWidestFirst) {
  arch_builds::expect_builds_widest_first(detail::vector_maths<float>(),
                                      [](const char* n) -> auto& { return detail::choose_vector_math<float>(n); });
  arch_builds::expect_builds_widest_first(detail::vector_maths<double>(),
                                      [](const char* n) -> auto& { return detail::choose_vector_math<double>(n); });
}

TEST(VectorMath, ItFollowsTheGemmKernel) {
  arch_builds::expect_build_follows_gemm_kernel(
      detail::vector_maths<float>(), [](const char* n) -> auto& { return detail::choose_vector_math<float>(n); },
      detail::vector_math<float>());
  arch_builds::expect_build_follows_gemm_kernel(
      detail::vector_maths<double>(), [](const char* n) -> auto& { return detail::choose_vector_math<double>(n); },
      detail::vector_math<double>());
}
