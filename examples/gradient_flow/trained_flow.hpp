// trained_flow — gradient flow in a trained char_gru model (gradient_flow --checkpoint).
//
// The model reads text[0..N−1] (N = len(text) − 1 characters) from h_0 = 0: step t (1-based)
// reads text[t−1], writes h_t, and predicts text[t] from h_t. L = mean over t = 1..N of
// −log p(text[t]). Measured in float64 on the composed GRU (every gate op on the tape):
//   grad_norm[t]       ‖∂L/∂h_t‖, t = 0..N, h_t of one layer (h_0 of that layer is a leaf that
//                      requires grad; the other layers' h_0 are zeros)
//   unit_grad[t][j]    |∂L/∂h_t[j]|, t = 0..N
//   connectivity[t−1][s−1] = ‖∂ log p(text[t]) / ∂x_s‖ for s ≤ t, 0 for s > t, where x_s is the
//                      input read at step s: the one-hot vector, or the embedded vector for a
//                      model with an Embedding ("Visualizing memorization in RNNs", Distill 2019)
// The connectivity takes one backward pass per t (the graph is kept between them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "char_model.hpp"

namespace trained_flow {

/// Longest text measured: N = 200 predicted characters (a text of at most 201 characters).
constexpr std::size_t kMaxSteps = 200;

struct Result {
  std::size_t layer = 0, hidden = 0, steps = 0;    // k, H, N
  double loss = 0;                                 // L (nats per character)
  std::vector<double> log_probs;                   // N: log p(text[t]), t = 1..N
  std::vector<double> grad_norm;                   // N+1: ‖∂L/∂h_t‖, t = 0..N
  std::vector<std::vector<double>> unit_grad;      // (N+1) × H: |∂L/∂h_t[j]|
  std::vector<std::vector<double>> connectivity;   // N × N, lower triangular
  std::vector<std::vector<double>> z;              // N × H: layer k's update gate at t = 1..N
};

/// Measures everything above for `ids` (the encoded text, at least 2 characters, at most
/// kMaxSteps + 1) on `layer` (0-based). Converts the model to float64 in place.
Result measure(char_model::CharGRU& model, const std::vector<std::int64_t>& ids, std::size_t layer);

/// {"loss": L, "grad_norm": [N+1], "unit_grad": [(N+1) × H], "connectivity": [N × N]}.
nlohmann::ordered_json to_json(const Result& r);

/// The human-readable report: the loss, a table per t (character read and predicted, −log p,
/// ‖∂L/∂h_t‖), and the units with the largest |∂L/∂h_1[j]| with their mean update gate z.
std::string report(const Result& r, const char_model::Config& config, const std::u32string& text,
                   const std::string& checkpoint);

/// The connectivity map (text on both axes) beside log10 ‖∂L/∂h_t‖, through cli::plot (.png or
/// .svg by the file's extension).
void plot(const Result& r, const std::u32string& text, const std::string& file);

}  // namespace trained_flow
