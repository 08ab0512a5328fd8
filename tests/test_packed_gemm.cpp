// The fused recurrences' per-step product (framework/packed_gemm.hpp), every build of it this CPU
// runs (native, avx512, avx2), against BLAS (framework/blas.hpp), a plain triple loop and each
// other bit for bit, and how a process chooses one: every row count up to two register blocks and
// beyond, column counts around the panel width (full panels, a partial last panel, fewer columns
// than one panel), B given directly and transposed, beta 0 (C not read: NaN there stays out) and
// beta 1, leading dimensions larger than the widths, float32 and float64; gemm()'s cache of
// packed operands, which must never serve a stale one; and engine_gemm (blas.cpp), the blocked
// product on the same kernel that gemm() runs for large shapes when OpenBLAS's kernel is narrower,
// with the rule that decides it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#pragma GCC diagnostic push
#if !defined(__clang__)  // GCC 12's false positive inside its own AVX-512 intrinsics (xsimd's allocator header)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <xsimd/xsimd.hpp>
#pragma GCC diagnostic pop

#include "framework/blas.hpp"
#include "framework/ops.hpp"
#include "framework/tensor.hpp"
#include "framework/random.hpp"
#include "framework/packed_gemm.hpp"

using namespace tapegrad;

namespace {

template <class T>
void check(std::size_t m, std::size_t n, std::size_t k, bool transpose_b, T beta) {
  SCOPED_TRACE(fmt::format("{} m={} n={} k={} transpose_b={} beta={}", sizeof(T) == 4 ? "float32" : "float64",
                           m, n, k, transpose_b, double(beta)));
  Generator gen(m * 1000 + n * 10 + k);
  const std::size_t lda = k + 3, ldb = (transpose_b ? k : n) + 2, ldc = n + 5;
  auto fill = [&](std::size_t size) {
    std::vector<T> v(size);
    for (T& x : v) x = T(gen.uniform(-1, 1));
    return v;
  };
  std::vector<T> a = fill(m * lda), b = fill((transpose_b ? n : k) * ldb), c0 = fill(m * ldc);
  if (beta == T(0))  // C must not be read
    for (T& x : c0) x = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> expected(m * ldc), blas = c0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double acc = beta == T(0) ? 0.0 : double(beta) * double(c0[i * ldc + j]);
      for (std::size_t kk = 0; kk < k; ++kk)
        acc += double(a[i * lda + kk]) * double(transpose_b ? b[j * ldb + kk] : b[kk * ldb + j]);
      expected[i * ldc + j] = T(acc);
    }
  detail::gemm(false, transpose_b, m, n, k, a.data(), lda, b.data(), ldb, beta, blas.data(), ldc);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j)  // the reference agrees
      ASSERT_NEAR(double(blas[i * ldc + j]), double(expected[i * ldc + j]), (sizeof(T) == 4 ? 1e-6 : 1e-15) * double(k));
  std::vector<T> first;  // the first kernel's C: every other kernel must give the same bits
  for (const detail::GemmKernel<T>* kernel : detail::gemm_kernels<T>()) {
    SCOPED_TRACE(std::string("kernel ") + kernel->name);
    std::vector<T> packed_c = c0;
    std::vector<T, xsimd::aligned_allocator<T, 64>> storage(detail::PackedGemm<T>::storage_size(k, n, kernel));
    detail::PackedGemm<T> packed(storage.data(), b.data(), ldb, transpose_b, k, n, kernel);
    packed.multiply(m, a.data(), lda, beta, packed_c.data(), ldc);
    const double tol = (sizeof(T) == 4 ? 1e-6 : 1e-15) * double(k);
    double worst = 0;
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j)
        worst = std::max(worst, std::abs(double(packed_c[i * ldc + j]) - double(expected[i * ldc + j])));
    EXPECT_LE(worst, tol);
    for (std::size_t i = 0; i < m; ++i)  // the padding columns of C are untouched
      for (std::size_t j = n; j < ldc; ++j)
        if (!(std::isnan(c0[i * ldc + j]) && std::isnan(packed_c[i * ldc + j])))
          ASSERT_EQ(packed_c[i * ldc + j], c0[i * ldc + j]);
    if (first.empty()) first = packed_c;
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j)
        ASSERT_EQ(std::memcmp(&packed_c[i * ldc + j], &first[i * ldc + j], sizeof(T)), 0)
            << "C[" << i << ", " << j << "]: " << packed_c[i * ldc + j] << " here, "
            << first[i * ldc + j] << " from " << detail::gemm_kernels<T>().front()->name;
  }
}

