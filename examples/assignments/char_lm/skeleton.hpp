// Assignment (e): a character-level language model — sampling at a temperature, gradient
// clipping by global norm, and the training step.
//
// Learning goal: the three pieces of a working char-LM loop that libraries hide. Temperature
// rescales the LOGITS (softmax(logits / T)): T → 0 approaches the argmax, T = 1 is the model's
// own distribution, T > 1 flattens it. Clipping by GLOBAL norm rescales all gradients by the same
// factor, keeping the update's direction; clipping each tensor on its own changes the direction.
// Expected time: 1.5 hours.
//
// Part 1 (sample_next): one character id drawn from softmax(logits / T); T = 0 means the argmax.
// Part 2 (clip_global_norm): by hand (not with tapegrad::clip_grad_norm, which the grader compares
//   you with): total = sqrt(Σ over every parameter with a gradient of Σ g²);
//   coef = max_norm / (total + 1e-6); when coef < 1 every gradient becomes g · coef
//   (p.set_grad(p.grad() * coef)). Parameters without a gradient are skipped. Return total.
// Part 3 (train_step): one step of training on a batch: drop the old gradients, the mean
//   cross-entropy of the model's logits against the targets, backward, clip with YOUR
//   clip_global_norm, the optimizer's step. Return the loss (before the step).
// The model and the corpus are given in lm_model.hpp.
// Useful: softmax(t, -1); t / T; multinomial(probs, 1, true, gen).at(0); argmax(t).at(0);
// cross_entropy(logits, targets); loss.backward(); loss.item(); opt.zero_grad(); opt.step();
// p.grad() (undefined: !p.grad().defined()), sum(g * g).item(), p.set_grad(...).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/grading/not_implemented.hpp"
#include "framework/tapegrad.hpp"
#include "lm_model.hpp"

namespace assignment {

using namespace tapegrad;

/// Part 1. logits (V) → a character id drawn from softmax(logits / T); T = 0: argmax(logits).
inline std::int64_t sample_next(const Tensor& logits, double temperature, Generator& gen) {
  // TODO: your code here (about 3 lines).
  throw tapegrad::grading::NotImplemented("TODO: part 1, sample_next");
}

/// Part 2. Clips the gradients of `params` together to global norm max_norm, in place; returns
/// the norm before clipping.
inline double clip_global_norm(const std::vector<Tensor>& params, double max_norm) {
  // TODO: your code here (about 10 lines).
  throw tapegrad::grading::NotImplemented("TODO: part 2, clip_global_norm");
}

/// Part 3. inputs, targets: B·T ids, row-major (B, T); targets[i] is the character after
/// inputs[i]. Returns the batch's mean cross-entropy (nats per character).
inline double train_step(CharLM& model, Optimizer& opt, const std::vector<std::int64_t>& inputs,
                         const std::vector<std::int64_t>& targets, std::size_t B, std::size_t T,
                         double max_norm) {
  // TODO: your code here (about 6 lines).
  throw tapegrad::grading::NotImplemented("TODO: part 3, train_step");
}

}  // namespace assignment
