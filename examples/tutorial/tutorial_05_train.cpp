// Tutorial step 5 — training: a GRU learns to echo its input two steps later (docs/tutorial.md).
//
// Task: a random bit sequence x_1..x_T; at step t ≥ 3 predict x_{t−2}. The GRU must remember two
// steps back, which a model without a state cannot do (it stays at 50%). Adam, float32, a few
// hundred steps, about a second. Exit 0 when the accuracy on fresh sequences is ≥ 99%.
#include "framework/optim.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

constexpr std::size_t B = 16, T = 12, H = 16, V = 2, kDelay = 2;

struct Batch {
  std::vector<std::int64_t> ids;      // (B, T) row-major: the input bits
  std::vector<std::int64_t> targets;  // (B, T − kDelay): x_{t−2} for t = 3..T
};

Batch make_batch(Generator& gen) {
  Batch b;
  for (std::size_t i = 0; i < B * T; ++i)
    b.ids.push_back(static_cast<std::int64_t>(gen.integer(2)));
  for (std::size_t i = 0; i < B; ++i)
    for (std::size_t t = kDelay; t < T; ++t) b.targets.push_back(b.ids[i * T + t - kDelay]);
  return b;
}

}  // namespace

int main() {
  Generator gen(5);
  GRU gru(GRUOptions(V, H), gen);
  Linear head(H, V, gen);
  std::vector<Tensor> params = gru.parameters();
  for (const Tensor& p : head.parameters()) params.push_back(p);
  Adam opt(params, AdamOptions().lr(2e-2));

  // logits for steps kDelay+1..T: (B, T − kDelay, V)
  auto logits_of = [&](const Batch& b) {
    Tensor out = gru.forward_ids(b.ids, B, T, V).output;  // (B, T, H), one-hot inputs
    return head(narrow(out, 1, kDelay, T - kDelay));
  };
  for (int step = 1; step <= 300; ++step) {
    Batch b = make_batch(gen);
    opt.zero_grad();
    Tensor loss = CrossEntropyLoss()(logits_of(b), b.targets);
    loss.backward();
    clip_grad_norm(params, 5.0);
    opt.step();
    if (step % 50 == 0) fmt::print("step {:3d}  loss {:.4f}\n", step, loss.item());
  }

  // Evaluate on fresh sequences, without recording.
  NoGradGuard no_grad;
  std::size_t correct = 0, total = 0;
  for (int k = 0; k < 10; ++k) {
    Batch b = make_batch(gen);
    Tensor pred = logits_of(b);  // (B, T − kDelay, V)
    for (std::size_t i = 0; i < b.targets.size(); ++i, ++total)
      correct += (pred.at(2 * i + 1) > pred.at(2 * i)) == (b.targets[i] == 1);
  }
  double acc = double(correct) / total;
  fmt::print("accuracy on fresh sequences: {:.1f}%\n", 100 * acc);
  return acc >= 0.99 ? 0 : 1;
}