/// Around each kernel's register block (MR rows) and panel width (NR columns).
template <class T>
void check_all() {
  for (const detail::GemmKernel<T>* kernel : detail::gemm_kernels<T>()) {
    const std::size_t MR = kernel->MR, NR = kernel->NR;
    for (std::size_t m : {std::size_t(1), std::size_t(3), MR - 1, MR, MR + 1, 2 * MR + 3})
      for (std::size_t n : {std::size_t(1), NR - 1, NR, NR + 1, 3 * NR + 5})
        for (std::size_t k : {1, 7, 64})
          for (bool transpose_b : {false, true})
            for (T beta : {T(0), T(1)}) check<T>(m, n, k, transpose_b, beta);
  }
}

/// GTEST_SKIP()s a test where no build of the kernel runs (every product on BLAS).
#define SKIP_WITHOUT_KERNEL()                                                                  \
  if (detail::gemm_kernels<float>().empty()) GTEST_SKIP() << "no build of the kernel runs here"

}  // namespace

TEST(PackedGemm, EqualsBlasFloat32) {
  SKIP_WITHOUT_KERNEL();
  check_all<float>();
}
TEST(PackedGemm, EqualsBlasFloat64) {
  SKIP_WITHOUT_KERNEL();
  check_all<double>();
}

TEST(PackedGemm, EveryKernelTheCpuRunsIsOffered) {
  // The list a process chooses from: on x86-64 the AVX2 and AVX-512 builds wherever the CPU has
  // them; first the build compiled with the library's own flags where they give 256-bit vectors
  // (the default build's -march=native; a portable build has none).
  auto names = [] {
    std::vector<std::string> out;
    for (const detail::GemmKernel<float>* k : detail::gemm_kernels<float>()) out.push_back(k->name);
    return out;
  }();
  auto has = [&](const char* name) { return std::find(names.begin(), names.end(), name) != names.end(); };
#if defined(__x86_64__)
  __builtin_cpu_init();
  EXPECT_EQ(has("avx2"), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  EXPECT_EQ(has("avx512"), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                               __builtin_cpu_supports("avx512f"));
#endif
#if defined(__AVX2__) || defined(__AVX512F__)  // this test has the library's flags
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "native");
#else
  EXPECT_FALSE(has("native"));
#endif
  ASSERT_EQ(detail::gemm_kernels<double>().size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(detail::gemm_kernels<double>()[i]->name, names[i]);
    EXPECT_EQ(detail::gemm_kernels<float>()[i]->NR, 2 * detail::gemm_kernels<double>()[i]->NR) << names[i];
  }
}

