// tapegrad — a GEMM for a few rows against a wide operand that stays the same for many products:
// C = A · B + beta · C with A (m × k) not transposed and B packed once into column panels.
//
// The fused recurrences (layers/fast/) multiply a step's states (16–64 rows) by a recurrent weight
// at every step, forward and backward. Through BLAS, OpenBLAS repacks the whole weight (4 MB for
// the LSTM at H = 512) at each of the T calls; here it is packed once per forward or backward
// pass. The kernel keeps an MR × NR block of C in registers (NR = 2 SIMD widths; MR = 8 rows with
// 512-bit vectors, 4 with 256-bit ones), streams one panel (k rows of NR contiguous columns) and
// broadcasts A's elements. It is compiled for the build's own vector width (AVX-512 here, with
// -march=native), while OpenBLAS picks its kernel at run time (OPENBLAS_CORETYPE=Haswell on this
// machine: AVX2): measured single-threaded here, 16 rows against a 512 × 2048 weight, 197 GFLOP/s
// (104 when compiled for AVX2 only) against 66 for BLAS called at every step. available() is false
// below 256-bit vectors (a portable build: the callers then use BLAS). Not a general GEMM: it has
// no blocking over k or m, which products with many rows need. tests/test_packed_gemm.cpp compares
// it with BLAS for every tail (rows, columns, beta, transposed B).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics: a false positive.
#pragma GCC diagnostic push
#if !defined(__clang__)  // clang has no such warning, and warns about an unknown one
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <xsimd/xsimd.hpp>
#pragma GCC diagnostic pop

namespace tapegrad::detail {

template <class T>
class PackedGemm {
 public:
  using V = xsimd::batch<T>;
  static constexpr std::size_t S = V::size;                         // lanes per vector
  static constexpr std::size_t NR = 2 * S;                          // columns per panel
  static constexpr std::size_t MR = sizeof(T) * S >= 64 ? 8 : 4;    // rows per register block

  /// Whether the kernel beats BLAS here: vectors of at least 256 bits (AVX2, AVX-512).
  static constexpr bool available() { return sizeof(T) * S >= 32; }

  /// Elements of storage the packed B (k × n) needs.
  static std::size_t storage_size(std::size_t k, std::size_t n) { return std::max<std::size_t>((n + NR - 1) / NR * k * NR, 1); }

  /// Packs B (k × n), given row-major with leading dimension ldb, or as its transpose (b holds
  /// Bᵀ, n × k, when transpose_b), into `storage`: storage_size(k, n) elements, 64-byte aligned,
  /// owned by the caller and alive as long as this object is used.
  PackedGemm(T* storage, const T* b, std::size_t ldb, bool transpose_b, std::size_t k, std::size_t n)
      : PackedGemm(storage, k, n) {
    pack_panels(storage, b, ldb, transpose_b, k, n, 0, panels_);
  }

  /// Uses `storage` as already packed (by pack_panels over every panel) for B (k × n).
  PackedGemm(const T* storage, std::size_t k, std::size_t n)
      : k_(k), n_(n), panels_((n + NR - 1) / NR), packed_(storage) {}

  /// Number of panels (NR columns each, the last one possibly partial).
  static std::size_t panels(std::size_t n) { return (n + NR - 1) / NR; }

  /// Packs panels [p0, p1) of B into `storage` (laid out as the constructor does): two threads
  /// can pack disjoint panel ranges of the same storage at once.
  static void pack_panels(T* storage, const T* b, std::size_t ldb, bool transpose_b, std::size_t k,
                          std::size_t n, std::size_t p0, std::size_t p1) {
    // Read B in its own row order (contiguous), write the panels.
    for (std::size_t p = p0; p < p1; ++p) {
      T* panel = storage + p * k * NR;
      const std::size_t j0 = p * NR, width = std::min(NR, n - j0);
      if (transpose_b) {  // in tiles of 32 rows of the panel, which stay in L1 while written
        for (std::size_t k0 = 0; k0 < k; k0 += 32)
          for (std::size_t jj = 0; jj < NR; ++jj)
            for (std::size_t kk = k0; kk < std::min(k, k0 + 32); ++kk)
              panel[kk * NR + jj] = jj < width ? b[(j0 + jj) * ldb + kk] : T(0);
      } else {
        for (std::size_t kk = 0; kk < k; ++kk)
          for (std::size_t jj = 0; jj < NR; ++jj) panel[kk * NR + jj] = jj < width ? b[kk * ldb + j0 + jj] : T(0);
      }
    }
  }

