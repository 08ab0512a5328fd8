// tapegrad — the one place that calls BLAS (OpenBLAS): row-major GEMM with transpose flags, for
// float and double. Used by matmul and linear (ops_linalg.cpp) and the fused GRU and LSTM
// (layers/fast/).
//
//   C (m×n, ldc) = op(A) (m×k) · op(B) (k×n) + beta · C,    op(X) = Xᵀ when its flag is set
//
// Rules for small products, measured on this project's 2-core machine (docs/performance.md):
// - a tiny product (at most kTinyProduct multiply-adds) is a plain loop: BLAS's call and
//   packing overhead (~0.5–1 µs) is more than the arithmetic;
// - a single row (m = 1, e.g. a batch of one) goes to gemv, which skips GEMM's packing;
// - a product of fewer than kSmallProduct multiply-adds runs on one OpenBLAS thread. Waking
//   OpenBLAS's second thread saves little below that (the GRU's shapes measured 64–92 GFLOP/s
//   on 2 threads vs 79–92 on 1, bench_ops BM_SgemmThreads), and afterwards the woken thread
//   spins in sched_yield for a while, taking the second core from whatever runs next — the
//   fused GRU's own second thread (training step M: 100–115k chars/s with OpenBLAS's pool on,
//   134–146k with one OpenBLAS thread). OpenBLAS alone keeps to one thread below ~0.26 M.
// - from kSplitProduct up to kSmallProduct multiply-adds, C is cut in two halves that run on the
//   engine's own two threads (framework/parallel.hpp), one OpenBLAS thread each (the same
//   halves one after the other when the helper is busy: the split depends on the shape alone).
//   The composed GRU's per-step products ran 1.8–1.9× faster so at H = 512, B = 64 (64×512 by
//   512×1536: 50 M multiply-adds), with nothing left spinning in OpenBLAS afterwards. Two halves
//   are not always bit-identical to one call (OpenBLAS's rounding differs in the last bit for
//   some values), so the threshold also decides which results move: at 2^20 the H = 128, B = 32
//   training step ran 14.2 → 12.6 ms, but the documented H = 128 models (output layer 1024×128
//   by 128×70: 9.2 M) trained to different digits; 2^24 splits the large products only.
// - a recurrence's per-step product (at most kFewRows rows of C, k ≤ n) is split from
//   kSplitFewRows (1 M) multiply-adds: the composed GRU's and LSTM's per-step forward products
//   at H = 128, B = 32. (Those now run on the engine's kernel, next rule; the halves of one
//   that stays on BLAS keep the bits of one call with OpenBLAS's Cooperlake and SkylakeX
//   kernels, not with its Haswell kernel.)
// - such a per-step product (2 to kFewRows rows, A not transposed, from kSplitFewRows) runs on
//   the engine's own kernel (packed_gemm.hpp) instead of BLAS, with B packed once and kept per
//   thread while its bytes stay the same (checked with memcmp at every product, so a changed
//   weight is never read stale): OpenBLAS repacked the weight at each of the T steps. Here, 32
//   rows by a 128 × 384 weight: 80 GFLOP/s through BLAS, 112 on the kept pack; the composed GRU
//   at M and L ran 9–10 % faster (docs/performance.md, session 16). The shape alone decides, and
//   the kernel adds each element's products in the same order whether or not B came from the
//   cache and however the panels are split over the threads, so no result depends on history.
// - a weight's per-step gradient gᵀ h (A transposed, k ≤ kShortK, from kSplitFewRows) runs on the
//   same kernel with A read transposed and B packed at every call (session 16).
// - two independent products (a matmul's two gradients in backward) of kPairProduct to
//   kSplitProduct multiply-adds each run at once, one per thread (gemm_pair): each keeps the bits
//   of its own call, so no result moves. The composed GRU's H = 128, B = 32 backward has two such
//   products per step (1.6 M each); its training step ran 7–20 % faster in three alternated rounds
//   (bench_gru, session 7: docs/performance.md).
// - when OpenBLAS runs a GEMM kernel of narrower vectors than the engine's own (the machine sets
//   OPENBLAS_CORETYPE=Haswell, AVX2, and the build is for AVX-512), a product of kSplitProduct
//   multiply-adds and more runs on the engine's kernel, blocked over k, rows and columns
//   (engine_gemm), instead of OpenBLAS. On the 2-core AVX-512 Xeon of docs/performance.md
//   (session 24), over eleven shapes (the char-GRU's output layer at H = 512, 4096 × 512 by
//   512 × 65, and its two gradients among them), the engine ran such products 1.15–1.52× as fast
//   as gemm() did on OpenBLAS's Haswell kernel (medians of three); against OpenBLAS's own AVX-512
//   kernel it is 0.80–1.14× as fast, so with no variable set nothing changes. Products below
//   kSplitProduct stay on OpenBLAS either way: the documented outputs (recorded with the Haswell
//   kernel) do not move. Which kernel OpenBLAS runs is decided when it is loaded
//   (OPENBLAS_CORETYPE, else the CPU), so results already depended on it; within one process the
//   shape alone decides, as for every rule here.
// The thread count is OpenBLAS's global setting, lowered for the call and restored after it.
// Not part of the public API (not included by tapegrad.hpp).
#pragma once

