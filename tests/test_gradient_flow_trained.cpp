// gradient_flow --checkpoint: the gradient flow of a trained char_gru model's own loss.
//
// A tiny model is made here (char_model::CharGRU from a Generator, float64), saved with
// save_checkpoint to a private temporary directory, and the program is run on it. Its JSON is
// checked against independent computations:
//   loss           char_model::score on the same text (1e-9)
//   grad_norm[N]   by hand from the head: ∂L/∂h_N = W_headᵀ (softmax(logits_N) − e_{text[N]}) / N
//                  for the last layer (h_N reaches L through the last prediction only)
//   grad_norm[0]   central differences of L with respect to h_0 (layer k's; the others zero)
//   connectivity   one entry against central differences of log p(text[t]) with respect to the
//                  input x_s (the one-hot vector as floats, or the embedded vector)
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "char_model.hpp"
#include "process_support.hpp"

using namespace tapegrad;

namespace {

const std::string kProgram = std::string(TAPEGRAD_EXAMPLES_BIN_DIR) + "/gradient_flow";

using process::Proc;
using process::ScratchDir;
using process::slurp;

/// Runs the program with exactly these arguments (no shell), stdout and stderr captured.
Proc run(const std::vector<std::string>& args) { return process::run(kProgram, args); }

bool built() { return ::access(kProgram.c_str(), X_OK) == 0; }

/// A tiny random model over `alphabet`, float64, saved to dir/name.
std::string make_checkpoint(const std::string& dir, const std::u32string& alphabet, std::size_t hidden,
                            std::size_t layers, std::size_t embed_dim, std::uint64_t seed,
                            const std::string& name = "tiny.npz") {
  char_model::Vocab vocab = char_model::Vocab::from_text(alphabet);
  char_model::Config c;
  c.vocab_size = vocab.size();
  c.hidden = hidden;
  c.layers = layers;
  c.embed_dim = embed_dim;
  Generator gen(seed);
  char_model::CharGRU model(c, gen);
  model.to(DType::Float64);
  // Larger weights than PyTorch's init, so the gradients differ visibly from step to step.
  for (Tensor p : model.parameters()) p.data<double>() *= 2.5;
  const std::string path = dir + "/" + name;
  char_model::save_checkpoint(path, model, vocab);
  return path;
}

/// L(h0) = mean −log p(text[t]) from a given (L, 1, H) initial state, no tape.
double loss_from(char_model::CharGRU& m, const std::vector<std::int64_t>& ids, const Tensor& h0) {
  NoGradGuard ng;
  const std::size_t N = ids.size() - 1, V = m.config.vocab_size;
  std::vector<std::int64_t> in(ids.begin(), ids.end() - 1);
  Tensor lp = log_softmax(m.forward(in, 1, N, h0).logits, 1);
  double s = 0;
  for (std::size_t t = 0; t < N; ++t) s -= lp.at(t * V + static_cast<std::size_t>(ids[t + 1]));
  return s / static_cast<double>(N);
}

/// log p(text[t]) (t 1-based) as a function of the GRU's input sequence x (1, N, D), no tape.
double log_p_from_inputs(char_model::CharGRU& m, const std::vector<std::int64_t>& ids, const Tensor& x,
                         std::size_t t) {
  NoGradGuard ng;
  const std::size_t N = ids.size() - 1, V = m.config.vocab_size;
  GRU::Output g = m.gru->forward(x);
  Tensor lp = log_softmax(reshape(m.head->forward(g.output), Shape{N, V}), 1);
  return lp.at((t - 1) * V + static_cast<std::size_t>(ids[t]));
}

/// The inputs x_1..x_N the GRU reads: one-hot rows, or the embedded vectors.
Tensor inputs_of(char_model::CharGRU& m, const std::vector<std::int64_t>& ids) {
  NoGradGuard ng;
  const std::size_t N = ids.size() - 1;
  std::vector<std::int64_t> in(ids.begin(), ids.end() - 1);
  if (m.embed) return m.embed->forward(in, Shape{1, N}).detach();
  return reshape(one_hot(in, m.config.vocab_size, DType::Float64), Shape{1, N, m.config.vocab_size});
}

double rel(double a, double b) { return std::abs(a - b) / std::max({std::abs(a), std::abs(b), 1e-300}); }

struct Case {
  std::size_t hidden, layers, embed;
  std::string layer_flag;  // "" = default (the last layer)
};

/// Runs the program in --json mode and checks everything listed at the top of the file.
void check_model(const Case& c) {
  ScratchDir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::u32string alphabet = U"abcdefgh\n";
  const std::string ck = make_checkpoint(dir.path, alphabet, c.hidden, c.layers, c.embed, 11);
  const std::string text = "abcab\nhgfeddcba\nabc";  // 19 characters, N = 18
  std::vector<std::string> args = {"--checkpoint", ck, "--text", text, "--json"};
  if (!c.layer_flag.empty()) args.insert(args.end(), {"--layer", c.layer_flag});
  Proc p = run(args);
  ASSERT_EQ(p.code, 0) << p.err;
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(p.out);

  // Keys, exactly and in order; shapes.
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"loss", "grad_norm", "unit_grad", "connectivity"}));
  const std::size_t N = text.size() - 1, H = c.hidden;
  ASSERT_EQ(j["grad_norm"].size(), N + 1);
  ASSERT_EQ(j["unit_grad"].size(), N + 1);
  ASSERT_EQ(j["connectivity"].size(), N);
  for (std::size_t t = 0; t <= N; ++t) {
    ASSERT_EQ(j["unit_grad"][t].size(), H);
    double g = j["grad_norm"][t].get<double>(), s = 0;
    EXPECT_TRUE(std::isfinite(g)) << t;
    EXPECT_GT(g, 0.0) << t;
    for (std::size_t u = 0; u < H; ++u) {
      double v = j["unit_grad"][t][u].get<double>();
      EXPECT_GE(v, 0.0);
      s += v * v;
    }
    EXPECT_NEAR(std::sqrt(s), g, 1e-12 * (1 + g)) << "unit_grad row " << t << " is |∂L/∂h_t|";
  }
  for (std::size_t t = 1; t <= N; ++t) {
    ASSERT_EQ(j["connectivity"][t - 1].size(), N);
    for (std::size_t s = 1; s <= N; ++s) {
      double v = j["connectivity"][t - 1][s - 1].get<double>();
      EXPECT_TRUE(std::isfinite(v));
      if (s > t) EXPECT_EQ(v, 0.0) << "above the diagonal: t = " << t << ", s = " << s;
      else EXPECT_GT(v, 0.0) << "t = " << t << ", s = " << s;
    }
  }

  // The same model, loaded the way the program loads it.
  char_model::Checkpoint ckp = char_model::load_checkpoint(ck);
  char_model::CharGRU& m = *ckp.model;
  m.to(DType::Float64);
  std::vector<std::int64_t> ids = ckp.vocab.encode(char_model::utf8_decode(text, "text"), "text");
  const std::size_t L = m.config.layers, V = m.config.vocab_size;
  const std::size_t layer = c.layer_flag.empty() ? L - 1 : std::stoul(c.layer_flag);

  // 1. The loss is char_model::score's.
  EXPECT_NEAR(j["loss"].get<double>(), char_model::score(m, ids), 1e-9);

  // 2. ∂L/∂h_N by hand from the head (last layer only: h_N feeds nothing but the last prediction).
  if (layer == L - 1) {
    NoGradGuard ng;
    std::vector<std::int64_t> in(ids.begin(), ids.end() - 1);
    Tensor logits = m.forward(in, 1, N).logits;  // (N, V)
    std::vector<double> p(V);
    double mx = -1e300, z = 0;
    for (std::size_t v = 0; v < V; ++v) mx = std::max(mx, logits.at((N - 1) * V + v));
    for (std::size_t v = 0; v < V; ++v) z += p[v] = std::exp(logits.at((N - 1) * V + v) - mx);
    for (std::size_t v = 0; v < V; ++v) p[v] /= z;
    p[static_cast<std::size_t>(ids[N])] -= 1.0;
    const auto& W = m.head->weight.data<double>();  // (V, H)
    double sq = 0;
    for (std::size_t u = 0; u < H; ++u) {
      double g = 0;
      for (std::size_t v = 0; v < V; ++v) g += W(v, u) * p[v];
      g /= static_cast<double>(N);
      EXPECT_NEAR(j["unit_grad"][N][u].get<double>(), std::abs(g), 1e-12) << "unit " << u;
      sq += g * g;
    }
    EXPECT_LT(rel(j["grad_norm"][N].get<double>(), std::sqrt(sq)), 1e-10);
  }

  // 3. ∂L/∂h_0 of the chosen layer by central differences.
  {
    const double eps = 1e-6;
    double sq = 0;
    for (std::size_t u = 0; u < H; ++u) {
      Tensor hp = zeros({L, 1, H}, DType::Float64), hm = zeros({L, 1, H}, DType::Float64);
      hp.data<double>()(layer, 0, u) = eps;
      hm.data<double>()(layer, 0, u) = -eps;
      double g = (loss_from(m, ids, hp) - loss_from(m, ids, hm)) / (2 * eps);
      EXPECT_NEAR(j["unit_grad"][0][u].get<double>(), std::abs(g), 1e-7 * (1 + std::abs(g))) << "unit " << u;
      sq += g * g;
    }
    EXPECT_LT(rel(j["grad_norm"][0].get<double>(), std::sqrt(sq)), 1e-6);
  }

  // 4. One connectivity entry, and one more, by central differences of log p(text[t]) in x_s.
  for (auto [t, s] : {std::pair<std::size_t, std::size_t>{N, 2}, {9, 9}, {13, 4}}) {
    SCOPED_TRACE("t = " + std::to_string(t) + ", s = " + std::to_string(s));
    Tensor x = inputs_of(m, ids);
    const std::size_t D = x.size(2);
    const double eps = 5e-6;  // ≈ cbrt(float64 ε): balances rounding against truncation
    double sq = 0;
    for (std::size_t d = 0; d < D; ++d) {
      Tensor xp = Tensor(xt::xarray<double>(x.data<double>())), xm = Tensor(xt::xarray<double>(x.data<double>()));
      xp.data<double>()(0, s - 1, d) += eps;
      xm.data<double>()(0, s - 1, d) -= eps;
      double g = (log_p_from_inputs(m, ids, xp, t) - log_p_from_inputs(m, ids, xm, t)) / (2 * eps);
      sq += g * g;
    }
    EXPECT_LT(rel(j["connectivity"][t - 1][s - 1].get<double>(), std::sqrt(sq)), 1e-6);
  }
}

}  // namespace

