// Engine micro-benchmarks (Google Benchmark):
//   BM_TapeAdd64          a chain of 100 adds of two 64-element vectors, forward + backward;
//                         counter ns_per_op = time per recorded op (forward, VJP, accumulation)
//   BM_RawAdd64           the same arithmetic in a plain loop (what an op costs without the tape)
//   BM_TapeAdd64Phase/p   BM_TapeAdd64's chain, timing one phase only: 0 the recorded forward,
//                         1 the backward (retain_graph), 2 the release of the tape after it
//   BM_Broadcast/c        a broadcasting add, no tape: c = 0 … 4 a bias row (32 and 2048 rows), a
//                         keepdims column, a 0-d scalar, a short row; counter ns_per_elem
//   BM_BroadcastXtensor/c the same sum by xtensor's broadcasting assignment, into a kept array
//   BM_BroadcastTo/c      broadcast_to (2048, 384) from c = 0 a 0-d, 1 a (2048, 1), 2 a (384)
//   BM_BroadcastToXtensor/c  the same by xtensor's broadcast assignment, into a kept array
//   BM_RowSum             sum over the last axis of (2048, 384), keepdims
//   BM_RowSumXtensor      the same by xtensor's immediate reducer
//   BM_TapeMatmul128      128×128 matmul forward + backward (3 GEMMs) through the tape
//   BM_RawSgemm128x3      the same 3 GEMMs as raw cblas_sgemm calls
//   BM_GruGemm/...        the GRU's GEMM shapes for S, M and L (framework/blas.hpp gemm), GFLOP/s
//   BM_SgemmThreads/...   raw sgemm of the recurrent shapes on 1 and 2 OpenBLAS threads
//   BM_PackedGemm/s       the engine's own kernel (framework/packed_gemm.hpp) on one core, B packed
//                         once: s = 0 32 rows × 512 × 1536 (fused L's forward product on one
//                         core), 1 Aᵀ 512 × 64 × 768 and 2 Aᵀ 64 × 32 × 1536 (weight gradients)
//                         (the process's build of it; TAPEGRAD_GEMM_KERNEL=avx2 etc. chooses, the label names it)
//   BM_StepWeightGrad/b   composed M's T per-step weight gradients dW_hh += dghᵀ·h as raw sgemm
//                         calls: b = 0 T calls with k = B (what the tape does), b = 1 batched: the
//                         T blocks copied into two (T·B)-row arrays and one call with k = T·B
//
//   bench_ops --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "framework/blas.hpp"
#include "framework/packed_gemm.hpp"
#include "framework/ops.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>

using namespace tapegrad;

