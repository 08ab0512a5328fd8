// tapegrad — the vector math of the elementwise ops (vector_math.inc) for x86-64 CPUs with AVX2 and FMA:
// compiled with -mavx2 -mfma -mno-avx512f whatever the build's flags (CMakeLists.txt), and used
// only where the CPU has them (vector_math.cpp). Not compiled on other processors.
#define TAPEGRAD_VMATH_ARCH avx2
#include "framework/vector_math.inc"