#include <cstddef>
#include <string_view>

namespace tapegrad::detail {

/// Up to this many multiply-adds (m·n·k) a GEMM is a plain loop.
constexpr std::size_t kTinyProduct = 4096;
/// Below this many multiply-adds (m·n·k) a GEMM runs on one OpenBLAS thread.
constexpr std::size_t kSmallProduct = std::size_t(1) << 28;
/// From this many multiply-adds up to kSmallProduct, the engine splits C in two halves that run
/// on its own two threads (framework/parallel.hpp), each on one OpenBLAS thread (16.8 M: the
/// GRU's per-step products at H = 512, B = 64 are 50 M).
constexpr std::size_t kSplitProduct = std::size_t(1) << 24;
/// A recurrence's per-step product, at most kFewRows rows of C (a batch of states) against a
/// weight with k ≤ n, is split from kSplitFewRows multiply-adds (1 M: the composed GRU's
/// h W_hhᵀ at H = 128, B = 32 is 32 × 384 by k = 128, 1.6 M; the LSTM's at H = 128 is 2.1 M).
constexpr std::size_t kSplitFewRows = std::size_t(1) << 20;
constexpr std::size_t kFewRows = 64;
/// Such a product (at most kFewRows rows of C, from kSplitFewRows multiply-adds, A not
/// transposed) with B (k × n) of at most kPackedMaxK rows and kPackedMaxBytes runs on PackedGemm
/// (packed_gemm.hpp), B packed once and kept while its bytes stay the same (blas.cpp, PackCache):
/// a panel of k rows stays in L2 while the kernel streams it, and no B larger than a big
/// recurrent weight (16 MiB: the GRU's 3072 × 1024 at H = 1024 is 12 MiB) is copied.
constexpr std::size_t kPackedMaxK = 4096;
constexpr std::size_t kPackedMaxBytes = std::size_t(16) << 20;
/// A product with A transposed and k at most this (a weight's per-step gradient gᵀ h over a
/// batch of states) from kSplitFewRows multiply-adds also runs on PackedGemm, B packed at every
/// call: 111 GFLOP/s against OpenBLAS's 96 for 384 × 128 += (32 × 384)ᵀ (32 × 128), one thread.
constexpr std::size_t kShortK = 64;
/// ... and C (m × n) of at most this many bytes: the kernel reads and writes all of C once per
/// call with no blocking, which beats OpenBLAS only while C stays in L2.
constexpr std::size_t kShortKMaxC = std::size_t(512) << 10;

/// RAII: OpenBLAS uses one thread inside this scope. For code that runs GEMMs on two threads
/// of its own (the fused GRU's backward): the global thread count is then never changed from two
/// threads at once, and the two threads do not also wake OpenBLAS's pool.
class OneBlasThread {
 public:
  OneBlasThread();
  ~OneBlasThread();
  OneBlasThread(const OneBlasThread&) = delete;
  OneBlasThread& operator=(const OneBlasThread&) = delete;

