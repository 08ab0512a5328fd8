// tapegrad — the engine's GEMM kernel (packed_gemm_kernel.inc) compiled with the build's own flags:
// -march=native in the default build, which is the kernel a native build uses. In a portable
// build (TAPEGRAD_NATIVE=OFF: SSE2 only) its vectors are too narrow and it provides no table.
#define TAPEGRAD_GEMM_ARCH native
#include "framework/packed_gemm_kernel.inc"
