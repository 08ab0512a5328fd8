// Assignment — a GRU cell from primitives, and the backward of a custom op.
//
// Learning goal: write a recurrent cell's forward from primitives (the tape differentiates it) and
// a custom op's backward by hand (the product rule, checked by gradcheck). Expected time: 1 hour.
//
// Complete the two TODOs below, then run the grader, which checks your code against PyTorch's
// own numbers and against central differences, and tells you what is wrong:
//   cmake --build build --target grade_skeleton && build/examples/assignment/grade_skeleton
// (grade_skeleton is the grader compiled against this file; in a course kit: `build/grade`.)
// Use tapegrad ops only: no hand-written backward for part 1, the tape differentiates your forward.
#pragma once

#include <vector>

#include "framework/custom_op.hpp"
#include "framework/grading/not_implemented.hpp"
#include "framework/tapegrad.hpp"

namespace assignment {

using namespace tapegrad;

/// Part 1. One step of PyTorch's nn.GRUCell (docs/gru.md, "reset after"):
///   r  = σ(W_ir x + b_ir + W_hr h + b_hr)
///   z  = σ(W_iz x + b_iz + W_hz h + b_hz)
///   n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
///   h' = (1 − z) ⊙ n + z ⊙ h
/// Shapes: x (B, I), h (B, H); weight_ih (3H, I) and weight_hh (3H, H) stack the rows of the
/// r, z, n gates in that order; bias_ih = [b_ir | b_iz | b_in], bias_hh = [b_hr | b_hz | b_hn]
/// (3H). Returns h' (B, H). Useful ops: matmul(a, w, false, true) = a wᵀ;  chunk(t, 3, -1) → the
/// three (B, H) blocks of a (B, 3H) tensor;  sigmoid, tanh;  1.0 - z;  +, *, - (elementwise,
/// broadcasting).
inline Tensor gru_cell(const Tensor& x, const Tensor& h, const Tensor& weight_ih,
                       const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  // TODO: your code here (about 8 lines).
  throw tapegrad::grading::NotImplemented("TODO: part 1, gru_cell");
}

/// Part 2. swish(x) = x ⊙ σ(x) as a custom op (framework/custom_op.hpp). The forward is given.
/// Write the backward: given g = dL/dy, return dL/dx (same shape as x). Product rule:
///   d swish / dx = σ(x) + x ⊙ σ(x) ⊙ (1 − σ(x))
inline Tensor swish(const Tensor& x) {
  return apply_custom(
      "swish", {x},
      [](CustomContext& ctx, const std::vector<Tensor>& in) {
        ctx.save_for_backward({in[0]});
        return in[0] * sigmoid(in[0]);
      },
      [](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
        const Tensor& x = ctx.saved_tensors()[0];
        // TODO: your code here (1–3 lines): return {dL/dx}.
        throw tapegrad::grading::NotImplemented("TODO: part 2, swish backward");
      });
}

}  // namespace assignment