namespace {

constexpr int kChain = 100;

/// Nanoseconds per unit of work when one iteration does `per_iteration` units.
benchmark::Counter ns_per(double per_iteration) {
  return benchmark::Counter(per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                                      benchmark::Counter::kInvert);
}
/// GFLOP/s when one iteration does `flops` floating-point operations.
benchmark::Counter gflops(double flops) {
  return benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_TapeAdd64(benchmark::State& state) {
  Generator gen(0);
  Tensor a = randn({64}, gen).requires_grad_();
  Tensor b = randn({64}, gen).requires_grad_();
  Tensor seed = ones({64});
  for (auto _ : state) {
    Tensor x = a;
    for (int i = 0; i < kChain; ++i) x = add(x, b);  // 100 recorded ops
    backward(x, seed);
    a.zero_grad();
    b.zero_grad();
  }
  state.counters["ns_per_op"] = ns_per(kChain);
}
BENCHMARK(BM_TapeAdd64);

void BM_TapeAdd64Phase(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  const int phase = int(state.range(0));
  Generator gen(0);
  Tensor a = randn({64}, gen).requires_grad_();
  Tensor b = randn({64}, gen).requires_grad_();
  Tensor seed = ones({64});
  for (auto _ : state) {
    auto t0 = clock::now();
    Tensor x = a;
    for (int i = 0; i < kChain; ++i) x = add(x, b);
    auto t1 = clock::now();
    backward(x, seed, /*retain_graph=*/true);
    auto t2 = clock::now();
    tape().clear();
    auto t3 = clock::now();
    a.zero_grad();
    b.zero_grad();
    const auto took = phase == 0 ? t1 - t0 : phase == 1 ? t2 - t1 : t3 - t2;
    state.SetIterationTime(std::chrono::duration<double>(took).count());
  }
  state.SetLabel(phase == 0 ? "recorded forward" : phase == 1 ? "backward" : "release");
  state.counters["ns_per_op"] = ns_per(kChain);
}
BENCHMARK(BM_TapeAdd64Phase)->DenseRange(0, 2)->UseManualTime();

void BM_RawAdd64(benchmark::State& state) {
  std::vector<float> a(64, 1.0f), b(64, 2.0f), g(64, 0.0f), ga(64), gb(64);
  for (auto _ : state) {
    std::vector<float> x = a;
    for (int i = 0; i < kChain; ++i) {
      std::vector<float> y(64);
      for (int k = 0; k < 64; ++k) y[k] = x[k] + b[k];
      x.swap(y);
    }
    for (int i = 0; i < kChain; ++i)
      for (int k = 0; k < 64; ++k) gb[k] += 1.0f;  // each op's VJP: g flows to both inputs
    for (int k = 0; k < 64; ++k) ga[k] = 1.0f;
    benchmark::DoNotOptimize(x.data());
    benchmark::DoNotOptimize(gb.data());
  }
  state.counters["ns_per_op"] = ns_per(kChain);
}
BENCHMARK(BM_RawAdd64);

/// Broadcasting binary ops, forward only (no tape), each as tapegrad's op and as xtensor's
/// broadcasting assignment into a kept array (what the op ran before its block loops,
/// ops_elementwise.cpp block_broadcast; no allocation there, so a lower bound for it).
struct BroadcastCase {
  const char* label;
  Shape big, small;
};
const BroadcastCase kBroadcastCases[] = {
    {"(32, 384) + (384): composed M's bias", {32, 384}, {384}},
    {"(2048, 384) + (384): its input projection", {2048, 384}, {384}},
    {"(2048, 384) + (2048, 1): a keepdims column", {2048, 384}, {2048, 1}},
    {"(2048, 384) + (): a 0-d scalar", {2048, 384}, {}},
    {"(8192, 3) + (3): a short bias row", {8192, 3}, {3}},
};

void BM_Broadcast(benchmark::State& state) {
  const BroadcastCase& c = kBroadcastCases[state.range(0)];
  Generator gen(0);
  Tensor x = randn(c.big, gen), y = randn(c.small, gen);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(add(x, y).impl());
  state.counters["ns_per_elem"] = ns_per(double(x.numel()));
  state.SetLabel(c.label);
}
BENCHMARK(BM_Broadcast)->DenseRange(0, 4)->UseRealTime();

void BM_BroadcastXtensor(benchmark::State& state) {
  const BroadcastCase& c = kBroadcastCases[state.range(0)];
  Generator gen(0);
  Tensor x = randn(c.big, gen), y = randn(c.small, gen), out = zeros(c.big);
  auto& o = out.data<float>();
  for (auto _ : state) {
    xt::noalias(o) = x.data<float>() + y.data<float>();
    benchmark::DoNotOptimize(o.data());
  }
  state.counters["ns_per_elem"] = ns_per(double(x.numel()));
  state.SetLabel(c.label);
}
BENCHMARK(BM_BroadcastXtensor)->DenseRange(0, 4)->UseRealTime();

/// broadcast_to of a 0-d, a (2048, 1) and a (384) tensor to (2048, 384) (every sum's and mean's
/// backward), and the same as xtensor's broadcast assignment into a kept array.
const Shape kBroadcastToFrom[] = {{}, {2048, 1}, {384}};

void BM_BroadcastTo(benchmark::State& state) {
  Generator gen(0);
  Tensor y = randn(kBroadcastToFrom[state.range(0)], gen);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(broadcast_to(y, {2048, 384}).impl());
  state.counters["ns_per_elem"] = ns_per(2048.0 * 384);
}
BENCHMARK(BM_BroadcastTo)->DenseRange(0, 2)->UseRealTime();

void BM_BroadcastToXtensor(benchmark::State& state) {
  Generator gen(0);
  Tensor y = randn(kBroadcastToFrom[state.range(0)], gen), out = zeros({2048, 384});
  auto& o = out.data<float>();
  for (auto _ : state) {
    xt::noalias(o) = xt::broadcast(y.data<float>(), Shape{2048, 384});
    benchmark::DoNotOptimize(o.data());
  }
  state.counters["ns_per_elem"] = ns_per(2048.0 * 384);
}
BENCHMARK(BM_BroadcastToXtensor)->DenseRange(0, 2)->UseRealTime();

/// Row sums, (2048, 384) to (2048, 1) (softmax's and layer norm's keepdims sums), and the same by
/// xtensor's immediate reducer (what sum ran before sum_rows).
void BM_RowSum(benchmark::State& state) {
  Generator gen(0);
  Tensor x = randn({2048, 384}, gen);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(sum(x, {-1}, true).impl());
  state.counters["ns_per_elem"] = ns_per(2048.0 * 384);
}
BENCHMARK(BM_RowSum)->UseRealTime();

void BM_RowSumXtensor(benchmark::State& state) {
  Generator gen(0);
  Tensor x = randn({2048, 384}, gen);
  for (auto _ : state) {
    xt::xarray<float> r = xt::sum(x.data<float>(), {1}, xt::evaluation_strategy::immediate);
    benchmark::DoNotOptimize(r.data());
  }
  state.counters["ns_per_elem"] = ns_per(2048.0 * 384);
}
BENCHMARK(BM_RowSumXtensor)->UseRealTime();

void BM_TapeMatmul128(benchmark::State& state) {
  Generator gen(0);
  Tensor a = randn({128, 128}, gen).requires_grad_();
  Tensor b = randn({128, 128}, gen).requires_grad_();
  Tensor seed = ones({128, 128});
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    backward(c, seed);
    a.zero_grad();
    b.zero_grad();
  }
  state.counters["GFLOP/s"] = gflops(3.0 * 2 * 128 * 128 * 128);
}
BENCHMARK(BM_TapeMatmul128)->UseRealTime();

void BM_RawSgemm128x3(benchmark::State& state) {
  const int n = 128;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n), da(n * n), db(n * n), g(n * n, 1.0f);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, g.data(), n, b.data(), n, 0, da.data(), n);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, n, 1, a.data(), n, g.data(), n, 0, db.data(), n);
    benchmark::DoNotOptimize(db.data());
  }
  state.counters["GFLOP/s"] = gflops(3.0 * 2 * n * n * n);
}
BENCHMARK(BM_RawSgemm128x3)->UseRealTime();

