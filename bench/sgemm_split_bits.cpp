// Does OpenBLAS give the same bits for two halves of a product as for the whole? For each shape
// (the composed GRU's per-step products and output layers) and each pair of transpose flags,
// one sgemm call against two calls on halves of C, split along n and along m.
// Why it matters: the engine may only spread a product over two cores where no documented
// output moves (framework/blas.hpp, docs/performance.md, session 7).
//
//   g++ -O2 bench/sgemm_split_bits.cpp -o sgemm_split_bits -lopenblas
//   OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell ./sgemm_split_bits
#include <cblas.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

int main() {
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  struct Shape {
    int m, n, k;
  } shapes[] = {{32, 384, 128}, {64, 1536, 512}, {1024, 70, 128}, {2048, 65, 128},
                {32, 128, 384}, {384, 128, 32},  {128, 384, 32}};
  int cases = 0, differ = 0;
  for (const Shape& s : shapes)
    for (int tb = 0; tb < 2; ++tb)
      for (int ta = 0; ta < 2; ++ta) {
        const int m = s.m, n = s.n, k = s.k, lda = ta ? m : k, ldb = tb ? k : n;
        std::vector<float> a(std::size_t(m) * k), b(std::size_t(k) * n), whole(std::size_t(m) * n),
            by_n(whole.size()), by_m(whole.size());
        for (float& x : a) x = normal(gen);
        for (float& x : b) x = normal(gen);
        const CBLAS_TRANSPOSE fa = ta ? CblasTrans : CblasNoTrans, fb = tb ? CblasTrans : CblasNoTrans;
        cblas_sgemm(CblasRowMajor, fa, fb, m, n, k, 1, a.data(), lda, b.data(), ldb, 0, whole.data(), n);
        const int n0 = n / 2, m0 = m / 2;
        cblas_sgemm(CblasRowMajor, fa, fb, m, n0, k, 1, a.data(), lda, b.data(), ldb, 0, by_n.data(), n);
        cblas_sgemm(CblasRowMajor, fa, fb, m, n - n0, k, 1, a.data(), lda,
                    tb ? b.data() + std::size_t(n0) * ldb : b.data() + n0, ldb, 0, by_n.data() + n0, n);
        cblas_sgemm(CblasRowMajor, fa, fb, m0, n, k, 1, a.data(), lda, b.data(), ldb, 0, by_m.data(), n);
        cblas_sgemm(CblasRowMajor, fa, fb, m - m0, n, k, 1,
                    ta ? a.data() + m0 : a.data() + std::size_t(m0) * lda, lda, b.data(), ldb, 0,
                    by_m.data() + std::size_t(m0) * n, n);
        const std::size_t bytes = whole.size() * sizeof(float);
        const bool same_n = !std::memcmp(whole.data(), by_n.data(), bytes),
                   same_m = !std::memcmp(whole.data(), by_m.data(), bytes);
        std::printf("%5d x %5d x %5d  ta=%d tb=%d  halves along n: %s  along m: %s\n", m, n, k, ta, tb,
                    same_n ? "same bits" : "DIFFER", same_m ? "same bits" : "DIFFER");
        ++cases;
        differ += !(same_n && same_m);
      }
  std::printf("%d of %d cases differ (OpenBLAS %s)\n", differ, cases, openblas_get_corename());
  return 0;
}