TEST(PackedGemm, TheEnvironmentChoosesTheKernel) {
  // TAPEGRAD_GEMM_KERNEL: unset or empty gives the first kernel offered (none: BLAS), "blas"
  // gives BLAS, a kernel's name gives it, and anything else is an error that names the variable
  // and lists what there is.
  const auto& all = detail::gemm_kernels<float>();
  EXPECT_EQ(detail::choose_gemm_kernel<float>(nullptr), all.empty() ? nullptr : all.front());
  EXPECT_EQ(detail::choose_gemm_kernel<float>(""), all.empty() ? nullptr : all.front());
  EXPECT_EQ(detail::choose_gemm_kernel<float>("blas"), nullptr);
  EXPECT_EQ(detail::choose_gemm_kernel<double>("blas"), nullptr);
  for (const detail::GemmKernel<float>* k : all) EXPECT_EQ(detail::choose_gemm_kernel<float>(k->name), k);
  for (const char* bad : {"AVX2", "sse2", "avx2 ", "native;rm -rf /", "\n\x01"}) {
    try {
      detail::choose_gemm_kernel<float>(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("TAPEGRAD_GEMM_KERNEL="), std::string::npos) << what;
      EXPECT_NE(what.find("blas"), std::string::npos) << what;
      for (const detail::GemmKernel<float>* k : all) EXPECT_NE(what.find(k->name), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "unprintable characters printed: " << what;
    }
  }
  // and this process followed its own environment (ctest runs the suite with each kernel)
  EXPECT_EQ(detail::gemm_kernel<float>(), detail::choose_gemm_kernel<float>(std::getenv("TAPEGRAD_GEMM_KERNEL")));
  EXPECT_EQ(detail::gemm_kernel<double>(), detail::choose_gemm_kernel<double>(std::getenv("TAPEGRAD_GEMM_KERNEL")));
}

TEST(PackedGemm, RecurrentShapes) {
  SKIP_WITHOUT_KERNEL();
  // The shapes the fused LSTM and GRU run: half a batch of 16 rows against (H, 4H) and (4H, H).
  check<float>(16, 2048, 512, true, 1.0f);
  check<float>(16, 512, 2048, false, 0.0f);
  check<double>(5, 3 * 37, 37, true, 1.0);
}

// ---- gemm()'s per-step products: B packed once and kept while its bytes stay the same ------------
// detail::gemm runs a product of a few rows (2 to kFewRows) from kSplitFewRows multiply-adds on
// PackedGemm, with B's packed form cached per thread (blas.cpp, PackCache). The cache must never
// hand back a stale B, and a result's bits must not depend on whether B came from it.

namespace {

template <class T>
std::vector<T> product(std::size_t m, std::size_t n, std::size_t k, bool tb, const std::vector<T>& a,
                       const std::vector<T>& b) {
  std::vector<T> c(m * n, std::numeric_limits<T>::quiet_NaN());  // beta = 0: C is not read
  detail::gemm(false, tb, m, n, k, a.data(), k, b.data(), tb ? k : n, T(0), c.data(), n);
  return c;
}

template <class T>
double worst_error(std::size_t m, std::size_t n, std::size_t k, bool tb, const std::vector<T>& a,
                   const std::vector<T>& b, const std::vector<T>& c) {
  double worst = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double acc = 0;
      for (std::size_t p = 0; p < k; ++p) acc += double(a[i * k + p]) * double(tb ? b[j * k + p] : b[p * n + j]);
      worst = std::max(worst, std::abs(acc - double(c[i * n + j])));
    }
  return worst;
}

template <class T>
void check_cached_products(std::size_t m, std::size_t n, std::size_t k, bool tb) {
  SCOPED_TRACE(fmt::format("{} m={} n={} k={} tb={}", sizeof(T) == 4 ? "float32" : "float64", m, n, k, tb));
  ASSERT_GE(m * n * k, detail::kSplitFewRows);  // the shape is one that packs
  Generator gen(m + n + k);
  std::vector<T> a(m * k), b(k * n);
  for (T& x : a) x = T(gen.uniform(-1, 1));
  for (T& x : b) x = T(gen.uniform(-1, 1));
  const double tol = (sizeof(T) == 4 ? 1e-6 : 1e-15) * double(k);
  // First sight (packed for the call), second (kept), then served from the cache: same bits.
  const std::vector<T> first = product(m, n, k, tb, a, b);
  EXPECT_LE(worst_error(m, n, k, tb, a, b, first), tol);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(product(m, n, k, tb, a, b), first) << "call " << i + 2;
  // One element of B changed in place (same address, same shape): the next product sees it.
  // The last element is the one a careless check of the first bytes would miss.
  for (std::size_t where : {b.size() - 1, std::size_t(0), b.size() / 2}) {
    const T old = b[where];
    b[where] = old + T(0.5);
    const std::vector<T> changed = product(m, n, k, tb, a, b);
    EXPECT_LE(worst_error(m, n, k, tb, a, b, changed), tol) << "B[" << where << "] changed";
    EXPECT_NE(changed, first) << "B[" << where << "] changed, but the product did not";
    ASSERT_EQ(product(m, n, k, tb, a, b), changed);  // and again, from the cache
    b[where] = old;
    ASSERT_EQ(product(m, n, k, tb, a, b), first) << "B[" << where << "] restored";
  }
  // A B rewritten on every call (an optimizer step between two uses): always the current one.
  for (int step = 0; step < 6; ++step) {
    for (T& x : b) x = T(gen.uniform(-1, 1));
    EXPECT_LE(worst_error(m, n, k, tb, a, b, product(m, n, k, tb, a, b)), tol) << "step " << step;
  }
  // The same B in a fresh buffer (another address, never cached) gives the same bits.
  const std::vector<T> moved = b;
  ASSERT_EQ(product(m, n, k, tb, a, moved), product(m, n, k, tb, a, b));
}

}  // namespace

