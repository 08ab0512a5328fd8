// tapegrad — the vector math of the elementwise ops (vector_math.inc) for x86-64 CPUs with AVX-512:
// compiled with -mavx512f -mavx2 -mfma whatever the build's flags (CMakeLists.txt), and used only
// where the CPU has it (vector_math.cpp). Not compiled on other processors.
#define TAPEGRAD_VMATH_ARCH avx512
#include "framework/vector_math.inc"
