// tapegrad — which build of the fused layers' gate passes a process uses (gate_kernels.hpp).
#include "layers/fast/gate_kernels.hpp"

#include "framework/arch_builds.hpp"

namespace tapegrad::fused {

// Each defined by one compilation of gate_kernels.inc.
GateKernels gate_kernels_native();
#if defined(TAPEGRAD_GATES_X86)
GateKernels gate_kernels_avx2();
GateKernels gate_kernels_avx512();
#endif

template <class T>
const std::vector<const GateKernel<T>*>& gate_kernels() {
#if defined(TAPEGRAD_GATES_X86)
  static const std::vector<const GateKernel<T>*> all =
      detail::runnable_builds<T>(&gate_kernels_native, &gate_kernels_avx512, &gate_kernels_avx2);
#else
  static const std::vector<const GateKernel<T>*> all =
      detail::runnable_builds<T>(&gate_kernels_native, nullptr, nullptr);
#endif
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