// ---- the GRU's GEMM shapes ------------------------------------------------------------------------
// Args: config (0 = S, 1 = M, 2 = L), product:
//   0 recurrent forward   h (B×H) · W_hhᵀ (H×3H)            per step
//   1 recurrent backward  dgh (B×3H) · W_hh (3H×H)           per step
//   2 dW_hh               dghᵀ (3H×TB) · h (TB×H)            once per sequence (as r|z + n)
//   3 head forward        h (TB×H) · W_oᵀ (H×V)              once per sequence
struct Config {
  std::size_t V, H, B, T;
};
const Config kConfigs[] = {{27, 64, 1, 25}, {65, 128, 32, 64}, {65, 512, 64, 64}};

void BM_GruGemm(benchmark::State& state) {
  const Config c = kConfigs[state.range(0)];
  const int product = int(state.range(1));
  std::size_t m, n, k;
  bool ta = false, tb = false;
  switch (product) {
    case 0: m = c.B, n = 3 * c.H, k = c.H, tb = true; break;
    case 1: m = c.B, n = c.H, k = 3 * c.H; break;
    case 2: m = 3 * c.H, n = c.H, k = c.T * c.B, ta = true; break;
    default: m = c.T * c.B, n = c.V, k = c.H, tb = true; break;
  }
  std::vector<float> a(m * k, 0.01f), b(k * n, 0.02f), out(m * n);
  for (auto _ : state) {
    detail::gemm(ta, tb, m, n, k, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.0f, out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(fmt::format("{} m={} n={} k={}{}{}", "SML"[state.range(0)], m, n, k, ta ? " Aᵀ" : "",
                             tb ? " Bᵀ" : ""));
  state.counters["GFLOP/s"] = gflops(2.0 * double(m * n * k));
}
BENCHMARK(BM_GruGemm)->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3}})->UseRealTime();

