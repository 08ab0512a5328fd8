// The tests of the gradient-flow lab: names and points (shared by grader and test program).
#pragma once

#include "framework/grading/grading.hpp"

inline const tapegrad::grading::Manifest& assignment_manifest() {
  static const tapegrad::grading::Manifest m{
      "the gradient-flow lab: ‖∂L/∂h_t‖ in a trained GRU, and the units that carry it",
      {
          {"1. hidden_grads: ‖∂L/∂h_t‖ for t = 0..N equals the reference (1e-9)", 2, 20},
          {"2. hidden_grads: every unit's ∂L/∂h_t[j] on a second text equals the reference (1e-9)", 1, 20},
          {"3. top_units: the 5 units that carry most of ‖∂L/∂h_1‖², largest first", 1, 20},
          {"4. mean_update_gate: per-unit mean z over the text equals the reference (1e-9)", 1, 20},
          {"5. the finding: the top units' share of ‖∂L/∂h_1‖² and their mean z, from your functions", 1, 20},
      }};
  return m;
}