 private:
  int previous_;
};

void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc);
void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
          std::size_t ldc);

/// One GEMM's arguments (as gemm() takes them), for gemm_pair.
template <class T>
struct GemmArgs {
  bool ta, tb;
  std::size_t m, n, k;
  const T* a;
  std::size_t lda;
  const T* b;
  std::size_t ldb;
  T beta;
  T* c;
  std::size_t ldc;
};

/// gemm() with its arguments in one GemmArgs.
void gemm(const GemmArgs<float>& g);
void gemm(const GemmArgs<double>& g);

/// From this many multiply-adds each (and below kSplitProduct), gemm_pair runs two independent
/// products on the engine's two threads (0.26 M: a matmul's two gradients in the composed GRU's
/// backward at H = 128, B = 32 are 1.6 M each).
constexpr std::size_t kPairProduct = std::size_t(1) << 18;

/// gemm(p) and gemm(q), which must write to different memory: on two threads (one OpenBLAS
/// thread each) when both are from kPairProduct to kSplitProduct multiply-adds and neither is
/// one that gemm() splits itself, else one after the other. Each result is bit-identical to its
/// own gemm() call: only where it runs changes.
void gemm_pair(const GemmArgs<float>& p, const GemmArgs<float>& q);
void gemm_pair(const GemmArgs<double>& p, const GemmArgs<double>& q);

/// True when gemm(g) is a product gemm_pair would pair that runs on the engine's own kernel
/// (packed_gemm.hpp) in one piece, with no BLAS call: the same bits on whichever thread runs
/// it, and nothing that touches OpenBLAS's global state. Such a product may run on the helper
/// while the caller goes on (a weight's gradient during the backward: tape.cpp, GradSink).
bool gemm_runs_apart(const GemmArgs<float>& g);
bool gemm_runs_apart(const GemmArgs<double>& g);

/// gemm(g), except that a product on the engine's own kernel is cut into two halves of B's
/// panels on the two threads even where gemm() keeps it whole (a backward's dx = g W, when the
/// helper is free before it takes the weight's gradient). The kernel sums each element in the
/// same order however the panels are split: the bits are gemm()'s.
void gemm_split(const GemmArgs<float>& g);
void gemm_split(const GemmArgs<double>& g);

/// Width in bits of the vectors in OpenBLAS's GEMM kernels for an x86 core, given by the name
/// openblas_get_corename() returns (OPENBLAS_CORETYPE's spelling, any case): 512 for SkylakeX,
/// Cooperlake and SapphireRapids, 256 for Haswell, Zen and Sandybridge, 128 for the SSE-era
/// cores; 0 for a name not known here (another architecture, a newer core).
int blas_kernel_bits(std::string_view core);

/// Whether the engine takes OpenBLAS's large products: when OpenBLAS's kernel for `core` is known
/// and narrower than the engine's (engine_vector_bits, 0 for a process without the kernel).
bool engine_replaces_blas(std::string_view core, int engine_vector_bits);
/// ... for this process: OpenBLAS's kernel as loaded against this process's float kernel.
bool engine_replaces_blas();

/// C = op(A) · op(B) + beta · C on the engine's own kernel (packed_gemm.hpp) for a product of any
/// shape: what gemm() runs for a product of kSplitProduct multiply-adds and more when
/// engine_replaces_blas(). Blocked over k (512 at a time: C = partial sum + C between blocks),
/// rows and columns, on the engine's two threads; the bits depend on the shape alone.
/// Needs PackedGemm<T>::available().
void engine_gemm(const GemmArgs<float>& g);
void engine_gemm(const GemmArgs<double>& g);

}  // namespace tapegrad::detail
