// tapegrad — choosing among the builds of code compiled once per instruction set. Internal (not
// part of the public API).
//
// Three pieces of the engine are compiled more than once: the GEMM kernel
// (framework/packed_gemm.hpp), the vector math of the elementwise ops (framework/vector_math.hpp)
// and the fused layers' gate passes (layers/fast/gate_kernels.hpp). Each is compiled with the
// build's own flags ("native": -march=native by default, SSE2 in a portable build) and, on
// x86-64, once for AVX2 + FMA ("avx2") and once for AVX-512 ("avx512"). The GEMM kernel's choice
// (TAPEGRAD_GEMM_KERNEL) decides for all three, so that one setting moves a whole process to one
// instruction set; where every product goes to BLAS ("blas"), the others take the widest build
// the CPU runs.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace tapegrad::detail {

/// Whether this CPU runs the builds of that name: packed_gemm.cpp lists a GEMM build only where
/// the CPU has its instructions and the system saves their registers, and the AVX2 and AVX-512
/// builds of every piece are compiled on the same processors.
bool cpu_runs_build(const char* name);

/// The name of the build this process uses for element type T: its GEMM kernel's ("native",
/// "avx512", "avx2"), or "blas" when every product goes to BLAS.
template <class T>
const char* process_build_name();

/// `builds` (each with a name and a vector width in bits) widest first, native first among
/// equals (it is compiled for exactly this CPU).
template <class K>
std::vector<const K*> widest_first(std::vector<const K*> builds) {
  std::stable_sort(builds.begin(), builds.end(), [](const K* a, const K* b) { return a->bits > b->bits; });
  return builds;
}

/// The float or double table of one compiled build ({f32, f64}).
template <class T, class Tables>
auto table_for(const Tables& t) {
  if constexpr (std::is_same_v<T, float>) return t.f32;
  else return t.f64;
}

/// The builds this CPU runs of a piece compiled per instruction set, widest first: `native` (the
/// build's own flags) always, `avx512` and `avx2` where compiled (else nullptr) and the CPU runs
/// them. Each returns that build's tables.
template <class T, class Tables>
auto runnable_builds(Tables (*native)(), std::common_type_t<Tables (*)()> avx512,  // (not deduced:
                     std::common_type_t<Tables (*)()> avx2) {                      //  nullptr is fine)
  std::vector<decltype(table_for<T>(native()))> all{table_for<T>(native())};
  if (avx512 && cpu_runs_build("avx512")) all.push_back(table_for<T>(avx512()));
  if (avx2 && cpu_runs_build("avx2")) all.push_back(table_for<T>(avx2()));
  return widest_first(all);
}

/// The build of that name among `builds` (widest first), or the widest for any other name
/// ("blas").
template <class K>
const K& choose_build(const std::vector<const K*>& builds, const char* name) {
  for (const K* k : builds)
    if (name && std::strcmp(k->name, name) == 0) return *k;
  return *builds.front();
}

}  // namespace tapegrad::detail
