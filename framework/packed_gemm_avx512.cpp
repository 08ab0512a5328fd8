// tapegrad — the engine's GEMM kernel (packed_gemm_kernel.inc) for x86-64 CPUs with AVX-512F:
// compiled with -mavx512f -mavx2 -mfma whatever the build's flags (CMakeLists.txt), and used only
// where the CPU has them and the system saves their registers (packed_gemm.cpp). Not compiled on
// other processors.
#define TAPEGRAD_GEMM_ARCH avx512
#include "framework/packed_gemm_kernel.inc"
