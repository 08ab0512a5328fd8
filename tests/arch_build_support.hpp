// Checks shared by the tests of code compiled once per instruction set and chosen per process
// (framework/arch_builds.hpp): the fused layers' gate passes (test_gate_kernels.cpp) and the vector
// math (test_vector_math.cpp). `builds` is the list a CPU runs; `choose(name)` the build for a GEMM
// kernel's name; `process` the build this process uses.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "framework/packed_gemm.hpp"

namespace arch_builds {
using namespace tapegrad;

/// Widest first, native among them, one build per GEMM kernel this CPU runs, and at least 256-bit
/// vectors on a CPU with AVX2.
template <class K, class Choose>
void expect_builds_widest_first(const std::vector<const K*>& builds, Choose choose) {
  ASSERT_FALSE(builds.empty());
  bool native = false;
  for (std::size_t i = 0; i < builds.size(); ++i) {
    native = native || std::string(builds[i]->name) == "native";
    if (i > 0) EXPECT_GE(builds[i - 1]->bits, builds[i]->bits);
  }
  EXPECT_TRUE(native) << "the build compiled with the library's own flags runs wherever the library does";
  for (const detail::GemmKernel<float>* g : detail::gemm_kernels<float>())
    EXPECT_STREQ(choose(g->name).name, g->name);
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) EXPECT_GE(builds.front()->bits, 256);
#endif
}

/// "blas" (every product on BLAS) and no name: the widest build; this process: the build named
/// like its GEMM kernel (ctest runs the tests with each of them).
template <class K, class Choose>
void expect_build_follows_gemm_kernel(const std::vector<const K*>& builds, Choose choose, const K& process) {
  EXPECT_EQ(&choose("blas"), builds.front());
  EXPECT_EQ(&choose(nullptr), builds.front());
  const char* gemm = gemm_kernel_name();
  EXPECT_EQ(&process, &choose(gemm));
  if (std::strcmp(gemm, "blas") != 0) EXPECT_STREQ(process.name, gemm);
}

}  // namespace arch_builds