  /// The product multiply() computes, C = A · B + beta · C, with B given as Bᵀ (n × k, leading
  /// dimension ldbt) and read where it is: nothing packed. Each element of C is the very sum the
  /// kernel forms (0, then fused(a, b, ·) for kk = 0 … k−1 in order, then fused(beta, C, ·) when
  /// beta ≠ 0), so the bits are the same in every build; only the loops differ: scalar, eight
  /// columns of C at a time. For a product made once, such as one step of one sequence (sampling a character):
  /// packing B costs more than the product itself. tests/test_packed_gemm.cpp,
  /// UnpackedProductHasTheKernelsBits, compares the bits.
  [[gnu::noinline]] static void multiply_unpacked(std::size_t m, std::size_t n, std::size_t k,
                                                  const T* a, std::size_t lda, const T* bt,
                                                  std::size_t ldbt, T beta, T* c, std::size_t ldc) {
    constexpr std::size_t J = 8;  // independent sums in flight
    for (std::size_t i = 0; i < m; ++i) {
      const T* ai = a + i * lda;
      for (std::size_t j = 0; j < n; j += J) {  // columns j … j + w − 1 of C
        const std::size_t w = std::min(J, n - j);
        const T* bj = bt + j * ldbt;  // their rows of Bᵀ
        T acc[J] = {};
        if (w == J) {  // the count known at compile time: the sums stay in registers
          for (std::size_t kk = 0; kk < k; ++kk)
            for (std::size_t q = 0; q < J; ++q) acc[q] = fused(ai[kk], bj[q * ldbt + kk], acc[q]);
        } else {
          for (std::size_t kk = 0; kk < k; ++kk)
            for (std::size_t q = 0; q < w; ++q) acc[q] = fused(ai[kk], bj[q * ldbt + kk], acc[q]);
        }
        T* cj = c + i * ldc + j;
        for (std::size_t q = 0; q < w; ++q) cj[q] = beta != T(0) ? fused(beta, cj[q], acc[q]) : acc[q];
      }
    }
  }

  /// C (m × n, ldc) = A (m × k, lda) · B + beta · C. With beta = 0, C is not read.
  void multiply(std::size_t m, const T* a, std::size_t lda, T beta, T* c, std::size_t ldc) const {
    multiply_panels(0, panels_, m, a, lda, beta, c, ldc);
  }

  /// multiply() for the columns of panels [p0, p1) only. Each element of C is the same sum in
  /// the same order whichever range computes it: splitting the panels never changes a bit.
  /// With transpose_a, `a` holds Aᵀ (k × m, leading dimension lda): row kk of it gives the
  /// elements of column kk of A for consecutive rows (a weight's gradient gᵀ h with a short k).
  ///
  /// While the row blocks of A run against panel p, the next panel of the range (p0 after the
  /// last: the next product, a recurrence's next step, starts there) is prefetched into L2, a
  /// slice per row block, so that it is not fetched from L3 in one burst when its turn comes.
  /// A recurrent weight at H = 512 (3 MiB for the GRU) does not fit a 2 MiB L2, and without this
  /// the first row block of every panel waited for it: on the 2-core Xeon of docs/performance.md
  /// (session 23) the prefetch took the forward product of the GRU at L (32 rows against
  /// 512 × 1536, both cores) from 240–268 to 287–321 GFLOP/s.
  void multiply_panels(std::size_t p0, std::size_t p1, std::size_t m, const T* a, std::size_t lda,
                       T beta, T* c, std::size_t ldc, bool transpose_a = false) const {
    const std::size_t blocks = (m + MR - 1) / MR, panel_bytes = k_ * NR * sizeof(T);
    for (std::size_t p = p0; p < p1; ++p) {
      const char* next = reinterpret_cast<const char*>(packed_ + (p + 1 < p1 ? p + 1 : p0) * k_ * NR);
      for (std::size_t i = 0, ib = 0; i < m; i += MR, ++ib) {
        const std::size_t rows = std::min(MR, m - i);
        // this block's slice of the next panel: [ib, ib + 1) / blocks of it
        const Prefetch pf{next + ib * panel_bytes / blocks, panel_bytes / blocks / std::max<std::size_t>(k_ / 2, 1)};
        if (transpose_a)
          block<true>(rows, p, a + i, lda, beta, c + i * ldc, ldc, pf);
        else
          block<false>(rows, p, a + i * lda, lda, beta, c + i * ldc, ldc, pf);
      }
    }
  }

