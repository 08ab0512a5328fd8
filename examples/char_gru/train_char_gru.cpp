// train_char_gru — the whole training loop of a character-level GRU language model, top to
// bottom: text → vocabulary → model → Adam loop → samples. Nothing else (no flags, no resume, no
// progress bar): `char_gru train` is the full tool; this is the one to read and copy.
//
//   train_char_gru [STEPS=2000]
//
// The same pipeline as `char_gru train` with its defaults, so the numbers agree: B = 32 streams of
// the training text, T = 32 characters per step (truncated BPTT, the hidden state carried over,
// detached), H = 128, Adam 2e-3, gradient norm clipped to 5.
#include <cmath>
#include <cstdlib>
#include <string>

#include "char_model.hpp"
#include "framework/optim.hpp"

using namespace tapegrad;
using namespace char_model;

int main(int argc, char** argv) {
  const std::size_t B = 32, T = 32, H = 128;
  std::size_t steps = 2000;
  if (argc > 2 || (argc == 2 && (std::string(argv[1]).find_first_not_of("0123456789") != std::string::npos ||
                                 std::string(argv[1]).size() > 8 || std::atol(argv[1]) < 1))) {
    fmt::print(stderr, "usage: train_char_gru [STEPS in 1..99999999]\n");
    return 2;
  }
  if (argc == 2) steps = std::size_t(std::atol(argv[1]));

  // 1. Text → vocabulary → ids. The vocabulary is the sorted set of characters; id = one-hot index.
  std::string source;
  std::u32string text = default_corpus(source);
  Vocab vocab = Vocab::from_text(text);
  std::vector<std::int64_t> ids = vocab.encode(text, "corpus");
  const std::size_t V = vocab.size();
  ids.resize(ids.size() * 9 / 10);  // the first 90 % trains (char_gru holds out the rest)

  // 2. The model: GRU(V → H) over one-hot inputs, then Linear(H → V) to next-character logits.
  Generator gen(0);
  Config config;
  config.vocab_size = V, config.hidden = H;
  CharGRU model(config, gen);
  Adam opt(model.parameters(), AdamOptions().lr(2e-3));
  std::size_t n_params = 0;
  for (const Tensor& w : model.parameters()) n_params += w.numel();
  fmt::print("{}: {} characters, vocabulary {}, {} parameters\n", source, text.size(), V, n_params);

  // 3. The data: B parallel streams of length L; step k reads characters [p, p + T] of each.
  const std::size_t L = ids.size() / B;
  std::vector<std::int64_t> x(B * T), y(B * T);
  std::size_t p = L;  // forces a restart (and h = 0) at the first step
  Tensor h;

  // 4. The loop: forward, loss, backward, clip, step.
  for (std::size_t step = 1; step <= steps; ++step) {
    if (p + T + 1 > L) p = 0, h = zeros({1, B, H});  // back to the start of every stream
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t t = 0; t < T; ++t) {
        x[b * T + t] = ids[b * L + p + t];      // input: character p + t of stream b
        y[b * T + t] = ids[b * L + p + t + 1];  // target: the next one
      }
    p += T;

    CharGRU::Output out = model.forward(x, B, T, h);  // logits (B·T, V), h_n (1, B, H)
    Tensor loss = cross_entropy(out.logits, y);       // mean −log p(next character)
    h = out.h_n.detach();                             // carry the state, not its history
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(model.parameters(), 5.0);
    opt.step();
    if (step % 200 == 0 || step == steps)
      fmt::print("step {:>5}  loss {:.3f} nats/char (uniform guessing: {:.3f})\n", step, loss.item(),
                 std::log(double(V)));
  }

  // 5. Sampling: feed '\n', then draw each next character from softmax(logits) until '\n'.
  NoGradGuard no_grad;
  for (int k = 0; k < 5; ++k) {
    std::vector<std::int64_t> context = {vocab.find(U'\n')};
    Tensor state;
    std::u32string word;
    for (int n = 0; n < 40; ++n) {
      CharGRU::Output o = model.forward(context, 1, 1, state);
      state = o.h_n;
      Tensor prob = softmax(o.logits, 1);  // (1, V)
      double u = gen.uniform(), acc = 0;
      std::size_t next = 0;
      while (next + 1 < V && (acc += prob.at(next)) < u) ++next;
      if (vocab.chars[next] == U'\n') break;
      word += vocab.chars[next];
      context = {std::int64_t(next)};
    }
    fmt::print("  sample: {}\n", utf8_encode(word));
  }
  return 0;
}
