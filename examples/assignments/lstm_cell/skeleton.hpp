// Assignment: an LSTM cell, forward and backward by hand, as one custom op with two outputs.
//
// Learning goal: derive the LSTM's backward — the cell state's gradient has two sources (dL/dc'
// from the next step, and dL/dh' through o ⊙ tanh(c')), and the forget gate passes it back
// multiplied by f — and check it with gradcheck. Expected time: 2 hours.
//
// PyTorch's nn.LSTMCell (gate rows i, f, g, o):
//   [a_i a_f a_g a_o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh          (B, 4H)
//   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
//   c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
// lstm_cell returns {h', c'} from ONE apply_custom with two outputs (framework/custom_op.hpp):
// its backward receives {dL/dh', dL/dc'} and returns one gradient per input.
#pragma once

#include <vector>

#include "framework/custom_op.hpp"
#include "framework/grading/not_implemented.hpp"
#include "framework/tapegrad.hpp"

namespace assignment {

using namespace tapegrad;

/// inputs: x (B, I), h (B, H), c (B, H), weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H),
/// bias_hh (4H). Returns {h', c'}.
inline std::vector<Tensor> lstm_cell(const Tensor& x, const Tensor& h, const Tensor& c,
                                     const Tensor& weight_ih, const Tensor& weight_hh,
                                     const Tensor& bias_ih, const Tensor& bias_hh) {
  return apply_custom(
      "lstm_cell", {x, h, c, weight_ih, weight_hh, bias_ih, bias_hh},
      [](CustomContext& ctx, const std::vector<Tensor>& in) -> std::vector<Tensor> {
        // TODO (part 1, about 8 lines): compute i, f, g, o, c', h'; save what the backward
        // needs with ctx.save_for_backward({...}); return {h', c'}.
        // Useful: matmul(a, w, false, true) = a wᵀ; chunk(t, 4, -1); sigmoid; tanh.
        throw tapegrad::grading::NotImplemented("TODO: part 1, lstm_cell forward");
      },
      [](CustomContext& ctx, const std::vector<Tensor>& grad) -> std::vector<Tensor> {
        // grad[0] = dL/dh', grad[1] = dL/dc'. TODO (part 2, about 12 lines): return
        // {dL/dx, dL/dh, dL/dc, dL/dweight_ih, dL/dweight_hh, dL/dbias_ih, dL/dbias_hh}.
        //   dc' = dL/dc' + dL/dh' ⊙ o ⊙ (1 − tanh²(c'))
        //   da_i = dc' ⊙ g ⊙ i(1 − i),  da_f = dc' ⊙ c ⊙ f(1 − f),  da_g = dc' ⊙ i ⊙ (1 − g²),
        //   da_o = dL/dh' ⊙ tanh(c') ⊙ o(1 − o);  da = concat({da_i, da_f, da_g, da_o}, -1)
        //   dx = da W_ih, dh = da W_hh, dc = dc' ⊙ f, dW_ih = daᵀ x, dW_hh = daᵀ h, db = Σ_batch da
        throw tapegrad::grading::NotImplemented("TODO: part 2, lstm_cell backward");
      });
}

}  // namespace assignment
