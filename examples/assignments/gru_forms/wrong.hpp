// A sample wrong submission (instructors only): part 1 written with the course's habits (reset
// before the matmul, z weighting the candidate), part 3 without the update gate's sign change.
// Assignment (c): the GRU cell in PyTorch's form and in the course's form, and the conversion.
//
// Learning goal: the same name "GRU" covers two cells. PyTorch (nn.GRUCell) applies the reset
// gate AFTER the hidden matmul and lets z keep the old state; the course (Cho et al. 2014, the
// deep-learning course's notation) applies Γr BEFORE the matmul and lets Γu weight the new
// candidate. See which parameters convert exactly (the update gate: Γu = 1 − z) and which do not
// (the candidate), and prove it numerically. Expected time: 1.5 hours.
//
// Part 1 (torch_gru_cell): PyTorch's step, rows r | z | n in every weight and bias:
//   r  = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)
//   z  = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
//   n  = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))          ← reset AFTER the matmul
//   h' = (1 − z) ⊙ n + z ⊙ h                                   ← z = 1 keeps the old state
// Part 2 (course_gru_cell): the course's step on the concatenation [c<t−1>, x<t>]:
//   Γu = σ(W_u [c<t−1>, x<t>] + b_u)
//   Γr = σ(W_r [c<t−1>, x<t>] + b_r)
//   c~ = tanh(W_c [Γr ⊙ c<t−1>, x<t>] + b_c)                  ← Γr BEFORE the matmul
//   c<t> = Γu ⊙ c~ + (1 − Γu) ⊙ c<t−1>                         ← Γu = 1 takes the candidate
// Part 3 (to_course): PyTorch's parameters → the course's, where that is exact:
//   Γu = 1 − z, and 1 − σ(a) = σ(−a), so W_u = −[W_hz, W_iz], b_u = −(b_iz + b_hz);
//   Γr = r: W_r = [W_hr, W_ir], b_r = b_ir + b_hr;
//   the candidate: W_c = [W_hn, W_in], b_c = b_in + b_hn. This one is exact only when r ≡ 1:
//   r ⊙ (W_hn h + b_hn) ≠ W_hn (r ⊙ h) + b_hn in general (W_hn mixes the units before r scales
//   them, and r also scales b_hn), and no choice of weights makes them equal for every r and h.
//   The grader checks your conversion and that both cells agree when r ≡ 1.
// Everything is float64; build from tapegrad ops (the tape differentiates them).
// Useful: matmul(a, w, false, true) = a wᵀ; chunk(t, 3, -1); narrow(t, axis, start, length);
// concat({a, b}, axis); sigmoid; tanh; 1.0 - t; -t; +, *.
#pragma once

#include "framework/tapegrad.hpp"

namespace assignment {

using namespace tapegrad;

/// Part 1. x (B, I), h (B, H), weight_ih (3H, I), weight_hh (3H, H), biases (3H) → h' (B, H).
inline Tensor torch_gru_cell(const Tensor& x, const Tensor& h, const Tensor& weight_ih,
                             const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  const std::size_t H = h.size(1);
  auto i = chunk(matmul(x, weight_ih, false, true) + bias_ih, 3, -1);
  auto g = chunk(matmul(h, weight_hh, false, true) + bias_hh, 3, -1);
  Tensor r = sigmoid(i[0] + g[0]);
  Tensor z = sigmoid(i[1] + g[1]);
  Tensor n = tanh(i[2] + matmul(r * h, narrow(weight_hh, 0, 2 * H, H), false, true) +
                  narrow(bias_hh, 0, 2 * H, H));  // MISTAKE: reset before the matmul
  return z * n + (1.0 - z) * h;                   // MISTAKE: z weights the candidate
}

/// The course's parameters. Each W acts on the concatenation [c<t−1>, x<t>]: (H, H + I), the
/// first H columns multiply c<t−1> (or Γr ⊙ c<t−1> for W_c), the last I columns x<t>.
struct CourseParams {
  Tensor W_u, b_u;  ///< update gate Γu: (H, H + I), (H)
  Tensor W_r, b_r;  ///< reset gate Γr
  Tensor W_c, b_c;  ///< candidate c~
};

/// Part 2. x (B, I), c_prev (B, H) → c<t> (B, H).
inline Tensor course_gru_cell(const Tensor& x, const Tensor& c_prev, const CourseParams& p) {
  Tensor cx = concat({c_prev, x}, 1);
  Tensor gu = sigmoid(matmul(cx, p.W_u, false, true) + p.b_u);
  Tensor gr = sigmoid(matmul(cx, p.W_r, false, true) + p.b_r);
  Tensor ct = tanh(matmul(concat({gr * c_prev, x}, 1), p.W_c, false, true) + p.b_c);  // Γr before
  return gu * ct + (1.0 - gu) * c_prev;
}

/// Part 3. PyTorch's parameters (rows r | z | n) → the course's (see above).
inline CourseParams to_course(const Tensor& weight_ih, const Tensor& weight_hh, const Tensor& bias_ih,
                              const Tensor& bias_hh) {
  const std::size_t H = weight_hh.size(1);
  auto rows = [&](const Tensor& w, std::size_t k) { return narrow(w, 0, k * H, H); };
  auto W = [&](std::size_t k) { return concat({rows(weight_hh, k), rows(weight_ih, k)}, 1); };
  auto b = [&](std::size_t k) { return rows(bias_ih, k) + rows(bias_hh, k); };
  return CourseParams{W(1), b(1), W(0), b(0), W(2), b(2)};  // MISTAKE: Γu = z, not 1 − z
}

}  // namespace assignment
