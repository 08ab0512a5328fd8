// The tests of the char-LM assignment: names and points (shared by grader and test program).
#pragma once

#include "framework/grading/grading.hpp"

inline const tapegrad::grading::Manifest& assignment_manifest() {
  static const tapegrad::grading::Manifest m{
      "a character-level language model: temperature sampling, clipping by global norm, training",
      {
          {"1. sample_next: T = 0 and T = 0.001 give the argmax", 1, 10},
          {"2. sample_next: T = 1 draws with softmax(logits)'s frequencies", 1, 20},
          {"3. sample_next: T = 0.5 and T = 2 draw with softmax(logits / T)'s frequencies", 1, 20},
          {"4. clip_global_norm equals tapegrad::clip_grad_norm on random gradients", 1, 10},
          {"5. clip_global_norm leaves gradients under the limit unchanged", 1, 10},
          {"6. train_step: 150 steps of Embedding + GRU + Linear with Adam bring the loss under 0.5", 2, 30},
      }};
  return m;
}