TEST(GradientFlowTrained, OneHotModelMatchesIndependentComputations) {
  if (!built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  check_model({6, 1, 0, ""});
}

TEST(GradientFlowTrained, EmbeddingModelConnectivityIsWithRespectToTheEmbeddedVector) {
  if (!built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  check_model({5, 1, 3, ""});
}

TEST(GradientFlowTrained, TwoLayersDefaultIsTheLastLayerAndLayerZeroWorks) {
  if (!built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  check_model({4, 2, 0, ""});
  check_model({4, 2, 0, "0"});
}

TEST(GradientFlowTrained, TableNamesTheLossAndTheUnitsThatCarryTheGradient) {
  if (!built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  ScratchDir dir;
  const std::string ck = make_checkpoint(dir.path, U"abcdefgh\n", 8, 1, 0, 3);
  Proc p = run({"--checkpoint", ck, "--text", "abc\ndefgh"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("L = mean over t = 1..8 of -log p(text[t]) = "), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("the 5 units with the largest |∂L/∂h_1[j]|"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("mean z"), std::string::npos) << p.out;
  // One row per t = 0..8.
  for (int t = 0; t <= 8; ++t) EXPECT_NE(p.out.find(fmt::format("\n{:>5}  ", t)), std::string::npos) << t;
}

TEST(GradientFlowTrained, UsageErrorsExitWith2AndNameTheFlags) {
  if (!built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  ScratchDir dir;
  const std::string ck = make_checkpoint(dir.path, U"abcdefgh\n", 4, 1, 0, 5);
  auto expect2 = [](const Proc& p, std::vector<std::string> parts) {
    EXPECT_EQ(p.code, 2) << p.err;
    for (const std::string& part : parts) EXPECT_NE(p.err.find(part), std::string::npos) << p.err;
  };
  expect2(run({"--checkpoint", ck, "--text", "abc", "--cell", "gru", "--seed", "3"}),
          {"--checkpoint", "--cell", "--seed"});
  for (const char* flag : {"--hidden", "--steps", "--update-bias", "--weight-scale"})
    expect2(run({"--checkpoint", ck, "--text", "abc", flag, "2"}), {flag});
  expect2(run({"--text", "abc"}), {"--text", "--checkpoint"});
  expect2(run({"--layer", "0"}), {"--layer", "--checkpoint"});
  expect2(run({"--checkpoint", ck}), {"--text"});
  expect2(run({"--checkpoint", ck, "--text", std::string(202, 'a')}), {"--text", "201"});
  expect2(run({"--checkpoint", ck, "--text", "a"}), {"--text"});
  expect2(run({"--checkpoint", ck, "--text", "abcz"}), {"--text", "'z'"});
  expect2(run({"--checkpoint", ck, "--text", "ab\xff"}), {"--text", "UTF-8"});
  expect2(run({"--checkpoint", ck, "--text", "abc", "--layer", "1"}), {"--layer", "0..0"});
  expect2(run({"--checkpoint", ck, "--text", "abc", "--layer", "-1"}), {"--layer"});
  expect2(run({"--checkpoint", ck, "--text", "abc", "--layer", "18446744073709551617"}), {"--layer", "0..15"});
  expect2(run({"--checkpoint", ck, "--text", "abc", "--plot", dir.path + "/x.jpg"}), {"--plot"});
  expect2(run({"--checkpoint", ck, "--text", "abc", "--plot", dir.path + "/missing/x.png"}), {"--plot"});
  expect2(run({"--checkpoint", ck, "--text", "abc", "--plot", dir.path}), {"--plot"});
  // 201 characters is the limit and runs.
  Proc longest = run({"--checkpoint", ck, "--text", std::string(201, 'a'), "--json"});
  EXPECT_EQ(longest.code, 0) << longest.err;
  // A missing or non-regular checkpoint is refused before any work, naming --checkpoint
  // (cli::check_input_file decides between exit 1 and 2).
  Proc missing = run({"--checkpoint", dir.path + "/nope.npz", "--text", "abc"});
  EXPECT_TRUE(missing.code == 1 || missing.code == 2) << missing.code;
  EXPECT_NE(missing.err.find("--checkpoint"), std::string::npos) << missing.err;
  Proc directory = run({"--checkpoint", dir.path, "--text", "abc"});
  EXPECT_TRUE(directory.code == 1 || directory.code == 2) << directory.code;
  EXPECT_NE(directory.err.find("not a regular file"), std::string::npos) << directory.err;
  EXPECT_TRUE(directory.out.empty()) << directory.out;
}
