// The tests of the GRU-forms assignment: names and points (shared by grader and test program).
#pragma once

#include "framework/grading/grading.hpp"

inline const tapegrad::grading::Manifest& assignment_manifest() {
  static const tapegrad::grading::Manifest m{
      "the GRU cell in PyTorch's form and in the course's form, and the conversion",
      {
          {"1. torch_gru_cell: h' matches PyTorch's nn.GRUCell", 1, 10},
          {"2. torch_gru_cell: gradients match PyTorch's", 1, 10},
          {"3. course_gru_cell: c<t> matches the course's formulas (computed by PyTorch)", 1, 10},
          {"4. course_gru_cell: gradients match PyTorch's", 1, 10},
          {"5. to_course: Γu = 1 − z (W_u = −[W_hz, W_iz], b_u = −(b_iz + b_hz)), Γr and c~ rearranged", 1, 10},
          {"6. with r ≡ 1 both forms agree: course_gru_cell(to_course(θ)) == nn.GRUCell(θ)", 1, 10},
      }};
  return m;
}
