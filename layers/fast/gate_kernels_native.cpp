// tapegrad — the fused layers' gate passes (gate_kernels.inc) compiled with the build's own flags:
// -march=native in the default build; SSE2 in a portable one, where the AVX2 and AVX-512 builds
// are used instead when the CPU has them (gate_kernels.cpp).
#define TAPEGRAD_GATES_ARCH native
#include "layers/fast/gate_kernels.inc"
