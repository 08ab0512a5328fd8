// sgemm_ceiling — what OpenBLAS's sgemm reaches on this machine: the ceiling that
// tools/bench_vs_torch.py compares the GRU's training speed with.
//
//   sgemm_ceiling [N=1024] [BATCHES=15]
// Multiplies two N×N float matrices BATCHES times (each batch repeats the product until it has
// run for at least 0.2 s) and prints
//   corename: <OpenBLAS kernel>  best <GFLOP/s> median <GFLOP/s>
// Threads come from OPENBLAS_NUM_THREADS, as for any OpenBLAS program.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cblas.h>

extern "C" char* openblas_get_corename(void);

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1024;
  const int batches = argc > 2 ? std::atoi(argv[2]) : 15;
  if (n < 1 || n > 8192 || batches < 1 || batches > 1000) {
    std::fprintf(stderr, "usage: sgemm_ceiling [N in 1..8192] [BATCHES in 1..1000]\n");
    return 2;
  }
  std::vector<float> a(std::size_t(n) * n), b(a.size()), c(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) * 0.1f, b[i] = float(i % 5) * 0.2f;
  auto gemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  };
  gemm();  // warm-up: threads started, pages touched
  const double flops = 2.0 * n * double(n) * n;
  std::vector<double> gflops;
  for (int k = 0; k < batches; ++k) {
    int reps = 0;
    auto t0 = std::chrono::steady_clock::now();
    double dt = 0;
    do {
      gemm();
      ++reps;
      dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (dt < 0.2);
    gflops.push_back(flops * reps / dt / 1e9);
  }
  std::sort(gflops.begin(), gflops.end());
  std::printf("corename: %s  best %.1f median %.1f\n", openblas_get_corename(), gflops.back(),
              gflops[gflops.size() / 2]);
  return 0;
}
