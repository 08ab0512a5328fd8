// Reference solution (instructors only). // Assignment (f): the gradient-flow lab — how far back does the loss reach in a trained GRU?
//
// Learning goal: measure, not assume, how the gradient of a trained language model's loss reaches
// its earlier hidden states, and which units carry it. You hook the composed GRU's per-step
// states (tape tensors), read ‖∂L/∂h_t‖ for t = 0..N, find the units that carry the gradient back
// to step 1 and look at their update gate z (PyTorch's convention: z → 1 keeps the old state, and
// with it the gradient). Compare with docs/gradient-flow.md ("In your own trained model").
// Expected time: 2 hours.
//
// The model (lab_model.hpp, model.npz) reads text[0..N−1] from h_0 = 0 (N = len − 1): step t
// (1-based) reads text[t−1] (a one-hot vector), writes h_t and predicts text[t] from h_t:
//   L = mean over t = 1..N of −log softmax(head(h_t))[text[t]]      (cross_entropy's mean)
// Part 1 (hidden_grads): ∂L/∂h_t for t = 0..N (N + 1 tensors of shape (1, H)): h_0 is a leaf
//   that requires grad (zeros (1, H), passed to the GRU as (1, 1, H)); h_1..h_N are
//   out.steps[0][t − 1], tape tensors: call retain_grad() on them (or register_hook) BEFORE the
//   backward. Work in float64 (the model is). A state no gradient reaches gets zeros.
// Part 2 (top_units): the indices of the k units j with the largest |g[j]| (g = ∂L/∂h_1), largest
//   first (ties: the smaller index first): they carry the largest share of ‖∂L/∂h_1‖².
// Part 3 (mean_update_gate): per unit j, the mean over t = 1..N of z_t[j] for the same text
//   (gru->set_record_gates(true) before the forward; gru->gate_records()[0][t − 1].z is (1, H)).
// Useful: one_hot(ids, V, DType::Float64); reshape; zeros({1, H}, DType::Float64);
// model.gru->forward(x, h0) (.steps[0][t]); model.head->forward(...); cross_entropy(logits, targets);
// t.retain_grad(); t.grad(); abs; std::sort with a comparator.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "framework/tapegrad.hpp"
#include "lab_model.hpp"

namespace assignment {

using namespace tapegrad;

/// Part 1. ids: the encoded text (at least 2 characters). Returns ∂L/∂h_t for t = 0..N.
inline std::vector<Tensor> hidden_grads(LabModel& model, const std::vector<std::int64_t>& ids) {
  const std::size_t N = ids.size() - 1, V = model.vocab_size, H = model.hidden;
  const std::vector<std::int64_t> in(ids.begin(), ids.end() - 1), next(ids.begin() + 1, ids.end());
  Tensor x = reshape(one_hot(in, V, DType::Float64), Shape{1, N, V});
  Tensor h0 = zeros({1, H}, DType::Float64).requires_grad_();
  GRU::Output out = model.gru->forward(x, reshape(h0, Shape{1, 1, H}));
  std::vector<Tensor> hs = {h0};
  for (Tensor& h : out.steps[0]) hs.push_back(h.retain_grad());
  Tensor logits = reshape(model.head->forward(out.output), Shape{N, V});
  Tensor loss = cross_entropy(logits, next);
  loss.backward();
  std::vector<Tensor> g;
  for (const Tensor& h : hs) g.push_back(h.grad().defined() ? h.grad().detach() : zeros({1, H}, DType::Float64));
  tape().clear();
  model.zero_grad();
  return g;
}

/// Part 2. g: ∂L/∂h_1 (1, H). The k units with the largest |g[j]|, largest first.
inline std::vector<std::size_t> top_units(const Tensor& g, std::size_t k) {
  std::vector<std::size_t> units(g.numel());
  for (std::size_t j = 0; j < units.size(); ++j) units[j] = j;
  std::stable_sort(units.begin(), units.end(),
                   [&](std::size_t a, std::size_t b) { return std::abs(g.at(a)) > std::abs(g.at(b)); });
  units.resize(std::min(k, units.size()));
  return units;
}

/// Part 3. Per unit, the mean update gate z over the steps t = 1..N of the text.
inline std::vector<double> mean_update_gate(LabModel& model, const std::vector<std::int64_t>& ids) {
  const std::size_t N = ids.size() - 1, V = model.vocab_size, H = model.hidden;
  const std::vector<std::int64_t> in(ids.begin(), ids.end() - 1);
  std::vector<double> z(H, 0.0);
  {
    NoGradGuard no_grad;
    model.gru->set_record_gates(true);
    model.gru->forward(reshape(one_hot(in, V, DType::Float64), Shape{1, N, V}));
    model.gru->set_record_gates(false);
  }
  for (const GRU::GateRecord& rec : model.gru->gate_records()[0])
    for (std::size_t j = 0; j < H; ++j) z[j] += rec.z.at(j) / static_cast<double>(N);
  return z;
}

}  // namespace assignment