TEST(PackedGemm, CachedPackedProductsAreNeverStale) {
  // The composed GRU's per-step products at H = 128, B = 32: h W_hhᵀ and (in backward) g W_hh.
  check_cached_products<float>(32, 384, 128, true);
  check_cached_products<float>(32, 128, 384, false);
  check_cached_products<double>(7, 300, 500, true);
  check_cached_products<double>(64, 1000, 20, false);  // many panels, short k
}

TEST(PackedGemm, ALearnersFiniteDifferenceSeesEveryPerturbation) {
  // A hand-written gradient check: hold a reference to the weight's values, nudge one element,
  // run the forward again (recorded, no backward in between), restore. Each forward must see
  // the weight as it is then, not as it was packed for an earlier product.
  Generator gen(7);
  Tensor x = Tensor(xt::xarray<float>(xt::zeros<float>({32, 128})));
  Tensor w = Tensor(xt::xarray<float>(xt::zeros<float>({384, 128})), true);
  Tensor b = Tensor(xt::xarray<float>(xt::zeros<float>({384})), true);
  for (float& v : x.data<float>()) v = float(gen.uniform(-1, 1));
  for (float& v : w.data<float>()) v = float(gen.uniform(-1, 1));
  xt::xarray<float>& wv = w.data<float>();  // held across the loop, as a learner would
  auto loss_of = [&](const Tensor& weight) { return sum(mul(linear(x, weight, b), linear(x, weight, b))).item(); };
  double base = 0;
  for (int i = 0; i < 3; ++i) base = loss_of(w);  // the weight's packed form is now cached
  for (std::size_t e : {std::size_t(0), std::size_t(200 * 128 + 5), wv.size() - 1}) {
    const float old = wv.flat(e);
    for (float eps : {1e-2f, -1e-2f}) {
      wv.flat(e) = old + eps;
      const double perturbed = loss_of(w);
      // the same values in a tensor never seen before
      const double fresh = loss_of(Tensor(xt::xarray<float>(wv)));
      EXPECT_EQ(perturbed, fresh) << "element " << e << " eps " << eps;
      EXPECT_NE(perturbed, base) << "element " << e << " eps " << eps;
    }
    wv.flat(e) = old;
    EXPECT_EQ(loss_of(w), base) << "element " << e << " restored";
  }
}

