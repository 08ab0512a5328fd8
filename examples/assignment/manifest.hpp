// The tests of this assignment: names and points (shared by the grader and the test program).
#pragma once

#include "framework/grading/grading.hpp"

inline const tapegrad::grading::Manifest& assignment_manifest() {
  static const tapegrad::grading::Manifest m{
      "GRU cell forward from primitives + swish backward (custom op)",
      {
          {"1. gru_cell: h' matches PyTorch's nn.GRUCell", 1},
          {"2. gru_cell: gradients match PyTorch's (L = Σ h' ⊙ seed)", 1},
          {"3. gru_cell at other sizes (B=2, I=3, H=5): matches the reference, gradcheck passes", 1},
          {"4. swish backward: dL/dx = σ(x) + x ⊙ σ(x) ⊙ (1 − σ(x)) at chosen points", 1},
          {"5. swish backward: passes gradcheck (float64)", 1},
      }};
  return m;
}
