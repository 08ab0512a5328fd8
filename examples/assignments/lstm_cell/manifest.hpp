// The tests of the LSTM assignment: names and points (shared by grader and test program).
#pragma once

#include "framework/grading/grading.hpp"

inline const tapegrad::grading::Manifest& assignment_manifest() {
  static const tapegrad::grading::Manifest m{
      "LSTM cell forward and backward by hand (one custom op, two outputs)",
      {
          {"1. lstm_cell forward: h' and c' match PyTorch's nn.LSTMCell", 1, 10},
          {"2. lstm_cell backward: gradients match PyTorch's (L = Σ h' ⊙ seed_h + Σ c' ⊙ seed_c)", 2, 10},
          {"3. lstm_cell backward: only c' used (dL/dh' = 0)", 1, 10},
          {"4. lstm_cell at other sizes (B=2, I=3, H=5): gradcheck of both outputs (float64)", 1, 20},
      }};
  return m;
}
