// The tests of the RNN / BPTT assignment: names and points (shared by grader and test program).
#pragma once

#include "framework/grading/grading.hpp"

inline const tapegrad::grading::Manifest& assignment_manifest() {
  static const tapegrad::grading::Manifest m{
      "tanh-RNN cell from primitives + BPTT by hand",
      {
          {"1. rnn_cell: h' matches PyTorch's nn.RNNCell", 1, 10},
          {"2. rnn_cell: gradients match PyTorch's", 1, 10},
          {"3. rnn_bptt, T = 1: matches PyTorch's gradients of one step", 1, 10},
          {"4. rnn_bptt, T = 6: matches the tape's gradients of the unrolled RNN", 2, 10},
          {"5. rnn_bptt at other sizes (B = 1, T = 9, H = 7), dL only at the last step", 1, 10},
      }};
  return m;
}
