// tapegrad — the engine's GEMM kernel (packed_gemm_kernel.inc) for x86-64 CPUs with AVX2 and FMA:
// compiled with -mavx2 -mfma -mno-avx512f whatever the build's flags (CMakeLists.txt), and used
// only where the CPU has them (packed_gemm.cpp). Not compiled on other processors.
#define TAPEGRAD_GEMM_ARCH avx2
#include "framework/packed_gemm_kernel.inc"
