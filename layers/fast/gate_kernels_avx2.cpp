// tapegrad — the fused layers' gate passes (gate_kernels.inc) for x86-64 CPUs with AVX2 and FMA:
// compiled with -mavx2 -mfma -mno-avx512f whatever the build's flags (CMakeLists.txt), and used
// only where the CPU has them (gate_kernels.cpp). Not compiled on other processors.
#define TAPEGRAD_GATES_ARCH avx2
#include "layers/fast/gate_kernels.inc"
