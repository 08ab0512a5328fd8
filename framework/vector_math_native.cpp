// tapegrad — the vector math of the elementwise ops (vector_math.inc) compiled with the build's own flags:
// -march=native in the default build; SSE2 in a portable one, where the AVX2 and AVX-512 builds
// are used instead when the CPU has them (vector_math.cpp).
#define TAPEGRAD_VMATH_ARCH native
#include "framework/vector_math.inc"