 private:
  /// a · b + c, rounded once wherever the build has FMA, the same for a vector and a scalar: the
  /// kernel and multiply_unpacked must agree bit for bit in every build. (xsimd 8 has no AVX-512
  /// fma of its own: its fallback a · b + c was fused only where the compiler contracted it, at
  /// -O2 and above, and a -O1 build then rounded twice.)
  static V fused(const V& a, const V& b, const V& c) {
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64) {
      if constexpr (std::is_same_v<T, float>) return V(_mm512_fmadd_ps(a, b, c));
      else return V(_mm512_fmadd_pd(a, b, c));
    }
#endif
    return xsimd::fma(a, b, c);  // with FMA3 (AVX2): a true fma
  }
  static T fused(T a, T b, T c) {
#if defined(__FMA__)
    return std::fma(a, b, c);
#else
    return a * b + c;  // no FMA instruction: the vectors round twice too
#endif
  }

  /// What a kernel prefetches into L2: one line at `at`, then every `stride` bytes, once per two
  /// steps of k.
  struct Prefetch {
    const char* at;
    std::size_t stride;
  };

  /// Rows [0, rows) of A against panel p, by a kernel unrolled for that many rows.
  template <bool TA>
  void block(std::size_t rows, std::size_t p, const T* a, std::size_t lda, T beta, T* c,
             std::size_t ldc, Prefetch pf) const {
    switch (rows) {
      case 1: return kernel<1, TA>(p, a, lda, beta, c, ldc, pf);
      case 2: return kernel<2, TA>(p, a, lda, beta, c, ldc, pf);
      case 3: return kernel<3, TA>(p, a, lda, beta, c, ldc, pf);
      case 4: return kernel<4, TA>(p, a, lda, beta, c, ldc, pf);
      case 5: return kernel<(MR > 4 ? 5 : 1), TA>(p, a, lda, beta, c, ldc, pf);
      case 6: return kernel<(MR > 4 ? 6 : 1), TA>(p, a, lda, beta, c, ldc, pf);
      case 7: return kernel<(MR > 4 ? 7 : 1), TA>(p, a, lda, beta, c, ldc, pf);
      default: return kernel<MR, TA>(p, a, lda, beta, c, ldc, pf);
    }
  }

  /// Never inlined: compiled on its own, GCC 12 keeps the 2R accumulators in registers; inlined
  /// into the fused GRU's recurrent_weight_gradient (gru_fused.cpp), it kept them on the stack,
  /// stored and reloaded at every step of k, and that product ran at half the kernel's speed
  /// (docs/performance.md, session 24). A call costs nothing next to a panel's k steps.
  ///
  /// The loops over the R rows are unrolled by pragma, not left to the optimiser: at -O2 (a
  /// RelWithDebInfo build, or a distribution's default flags) GCC 12 did not unroll them, the
  /// accumulators went to the stack and the kernel ran at less than half speed; at -O3 the
  /// transposed-A kernel (a weight's gradient) ran 5–20 % slower than with the pragma
  /// (bench_ops BM_PackedGemm, one core of the AMD EPYC of docs/performance.md, session 29).
  template <std::size_t R, bool TA>
  [[gnu::noinline]] void kernel(std::size_t p, const T* a, std::size_t lda, T beta, T* c, std::size_t ldc,
                                Prefetch pf) const {
    const T* panel = packed_ + p * k_ * NR;
    V acc0[R], acc1[R];
#pragma GCC unroll 8
    for (std::size_t r = 0; r < R; ++r) acc0[r] = V(T(0)), acc1[r] = V(T(0));
    auto step = [&](std::size_t kk) {  // acc += A[:, kk] · panel row kk
      const V b0 = V::load_aligned(panel + kk * NR), b1 = V::load_aligned(panel + kk * NR + S);
#pragma GCC unroll 8
      for (std::size_t r = 0; r < R; ++r) {
        const V ar(TA ? a[kk * lda + r] : a[r * lda + kk]);
        acc0[r] = fused(ar, b0, acc0[r]);
        acc1[r] = fused(ar, b1, acc1[r]);
      }
    };
    std::size_t kk = 0;
    for (; kk + 2 <= k_; kk += 2) {  // the same sums in the same order, two steps at a time
      step(kk);
      __builtin_prefetch(pf.at, 0, 2);  // prefetcht1 on x86: into L2
      pf.at += pf.stride;
      step(kk + 1);
    }
    if (kk < k_) step(kk);
    const std::size_t j0 = p * NR, width = std::min(NR, n_ - j0);
#pragma GCC unroll 8
    for (std::size_t r = 0; r < R; ++r) {
      T* row = c + r * ldc + j0;
      if (width == NR) {
        if (beta != T(0)) {
          acc0[r] = fused(V(beta), V::load_unaligned(row), acc0[r]);
          acc1[r] = fused(V(beta), V::load_unaligned(row + S), acc1[r]);
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
  const T* packed_;  // panel p: rows kk = 0 … k−1 of NR contiguous columns
};

}  // namespace tapegrad::detail
