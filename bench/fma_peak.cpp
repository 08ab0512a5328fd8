// fma_peak — the float32 multiply-add peak of this machine's cores, the roof above the sgemm
// ceiling: tools/bench_vs_torch.py (section ceiling) prints both, and the share of the peak that
// the fused GRU at L and PyTorch reach (docs/performance.md, session 19).
//
//   fma_peak [SECONDS_PER_BATCH=0.2] [BATCHES=5]
// Each thread runs 12 independent chains of vector fused multiply-adds (AVX-512: 16 floats, AVX2
// with FMA: 8), enough to keep every FMA unit busy whatever its latency; 2 flops per lane. Prints
//   fma_peak: lanes <N> threads 1 <GFLOP/s> threads 2 <GFLOP/s>
// (best batch of each). Build with -O2 -march=native: without FMA instructions it measures a
// scalar multiply and add, and says so (lanes 1).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

namespace {

constexpr int kChains = 12;

#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
inline Vec splat(float x) { return _mm512_set1_ps(x); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float first(Vec v) { return _mm512_cvtss_f32(v); }
#elif defined(__FMA__)
constexpr int kLanes = 8;
using Vec = __m256;
inline Vec splat(float x) { return _mm256_set1_ps(x); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float first(Vec v) { return _mm256_cvtss_f32(v); }
#else
constexpr int kLanes = 1;
using Vec = float;
inline Vec splat(float x) { return x; }
inline Vec fma(Vec a, Vec b, Vec c) { return a * b + c; }
inline float first(Vec v) { return v; }
#endif

/// Runs `iterations` rounds of kChains FMAs; returns a value that depends on all of them.
float chains(long iterations) {
  // Operands the compiler cannot see (clang folded the chains of constants away).
  volatile float vb = 0.9999999f, vc = 1e-7f, va = 1.0f;
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = splat(va + 1e-7f * float(i));
  const Vec b = splat(vb), c = splat(vc);
  for (long n = 0; n < iterations; ++n) {
    // Unrolled, so that the chains stay in registers (rolled, GCC -O2 kept them in memory: 44
    // instead of 117 GFLOP/s per core here).
#if defined(__clang__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 12
#endif
    for (int i = 0; i < kChains; ++i) acc[i] = fma(acc[i], b, c);
  }
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += first(acc[i]);
  return s;
}

/// GFLOP/s of `threads` threads each running chains() for about `seconds`.
double measure(int threads, double seconds) {
  long iterations = 1 << 20;  // grown until one run takes `seconds` on one thread
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    volatile float sink = chains(iterations);
    (void)sink;
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt >= seconds / 4 || iterations > (1L << 40)) {
      iterations = long(double(iterations) * seconds / std::max(dt, 1e-9));
      break;
    }
    iterations *= 4;
  }
  std::vector<std::thread> pool;
  auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      volatile float sink = chains(iterations);
      (void)sink;
    });
  for (std::thread& t : pool) t.join();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * kLanes * kChains * double(iterations) * threads / dt / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.2;
  const int batches = argc > 2 ? std::atoi(argv[2]) : 5;
  if (!(seconds > 0 && seconds <= 10) || batches < 1 || batches > 100) {
    std::fprintf(stderr, "usage: fma_peak [SECONDS_PER_BATCH in (0, 10]] [BATCHES in 1..100]\n");
    return 2;
  }
  double best[3] = {0, 0, 0};
  for (int k = 0; k < batches; ++k)
    for (int threads : {1, 2}) best[threads] = std::max(best[threads], measure(threads, seconds));
  std::printf("fma_peak: lanes %d threads 1 %.1f threads 2 %.1f\n", kLanes, best[1], best[2]);
  return 0;
}