/// The engine's kernel alone: C = A · B + C for B packed once, as the fused recurrences run it.
void BM_PackedGemm(benchmark::State& state) {
  using G = detail::PackedGemm<float>;
  if (!G::available()) {
    state.SkipWithError("no build of the engine's kernel runs here (or TAPEGRAD_GEMM_KERNEL=blas)");
    return;
  }
  struct Shape {
    std::size_t m, k, n;
    bool ta;
  };
  constexpr Shape kShapes[] = {{32, 512, 1536, false}, {512, 64, 768, true}, {64, 32, 1536, true}};
  const Shape sh = kShapes[state.range(0)];
  std::vector<float> a(sh.m * sh.k, 0.02f), b(sh.k * sh.n, 0.01f), out(sh.m * sh.n);
  std::vector<float, detail::pool_allocator<float>> storage(G::storage_size(sh.k, sh.n));
  const G g(storage.data(), b.data(), sh.n, false, sh.k, sh.n);
  for (auto _ : state) {
    g.multiply_panels(0, G::panels(sh.n), sh.m, a.data(), sh.ta ? sh.m : sh.k, 1.0f, out.data(), sh.n, sh.ta);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(fmt::format("m={} k={} n={}{} {}", sh.m, sh.k, sh.n, sh.ta ? " Aᵀ" : "", g.kernel().name));
  state.counters["GFLOP/s"] = gflops(2.0 * double(sh.m * sh.n * sh.k));
}
BENCHMARK(BM_PackedGemm)->DenseRange(0, 2)->UseRealTime();

/// Raw cblas_sgemm of the recurrent forward shape on `threads` OpenBLAS threads.
void BM_SgemmThreads(benchmark::State& state) {
  const Config c = kConfigs[state.range(0)];
  const int threads = int(state.range(1));
  const int m = int(c.B), n = int(3 * c.H), k = int(c.H);
  std::vector<float> a(std::size_t(m) * k, 0.01f), b(std::size_t(k) * n, 0.02f), out(std::size_t(m) * n);
  const int previous = openblas_get_num_threads();
  openblas_set_num_threads(threads);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a.data(), k, b.data(), k, 0, out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  openblas_set_num_threads(previous);
  state.SetLabel(fmt::format("{} m={} n={} k={} threads={}", "SML"[state.range(0)], m, n, k, threads));
  state.counters["GFLOP/s"] = gflops(2.0 * m * n * k);
}
BENCHMARK(BM_SgemmThreads)->ArgsProduct({{0, 1, 2}, {1, 2}})->UseRealTime();

void BM_StepWeightGrad(benchmark::State& state) {
  const Config c = kConfigs[1];  // M
  const bool batched = state.range(0) == 1;
  const std::size_t G = 3 * c.H, rows = c.T * c.B;
  std::vector<std::vector<float>> dg(c.T, std::vector<float>(c.B * G, 0.01f));
  std::vector<std::vector<float>> h(c.T, std::vector<float>(c.B * c.H, 0.02f));
  std::vector<float> dw(G * c.H, 0.0f), all_dg(rows * G), all_h(rows * c.H);
  for (auto _ : state) {
    if (!batched) {
      for (std::size_t t = 0; t < c.T; ++t)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(G), int(c.H), int(c.B), 1.0f,
                    dg[t].data(), int(G), h[t].data(), int(c.H), 1.0f, dw.data(), int(c.H));
    } else {
      for (std::size_t t = 0; t < c.T; ++t) {
        std::copy(dg[t].begin(), dg[t].end(), all_dg.begin() + std::ptrdiff_t(t * c.B * G));
        std::copy(h[t].begin(), h[t].end(), all_h.begin() + std::ptrdiff_t(t * c.B * c.H));
      }
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(G), int(c.H), int(rows), 1.0f,
                  all_dg.data(), int(G), all_h.data(), int(c.H), 1.0f, dw.data(), int(c.H));
    }
    benchmark::DoNotOptimize(dw.data());
  }
  state.SetLabel(batched ? "copies + one call, k = T*B" : "T calls, k = B");
  state.counters["GFLOP/s"] = gflops(2.0 * double(G * c.H * rows));
}
BENCHMARK(BM_StepWeightGrad)->DenseRange(0, 1)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
