// Assignment — a sample wrong submission (instructors only), with two typical mistakes that the
// grader must explain:
//   part 1: the update gate taken the course's way round, h' = z ⊙ n + (1 − z) ⊙ h
//   part 2: the product rule forgotten, dL/dx = g ⊙ σ(x)
#pragma once

#include <vector>

#include "framework/custom_op.hpp"
#include "framework/tapegrad.hpp"

namespace assignment {

using namespace tapegrad;

inline Tensor gru_cell(const Tensor& x, const Tensor& h, const Tensor& weight_ih,
                       const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  auto i = chunk(matmul(x, weight_ih, false, true) + bias_ih, 3, -1);
  auto g = chunk(matmul(h, weight_hh, false, true) + bias_hh, 3, -1);
  Tensor r = sigmoid(i[0] + g[0]);
  Tensor z = sigmoid(i[1] + g[1]);
  Tensor n = tanh(i[2] + r * g[2]);
  return z * n + (1.0 - z) * h;  // MISTAKE: z and 1 − z swapped
}

inline Tensor swish(const Tensor& x) {
  return apply_custom(
      "swish", {x},
      [](CustomContext& ctx, const std::vector<Tensor>& in) {
        ctx.save_for_backward({in[0]});
        return in[0] * sigmoid(in[0]);
      },
      [](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
        return {g * sigmoid(ctx.saved_tensors()[0])};  // MISTAKE: only the first term
      });
}

}  // namespace assignment
