// gradient_flow — how far back does the gradient reach? ‖dL/dh_t‖ for every step t of an
// unrolled GRU, tanh RNN or LSTM, measured with tape hooks.
//
//   gradient_flow [--cell gru|rnn|lstm|all] [--hidden 32] [--steps 100] [--update-bias B]
//                 [--weight-scale S] [--seed S] [--json] [--plot FILE]
//   gradient_flow --checkpoint CK --text TEXT [--layer K] [--json] [--plot FILE]
//
// The second form measures the same in a trained char_gru model, on its own loss over TEXT: see
// trained_flow.hpp (what is measured) and docs/gradient-flow.md ("In your own trained model").
// --checkpoint conflicts with the random experiment's flags (--cell ... --seed); --text and
// --layer need --checkpoint; TEXT has 2..201 characters (N ≤ 200 predicted ones).
//
// The experiment (everything in float64, batch 1, input size 8):
//   parameters   PyTorch's init, every parameter ~ U(±1/√H), drawn from Generator(seed);
//                --weight-scale S multiplies every parameter by S, i.e. U(±S/√H)
//   h_0          ~ U(±0.5)^H, from Generator(seed + 1), a leaf that requires grad
//   x_1 … x_T    ~ N(0, 1)^8, from the same Generator(seed + 1) (identical for every cell)
//   unroll       h_t = cell(x_t, h_{t−1}), t = 1 … T
//   loss         L = Σ_i h_T[i]                  (so dL/dh_T = (1, …, 1) and ‖dL/dh_T‖ = √H)
//   measured     ‖dL/dh_t‖ for t = 0 … T, by a hook on every h_t (the total gradient: every path
//                from h_t to L, through the gates too)
// For the LSTM, h_t is the hidden state h (the output), not the cell state c; c_0 = 0 and the
// gradient that reaches h_t through c_{t+1} is included in dL/dh_t.
//
// --update-bias B (GRU only) sets the update gate's biases b_iz = B, b_hz = 0 (rows H…2H−1 of
// bias_ih and bias_hh, after any --weight-scale), so z = σ(B + …) → 1 as B grows (PyTorch's
// convention, z = 1 keeps the old state; in the course's notation Γu = 1 − z → 0). Without
// --update-bias the GRU is also run for B ∈ {−6, −3, 0, 3, 6} (same parameters, same data): the
// sweep. --plot then draws the sweep's curves too. See docs/gradient-flow.md.
//
// Output: a table per run (every step for T ≤ 30, else every ⌈T/20⌉-th step and the last),
// then the sweep. --json prints instead a list with one object per run:
//   {"cell": "gru", "update_bias": B or null, "hidden": H, "steps": T,
//    "grad_norm": [T+1 numbers, t = 0..T], "mean_z": [T numbers, t = 1..T], "mean_r": [...]}
// (mean_z and mean_r for the GRU only; sweep runs carry their update_bias).
// --plot FILE (.png or .svg) draws log10 ‖dL/dh_t‖ against t, one curve per run, with gnuplot.
// Exit codes: 0 ok, 1 runtime error (e.g. gnuplot failed, an unreadable checkpoint), 2 usage error
// (a bad or conflicting flag, found before any work).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "cli/plot.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"
#include "trained_flow.hpp"

using namespace tapegrad;

