// GRU benchmarks (Google Benchmark). Args: config (0 = S, 1 = M, 2 = L: (V, H, B, T) =
// (27, 64, 1, 25), (65, 128, 32, 64), (65, 512, 64, 64)), path (0 = composed, 1 = fused).
//   BM_GruStep/c/p    one GRU step (T = 1, one-hot ids, h0 given) forward + backward
//   BM_TrainStep/c/p  one training step of char_gru train: CharGRU forward (one-hot ids),
//                     mean cross-entropy, backward, clip_grad_norm(5), Adam; counter chars/s
//
//   bench_gru --benchmark_filter=TrainStep --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include "char_model.hpp"
#include "framework/optim.hpp"
#include "layers/fast/gru_fused.hpp"

using namespace tapegrad;

namespace {

struct Config {
  std::size_t V, H, B, T;
};
const Config kConfigs[] = {{27, 64, 1, 25}, {65, 128, 32, 64}, {65, 512, 64, 64}};
const char* kNames[] = {"S", "M", "L"};

std::vector<std::int64_t> random_ids(std::size_t n, std::size_t V, Generator& gen) {
  std::vector<std::int64_t> ids(n);
  for (auto& i : ids) i = std::int64_t(gen.integer(V));
  return ids;
}

void BM_GruStep(benchmark::State& state) {
  const Config c = kConfigs[state.range(0)];
  const bool fused = state.range(1) != 0;
  Generator gen(0);
  GRU gru(GRUOptions(c.V, c.H), gen);
  gru.set_path(fused ? GRU::Path::Fused : GRU::Path::Composed);
  std::vector<std::int64_t> ids = random_ids(c.B, c.V, gen);
  Tensor h0 = randn({1, c.B, c.H}, gen);
  Tensor seed = ones({c.B, 1, c.H});
  for (auto _ : state) {
    GRU::Output o = fused ? gru_forward_ids_fused(gru, ids, c.B, 1, c.V, h0)
                          : gru.forward_ids(ids, c.B, 1, c.V, h0);
    backward(o.output, seed);
    gru.zero_grad();
  }
  state.SetLabel(fmt::format("{} B={} H={} {}", kNames[state.range(0)], c.B, c.H, fused ? "fused" : "composed"));
}
BENCHMARK(BM_GruStep)->ArgsProduct({{0, 1, 2}, {0, 1}})->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_TrainStep(benchmark::State& state) {
  const Config c = kConfigs[state.range(0)];
  Generator gen(0);
  char_model::Config mc;
  mc.vocab_size = c.V, mc.hidden = c.H;
  char_model::CharGRU model(mc, gen);
  model.gru->set_path(state.range(1) != 0 ? GRU::Path::Fused : GRU::Path::Composed);
  Adam opt(model.parameters(), AdamOptions().lr(2e-3));
  std::vector<std::int64_t> x = random_ids(c.B * c.T, c.V, gen), y = random_ids(c.B * c.T, c.V, gen);
  Tensor h = zeros({1, c.B, c.H});
  for (auto _ : state) {
    char_model::CharGRU::Output out = model.forward(x, c.B, c.T, h);
    h = out.h_n.detach();
    Tensor loss = cross_entropy(out.logits, y);
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(model.parameters(), 5.0);
    opt.step();
  }
  state.SetLabel(fmt::format("{} {}", kNames[state.range(0)], state.range(1) != 0 ? "fused" : "composed"));
  state.counters["chars/s"] =
      benchmark::Counter(double(c.B * c.T), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TrainStep)->ArgsProduct({{0, 1, 2}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