TEST(PackedGemm, TransposedAWithAShortKEqualsTheReference) {
  // detail::gemm runs C = Aᵀ B + beta C with k ≤ kShortK (a weight's per-step gradient gᵀ h) on
  // PackedGemm, A read transposed: every row count (a partial last block of rows too), beta 0
  // and 1, leading dimensions wider than the matrices, float32 and float64.
  auto run = [](auto tag, std::size_t m, std::size_t n, std::size_t k, double beta) {
    using T = decltype(tag);
    SCOPED_TRACE(fmt::format("{} m={} n={} k={} beta={}", sizeof(T) == 4 ? "float32" : "float64", m, n, k, beta));
    ASSERT_LE(k, detail::kShortK);
    ASSERT_GE(m * n * k, detail::kSplitFewRows);
    Generator gen(m + 7 * n + k);
    const std::size_t lda = m + 3, ldb = n + 1, ldc = n + 2;
    std::vector<T> a(k * lda), b(k * ldb), c(m * ldc);
    for (T& x : a) x = T(gen.uniform(-1, 1));
    for (T& x : b) x = T(gen.uniform(-1, 1));
    for (T& x : c) x = beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(gen.uniform(-1, 1));
    const std::vector<T> c0 = c;
    detail::gemm(true, false, m, n, k, a.data(), lda, b.data(), ldb, T(beta), c.data(), ldc);
    const double tol = (sizeof(T) == 4 ? 1e-6 : 1e-15) * double(k + 1);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        double acc = beta == 0 ? 0.0 : beta * double(c0[i * ldc + j]);
        for (std::size_t p = 0; p < k; ++p) acc += double(a[p * lda + i]) * double(b[p * ldb + j]);
        ASSERT_NEAR(double(c[i * ldc + j]), acc, tol) << "C[" << i << ", " << j << "]";
      }
  };
  run(float(), 384, 128, 32, 1.0);  // the composed GRU's dW_hh += gᵀ h at H = 128, B = 32
  run(float(), 101, 333, 64, 0.0);
  run(double(), 203, 170, 31, 1.0);
  run(double(), 2, 8200, 64, 0.0);
}

TEST(PackedGemm, UnpackedProductHasTheKernelsBits) {
  // multiply_unpacked (sampling's one-row step in the fused GRU) forms each element of C as the
  // kernel does, so its result must equal multiply()'s bit for bit: rows 1 to 3, column counts
  // around its eight-column blocks and the panel width, beta 0 (C not read) and 1, wide leading
  // dimensions, float32 and float64.
  auto run = [](auto tag, std::size_t m, std::size_t n, std::size_t k, double beta) {
    using T = decltype(tag);
    using P = detail::PackedGemm<T>;
    SCOPED_TRACE(fmt::format("{} m={} n={} k={} beta={}", sizeof(T) == 4 ? "float32" : "float64", m, n, k, beta));
    Generator gen(3 * m + 11 * n + k);
    const std::size_t lda = k + 1, ldbt = k + 2, ldc = n + 3;
    std::vector<T> a(m * lda), bt(n * ldbt), c(m * ldc);
    for (T& x : a) x = T(gen.uniform(-1, 1));
    for (T& x : bt) x = T(gen.uniform(-1, 1));
    for (T& x : c) x = beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(gen.uniform(-1, 1));
    for (const detail::GemmKernel<T>* kernel : detail::gemm_kernels<T>()) {
    SCOPED_TRACE(std::string("kernel ") + kernel->name);
    std::vector<T> packed_c = c, unpacked_c = c;
    std::vector<T, xsimd::aligned_allocator<T, 64>> storage(P::storage_size(k, n, kernel));
    P packed(storage.data(), bt.data(), ldbt, /*transpose_b=*/true, k, n, kernel);
    packed.multiply(m, a.data(), lda, T(beta), packed_c.data(), ldc);
    P::multiply_unpacked(m, n, k, a.data(), lda, bt.data(), ldbt, T(beta), unpacked_c.data(), ldc, kernel);
    for (std::size_t e = 0; e < c.size(); ++e) {
      if (e % ldc >= n) {  // padding: untouched (NaN stays NaN)
        if (!std::isnan(c[e])) ASSERT_EQ(unpacked_c[e], c[e]);
        continue;
      }
      ASSERT_FALSE(std::isnan(unpacked_c[e])) << "element " << e;
      ASSERT_EQ(std::memcmp(&unpacked_c[e], &packed_c[e], sizeof(T)), 0)
          << "element " << e << ": " << unpacked_c[e] << " vs " << packed_c[e];
    }
    }
  };
  SKIP_WITHOUT_KERNEL();
  for (std::size_t m : {1, 2, 3})
    for (std::size_t n : {1, 7, 8, 9, 33, 3 * 37})
      for (double beta : {0.0, 1.0}) {
        run(float(), m, n, 37, beta);
        run(double(), m, n, 64, beta);
      }
  run(float(), 1, 3 * 512, 512, 0.0);  // the fused GRU's step at H = 512
}

