// tapegrad — the engine's own GEMM for a few rows against a wide operand that stays the same for
// many products (a recurrence's weight): B packed once into column panels, then C = A · B + beta · C
// at every step, forward and backward. What the engine (blas.cpp) and the fused layers
// (layers/fast/) call. The kernel itself, and why it beats BLAS there, is packed_gemm_kernel.inc.
//
// Which build of the kernel runs. The kernel is compiled more than once, for different instruction
// sets, and one is chosen per process (packed_gemm.cpp):
//   native  compiled with the build's own flags (-march=native in the default build): the one a
//           native build uses. A portable build (TAPEGRAD_NATIVE=OFF, the Debian package) has
//           only SSE2 there, too narrow to beat BLAS: it has no native kernel.
//   avx512  compiled for AVX-512F, and used where the CPU has it (x86-64 only);
//   avx2    compiled for AVX2 + FMA, likewise.
// The default is the first of these that the CPU runs; with none (another processor, or an x86-64
// CPU without AVX2), every product goes to BLAS, as it does with TAPEGRAD_GEMM_KERNEL=blas. The
// environment variable TAPEGRAD_GEMM_KERNEL=native|avx512|avx2|blas chooses (tests, comparisons);
// naming a kernel this CPU or build does not have is an error that lists the ones it has. The
// fused layers' gate passes and the elementwise ops' vector math are compiled the same ways and
// follow this choice (framework/arch_builds.hpp).
// Every build forms each element of C as the same sum in the same order (0, then one fused
// multiply-add per step of k, then beta), so the choice changes the speed, never a bit:
// tests/test_packed_gemm.cpp compares the kernels bit for bit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace tapegrad::detail {

/// One compiled build of the kernel, as plain functions (packed_gemm_kernel.inc fills it). A B
/// packed by one build must be multiplied by the same build: NR differs between them.
template <class T>
struct GemmKernel {
  const char* name;  // "native", "avx512", "avx2"
  int bits;          // vector width
  std::size_t NR;    // columns per panel
  std::size_t MR;    // rows per register block
  void (*pack_panels)(T* storage, const T* b, std::size_t ldb, bool transpose_b, std::size_t k,
                      std::size_t n, std::size_t p0, std::size_t p1);
  void (*multiply_panels)(const T* packed, std::size_t k, std::size_t n, std::size_t p0,
                          std::size_t p1, std::size_t m, const T* a, std::size_t lda, T beta, T* c,
                          std::size_t ldc, bool transpose_a);
  void (*multiply_unpacked)(std::size_t m, std::size_t n, std::size_t k, const T* a,
                            std::size_t lda, const T* bt, std::size_t ldbt, T beta, T* c,
                            std::size_t ldc);
};

/// What one compiled build provides, for float and double (nullptr: vectors too narrow).
struct GemmKernels {
  const GemmKernel<float>* f32;
  const GemmKernel<double>* f64;
};

/// Every build of the kernel this CPU runs, the default first (empty: BLAS only).
template <class T>
const std::vector<const GemmKernel<T>*>& gemm_kernels();

/// The build for a value of TAPEGRAD_GEMM_KERNEL (nullptr or "": the default; "blas": nullptr,
/// BLAS everywhere). Throws std::invalid_argument, naming the variable and the kernels there are,
/// for any other name.
template <class T>
const GemmKernel<T>* choose_gemm_kernel(const char* setting);

/// The build this process uses, chosen at the first call from TAPEGRAD_GEMM_KERNEL; nullptr
/// where every product goes to BLAS.
template <class T>
const GemmKernel<T>* gemm_kernel();

/// B packed for one build of the kernel, and the products on it. Static functions and the
/// constructors use this process's kernel (gemm_kernel) unless given another; only call them
/// where available().
template <class T>
class PackedGemm {
 public:
  using Kernel = GemmKernel<T>;

  /// Whether the engine has a kernel here that beats BLAS (vectors of at least 256 bits).
  static bool available() { return gemm_kernel<T>() != nullptr; }

  /// Columns per panel and rows per register block of the process's kernel.
  static std::size_t panel_width() { return gemm_kernel<T>()->NR; }
  static std::size_t block_rows() { return gemm_kernel<T>()->MR; }

