// Assignment — reference solution (instructors only). See student_gru.hpp for the statement.
#pragma once

#include <vector>

#include "framework/custom_op.hpp"
#include "framework/tapegrad.hpp"

namespace assignment {

using namespace tapegrad;

/// Part 1: PyTorch's GRUCell step (reset after). x (B, I), h (B, H) → h' (B, H).
inline Tensor gru_cell(const Tensor& x, const Tensor& h, const Tensor& weight_ih,
                       const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  auto i = chunk(matmul(x, weight_ih, false, true) + bias_ih, 3, -1);  // i_r, i_z, i_n: (B, H)
  auto g = chunk(matmul(h, weight_hh, false, true) + bias_hh, 3, -1);  // g_r, g_z, g_n: (B, H)
  Tensor r = sigmoid(i[0] + g[0]);
  Tensor z = sigmoid(i[1] + g[1]);
  Tensor n = tanh(i[2] + r * g[2]);  // g_n = W_hn h + b_hn: reset after
  return (1.0 - z) * n + z * h;
}

/// Part 2: swish(x) = x ⊙ σ(x); d/dx = σ(x) + x ⊙ σ(x) ⊙ (1 − σ(x)).
inline Tensor swish(const Tensor& x) {
  return apply_custom(
      "swish", {x},
      [](CustomContext& ctx, const std::vector<Tensor>& in) {
        ctx.save_for_backward({in[0]});
        return in[0] * sigmoid(in[0]);
      },
      [](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
        const Tensor& x = ctx.saved_tensors()[0];
        Tensor s = sigmoid(x);
        return {g * (s + x * s * (1.0 - s))};
      });
}

}  // namespace assignment
