// date_translation — neural machine translation with attention, on dates: "Tuesday, June 12, 2001",
// "the 3rd of may 1979", "12 JUN 2001", ... → "2001-06-12". Its PyTorch twin is
// tools/torch_date_translation.py (same generator recipe, model, optimizer and schedule).
//
//   date_translation [--steps 1000] [--seed 0] [--json]
//
// Data: a day (year 1900–2099, month, day) in one of 8 formats (day or month first, full or
// 3-letter month names, weekdays, ordinals) and one of 3 cases, written by a seeded generator.
// 1,000 test dates are made first; training never sees one of their strings (held out).
// Model: characters → Embedding(·, 32) → bidirectional GRU(32 → 64): encoder states (B, len, 128).
// Decoder, 10 steps, state s (LSTMCell, 128): context = scaled dot-product attention of Linear(s)
// over the encoder states (padding masked); s = LSTMCell([embedding of the previous output char,
// context]); logits = Linear([s, context]). Teacher forcing in training, greedy decoding at test.
// Cross-entropy, Adam 3e-3 with CosineAnnealingLR, batches of 64, gradient norm clipped at 1.
// Prints the test exact-match accuracy and attention maps; --json prints {"accuracy", "steps", "seconds"}.
#include <cctype>
#include <chrono>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

const std::string kInChars = "\1 ,0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";  // \1 = padding
const std::string kOutChars = "0123456789-";  // id 11 = start of the output
constexpr std::size_t kOutLen = 10, E = 32, H = 64, Hd = 128, kBatch = 64;  // Hd: the decoder's state

struct Example { std::string human, iso; };

Example make_date(Generator& gen) {
  static const char* months[] = {"january", "february", "march", "april", "may", "june", "july",
                                 "august", "september", "october", "november", "december"};
  static const char* weekdays[] = {"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"};
  int y = 1900 + int(gen.integer(200)), m = 1 + int(gen.integer(12));
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  int len[] = {31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}, d = 1 + int(gen.integer(len[m - 1]));
  static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};  // Sakamoto's day of the week
  int yy = m < 3 ? y - 1 : y;
  std::string W = weekdays[(yy + yy / 4 - yy / 100 + yy / 400 + t[m - 1] + d) % 7], M = months[m - 1];
  std::string Y = std::to_string(y), D = std::to_string(d), m3 = M.substr(0, 3);
  std::string th = (d % 10 == 1 && d != 11) ? "st" : (d % 10 == 2 && d != 12) ? "nd" : (d % 10 == 3 && d != 13) ? "rd" : "th";
  std::string formats[] = {D + " " + M + " " + Y,      fmt::format("{:02} {} {}", d, M, Y), M + " " + D + ", " + Y,
                           W + " " + D + " " + M + " " + Y, W + ", " + M + " " + D + ", " + Y, D + " " + m3 + " " + Y,
                           m3 + " " + D + " " + Y,      "the " + D + th + " of " + M + " " + Y};
  std::string s = formats[gen.integer(8)];
  std::size_t style = gen.integer(3);  // lower, Capitalized Words, UPPER
  for (std::size_t i = 0; i < s.size(); ++i)
    if (style == 2 || (style == 1 && (i == 0 || s[i - 1] == ' '))) s[i] = char(std::toupper(s[i]));
  return {s, fmt::format("{}-{:02}-{:02}", y, m, d)};
}

class DateTranslator : public Module {
 public:
  explicit DateTranslator(Generator& gen) {
    embed = register_module("embed", std::make_shared<Embedding>(kInChars.size(), E, gen));
    encoder = register_module("encoder", std::make_shared<GRU>(GRUOptions(E, H).bidirectional(true), gen));
    out_embed = register_module("out_embed", std::make_shared<Embedding>(kOutChars.size() + 1, E, gen));
    query = register_module("query", std::make_shared<Linear>(Hd, 2 * H, gen));
    decoder = register_module("decoder", std::make_shared<LSTMCell>(LSTMCellOptions(E + 2 * H, Hd), gen));
    head = register_module("head", std::make_shared<Linear>(Hd + 2 * H, kOutChars.size(), gen));
  }
  /// Logits (B·10, 11) and each output step's attention weights (B, 1, len). `targets` (B·10 ids)
  /// are fed back as the previous character (teacher forcing); without them, the argmax is.
  std::pair<Tensor, std::vector<Tensor>> forward(const std::vector<std::string>& inputs,
                                                 const std::vector<std::int64_t>* targets = nullptr) {
    std::size_t B = inputs.size(), len = 0;
    for (const std::string& s : inputs) len = std::max(len, s.size());
    std::vector<std::int64_t> ids(B * len, 0);
    std::vector<double> pad(B * len, 1.0);
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t i = 0; i < inputs[b].size(); ++i) {
        ids[b * len + i] = std::int64_t(kInChars.find(inputs[b][i]));
        pad[b * len + i] = 0;  // a character, not padding: attention may look at it
      }
    Tensor states = encoder->forward(embed->forward(ids, {B, len})).output;  // (B, len, 2H)
    AttentionMask mask = AttentionMask::boolean(from_vector(pad, Shape{B, 1, len}));
    LSTMCell::State s{zeros({B, Hd}), zeros({B, Hd})};
    std::vector<std::int64_t> prev(B, std::int64_t(kOutChars.size()));  // the start token
    std::vector<Tensor> logits, weights;
    for (std::size_t t = 0; t < kOutLen; ++t) {
      AttentionOutput att = scaled_dot_product_attention(unsqueeze(query->forward(s.h), 1), states, states, mask);
      Tensor context = squeeze(att.output, 1);  // (B, 2H)
      s = decoder->forward(concat({out_embed->forward(prev), context}, 1), s.h, s.c);
      logits.push_back(head->forward(concat({s.h, context}, 1)));  // (B, 11)
      weights.push_back(att.weights);
      IndexTensor best = argmax(logits.back(), -1);
      for (std::size_t b = 0; b < B; ++b) prev[b] = targets ? (*targets)[b * kOutLen + t] : best.at(b);
    }
    return {reshape(stack(logits, 1), {std::ptrdiff_t(B * kOutLen), std::ptrdiff_t(kOutChars.size())}), weights};
  }
  std::shared_ptr<Embedding> embed, out_embed;
  std::shared_ptr<GRU> encoder;
  std::shared_ptr<Linear> query, head;
  std::shared_ptr<LSTMCell> decoder;
};