namespace {

/// C = op(A) op(B) + beta C on detail::engine_gemm against a plain loop in double (long double
/// for float64), every element; the padding of C untouched; returns C.
template <class T>
std::vector<T> check_engine_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double beta) {
  SCOPED_TRACE(fmt::format("{} ta={} tb={} m={} n={} k={} beta={}", sizeof(T) == 4 ? "float32" : "float64", ta,
                           tb, m, n, k, beta));
  Generator gen(5 * m + 3 * n + k + (ta ? 1 : 0) + (tb ? 2 : 0));
  const std::size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
  std::vector<T> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc);
  for (T& x : a) x = T(gen.uniform(-1, 1));
  for (T& x : b) x = T(gen.uniform(-1, 1));
  for (T& x : c) x = beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(gen.uniform(-1, 1));
  const std::vector<T> c0 = c;
  detail::engine_gemm(detail::GemmArgs<T>{ta, tb, m, n, k, a.data(), lda, b.data(), ldb, T(beta), c.data(), ldc});
  const double tol = (sizeof(T) == 4 ? 4e-7 : 1e-15) * double(k + 1);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      long double acc = beta == 0 ? 0.0L : (long double)beta * c0[i * ldc + j];
      for (std::size_t p = 0; p < k; ++p)
        acc += (long double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      EXPECT_NEAR(double(c[i * ldc + j]), double(acc), tol) << "C[" << i << ", " << j << "]";
      if (::testing::Test::HasFailure()) return c;
    }
    for (std::size_t j = n; j < ldc; ++j)  // padding: untouched
      if (!std::isnan(c0[i * ldc + j])) EXPECT_EQ(c[i * ldc + j], c0[i * ldc + j]);
  }
  return c;
}

}  // namespace