  /// Elements of storage the packed B (k × n) needs.
  static std::size_t storage_size(std::size_t k, std::size_t n, const Kernel* kernel = gemm_kernel<T>()) {
    const std::size_t nr = kernel->NR;
    return std::max<std::size_t>((n + nr - 1) / nr * k * nr, 1);
  }

  /// Number of panels (NR columns each, the last one possibly partial).
  static std::size_t panels(std::size_t n, const Kernel* kernel = gemm_kernel<T>()) {
    return (n + kernel->NR - 1) / kernel->NR;
  }

  /// Packs panels [p0, p1) of B (k × n), given row-major with leading dimension ldb, or as its
  /// transpose (b holds Bᵀ, n × k, when transpose_b), into `storage` (storage_size(k, n)
  /// elements, 64-byte aligned): two threads can pack disjoint panel ranges of the same storage.
  static void pack_panels(T* storage, const T* b, std::size_t ldb, bool transpose_b, std::size_t k,
                          std::size_t n, std::size_t p0, std::size_t p1,
                          const Kernel* kernel = gemm_kernel<T>()) {
    kernel->pack_panels(storage, b, ldb, transpose_b, k, n, p0, p1);
  }

  /// Packs all of B into `storage`, owned by the caller and alive as long as this object is used.
  PackedGemm(T* storage, const T* b, std::size_t ldb, bool transpose_b, std::size_t k, std::size_t n,
             const Kernel* kernel = gemm_kernel<T>())
      : PackedGemm(storage, k, n, kernel) {
    kernel->pack_panels(storage, b, ldb, transpose_b, k, n, 0, panels(n, kernel));
  }

  /// Uses `storage` as already packed for B (k × n) by `kernel` (pack_panels over every panel).
  PackedGemm(const T* storage, std::size_t k, std::size_t n, const Kernel* kernel = gemm_kernel<T>())
      : kernel_(kernel), k_(k), n_(n), packed_(storage) {}

  const Kernel& kernel() const { return *kernel_; }

  /// C (m × n, ldc) = A (m × k, lda) · B + beta · C. With beta = 0, C is not read.
  void multiply(std::size_t m, const T* a, std::size_t lda, T beta, T* c, std::size_t ldc) const {
    multiply_panels(0, panels(n_, kernel_), m, a, lda, beta, c, ldc);
  }

  /// multiply() for the columns of panels [p0, p1) only. Each element of C is the same sum in
  /// the same order whichever range computes it: splitting the panels never changes a bit.
  /// With transpose_a, `a` holds Aᵀ (k × m, leading dimension lda): row kk of it gives the
  /// elements of column kk of A for consecutive rows (a weight's gradient gᵀ h with a short k).
  void multiply_panels(std::size_t p0, std::size_t p1, std::size_t m, const T* a, std::size_t lda,
                       T beta, T* c, std::size_t ldc, bool transpose_a = false) const {
    kernel_->multiply_panels(packed_, k_, n_, p0, p1, m, a, lda, beta, c, ldc, transpose_a);
  }

  /// The product multiply() computes, with B given as Bᵀ (n × k, leading dimension ldbt) and read
  /// where it is: nothing packed, for a product made once (one step of one sequence), where
  /// packing B would cost more than the product. The kernel's own sums, so the same bits.
  static void multiply_unpacked(std::size_t m, std::size_t n, std::size_t k, const T* a,
                                std::size_t lda, const T* bt, std::size_t ldbt, T beta, T* c,
                                std::size_t ldc, const Kernel* kernel = gemm_kernel<T>()) {
    kernel->multiply_unpacked(m, n, k, a, lda, bt, ldbt, beta, c, ldc);
  }

 private:
  const Kernel* kernel_;
  std::size_t k_, n_;
  const T* packed_;
};

}  // namespace tapegrad::detail

namespace tapegrad {

/// The build of the engine's GEMM kernel this process multiplies on: "native", "avx512" or
/// "avx2", or "blas" when BLAS does every product (framework/packed_gemm.hpp says how it is
/// chosen; `char_gru train --json` reports it as "gemm_kernel"). Throws std::invalid_argument
/// when TAPEGRAD_GEMM_KERNEL names a kernel this machine does not have.
const char* gemm_kernel_name();

}  // namespace tapegrad
