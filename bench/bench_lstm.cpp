// LSTM layer training-step benchmark (Google Benchmark), float32, the same step as
// tools/bench_lstm.py runs in PyTorch. Arg: config
//   0 = adding problem  LSTM(2 → 64), B = 32, T = 50; Linear(64 → 1) on h_T, MSE
//   1 = char-LM         LSTM(65 → 128) on one-hot input, B = 32, T = 32; Linear(128 → 65) on
//                       every step, mean cross-entropy
//   2 = char-LM, H=512  LSTM(65 → 512), otherwise as 1; Linear(512 → 65)
// One step = forward, loss, zero_grad, backward, Adam(lr 1e-3).
//
//   bench_lstm --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include "framework/ops.hpp"
#include "framework/optim.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

struct Config {
  const char* name;
  std::size_t I, H, B, T, out;
  bool char_lm;
};
const Config kConfigs[] = {{"adding", 2, 64, 32, 50, 1, false},
                           {"char-lm", 65, 128, 32, 32, 65, true},
                           {"char-lm-512", 65, 512, 32, 32, 65, true}};

void BM_LstmTrainStep(benchmark::State& state) {
  const Config c = kConfigs[state.range(0)];
  Generator gen(0);
  struct Model : Module {
    Model(const Config& c, Generator& gen) {
      lstm = register_module("lstm", std::make_shared<LSTM>(LSTMOptions(c.I, c.H).batch_first(true), gen));
      head = register_module("head", std::make_shared<Linear>(c.H, c.out, gen));
    }
    std::shared_ptr<LSTM> lstm;
    std::shared_ptr<Linear> head;
  } model(c, gen);
  Adam opt(model.parameters(), AdamOptions().lr(1e-3));

  Tensor x, y;
  std::vector<std::int64_t> targets;
  if (c.char_lm) {
    std::vector<std::int64_t> ids(c.B * c.T);
    for (auto& i : ids) i = std::int64_t(gen.integer(c.I));
    x = reshape(one_hot(ids, c.I), Shape{c.B, c.T, c.I});
    targets.resize(c.B * c.T);
    for (auto& t : targets) t = std::int64_t(gen.integer(c.out));
  } else {
    x = uniform({c.B, c.T, c.I}, 0, 1, gen);
    y = uniform({c.B, 1}, 0, 2, gen);
  }
  for (auto _ : state) {
    LSTM::Output o = model.lstm->forward(x);
    Tensor loss = c.char_lm ? cross_entropy(reshape(model.head->forward(o.output),
                                                    {std::ptrdiff_t(c.B * c.T), std::ptrdiff_t(c.out)}),
                                            targets)
                            : mse(model.head->forward(select(o.output, 1, c.T - 1)), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  state.SetLabel(fmt::format("{} B={} T={} in={} H={}", c.name, c.B, c.T, c.I, c.H));
}
BENCHMARK(BM_LstmTrainStep)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