TEST(PackedGemm, EngineGemmEqualsTheReference) {
  // engine_gemm (blas.cpp, blocked_product): what gemm() runs for large products when OpenBLAS's
  // kernel is narrower than the engine's. Shapes across every block edge: k beyond one block of
  // 512 (partial sums added into C), n beyond one block of columns (256 float32, 128 float64)
  // with a partial last panel, m above and below n (rows or columns split over the two threads),
  // k = 1 and k = 0 (C = beta C); A and B each given directly or transposed; beta 0 (C not
  // read), 1 and 0.5.
  if (!detail::PackedGemm<float>::available()) GTEST_SKIP() << "this process multiplies on BLAS (no kernel here, or TAPEGRAD_GEMM_KERNEL=blas)";
  struct Shape { std::size_t m, n, k; };
  for (Shape s : {Shape{37, 300, 1100}, Shape{301, 65, 600}, Shape{2, 513, 513}, Shape{150, 40, 1}, Shape{9, 9, 0}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (double beta : {0.0, 1.0, 0.5}) {
          check_engine_gemm<float>(ta, tb, s.m, s.n, s.k, beta);
          check_engine_gemm<double>(ta, tb, s.m, s.n, s.k, beta);
          if (HasFailure()) return;
        }
}

TEST(PackedGemm, EngineGemmBitsDependOnTheShapeAlone) {
  // Each element of C is summed in one order whichever half of the rows or columns, and which
  // block of columns, holds it: the first 100 rows (or columns) of a product, multiplied on
  // their own, equal those of the whole product bit for bit, though the halves and blocks fall
  // elsewhere.
  if (!detail::PackedGemm<float>::available()) GTEST_SKIP() << "this process multiplies on BLAS (no kernel here, or TAPEGRAD_GEMM_KERNEL=blas)";
  const std::size_t m = 301, n = 300, k = 1100;
  Generator gen(24);
  std::vector<float> a(m * k), b(k * n), whole(m * n), rows(100 * n), cols(m * 100);
  for (float& x : a) x = float(gen.uniform(-1, 1));
  for (float& x : b) x = float(gen.uniform(-1, 1));
  detail::engine_gemm(detail::GemmArgs<float>{false, false, m, n, k, a.data(), k, b.data(), n, 0.f, whole.data(), n});
  detail::engine_gemm(detail::GemmArgs<float>{false, false, 100, n, k, a.data(), k, b.data(), n, 0.f, rows.data(), n});
  detail::engine_gemm(detail::GemmArgs<float>{false, false, m, 100, k, a.data(), k, b.data(), n, 0.f, cols.data(), 100});
  for (std::size_t i = 0; i < 100; ++i)
    for (std::size_t j = 0; j < n; ++j) ASSERT_EQ(rows[i * n + j], whole[i * n + j]) << "row block, C[" << i << ", " << j << "]";
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < 100; ++j) ASSERT_EQ(cols[i * 100 + j], whole[i * n + j]) << "column block, C[" << i << ", " << j << "]";
}

TEST(PackedGemm, EngineTakesLargeProductsOnlyFromANarrowerBlasKernel) {
  // OpenBLAS's kernel widths by core name (OPENBLAS_CORETYPE's spelling, any case), and the rule:
  // the engine takes the large products only when OpenBLAS's kernel is known and narrower.
  EXPECT_EQ(detail::blas_kernel_bits("SkylakeX"), 512);
  EXPECT_EQ(detail::blas_kernel_bits("COOPERLAKE"), 512);
  EXPECT_EQ(detail::blas_kernel_bits("SapphireRapids"), 512);
  EXPECT_EQ(detail::blas_kernel_bits("Haswell"), 256);
  EXPECT_EQ(detail::blas_kernel_bits("zen"), 256);
  EXPECT_EQ(detail::blas_kernel_bits("Nehalem"), 128);
  EXPECT_EQ(detail::blas_kernel_bits("NEOVERSEN1"), 0);  // not known here
  EXPECT_EQ(detail::blas_kernel_bits(""), 0);
  EXPECT_TRUE(detail::engine_replaces_blas("Haswell", 512));
  EXPECT_TRUE(detail::engine_replaces_blas("Nehalem", 256));
  EXPECT_FALSE(detail::engine_replaces_blas("SkylakeX", 512));
  EXPECT_FALSE(detail::engine_replaces_blas("Haswell", 256));
  EXPECT_FALSE(detail::engine_replaces_blas("Zen", 0));  // a build without the engine's kernel
  EXPECT_FALSE(detail::engine_replaces_blas("Unknown", 512));

  // In this process: a large product through gemm() has engine_gemm's bits exactly when the
  // rule says the engine takes it (OPENBLAS_CORETYPE=Haswell on an AVX-512 machine), and is
  // close to them either way.
  if (!detail::PackedGemm<float>::available()) return;
  const std::size_t m = 512, n = 520, k = 130;  // 34.6 M multiply-adds, above kSplitProduct
  ASSERT_GE(m * n * k, detail::kSplitProduct);
  Generator gen(7);
  std::vector<float> a(m * k), b(n * k), via_gemm(m * n), via_engine(m * n);
  for (float& x : a) x = float(gen.uniform(-1, 1));
  for (float& x : b) x = float(gen.uniform(-1, 1));
  detail::gemm(false, true, m, n, k, a.data(), k, b.data(), k, 0.f, via_gemm.data(), n);
  detail::engine_gemm(detail::GemmArgs<float>{false, true, m, n, k, a.data(), k, b.data(), k, 0.f, via_engine.data(), n});
  bool identical = true;
  for (std::size_t e = 0; e < via_gemm.size(); ++e) {
    ASSERT_NEAR(via_gemm[e], via_engine[e], 1e-4) << "element " << e;
    identical = identical && via_gemm[e] == via_engine[e];
  }
  if (detail::engine_replaces_blas()) EXPECT_TRUE(identical) << "gemm() did not run the engine's product";
}
