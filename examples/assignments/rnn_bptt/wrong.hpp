// A sample wrong submission (instructors only): dW_hh uses h_t instead of h_{t−1}. Assignment: a tanh-RNN cell from primitives, and backpropagation through time by hand.
//
// Learning goal: see that BPTT is the chain rule run backwards over the unrolled steps — the
// gradient arriving at h_t is the loss's own dL/dh_t PLUS what flows back from step t+1 through
// W_hh — and that the tanh derivative (1 − h_t²) gates it at every step.
// Expected time: 1.5 hours.
//
// Part 1 (rnn_cell): one step, from tapegrad ops (the tape differentiates it).
// Part 2 (rnn_bptt): the gradients of a T-step unroll, by hand, with plain tensor ops (no tape:
// the grader calls it under NoGradGuard and compares with the tape's own gradients).
#pragma once

#include <vector>

#include "framework/tapegrad.hpp"

namespace assignment {

using namespace tapegrad;

struct RnnParams {
  Tensor weight_ih;  ///< (H, I)
  Tensor weight_hh;  ///< (H, H)
  Tensor bias_ih;    ///< (H)
  Tensor bias_hh;    ///< (H)
};

/// Part 1. h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), like PyTorch's nn.RNNCell.
/// x (B, I), h (B, H) → h' (B, H). Useful: matmul(a, w, false, true) = a wᵀ; tanh; +.
inline Tensor rnn_cell(const Tensor& x, const Tensor& h, const RnnParams& p) {
  return tanh(matmul(x, p.weight_ih, false, true) + p.bias_ih + matmul(h, p.weight_hh, false, true) +
              p.bias_hh);
}

struct RnnGrads {
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;  ///< dL/d(parameter), same shapes
  Tensor h0;                                      ///< dL/dh_0 (B, H)
};

/// Part 2. The forward ran h_t = rnn_cell(x_t, h_{t−1}) for t = 1..T.
///   xs[t−1] = x_t (B, I) for t = 1..T;  hs[t] = h_t (B, H) for t = 0..T (hs[0] = h_0);
///   dhs[t−1] = ∂L/∂h_t (B, H): the loss's DIRECT gradient at step t (e.g. from an output layer).
/// Return every dL/dθ of the whole unroll and dL/dh_0. Walk t = T..1:
///   dh = dhs[t−1] + (gradient coming back from step t+1)
///   da = dh ⊙ (1 − h_t²)                         (through tanh)
///   dW_ih += daᵀ x_t,  dW_hh += daᵀ h_{t−1},  db_ih += Σ_batch da,  db_hh += Σ_batch da
///   gradient to step t−1 = da W_hh
/// Useful: matmul(a, b, true, false) = aᵀ b;  sum(t, {0});  zeros_like(t);  *, +, -.
inline RnnGrads rnn_bptt(const std::vector<Tensor>& xs, const std::vector<Tensor>& hs,
                         const RnnParams& p, const std::vector<Tensor>& dhs) {
  RnnGrads g{zeros_like(p.weight_ih), zeros_like(p.weight_hh), zeros_like(p.bias_ih),
             zeros_like(p.bias_hh), Tensor()};
  Tensor carry = zeros_like(hs[0]);  // dL/dh_t arriving from step t+1
  for (std::size_t t = xs.size(); t >= 1; --t) {
    Tensor dh = dhs[t - 1] + carry;
    Tensor da = dh * (1.0 - hs[t] * hs[t]);
    g.weight_ih = g.weight_ih + matmul(da, xs[t - 1], true, false);
    g.weight_hh = g.weight_hh + matmul(da, hs[t], true, false);  // MISTAKE: h_t, not h_{t−1}
    g.bias_ih = g.bias_ih + sum(da, {0});
    g.bias_hh = g.bias_hh + sum(da, {0});
    carry = matmul(da, p.weight_hh);
  }
  g.h0 = carry;
  return g;
}

}  // namespace assignment
