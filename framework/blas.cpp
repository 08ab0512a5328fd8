// tapegrad — GEMM through OpenBLAS (see blas.hpp).
#include "framework/blas.hpp"

#include "framework/parallel.hpp"

#include <cblas.h>

#include <algorithm>
#include <cstdint>

namespace tapegrad::detail {

namespace {

/// Runs the enclosing call on one OpenBLAS thread when the product is small.
class SmallProductThreads {
 public:
  explicit SmallProductThreads(std::size_t macs)
      : previous_(macs < kSmallProduct ? openblas_get_num_threads() : 1) {
    if (previous_ > 1) openblas_set_num_threads(1);
  }
  ~SmallProductThreads() {
    if (previous_ > 1) openblas_set_num_threads(previous_);
  }
  SmallProductThreads(const SmallProductThreads&) = delete;
  SmallProductThreads& operator=(const SmallProductThreads&) = delete;

 private:
  int previous_;
};

CBLAS_TRANSPOSE flag(bool t) { return t ? CblasTrans : CblasNoTrans; }

void gemv(bool t, std::size_t m, std::size_t n, const float* a, std::size_t lda, const float* x,
          std::size_t incx, float beta, float* y) {
  cblas_sgemv(CblasRowMajor, flag(t), int(m), int(n), 1.0f, a, int(lda), x, int(incx), beta, y, 1);
}
void gemv(bool t, std::size_t m, std::size_t n, const double* a, std::size_t lda, const double* x,
          std::size_t incx, double beta, double* y) {
  cblas_dgemv(CblasRowMajor, flag(t), int(m), int(n), 1.0, a, int(lda), x, int(incx), beta, y, 1);
}
void gemm_call(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
               std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), 1.0f, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}
void gemm_call(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const double* a,
               std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
               std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), 1.0, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}

/// C = op(A)·op(B) + beta·C for a product of at most kTinyProduct multiply-adds, with the loops
/// ordered so that the innermost one walks contiguous memory (the compiler vectorises it): rows
/// of B are added into a row of C when B is not transposed, dot products of contiguous rows
/// otherwise. (One loop with the transposes tested inside it ran ~3× slower: it took a third of
/// the date-translation example's time.)
template <class T>
void tiny_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a,
               std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    T* c_row = c + i * ldc;
    if (!tb) {  // c_row = beta·c_row + Σ_p op(A)[i, p] · B[p, :]
      for (std::size_t j = 0; j < n; ++j) c_row[j] = beta == T(0) ? T(0) : beta * c_row[j];
      for (std::size_t p = 0; p < k; ++p) {
        const T a_ip = ta ? a[p * lda + i] : a[i * lda + p];
        const T* b_row = b + p * ldb;
        for (std::size_t j = 0; j < n; ++j) c_row[j] += a_ip * b_row[j];
      }
    } else {  // c_row[j] = op(A)[i, :] · B[j, :] (+ beta·c_row[j])
      for (std::size_t j = 0; j < n; ++j) {
        const T* b_row = b + j * ldb;
        T acc = 0;
        if (!ta) {
          const T* a_row = a + i * lda;
          for (std::size_t p = 0; p < k; ++p) acc += a_row[p] * b_row[p];
        } else {
          for (std::size_t p = 0; p < k; ++p) acc += a[p * lda + i] * b_row[p];
        }
        c_row[j] = beta == T(0) ? acc : acc + beta * c_row[j];
      }
    }
  }
}

/// m·n·k saturated: each size fits an int (tensors are at most 2^31 − 1 elements), their
/// product need not fit a size_t.
std::size_t work_of(std::size_t m, std::size_t n, std::size_t k) {
  const std::size_t mn = m * n;
  return k != 0 && mn > SIZE_MAX / k ? SIZE_MAX : mn * k;
}

/// Whether gemm_impl cuts C in two halves for the two cores (blas.hpp): a large product, or a
/// recurrence's per-step product (a few rows of states against a wider weight, k ≤ n). The
/// shape alone decides, so a result never depends on whether the helper was free. (Products
/// with a long k, such as a weight's gradient over B·T rows, stay whole: they are not per-step
/// products, and their rounding is the one the documented outputs were recorded with.)
bool split_in_halves(std::size_t m, std::size_t n, std::size_t k, std::size_t work) {
  if (work >= kSmallProduct || std::max(m, n) < 16 || m == 1) return false;
  return work >= kSplitProduct || (work >= kSplitFewRows && m <= kFewRows && k <= n);
}