int main(int argc, char** argv) {
  CLI::App app{"date_translation: an attention model learns to write dates as YYYY-MM-DD"};
  std::size_t steps = 1000;
  std::uint64_t seed = 0;
  bool json_out = false;
  app.add_option("--steps", steps, "training steps (batches of 64)")->capture_default_str()->check(cli::IntRange(1, 1000000));
  app.add_option("--seed", seed, "seed of the dates and the initial weights")->capture_default_str()->check(cli::UInt64);
  app.add_flag("--json", json_out, R"(print {"accuracy", "steps", "seconds"})");
  return cli::run(app, argc, argv, [&]() -> int {
    Generator test_gen(seed + 1000003), gen(seed);
    std::vector<Example> test;
    std::set<std::string> held_out;
    while (test.size() < 1000)
      if (Example e = make_date(test_gen); held_out.insert(e.human).second) test.push_back(e);

    DateTranslator model(gen);
    Adam opt(model.parameters(), AdamOptions().lr(3e-3));
    CosineAnnealingLR schedule(opt, std::int64_t(steps));
    auto t0 = std::chrono::steady_clock::now();
    double smoothed = std::log(double(kOutChars.size()));
    for (std::size_t step = 1; step <= steps; ++step) {
      std::vector<std::string> inputs;
      std::vector<std::int64_t> y;  // B·10 output character ids
      while (inputs.size() < kBatch)
        if (Example e = make_date(gen); !held_out.count(e.human)) {
          inputs.push_back(e.human);
          for (char c : e.iso) y.push_back(std::int64_t(kOutChars.find(c)));
        }
      Tensor loss = cross_entropy(model.forward(inputs, &y).first, y);
      opt.zero_grad();
      loss.backward();
      clip_grad_norm(model.parameters(), 1.0);
      opt.step();
      schedule.step();
      smoothed = 0.95 * smoothed + 0.05 * loss.item();
      if (!std::isfinite(smoothed)) return cli::kDiverged;
      if (!json_out && step % std::max<std::size_t>(1, steps / 10) == 0)
        fmt::print("step {:>5}  loss {:.4f}  lr {:.5f}\n", step, smoothed, opt.lr());
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Greedy decoding of the held-out dates; exact match of all ten characters.
    NoGradGuard no_grad;
    std::vector<std::string> inputs;
    for (const Example& e : test) inputs.push_back(e.human);
    auto [logits, weights] = model.forward(inputs);
    IndexTensor best = argmax(logits, -1);
    std::size_t correct = 0;
    std::vector<std::string> outputs(test.size());
    for (std::size_t b = 0; b < test.size(); ++b) {
      for (std::size_t t = 0; t < kOutLen; ++t) outputs[b] += kOutChars[std::size_t(best.at(b * kOutLen + t))];
      correct += outputs[b] == test[b].iso;
    }
    double accuracy = double(correct) / double(test.size());
    if (json_out) {
      std::cout << nlohmann::json{{"accuracy", accuracy}, {"steps", steps}, {"seconds", seconds}}.dump() << std::endl;
      return cli::kOk;
    }
    fmt::print("test exact-match accuracy {:.1f}% ({} of {}), {:.1f} s, peak RSS {:.0f} MB\n", 100 * accuracy, correct,
               test.size(), seconds, cli::peak_rss_mb());
    for (std::size_t b = 0; b < 3; ++b) {  // attention maps: output characters × input characters
      fmt::print("\n{} → {}{}\n    {}\n", test[b].human, outputs[b], outputs[b] == test[b].iso ? "" : " (wrong)", test[b].human);
      for (std::size_t t = 0; t < kOutLen; ++t) {
        std::string row;
        for (std::size_t i = 0; i < test[b].human.size(); ++i) {
          double w = weights[t].at(b * weights[t].shape()[2] + i);
          row += w < 0.1 ? " " : w < 0.25 ? "░" : w < 0.5 ? "▒" : w < 0.75 ? "▓" : "█";
        }
        fmt::print("  {} {}\n", outputs[b][t], row);
      }
    }
    return cli::kOk;
  });
}
