// Reference solution (instructors only). Assignment: an LSTM cell, forward and backward by hand, as one custom op with two outputs.
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
        const Tensor &x = in[0], &h = in[1], &c = in[2];
        auto a = chunk(matmul(x, in[3], false, true) + in[5] + matmul(h, in[4], false, true) + in[6],
                       4, -1);
        Tensor i = sigmoid(a[0]), f = sigmoid(a[1]), g = tanh(a[2]), o = sigmoid(a[3]);
        Tensor c2 = f * c + i * g, tc = tanh(c2);
        ctx.save_for_backward({x, h, c, in[3], in[4], i, f, g, o, tc});
        return {o * tc, c2};
      },
      [](CustomContext& ctx, const std::vector<Tensor>& grad) -> std::vector<Tensor> {
        const auto& s = ctx.saved_tensors();
        const Tensor &x = s[0], &h = s[1], &c = s[2], &W_ih = s[3], &W_hh = s[4];
        const Tensor &i = s[5], &f = s[6], &g = s[7], &o = s[8], &tc = s[9];
        Tensor dc2 = grad[1] + grad[0] * o * (1.0 - tc * tc);
        Tensor da = concat({dc2 * g * i * (1.0 - i), dc2 * c * f * (1.0 - f),
                            dc2 * i * (1.0 - g * g), grad[0] * tc * o * (1.0 - o)},
                           -1);
        Tensor db = sum(da, {0});
        return {matmul(da, W_ih), matmul(da, W_hh), dc2 * f, matmul(da, x, true, false),
                matmul(da, h, true, false), db, db};
      });
}

}  // namespace assignment