template <class T>
void gemm_impl(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a,
               std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = beta·C
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  const std::size_t work = work_of(m, n, k);
  if (work <= kTinyProduct) {  // a plain loop: cheaper than BLAS's call and packing
    tiny_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  SmallProductThreads threads(work);
  if (m == 1) {
    // The row op(A) is contiguous, or a column of A (stride lda) when A is transposed.
    // y = op(B)ᵀ·a, where op(B) is B (k×n) or Bᵀ (B stored n×k).
    if (beta == T(0)) std::fill(c, c + n, T(0));  // gemv reads y even when beta = 0
    if (tb)
      gemv(false, n, k, b, ldb, a, ta ? lda : 1, beta, c);
    else
      gemv(true, k, n, b, ldb, a, ta ? lda : 1, beta, c);
    return;
  }
  if (split_in_halves(m, n, k, work)) {
    // Two halves of C on two cores (framework/parallel.hpp), each one OpenBLAS thread: split
    // the longer side, so that each thread packs half of the larger operand and all of the
    // smaller one. Rows m0.. of op(A) start at a + m0·lda (a + m0 when A is stored transposed);
    // columns n0.. of op(B) at b + n0 (b + n0·ldb when B is stored transposed).
    // The split depends on the shape alone: when the helper is busy (or there is one core) the
    // same two halves run one after the other, so the result never depends on what else runs.
    // (Two halves are not always bit-identical to one call: OpenBLAS's rounding can differ in
    // the last bit for some values, so the split is kept even where it does not pay.)
    OneBlasThread one_blas_thread;
    auto half = [&](int h) {
      if (m >= n) {
        const std::size_t m0 = h == 0 ? 0 : m / 2, rows = h == 0 ? m / 2 : m - m / 2;
        gemm_call(ta, tb, rows, n, k, ta ? a + m0 : a + m0 * lda, lda, b, ldb, beta, c + m0 * ldc, ldc);
      } else {
        const std::size_t n0 = h == 0 ? 0 : n / 2, cols = h == 0 ? n / 2 : n - n / 2;
        gemm_call(ta, tb, m, cols, k, a, lda, tb ? b + n0 * ldb : b + n0, ldb, beta, c + n0, ldc);
      }
    };
    two_halves(half);
    return;
  }
  gemm_call(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

template <class T>
void gemm_args(const GemmArgs<T>& g) {
  gemm_impl(g.ta, g.tb, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
}

template <class T>
void gemm_pair_impl(const GemmArgs<T>& p, const GemmArgs<T>& q) {
  // A product that gemm_impl would split itself is not paired: it runs as its own gemm() call.
  const auto pairs = [](const GemmArgs<T>& g) {
    const std::size_t w = work_of(g.m, g.n, g.k);
    return w >= kPairProduct && w < kSplitProduct && !split_in_halves(g.m, g.n, g.k, w);
  };
  if (!have_two_cores() || !pairs(p) || !pairs(q)) {
    gemm_args(p);
    gemm_args(q);
    return;
  }
  // Below kSplitProduct gemm_impl makes one call on one OpenBLAS thread (or gemv): the same call
  // on either thread gives the same bits. The thread count is lowered here, once, so that the
  // two halves never change OpenBLAS's global setting at the same time.
  OneBlasThread one_blas_thread;
  auto half = [&](int h) { gemm_args(h == 0 ? p : q); };
  two_halves(half);
}

}  // namespace

void gemm_pair(const GemmArgs<float>& p, const GemmArgs<float>& q) { gemm_pair_impl(p, q); }
void gemm_pair(const GemmArgs<double>& p, const GemmArgs<double>& q) { gemm_pair_impl(p, q); }

OneBlasThread::OneBlasThread() : previous_(openblas_get_num_threads()) {
  if (previous_ > 1) openblas_set_num_threads(1);
}
OneBlasThread::~OneBlasThread() {
  if (previous_ > 1) openblas_set_num_threads(previous_);
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  gemm_impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const double* a,
          std::size_t lda, const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc) {
  gemm_impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace tapegrad::detail
