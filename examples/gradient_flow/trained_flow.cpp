// trained_flow — see trained_flow.hpp.
#include "trained_flow.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "cli/plot.hpp"

using namespace tapegrad;

namespace trained_flow {

namespace {

/// Restores the default dtype on scope exit.
struct DefaultDType {
  explicit DefaultDType(DType d) : saved(default_dtype()) { set_default_dtype(d); }
  ~DefaultDType() { set_default_dtype(saved); }
  DType saved;
};

/// Clears the tape on scope exit (also when a backward throws).
struct ClearTape {
  ~ClearTape() { tape().clear(); }
};

}  // namespace

Result measure(char_model::CharGRU& model, const std::vector<std::int64_t>& ids, std::size_t layer) {
  const std::size_t L = model.config.layers, H = model.config.hidden, V = model.config.vocab_size;
  if (ids.size() < 2 || ids.size() > kMaxSteps + 1)
    throw ValueError(fmt::format("the text must have 2..{} characters, got {}", kMaxSteps + 1, ids.size()));
  if (layer >= L) throw ValueError(fmt::format("layer {} does not exist: the model has {} layer(s)", layer, L));
  DefaultDType f64(DType::Float64);
  model.to(DType::Float64);
  ClearTape clear_tape;
  tape().clear();

  const std::size_t N = ids.size() - 1;
  const std::vector<std::int64_t> in(ids.begin(), ids.end() - 1), next(ids.begin() + 1, ids.end());

  // x_1..x_N: one leaf (1, N, D) that requires grad; row s − 1 is x_s. D = V (one-hot) or E.
  Tensor x;
  if (model.embed) {
    NoGradGuard no_grad;
    x = model.embed->forward(in, Shape{1, N});
  } else {
    x = reshape(one_hot(in, V, DType::Float64), Shape{1, N, V});
  }
  x = x.detach().requires_grad_().set_name("x");

  // h_0: layer k's is a leaf that requires grad, the other layers' are zeros.
  Tensor h0k = zeros({1, H}, DType::Float64).requires_grad_().set_name("h_0");
  std::vector<Tensor> h0s;
  for (std::size_t l = 0; l < L; ++l) h0s.push_back(l == layer ? h0k : zeros({1, H}, DType::Float64));

  // The composed GRU, recording the gates (for z); the head on every step's top-layer state.
  model.gru->set_record_gates(true);
  GRU::Output out;
  try {
    out = model.gru->forward(x, stack(h0s, 0));  // h0 (L, 1, H)
  } catch (...) {
    model.gru->set_record_gates(false);
    throw;
  }
  model.gru->set_record_gates(false);
  Tensor lp = log_softmax(reshape(model.head->forward(out.output), Shape{N, V}), 1);  // (N, V)

  Result r;
  r.layer = layer;
  r.hidden = H;
  r.steps = N;
  double total = 0;
  for (std::size_t t = 1; t <= N; ++t) {
    double v = lp.at((t - 1) * V + static_cast<std::size_t>(next[t - 1]));
    r.log_probs.push_back(v);
    total -= v;
  }
  r.loss = total / static_cast<double>(N);
  for (const GRU::GateRecord& rec : model.gru->gate_records().at(layer)) {
    std::vector<double> z(H);
    for (std::size_t j = 0; j < H; ++j) z[j] = rec.z.at(j);
    r.z.push_back(std::move(z));
  }

  // ∂L/∂h_t for t = 0..N in one backward: seed dL/d(lp) = −onehot(next) / N.
  std::vector<Tensor> hs = {h0k};
  for (const Tensor& h : out.steps.at(layer)) hs.push_back(h);
  Tensor seed = zeros({N, V}, DType::Float64);
  for (std::size_t t = 0; t < N; ++t)
    seed.data<double>()(t, static_cast<std::size_t>(next[t])) = -1.0 / static_cast<double>(N);
  std::vector<Tensor> g = grad(lp, hs, seed, /*retain_graph=*/true);
  for (std::size_t t = 0; t <= N; ++t) {
    std::vector<double> u(H, 0.0);  // no path (undefined gradient): zeros
    double s = 0;
    if (g[t].defined())
      for (std::size_t j = 0; j < H; ++j) u[j] = std::abs(g[t].at(j)), s += u[j] * u[j];
    r.grad_norm.push_back(std::sqrt(s));
    r.unit_grad.push_back(std::move(u));
  }

  // Connectivity: one backward per t from log p(text[t]) to x.
  const std::size_t D = x.size(2);
  r.connectivity.assign(N, std::vector<double>(N, 0.0));
  for (std::size_t t = 1; t <= N; ++t) {
    Tensor e = zeros({N, V}, DType::Float64);
    e.data<double>()(t - 1, static_cast<std::size_t>(next[t - 1])) = 1.0;
    Tensor gx = grad(lp, {x}, e, /*retain_graph=*/true)[0];  // (1, N, D)
    if (!gx.defined()) continue;
    for (std::size_t s = 1; s <= t; ++s) {
      double sq = 0;
      for (std::size_t d = 0; d < D; ++d) {
        double v = gx.at((s - 1) * D + d);
        sq += v * v;
      }
      r.connectivity[t - 1][s - 1] = std::sqrt(sq);
    }
  }
  return r;
}

nlohmann::ordered_json to_json(const Result& r) {
  nlohmann::ordered_json j;
  j["loss"] = r.loss;
  j["grad_norm"] = r.grad_norm;
  j["unit_grad"] = r.unit_grad;
  j["connectivity"] = r.connectivity;
  return j;
}

std::string report(const Result& r, const char_model::Config& c, const std::u32string& text,
                   const std::string& checkpoint) {
  using char_model::show_char;
  const std::size_t N = r.steps, H = r.hidden;
  std::string out = fmt::format(
      "checkpoint '{}': GRU(V={}, H={}, layers={}) + Linear, {}; h_t of layer {}{}\n"
      "text: {} characters, N = {} predicted (step t reads text[t-1], predicts text[t]); float64\n"
      "L = mean over t = 1..{} of -log p(text[t]) = {:.6f} nats/char\n\n",
      checkpoint, c.vocab_size, H, c.layers, c.embed_dim ? fmt::format("embedding E={}", c.embed_dim) : "one-hot inputs",
      r.layer, r.layer + 1 == c.layers ? " (the last)" : "", text.size(), N, N, r.loss);
  out += fmt::format("{:>5}  {:>6}  {:>8}  {:>9}  {:>12}  {:>13}\n", "t", "reads", "predicts", "-log p",
                     "‖∂L/∂h_t‖", "÷ ‖∂L/∂h_N‖");
  for (std::size_t t = 0; t <= N; ++t) {
    std::string reads = t ? show_char(text[t - 1]) : "-", pred = t ? show_char(text[t]) : "-";
    std::string nll = t ? fmt::format("{:.4f}", -r.log_probs[t - 1]) : "-";
    out += fmt::format("{:>5}  {:>6}  {:>8}  {:>9}  {:>12.4e}  {:>13.4e}\n", t, reads, pred, nll, r.grad_norm[t],
                       r.grad_norm[t] / r.grad_norm[N]);
  }

  // Which units carry the gradient back to the first step, and how open their update gate is.
  std::vector<std::size_t> units(H);
  std::iota(units.begin(), units.end(), 0);
  const std::vector<double>& g1 = r.unit_grad.at(1);
  std::stable_sort(units.begin(), units.end(), [&](std::size_t a, std::size_t b) { return g1[a] > g1[b]; });
  units.resize(std::min<std::size_t>(5, H));
  const double total = r.grad_norm[1] * r.grad_norm[1];
  out += fmt::format(
      "\nthe {} units with the largest |∂L/∂h_1[j]| (the gradient that reaches step 1), with their mean\n"
      "update gate z over the text (PyTorch's convention: z → 1 keeps the old state, so the gradient too)\n",
      units.size());
  out += fmt::format("{:>5}  {:>14}  {:>16}  {:>7}  {:>7}  {:>7}\n", "unit", "|∂L/∂h_1[j]|", "share of ‖·‖²",
                     "mean z", "min z", "max z");
  for (std::size_t j : units) {
    double zs = 0, zmin = 1, zmax = 0;
    for (const auto& z : r.z) zs += z[j], zmin = std::min(zmin, z[j]), zmax = std::max(zmax, z[j]);
    out += fmt::format("{:>5}  {:>14.4e}  {:>15.1f}%  {:>7.4f}  {:>7.4f}  {:>7.4f}\n", j, g1[j],
                       total > 0 ? 100 * g1[j] * g1[j] / total : 0.0, zs / double(r.z.size()), zmin, zmax);
  }
  double zall = 0;
  for (const auto& z : r.z) zall += std::accumulate(z.begin(), z.end(), 0.0);
  out += fmt::format("(mean z over all {} units and {} steps: {:.4f})\n", H, N, zall / double(H * N));
  return out;
}

void plot(const Result& r, const std::u32string& text, const std::string& file) {
  const std::size_t N = r.steps;
  const std::string term = cli::plot::format_for(file, "--plot") == "svg"
                               ? "svg size 1300,620 font 'Helvetica,11'"
                               : "pngcairo size 1300,620 font 'Helvetica,10'";
  // Data: log10 C as an N × N matrix (row t − 1, column s − 1; NaN above the diagonal), and
  // "t log10 ‖∂L/∂h_t‖". Only numbers: the text reaches gnuplot as label()s in the tics.
  std::string conn, norms;
  for (std::size_t t = 0; t < N; ++t) {
    for (std::size_t s = 0; s < N; ++s) {
      double v = r.connectivity[t][s];
      conn += s <= t && v > 0 && std::isfinite(v) ? fmt::format("{:.6g} ", std::log10(v)) : std::string("NaN ");
    }
    conn += '\n';
  }
  for (std::size_t t = 0; t <= N; ++t) {
    double g = r.grad_norm[t];
    norms += g > 0 && std::isfinite(g) ? fmt::format("{} {:.17g}\n", t, std::log10(g)) : fmt::format("{} NaN\n", t);
  }
  cli::plot::TempDir tmp;
  const std::string conn_file = tmp.write("connectivity.dat", conn), norm_file = tmp.write("grad_norm.dat", norms);
  const std::size_t stride = (N + 49) / 50;  // at most 50 labelled characters per axis
  std::string xtics, ytics, ttics;
  for (std::size_t k = 0; k < N; k += stride) {
    const char* sep = k ? ", " : "";
    xtics += fmt::format("{}'{}' {}", sep, cli::plot::label(text[k]), k);      // x_s reads text[s−1]
    ytics += fmt::format("{}'{}' {}", sep, cli::plot::label(text[k + 1]), k);  // row t predicts text[t]
    ttics += fmt::format("{}'{}' {}", sep, cli::plot::label(text[k]), k + 1);  // h_t was written reading text[t−1]
  }
  std::string script = fmt::format(
      "set terminal {} noenhanced\nset encoding utf8\nset multiplot layout 1,2\n"
      "set palette defined (0 '#ffffcc', 0.5 '#fd8d3c', 1 '#800026')\n"
      "set title 'connectivity: log10 |d log p(text[t]) / d x_s|'\n"
      "set xlabel 'input x_s (the character read at step s)'\nset ylabel 'predicted character text[t]'\n"
      "set xtics ({}) rotate by 90 scale 0 font ',8'\nset ytics ({}) scale 0 font ',8'\n"
      "set xrange [-0.5:{}-0.5]\nset yrange [{}-0.5:-0.5]\nset cblabel 'log10'\n"
      "plot '{}' matrix with image notitle\n"
      "unset cblabel\nset title 'log10 |dL/dh_t| (L = mean -log p)'\nset xlabel 'step t (tics: the character step t reads)'\n"
      "set ylabel 'log10 |dL/dh_t|'\nset xtics ({}) rotate by 90 scale 0 font ',8'\nset ytics auto font ',10'\nset grid\n"
      "set xrange [0:{}]\nset yrange [*:*]\n"
      "plot '{}' using 1:2 with linespoints lw 2 pt 7 ps 0.5 lc rgb '#1b9e77' notitle\n"
      "unset multiplot\n",
      term, xtics, ytics, N, N, conn_file, ttics, N, norm_file);
  cli::plot::render(tmp, script, file);
}

}  // namespace trained_flow
