// gru_gates — watch a trained GRU's gates work, step by step.
//
//   gru_gates --checkpoint CK --text TEXT [--steps 33,34] [--layer 0] [--units 0:16]
//             [--convention pytorch|course] [--json] [--plot FILE]
//
// Runs the model's GRU over TEXT from h_0 = 0. Step t (1-based) reads TEXT[t−1] and writes h_t.
// For each requested step, one row per hidden unit: h_{t−1}, r_t, z_t, n_t, h_t, and a remark
// where the update gate is saturated:
//   z < 0.05  "takes the candidate"   (h_t ≈ n_t, whatever h_{t−1} was)
//   z > 0.95  "keeps its old state"   (h_t ≈ h_{t−1})
// --convention course shows the course's names: Γu = 1 − z, Γr = r, c~ = n, and states the
// candidate's formula for the model's variant (a reset-after model's candidate is PyTorch's, not
// the course's; train the course's with `char_gru train --reset-before`).
// --json prints every unit of every requested step at full precision, with "convention" and
// "variant" fields: PyTorch's names (h_prev, r, z, n, h) or, with --convention course, the
// course's (c_prev, gamma_r, gamma_u = 1 − z, c_tilde, c).
// --plot FILE draws heatmaps of z and r (units × steps of the whole text) with gnuplot.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "char_model.hpp"
#include "cli/cli.hpp"
#include "cli/plot.hpp"

using namespace tapegrad;
using namespace char_model;

namespace {

std::vector<std::size_t> parse_steps(const std::string& s) {
  std::vector<std::size_t> steps;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t pos = 0;
    long v = -1;
    try {
      v = std::stol(item, &pos);
    } catch (const std::exception&) {
    }
    if (pos != item.size() || v < 1 || item.find_first_not_of("0123456789") != std::string::npos)
      throw cli::UsageError(fmt::format("--steps: '{}' is not a positive step number (steps are 1-based)", item));
    steps.push_back(static_cast<std::size_t>(v));
  }
  if (steps.empty()) throw cli::UsageError("--steps: no step given");
  return steps;
}

/// "a:b" with a < b, both written as digits only (no sign, no wrap-around).
std::pair<std::size_t, std::size_t> parse_units(const std::string& s, std::size_t H) {
  auto colon = s.find(':');
  auto number = [&](const std::string& part, std::size_t& out) {
    if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos)
      return false;
    out = std::stoul(part);
    return true;
  };
  std::size_t a = 0, b = 0;
  if (colon == std::string::npos || !number(s.substr(0, colon), a) || !number(s.substr(colon + 1), b) || a >= b)
    throw cli::UsageError(fmt::format("--units: '{}' is not a range start:stop of unit numbers with start < stop, "
                                      "like 0:16", s));
  if (a >= H) throw cli::UsageError(fmt::format("--units: unit {} does not exist (hidden size {}: units 0..{})", a, H, H - 1));
  return {a, std::min(b, H)};
}