namespace {

constexpr std::size_t kInputSize = 8;
const std::vector<double> kSweep = {-6, -3, 0, 3, 6};

struct Experiment {
  std::size_t hidden = 32;
  std::size_t steps = 100;
  std::optional<double> weight_scale;
  std::uint64_t seed = 0;
};

/// One unrolled run and what was measured on it.
struct Run {
  std::string cell;
  std::optional<double> update_bias;
  std::size_t hidden = 0, steps = 0;
  std::vector<double> grad_norm;       // T+1: ‖dL/dh_t‖, t = 0..T
  std::vector<double> mean_z, mean_r;  // T: mean of z_t / r_t over units, t = 1..T (GRU only)
};

/// The inputs every cell sees: h_0 (1, H) and x (T, 1, 8).
struct Data {
  Tensor h0, x;
};

Data make_data(const Experiment& e) {
  Generator gen(e.seed + 1);
  Tensor h0 = uniform({1, e.hidden}, -0.5, 0.5, gen);
  Tensor x = randn({e.steps, 1, kInputSize}, gen);
  return {h0, x};
}

double l2(const Tensor& g) {
  double s = 0;
  for (std::size_t i = 0; i < g.numel(); ++i) s += g.at(i) * g.at(i);
  return std::sqrt(s);
}

double mean_of(const Tensor& t) {
  double s = 0;
  for (std::size_t i = 0; i < t.numel(); ++i) s += t.at(i);
  return s / static_cast<double>(t.numel());
}

/// Multiplies every parameter by the --weight-scale factor (in place, off the tape).
void scale(const Module& m, const std::optional<double>& s) {
  if (!s) return;
  for (Tensor p : m.parameters()) p.data<double>() *= *s;
}

/// Unrolls one cell over the data, L = Σ h_T, and records ‖dL/dh_t‖ through hooks.
/// `step(x_t, h_{t−1}, t)` returns h_t and may record gates.
template <class Step>
Run unroll(const std::string& cell, const Experiment& e, const Data& d, Step&& step) {
  Run run;
  run.cell = cell;
  run.hidden = e.hidden;
  run.steps = e.steps;
  run.grad_norm.assign(e.steps + 1, 0.0);
  auto watch = [&run](Tensor& h, std::size_t t) {
    h.register_hook([&run, t](const Tensor& g) { run.grad_norm[t] = l2(g); });
  };
  Tensor h0 = d.h0.detach().requires_grad_().set_name("h_0");
  watch(h0, 0);
  Tensor h = h0;
  for (std::size_t t = 1; t <= e.steps; ++t) {
    h = step(select(d.x, 0, t - 1), h, run);  // x_t (1, 8), h_{t−1} (1, H) → h_t
    watch(h, t);
  }
  sum(h).backward();  // L = Σ h_T
  return run;
}

Run run_gru(const Experiment& e, const Data& d, std::optional<double> update_bias) {
  Generator gen(e.seed);
  GRUCell cell(GRUCellOptions(kInputSize, e.hidden), gen);
  scale(cell, e.weight_scale);
  const std::size_t H = e.hidden;
  if (update_bias) {
    for (std::size_t i = H; i < 2 * H; ++i) {
      cell.bias_ih.data<double>()(i) = *update_bias;  // b_iz
      cell.bias_hh.data<double>()(i) = 0.0;           // b_hz
    }
  }
  Run run = unroll("gru", e, d, [&cell](const Tensor& x, const Tensor& h, Run& r) {
    GRUCell::Step s = cell.forward_with_gates(x, h);
    r.mean_z.push_back(mean_of(s.z));
    r.mean_r.push_back(mean_of(s.r));
    return s.h_new;
  });
  run.update_bias = update_bias;
  return run;
}

Run run_rnn(const Experiment& e, const Data& d) {
  Generator gen(e.seed);
  RNNCell cell(RNNCellOptions(kInputSize, e.hidden), gen);
  scale(cell, e.weight_scale);
  return unroll("rnn", e, d, [&cell](const Tensor& x, const Tensor& h, Run&) { return cell(x, h); });
}

Run run_lstm(const Experiment& e, const Data& d) {
  Generator gen(e.seed);
  LSTMCell cell(LSTMCellOptions(kInputSize, e.hidden), gen);
  scale(cell, e.weight_scale);
  Tensor c;  // c_0 = 0; c_t is carried alongside, h_t is what the hooks watch
  return unroll("lstm", e, d, [&cell, &c](const Tensor& x, const Tensor& h, Run&) {
    LSTMCell::State s = cell(x, h, c);
    c = s.c;
    return s.h;
  });
}

std::string label(const Run& r) {
  if (!r.update_bias) return r.cell == "gru" ? "gru (PyTorch init)" : r.cell == "rnn" ? "tanh rnn" : "lstm (hidden state h)";
  return fmt::format("gru, b_z = {:+g}", *r.update_bias);
}

double ratio(const Run& r) { return r.grad_norm.front() / r.grad_norm.back(); }

void print_table(const Run& r) {
  const std::size_t T = r.steps;
  const bool gru = r.cell == "gru";
  fmt::print("== {}: H = {}, T = {}{}\n", label(r), r.hidden, T,
             r.cell == "lstm" ? " (the cell state c is carried separately)" : "");
  fmt::print("{:>5}  {:>13}  {:>15}{}\n", "t", "‖dL/dh_t‖", "÷ ‖dL/dh_T‖",
             gru ? fmt::format("  {:>9}  {:>9}", "mean z_t", "mean r_t") : "");
  const std::size_t stride = T <= 30 ? 1 : (T + 19) / 20;
  for (std::size_t t = 0; t <= T; ++t) {
    if (t % stride != 0 && t != T) continue;
    std::string gates;
    if (gru && t > 0) gates = fmt::format("  {:>9.4f}  {:>9.4f}", r.mean_z[t - 1], r.mean_r[t - 1]);
    fmt::print("{:>5}  {:>13.4e}  {:>15.4e}{}\n", t, r.grad_norm[t], r.grad_norm[t] / r.grad_norm[T], gates);
  }
  fmt::print("‖dL/dh_0‖ / ‖dL/dh_T‖ = {:.4e}\n\n", ratio(r));
}

void print_sweep(const std::vector<Run>& sweep) {
  fmt::print("== sweep over the update-gate bias (GRU, b_iz = B, b_hz = 0; z → 1 keeps the old state)\n");
  fmt::print("{:>5}  {:>12}  {:>13}  {:>21}\n", "B", "mean z", "‖dL/dh_0‖", "‖dL/dh_0‖ / ‖dL/dh_T‖");
  for (const Run& r : sweep) {
    double z = 0;
    for (double v : r.mean_z) z += v;
    z /= static_cast<double>(r.mean_z.size());
    fmt::print("{:>+5g}  {:>12.6f}  {:>13.4e}  {:>21.4e}\n", *r.update_bias, z, r.grad_norm.front(), ratio(r));
  }
}

/// One run as a JSON object, keys in the documented order.
nlohmann::ordered_json to_json(const Run& r) {
  nlohmann::ordered_json j;
  j["cell"] = r.cell;
  j["update_bias"] = r.update_bias ? nlohmann::ordered_json(*r.update_bias) : nlohmann::ordered_json(nullptr);
  j["hidden"] = r.hidden;
  j["steps"] = r.steps;
  j["grad_norm"] = r.grad_norm;
  if (r.cell == "gru") {
    j["mean_z"] = r.mean_z;
    j["mean_r"] = r.mean_r;
  }
  return j;
}

/// log10 ‖dL/dh_t‖ against t, one curve per run, through gnuplot (inline data blocks).
void plot(const std::vector<Run>& runs, const Experiment& e, const std::string& file) {
  const std::string terminal = cli::plot::format_for(file, "--plot") == "svg"
                                   ? "svg size 960,600 font 'Helvetica,12'"
                                   : "pngcairo size 960,600 font 'Helvetica,12'";
  std::string script = fmt::format(
      "set terminal {}\nset encoding utf8\nset datafile missing '?'\n"
      "set title 'gradient reaching h_t from L = Σ h_T   (H = {}, T = {}, seed {}{})'\n"
      "set xlabel 'step t'\nset ylabel 'log_{{10}} ‖dL/dh_t‖'\nset grid\n"
      "set key outside right top\nset xrange [0:{}]\n",
      terminal, e.hidden, e.steps, e.seed,
      e.weight_scale ? fmt::format(", weights × {:g}", *e.weight_scale) : "", e.steps);
  std::string plots;
  for (std::size_t k = 0; k < runs.size(); ++k) {
    script += fmt::format("$run{} << EOD\n", k);
    for (std::size_t t = 0; t < runs[k].grad_norm.size(); ++t) {
      double g = runs[k].grad_norm[t];
      script += g > 0 && std::isfinite(g) ? fmt::format("{} {:.17g}\n", t, std::log10(g))
                                          : fmt::format("{} ?\n", t);
    }
    script += "EOD\n";
    static const char* colors[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#1f78b4", "#666666"};
    plots += fmt::format("{}$run{} using 1:2 with lines lw 2.5 lc rgb '{}' title '{}'", k ? ", " : "", k,
                         colors[k % 8], label(runs[k]));
  }
  script += "plot " + plots + "\n";
  cli::plot::TempDir tmp;
  cli::plot::render(tmp, script, file);
}

/// Largest checkpoint read by --checkpoint.
constexpr std::uint64_t kMaxCheckpointBytes = 1ull << 30;

/// --checkpoint mode: gradient flow in a trained char_gru model (trained_flow.hpp).
int run_trained(const std::string& ck, const std::string& text_arg, std::optional<std::size_t> layer_arg,
                bool json_out, const std::string& plot_file) {
  std::u32string text;
  try {
    text = char_model::utf8_decode(text_arg, "--text");
  } catch (const ValueError& e) {
    throw cli::UsageError(e.what());
  }
  cli::require(text.size() >= 2, "--text",
               fmt::format("{} character(s): needs at least 2 (step t reads text[t-1] and predicts text[t])",
                           text.size()));
  cli::require(text.size() <= trained_flow::kMaxSteps + 1, "--text",
               fmt::format("{} characters is too long: at most {} (N = {} predicted characters; the "
                           "connectivity map takes one backward pass per character)",
                           text.size(), trained_flow::kMaxSteps + 1, trained_flow::kMaxSteps));
  if (!plot_file.empty()) {
    cli::plot::format_for(plot_file, "--plot");
    cli::check_output_path(plot_file, "--plot", {ck});
  }
  cli::check_input_file(ck, "--checkpoint", kMaxCheckpointBytes);

  char_model::Checkpoint c = char_model::load_checkpoint(ck);
  const std::size_t layers = c.model->config.layers;
  const std::size_t layer = layer_arg.value_or(layers - 1);
  cli::require(layer < layers, "--layer",
               fmt::format("{} is not in 0..{} (the model has {} layer{})", layer, layers - 1, layers,
                           layers == 1 ? "" : "s"));
  std::vector<std::int64_t> ids;
  try {
    ids = c.vocab.encode(text, "--text");
  } catch (const ValueError& e) {
    throw cli::UsageError(e.what());
  }

  trained_flow::Result r = trained_flow::measure(*c.model, ids, layer);
  if (json_out) {
    std::cout << trained_flow::to_json(r).dump() << std::endl;
  } else {
    std::cout << trained_flow::report(r, c.model->config, text, ck);
  }
  if (!plot_file.empty()) {
    trained_flow::plot(r, text, plot_file);
    fmt::print(stderr, "wrote {}\n", plot_file);
  }
  return cli::kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "gradient_flow: ‖dL/dh_t‖ for every step t of an unrolled GRU / tanh RNN / LSTM, L = Σ h_T "
      "(float64, input size 8, PyTorch init); with --checkpoint, in a trained char_gru model"};
  Experiment e;
  std::string cell = "gru", plot_file, checkpoint, text;
  std::optional<double> update_bias;
  std::optional<std::size_t> layer;
  bool json_out = false;
  app.add_option("--cell", cell, "which cell to unroll")
      ->capture_default_str()->check(CLI::IsMember({"gru", "rnn", "lstm", "all"}));
  app.add_option("--hidden", e.hidden, "hidden size H")->type_name("H")->capture_default_str()
      ->check(cli::IntRange(1, 4096));
  app.add_option("--steps", e.steps, "number of steps T")->type_name("T")->capture_default_str()
      ->check(cli::IntRange(1, 100000));
  app.add_option("--update-bias", update_bias,
                 "GRU update-gate bias: b_iz = B, b_hz = 0 (default: PyTorch init, plus a sweep over B = -6,-3,0,3,6)")
      ->type_name("B")->check(cli::Finite);
  app.add_option("--weight-scale", e.weight_scale, "multiply every initial parameter by S (default 1: PyTorch init)")
      ->type_name("S")->check(cli::PositiveFinite);
  app.add_option("--seed", e.seed, "seed: parameters from Generator(seed), h_0 and inputs from Generator(seed + 1)")
      ->type_name("S")->capture_default_str()->check(cli::UInt64);
  app.add_option("--checkpoint", checkpoint,
                 "a char_gru checkpoint (.npz, at most 1 GiB): measure the gradient flow of its loss on "
                 "--text instead (L = mean -log p(TEXT[t]), t = 1..N, N = len(TEXT) - 1; JSON: loss, "
                 "grad_norm[t] for t = 0..N, unit_grad[t][j] = |dL/dh_t[j]| for t = 0..N (row 0 is h_0), "
                 "connectivity[t-1][s-1] = ||d log p(TEXT[t]) / dx_s|| (N x N, 0 for s > t))")
      ->type_name("CK");
  app.add_option("--text", text,
                 fmt::format("with --checkpoint: the text the model reads, 2..{} characters", trained_flow::kMaxSteps + 1))
      ->type_name("TEXT");
  app.add_option("--layer", layer, "with --checkpoint: which GRU layer's h_t (0-based; default the last)")
      ->type_name("K")->check(cli::IntRange(0, 15));
  app.add_flag("--json", json_out, "print JSON instead of the tables");
  app.add_option("--plot", plot_file,
                 "draw log10 ‖dL/dh_t‖ against t (with --checkpoint: the connectivity map and ‖dL/dh_t‖) to "
                 "FILE (.png or .svg) with gnuplot")
      ->type_name("FILE");
  return cli::run(app, argc, argv, [&]() -> int {
    if (!checkpoint.empty() || app.count("--checkpoint")) {
      std::vector<std::string> conflicts;
      for (const char* flag : {"--cell", "--hidden", "--steps", "--update-bias", "--weight-scale", "--seed"})
        if (app.count(flag)) conflicts.push_back(flag);
      if (!conflicts.empty())
        throw cli::UsageError(fmt::format("--checkpoint: cannot be combined with {} (those set up the random "
                                          "experiment; a checkpoint brings its own model)",
                                          fmt::join(conflicts, ", ")));
      cli::require(app.count("--text") > 0, "--text", "is required with --checkpoint");
      return run_trained(checkpoint, text, layer, json_out, plot_file);
    }
    for (const char* flag : {"--text", "--layer"})
      cli::require(app.count(flag) == 0, flag, "only applies with --checkpoint (a trained char_gru model)");
    if (!plot_file.empty()) {
      cli::plot::format_for(plot_file, "--plot");
      cli::check_output_path(plot_file, "--plot");
    }
    if (update_bias && cell != "gru" && cell != "all")
      throw cli::UsageError("--update-bias: sets the GRU's update gate: use it with --cell gru or --cell all");

    set_default_dtype(DType::Float64);
    const Data data = make_data(e);
    std::vector<Run> runs, sweep;
    const bool all = cell == "all";
    if (all || cell == "gru") runs.push_back(run_gru(e, data, update_bias));
    if (all || cell == "rnn") runs.push_back(run_rnn(e, data));
    if (all || cell == "lstm") runs.push_back(run_lstm(e, data));
    if (!update_bias && (all || cell == "gru"))
      for (double b : kSweep) sweep.push_back(run_gru(e, data, b));

    if (json_out) {
      nlohmann::ordered_json j = nlohmann::ordered_json::array();
      for (const Run& r : runs) j.push_back(to_json(r));
      for (const Run& r : sweep) j.push_back(to_json(r));
      std::cout << j.dump() << std::endl;
    } else {
      fmt::print("L = Σ h_T over T = {} steps, H = {}, input size {}, seed {}, float64, {}\n\n", e.steps,
                 e.hidden, kInputSize, e.seed,
                 e.weight_scale ? fmt::format("parameters ~ U(±{:g}/√H)", *e.weight_scale)
                                : std::string("PyTorch init U(±1/√H)"));
      for (const Run& r : runs) print_table(r);
      if (!sweep.empty()) print_sweep(sweep);
    }
    if (!plot_file.empty()) {
      std::vector<Run> all_runs = runs;
      all_runs.insert(all_runs.end(), sweep.begin(), sweep.end());
      std::cout.flush();
      plot(all_runs, e, plot_file);
      fmt::print(stderr, "wrote {}\n", plot_file);
    }
    return cli::kOk;
  });
}
