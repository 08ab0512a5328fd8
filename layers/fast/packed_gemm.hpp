// tapegrad — the per-step product of a fused recurrence, C = A · B + beta · C, where A is the
// batch's states (a few rows) and B a recurrent weight that is the same at every step.
//
// Why not BLAS: OpenBLAS packs both operands into its own layout at every call. With A only
// B = 16–32 rows, packing the whole weight (4 MB for the LSTM at H = 512) costs as much as a
// fifth of the multiplication, and a recurrence calls it T times per pass with the same weight.
// Here the weight is packed once per forward (or backward) into column panels of NR = 2 SIMD
// widths, K rows each, contiguous; the kernel then keeps an MR × NR block of C in registers
// (MR = 8 rows with 512-bit vectors, 4 with 256-bit ones), streams the panel, and broadcasts A's
// elements, so nothing is copied per step. Used only when vectors are at least 256 bits wide
// (available()); otherwise the callers use BLAS. tests/test_packed_gemm.cpp compares it with
// BLAS for every tail (rows, columns, beta).
#pragma once

#include <algorithm>
#include <cstddef>

#include "layers/fast/fused_kernels.hpp"

namespace tapegrad::fused {

template <class T>
class PackedGemm {
 public:
  using V = xsimd::batch<T>;
  static constexpr std::size_t S = V::size;                         // lanes per vector
  static constexpr std::size_t NR = 2 * S;                          // columns per panel
  static constexpr std::size_t MR = sizeof(T) * S >= 64 ? 8 : 4;    // rows per register block

  /// Whether the kernel beats BLAS here: vectors of at least 256 bits (AVX2, AVX-512).
  static constexpr bool available() { return sizeof(T) * S >= 32; }

  /// Packs B (k × n), given row-major with leading dimension ldb, or as its transpose
  /// (b holds Bᵀ, n × k, when transpose_b).
  PackedGemm(const T* b, std::size_t ldb, bool transpose_b, std::size_t k, std::size_t n)
      : k_(k), n_(n), panels_((n + NR - 1) / NR), packed_(std::max<std::size_t>(panels_ * k * NR, 1)) {
    T* out = packed_.data();
    for (std::size_t p = 0; p < panels_; ++p) {
      T* panel = out + p * k * NR;
      for (std::size_t jj = 0; jj < NR; ++jj) {
        const std::size_t j = p * NR + jj;
        if (j >= n) {
          for (std::size_t kk = 0; kk < k; ++kk) panel[kk * NR + jj] = T(0);
        } else if (transpose_b) {
          for (std::size_t kk = 0; kk < k; ++kk) panel[kk * NR + jj] = b[j * ldb + kk];
        } else {
          for (std::size_t kk = 0; kk < k; ++kk) panel[kk * NR + jj] = b[kk * ldb + j];
        }
      }
    }
  }

  /// C (m × n, ldc) = A (m × k, lda) · B + beta · C. With beta = 0, C is not read.
  void multiply(std::size_t m, const T* a, std::size_t lda, T beta, T* c, std::size_t ldc) const {
    for (std::size_t p = 0; p < panels_; ++p)
      for (std::size_t i = 0; i < m; i += MR) block(std::min(MR, m - i), p, a + i * lda, lda, beta, c + i * ldc, ldc);
  }

 private:
  /// Rows [0, rows) of A against panel p, by a kernel unrolled for that many rows.
  void block(std::size_t rows, std::size_t p, const T* a, std::size_t lda, T beta, T* c,
             std::size_t ldc) const {
    switch (rows) {
      case 1: return kernel<1>(p, a, lda, beta, c, ldc);
      case 2: return kernel<2>(p, a, lda, beta, c, ldc);
      case 3: return kernel<3>(p, a, lda, beta, c, ldc);
      case 4: return kernel<4>(p, a, lda, beta, c, ldc);
      case 5: return kernel<(MR > 4 ? 5 : 1)>(p, a, lda, beta, c, ldc);
      case 6: return kernel<(MR > 4 ? 6 : 1)>(p, a, lda, beta, c, ldc);
      case 7: return kernel<(MR > 4 ? 7 : 1)>(p, a, lda, beta, c, ldc);
      default: return kernel<MR>(p, a, lda, beta, c, ldc);
    }
  }

  template <std::size_t R>
  void kernel(std::size_t p, const T* a, std::size_t lda, T beta, T* c, std::size_t ldc) const {
    const T* panel = packed_.data() + p * k_ * NR;
    V acc0[R], acc1[R];
    for (std::size_t r = 0; r < R; ++r) acc0[r] = V(T(0)), acc1[r] = V(T(0));
    for (std::size_t kk = 0; kk < k_; ++kk) {
      const V b0 = V::load_aligned(panel + kk * NR), b1 = V::load_aligned(panel + kk * NR + S);
      for (std::size_t r = 0; r < R; ++r) {
        const V ar(a[r * lda + kk]);
        acc0[r] = xsimd::fma(ar, b0, acc0[r]);
        acc1[r] = xsimd::fma(ar, b1, acc1[r]);
      }
    }
    const std::size_t j0 = p * NR, width = std::min(NR, n_ - j0);
    for (std::size_t r = 0; r < R; ++r) {
      T* row = c + r * ldc + j0;
      if (width == NR) {
        if (beta != T(0)) {
          acc0[r] = xsimd::fma(V(beta), V::load_unaligned(row), acc0[r]);
          acc1[r] = xsimd::fma(V(beta), V::load_unaligned(row + S), acc1[r]);
        }
        acc0[r].store_unaligned(row), acc1[r].store_unaligned(row + S);
      } else {  // the last panel's valid columns
        alignas(64) T tmp[NR];
        acc0[r].store_aligned(tmp), acc1[r].store_aligned(tmp + S);
        for (std::size_t j = 0; j < width; ++j) row[j] = beta != T(0) ? tmp[j] + beta * row[j] : tmp[j];
      }
    }
  }

  std::size_t k_, n_, panels_;
  Buffer<T> packed_;  // panel p: rows kk = 0 … k−1 of NR contiguous columns
};

}  // namespace tapegrad::fused
