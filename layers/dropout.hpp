// tapegrad — Dropout (torch.nn.Dropout): in training, each element is zeroed with probability p
// and the survivors are scaled by 1/(1 − p), so the expected value is unchanged; in evaluation
// (module.eval()) it is the identity.
//
//   Dropout drop(0.1);           // its own Generator, seeded from the default generator
//   drop.manual_seed(42);        // reproducible masks
//   Tensor y = drop(x);          // training: x ⊙ mask / (1 − p); after drop.eval(): x itself
//
// The mask is a constant of the step (no gradient flows into it); the gradient of x is the
// same mask times the upstream gradient. p must be in [0, 1) (ValueError otherwise; PyTorch
// also allows p = 1, which zeroes everything).
#pragma once

#include "framework/random.hpp"
#include "layers/sequential.hpp"

namespace tapegrad {

class Dropout : public TensorModule {
 public:
  /// The dropout's own Generator is seeded with a number drawn from `gen`.
  explicit Dropout(double p = 0.5, Generator& gen = default_generator());

  Tensor forward(const Tensor& x) override;
  /// Re-seeds the dropout's Generator.
  void manual_seed(std::uint64_t seed) { gen_.manual_seed(seed); }
  Generator& generator() { return gen_; }
  double p() const { return p_; }

 private:
  double p_;
  Generator gen_;
};

/// The functional form: x ⊙ mask / (1 − p) with mask ~ Bernoulli(1 − p) drawn from gen when
/// `training`, x itself otherwise (F.dropout).
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

}  // namespace tapegrad
