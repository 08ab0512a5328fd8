// tapegrad — the vector math of the elementwise ops exp, log, tanh and sigmoid
// (ops_elementwise.cpp), each over a contiguous array, and the Adam update (optim.cpp). Internal
// (not part of the public API).
//
// Like the GEMM kernel (packed_gemm.hpp) these are compiled more than once (vector_math.inc):
// with the build's own flags (vector_math_native.cpp) and, on x86-64, once for AVX2 + FMA and once
// for AVX-512 (vector_math_avx2.cpp, vector_math_avx512.cpp). A portable build (the Debian
// package's: SSE2) then evaluates the exponentials of a model's gates on the widest vectors the
// CPU has instead of 128-bit ones, and so does the Adam update of every parameter (docs/performance.md,
// session 32). A process uses the build of its GEMM kernel (arch_builds.hpp: TAPEGRAD_GEMM_KERNEL
// decides).
//
// Every element, the last ones of an array included, goes through the same vector code (the tail
// is padded to a whole vector), so a result never depends on where in a tensor its element lies
// or how the array was split between the cores. Builds differ by the exponential's polynomial
// (rounded with or without fused multiply-adds): their results agree to a few ulp, not bit for bit
// (tests/test_vector_math.cpp).
#pragma once

#include <cstddef>
#include <vector>

namespace tapegrad::detail {

/// One step of Adam or AdamW on one parameter (optim.cpp computes the constants as PyTorch's
/// _single_tensor_adam(w) does, in double, then rounds each to T).
template <class T>
struct AdamStep {
  bool decoupled;    // AdamW: p ← p · decay first
  T decay;           // 1 − lr · weight_decay
  bool l2;           // Adam with weight_decay > 0: g ← g + weight_decay · p
  T weight_decay;
  T beta1, one_minus_beta1, beta2, one_minus_beta2;
  T neg_step_size;   // −lr / (1 − β1^t)
  T bias_correction2_sqrt;  // √(1 − β2^t)
  T eps;
};

/// One compiled build of the vector math, as plain functions: y[i] = f(x[i]) for i < n (x and y
/// the same array or disjoint ones).
template <class T>
struct VectorMath {
  const char* name;  // "native", "avx512", "avx2"
  int bits;          // vector width
  void (*exp)(const T* x, T* y, std::size_t n);
  void (*log)(const T* x, T* y, std::size_t n);
  void (*tanh)(const T* x, T* y, std::size_t n);
  /// σ(x) = 1 / (1 + e^−x) for x ≥ 0 and e^x / (1 + e^x) for x < 0: e^−|x| never overflows.
  void (*sigmoid)(const T* x, T* y, std::size_t n);
  /// Adam's update of p[0, n) from its gradient g, in place with its moments m and v (and v_max,
  /// the running maximum of v, with amsgrad; else nullptr): m ← β1·m + (1 − β1)·g,
  /// v ← β2·v + (1 − β2)·g·g, p ← p + (−step·m) / (√v / √(1 − β2^t) + eps), PyTorch's operations
  /// in its order. Where the instruction set has fused multiply-adds the compiler uses them, as
  /// for the xtensor expressions this replaces: the native build gives their bits (the docs'
  /// training runs reproduce digit for digit), the builds agree to a few ulp.
  void (*adam)(T* p, const T* g, T* m, T* v, T* v_max, std::size_t n, const AdamStep<T>& h);
};

/// What one compiled build provides, for float and double.
struct VectorMaths {
  const VectorMath<float>* f32;
  const VectorMath<double>* f64;
};

/// Every build of the vector math this CPU runs, widest first (native always among them).
template <class T>
const std::vector<const VectorMath<T>*>& vector_maths();

/// The build for a GEMM kernel's name ("native", "avx512", "avx2", or "blas" for the widest).
template <class T>
const VectorMath<T>& choose_vector_math(const char* gemm_kernel);

/// The build this process uses, chosen at the first call from the process's GEMM kernel.
template <class T>
const VectorMath<T>& vector_math();

}  // namespace tapegrad::detail