/// Heatmaps of z and r over the steps of the text, through gnuplot (examples/cli/plot.hpp: the
/// values go as a data file, the text's characters as label()s, the picture comes back on a pipe).
void plot(const std::vector<GRU::GateRecord>& recs, const std::u32string& text, std::size_t u0,
          std::size_t u1, const std::string& file) {
  std::string format = cli::plot::format_for(file, "--plot");
  std::string term = format == "svg" ? "svg size 1100,700 font 'Helvetica,11'"
                                     : "pngcairo size 1100,700 font 'Helvetica,10'";
  std::string values;
  for (int which = 0; which < 2; ++which) {  // block 0: z, block 1: r
    for (std::size_t u = u0; u < u1; ++u) {
      for (const auto& rec : recs) values += fmt::format("{:.6g} ", which == 0 ? rec.z.at(u) : rec.r.at(u));
      values += '\n';
    }
    values += "\n\n";
  }
  cli::plot::TempDir tmp;
  std::string data = tmp.write("gates.dat", values);
  std::string xtics;
  for (std::size_t t = 0; t < text.size(); ++t)
    xtics += fmt::format("{}'{}' {}", t ? ", " : "", cli::plot::label(text[t]), t);
  std::string script = fmt::format(
      "set terminal {} noenhanced\nset encoding utf8\nset multiplot layout 2,1\n"
      "set palette defined (0 '#2b83ba', 0.5 '#ffffbf', 1 '#d7191c')\n"
      "set cbrange [0:1]\nset xtics ({})\nset ylabel 'hidden unit'\nset yrange [{}-0.5:-0.5]\n"
      "set title 'update gate z_t (PyTorch: 1 = keep old state; course: Γu = 1 − z)'\n"
      "plot '{}' index 0 matrix with image notitle\n"
      "set title 'reset gate r_t (how much of h_(t-1) the candidate sees)'\n"
      "plot '{}' index 1 matrix with image notitle\nunset multiplot\n",
      term, xtics, u1 - u0, data, data);
  cli::plot::render(tmp, script, file);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gru_gates: print a GRU's gates (h_prev, r, z, n, h per unit) at chosen steps of a text"};
  std::string ck, text, steps_arg = "33,34", units_arg = "0:16", convention = "pytorch", plot_file;
  std::size_t layer = 0;
  bool json_out = false;
  app.add_option("--checkpoint", ck, "model checkpoint (.npz) written by char_gru train or by PyTorch")->required();
  app.add_option("--text", text, "the text to run the GRU over, from h_0 = 0")->required();
  app.add_option("--steps", steps_arg, "comma-separated 1-based steps; step t reads text[t-1]")->capture_default_str();
  app.add_option("--layer", layer, "which GRU layer (0-based)")->capture_default_str()->check(cli::IntRange(0, 1023));
  app.add_option("--units", units_arg, "range of hidden units start:stop")->capture_default_str();
  app.add_option("--convention", convention, "pytorch (r, z, n) or course (Γr, Γu = 1 − z, c~)")
      ->capture_default_str()->check(CLI::IsMember({"pytorch", "course"}));
  app.add_flag("--json", json_out, "all units of the requested steps as JSON, full precision, in the chosen convention's names");
  app.add_option("--plot", plot_file, "write heatmaps of z and r over every step to FILE (.png or .svg, needs gnuplot)");
  return cli::run(app, argc, argv, [&]() -> int {
    // Flags first: nothing is loaded or computed before they are all known to be usable.
    std::vector<std::size_t> steps = parse_steps(steps_arg);
    std::u32string t32 = utf8_decode(text, "--text");
    if (t32.empty()) throw cli::UsageError("--text: is empty");
    if (!plot_file.empty()) {
      cli::plot::format_for(plot_file, "--plot");
      cli::check_output_path(plot_file, "--plot", {ck});
    }
    cli::check_input_file(ck, "--checkpoint", 4ull << 30);
    Checkpoint c = load_checkpoint(ck);
    std::vector<std::int64_t> ids = c.vocab.encode(t32, "--text");
    for (std::size_t t : steps)
      if (t > t32.size())
        throw cli::UsageError(fmt::format("--steps: step {} is past the end of the text ({} characters, steps 1..{})",
                                          t, t32.size(), t32.size()));
    if (layer >= c.model->config.layers)
      throw cli::UsageError(fmt::format("--layer: {} does not exist: the model has {} layer(s), 0..{}", layer,
                                        c.model->config.layers, c.model->config.layers - 1));
    std::size_t H = c.model->config.hidden;
    auto [u0, u1] = parse_units(units_arg, H);
    std::vector<GRU::GateRecord> recs = gate_trace(*c.model, ids, layer);

    const bool course = convention == "course";
    const bool rb = c.model->config.reset_before;
    if (json_out) {
      nlohmann::json j;
      j["hidden_size"] = H;
      j["layer"] = layer;
      j["convention"] = convention;
      j["variant"] = rb ? "reset_before" : "reset_after";
      j["candidate"] = candidate_formula(rb, course);
      auto values = [](const Tensor& t, bool one_minus = false) {
        std::vector<double> v(t.numel());
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = one_minus ? 1.0 - t.at(i) : t.at(i);
        return v;
      };
      for (std::size_t t : steps) {
        const auto& r = recs[t - 1];
        nlohmann::json step = {{"t", t}, {"char", utf8_encode(t32[t - 1])}};
        if (course) {
          step["c_prev"] = values(r.h_prev), step["gamma_r"] = values(r.r);
          step["gamma_u"] = values(r.z, true), step["c_tilde"] = values(r.n), step["c"] = values(r.h);
        } else {
          step["h_prev"] = values(r.h_prev), step["r"] = values(r.r), step["z"] = values(r.z);
          step["n"] = values(r.n), step["h"] = values(r.h);
        }
        j["steps"].push_back(step);
      }
      std::cout << j.dump() << std::endl;
    } else {
      fmt::print("GRU layer {} of {} (hidden size {}), units {}..{}, {} convention\ncandidate: {}\n{}\n",
                 layer, c.model->config.layers, H, u0, u1 - 1, convention, candidate_formula(rb, course),
                 course ? "c<t> = Γu ⊙ c~ + (1 − Γu) ⊙ c<t-1>,  Γu = 1 − z (PyTorch's z keeps the old state)"
                        : "h = (1 − z) ⊙ n + z ⊙ h_prev");
      for (std::size_t t : steps) fmt::print("{}\n", gate_table(recs, t32, t, u0, u1, course));
    }
    if (!plot_file.empty()) {
      plot(recs, t32, u0, u1, plot_file);
      fmt::print(stderr, "wrote {}\n", plot_file);
    }
    return cli::kOk;
  });
}
