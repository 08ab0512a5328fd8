// tapegrad — which build of the fused layers' gate passes a process uses (gate_kernels.hpp).
#include "layers/fast/gate_kernels.hpp"

#include <type_traits>

#include "framework/arch_builds.hpp"

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

template <class T>
std::vector<const GateKernel<T>*> runnable() {
  std::vector<const GateKernel<T>*> all{of<T>(gate_kernels_native())};
#if defined(TAPEGRAD_GATES_X86)
  if (detail::cpu_runs_build("avx512")) all.push_back(of<T>(gate_kernels_avx512()));
  if (detail::cpu_runs_build("avx2")) all.push_back(of<T>(gate_kernels_avx2()));
#endif
  return detail::widest_first(all);
}

}  // namespace

template <class T>
const std::vector<const GateKernel<T>*>& gate_kernels() {
  static const std::vector<const GateKernel<T>*> all = runnable<T>();
  return all;
}

template <class T>
const GateKernel<T>& choose_gate_kernel(const char* gemm_kernel) {
  return detail::choose_build(gate_kernels<T>(), gemm_kernel);
}

template <class T>
const GateKernel<T>& gate_kernel() {
  static const GateKernel<T>& chosen = choose_gate_kernel<T>(detail::process_build_name<T>());
  return chosen;
}

template const std::vector<const GateKernel<float>*>& gate_kernels<float>();
template const std::vector<const GateKernel<double>*>& gate_kernels<double>();
template const GateKernel<float>& choose_gate_kernel<float>(const char*);
template const GateKernel<double>& choose_gate_kernel<double>(const char*);
template const GateKernel<float>& gate_kernel<float>();
template const GateKernel<double>& gate_kernel<double>();

}  // namespace tapegrad::fused
