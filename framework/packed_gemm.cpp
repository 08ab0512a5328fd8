// tapegrad — which build of the engine's GEMM kernel a process uses (packed_gemm.hpp).
#include "framework/packed_gemm.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "framework/arch_builds.hpp"

namespace tapegrad::detail {

// Each defined by one compilation of packed_gemm_kernel.inc.
GemmKernels gemm_kernels_native();
#if defined(TAPEGRAD_GEMM_X86)
GemmKernels gemm_kernels_avx2();
GemmKernels gemm_kernels_avx512();
#endif

namespace {

template <class T>
const GemmKernel<T>* of(const GemmKernels& k) {
  if constexpr (std::is_same_v<T, float>) return k.f32;
  else return k.f64;
}

#if defined(TAPEGRAD_GEMM_X86)
// __builtin_cpu_supports also checks that the system saves the registers (XGETBV): an AVX-512 CPU
// whose kernel does not enable them reports no avx512f.
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool cpu_has_avx512() { return cpu_has_avx2() && __builtin_cpu_supports("avx512f"); }
#endif

template <class T>
std::vector<const GemmKernel<T>*> runnable() {
  std::vector<const GemmKernel<T>*> all;
  // compiled for the build's own CPU: it runs wherever the rest of the library does
  if (const GemmKernel<T>* k = of<T>(gemm_kernels_native())) all.push_back(k);
#if defined(TAPEGRAD_GEMM_X86)
  if (cpu_has_avx512()) all.push_back(of<T>(gemm_kernels_avx512()));
  if (cpu_has_avx2()) all.push_back(of<T>(gemm_kernels_avx2()));
#endif
  return all;
}

/// `s` as it can be printed in one line: at most 40 characters, anything unprintable as '?'.
std::string printable(const std::string& s) {
  std::string out;
  for (char ch : s.substr(0, 40)) out += (ch >= 32 && ch < 127) ? ch : '?';
  return s.size() > 40 ? out + "..." : out;
}

}  // namespace

template <class T>
const std::vector<const GemmKernel<T>*>& gemm_kernels() {
  static const std::vector<const GemmKernel<T>*> all = runnable<T>();
  return all;
}

template <class T>
const GemmKernel<T>* choose_gemm_kernel(const char* setting) {
  const std::vector<const GemmKernel<T>*>& all = gemm_kernels<T>();
  if (setting == nullptr || *setting == '\0') return all.empty() ? nullptr : all.front();
  const std::string s = setting;
  if (s == "blas") return nullptr;
  for (const GemmKernel<T>* k : all)
    if (s == k->name) return k;
  std::string have;
  for (const GemmKernel<T>* k : all) have += std::string(k->name) + ", ";
  const bool known = s == "native" || s == "avx512" || s == "avx2";
  throw std::invalid_argument(
      "TAPEGRAD_GEMM_KERNEL=\"" + printable(s) + "\": " +
      (known ? "this CPU or build has no such build of the engine's GEMM kernel"
             : "not a build of the engine's GEMM kernel (native, avx512, avx2 or blas)") +
      "; here: " + have + "blas");
}

template <class T>
const GemmKernel<T>* gemm_kernel() {
  static const GemmKernel<T>* const chosen = choose_gemm_kernel<T>(std::getenv("TAPEGRAD_GEMM_KERNEL"));
  return chosen;
}

bool cpu_runs_build(const char* name) {
  if (std::strcmp(name, "native") == 0) return true;
  for (const GemmKernel<float>* k : gemm_kernels<float>())
    if (std::strcmp(k->name, name) == 0) return true;
  return false;
}

template <class T>
const char* process_build_name() {
  const GemmKernel<T>* k = gemm_kernel<T>();
  return k ? k->name : "blas";
}

template const char* process_build_name<float>();
template const char* process_build_name<double>();
template const std::vector<const GemmKernel<float>*>& gemm_kernels<float>();
template const std::vector<const GemmKernel<double>*>& gemm_kernels<double>();
template const GemmKernel<float>* choose_gemm_kernel<float>(const char*);
template const GemmKernel<double>* choose_gemm_kernel<double>(const char*);
template const GemmKernel<float>* gemm_kernel<float>();
template const GemmKernel<double>* gemm_kernel<double>();

}  // namespace tapegrad::detail

namespace tapegrad {

const char* gemm_kernel_name() {
  const detail::GemmKernel<float>* k = detail::gemm_kernel<float>();
  return k ? k->name : "blas";
}

}  // namespace tapegrad
