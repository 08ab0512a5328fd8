// The fused recurrences' per-step product (framework/packed_gemm.hpp) against BLAS
// (framework/blas.hpp) and a plain triple loop: every row count up to two register blocks and
// beyond, column counts around the panel width (full panels, a partial last panel, fewer columns
// than one panel), B given directly and transposed, beta 0 (C not read: NaN there stays out) and
// beta 1, leading dimensions larger than the widths, float32 and float64.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>
// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics as inlined
// into the kernel: a false positive (_mm512_undefined_* on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "framework/blas.hpp"
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
  std::vector<T> expected(m * ldc), blas = c0, packed_c = c0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double acc = beta == T(0) ? 0.0 : double(beta) * double(c0[i * ldc + j]);
      for (std::size_t kk = 0; kk < k; ++kk)
        acc += double(a[i * lda + kk]) * double(transpose_b ? b[j * ldb + kk] : b[kk * ldb + j]);
      expected[i * ldc + j] = T(acc);
    }
  detail::gemm(false, transpose_b, m, n, k, a.data(), lda, b.data(), ldb, beta, blas.data(), ldc);
  std::vector<T, xsimd::aligned_allocator<T, 64>> storage(detail::PackedGemm<T>::storage_size(k, n));
  detail::PackedGemm<T> packed(storage.data(), b.data(), ldb, transpose_b, k, n);
  packed.multiply(m, a.data(), lda, beta, packed_c.data(), ldc);
  const double tol = (sizeof(T) == 4 ? 1e-6 : 1e-15) * double(k);
  double worst = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      worst = std::max(worst, std::abs(double(packed_c[i * ldc + j]) - double(expected[i * ldc + j])));
      ASSERT_NEAR(double(blas[i * ldc + j]), double(expected[i * ldc + j]), tol);  // the reference agrees
    }
  EXPECT_LE(worst, tol);
  for (std::size_t i = 0; i < m; ++i)  // the padding columns of C are untouched
    for (std::size_t j = n; j < ldc; ++j)
      if (!(std::isnan(c0[i * ldc + j]) && std::isnan(packed_c[i * ldc + j])))
        ASSERT_EQ(packed_c[i * ldc + j], c0[i * ldc + j]);
}

template <class T>
void check_all() {
  using P = detail::PackedGemm<T>;
  for (std::size_t m : {std::size_t(1), std::size_t(3), P::MR - 1, P::MR, P::MR + 1, 2 * P::MR + 3})
    for (std::size_t n : {std::size_t(1), P::NR - 1, P::NR, P::NR + 1, 3 * P::NR + 5})
      for (std::size_t k : {1, 7, 64})
        for (bool transpose_b : {false, true})
          for (T beta : {T(0), T(1)}) check<T>(m, n, k, transpose_b, beta);
}

}  // namespace

TEST(PackedGemm, EqualsBlasFloat32) { check_all<float>(); }
TEST(PackedGemm, EqualsBlasFloat64) { check_all<double>(); }

TEST(PackedGemm, RecurrentShapes) {
  // The shapes the fused LSTM and GRU run: half a batch of 16 rows against (H, 4H) and (4H, H).
  check<float>(16, 2048, 512, true, 1.0f);
  check<float>(16, 512, 2048, false, 0.0f);
  check<double>(5, 3 * 37, 37, true, 1.0);
}
