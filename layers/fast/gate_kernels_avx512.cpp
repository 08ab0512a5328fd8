// tapegrad — the fused layers' gate passes (gate_kernels.inc) for x86-64 CPUs with AVX-512F:
// compiled with -mavx512f -mavx2 -mfma whatever the build's flags (CMakeLists.txt), and used only
// where the CPU has them and the system saves their registers (gate_kernels.cpp). Not compiled on
// other processors.
#define TAPEGRAD_GATES_ARCH avx512
#include "layers/fast/gate_kernels.inc"
