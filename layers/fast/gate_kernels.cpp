// tapegrad — which build of the fused layers' gate passes a process uses (gate_kernels.hpp).
#include "layers/fast/gate_kernels.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "framework/packed_gemm.hpp"

namespace tapegrad::fused {

// Each defined by one compilation of gate_kernels.inc.
GateKernels gate_kernels_native();
#if defined(TAPEGRAD_GATES_X86)
GateKernels gate_kernels_avx2();
GateKernels gate_kernels_avx512();
#endif

namespace {

template <class T>
const GateKernel<T>* of(const GateKernels& k) {
  if constexpr (std::is_same_v<T, float>) return k.f32;
  else return k.f64;
}

/// Whether this CPU runs the GEMM kernel's build of that name: the AVX2 and AVX-512 builds of
/// both are compiled on the same processors, and packed_gemm.cpp lists a build only where the CPU
/// has its instructions and the system saves their registers.
[[maybe_unused]] bool cpu_runs(const char* name) {
  for (const detail::GemmKernel<float>* k : detail::gemm_kernels<float>())
    if (std::strcmp(k->name, name) == 0) return true;
  return false;
}

template <class T>
std::vector<const GateKernel<T>*> runnable() {
  std::vector<const GateKernel<T>*> all{of<T>(gate_kernels_native())};
#if defined(TAPEGRAD_GATES_X86)
  if (cpu_runs("avx512")) all.push_back(of<T>(gate_kernels_avx512()));
  if (cpu_runs("avx2")) all.push_back(of<T>(gate_kernels_avx2()));
#endif
  // widest first; native first among equals (compiled for exactly this CPU)
  std::stable_sort(all.begin(), all.end(), [](auto a, auto b) { return a->bits > b->bits; });
  return all;
}

}  // namespace

template <class T>
const std::vector<const GateKernel<T>*>& gate_kernels() {
  static const std::vector<const GateKernel<T>*> all = runnable<T>();
  return all;
}

template <class T>
const GateKernel<T>& choose_gate_kernel(const char* gemm_kernel) {
  const std::vector<const GateKernel<T>*>& all = gate_kernels<T>();
  for (const GateKernel<T>* k : all)
    if (gemm_kernel && std::strcmp(k->name, gemm_kernel) == 0) return *k;
  return *all.front();  // "blas": the widest
}

template <class T>
const GateKernel<T>& gate_kernel() {
  static const GateKernel<T>& chosen = []() -> const GateKernel<T>& {
    const detail::GemmKernel<T>* gemm = detail::gemm_kernel<T>();  // TAPEGRAD_GEMM_KERNEL
    return choose_gate_kernel<T>(gemm ? gemm->name : "blas");
  }();
  return chosen;
}

template const std::vector<const GateKernel<float>*>& gate_kernels<float>();
template const std::vector<const GateKernel<double>*>& gate_kernels<double>();
template const GateKernel<float>& choose_gate_kernel<float>(const char*);
template const GateKernel<double>& choose_gate_kernel<double>(const char*);
template const GateKernel<float>& gate_kernel<float>();
template const GateKernel<double>& gate_kernel<double>();

}  // namespace tapegrad::fused
