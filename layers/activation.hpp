// tapegrad — activation functions and their parameterless modules (torch.nn.ReLU, Tanh,
// Sigmoid, GELU), for Sequential and the Transformer's feed-forward block.
//
//   gelu(x) = x · Φ(x) = ½ x (1 + erf(x / √2))      (PyTorch's exact GELU, approximate='none')
//
// The framework has no erf op, so gelu composes erf from framework ops (no hand-written
// backward): erf(u) = 2/√π · u e^{−u²} Σ_n (2u²)ⁿ / (1·3·…·(2n+1)), a series of positive terms
// (no cancellation), summed by Horner's rule over 100 terms with u clamped to ±5.9 (where
// 1 − |erf| < 1e-16). Float32 inputs are evaluated in float64 and cast back, so both dtypes agree
// with PyTorch to rounding. The price: about 200 tape ops per call (fine for a course, not fast).
#pragma once

#include "layers/sequential.hpp"

namespace tapegrad {

/// erf(x) elementwise, composed of framework ops (see above); differentiable.
Tensor erf(const Tensor& x);
/// Exact GELU: x · Φ(x).
Tensor gelu(const Tensor& x);

class ReLU : public TensorModule {
 public:
  Tensor forward(const Tensor& x) override;
};
class Tanh : public TensorModule {
 public:
  Tensor forward(const Tensor& x) override;
};
class Sigmoid : public TensorModule {
 public:
  Tensor forward(const Tensor& x) override;
};
class GELU : public TensorModule {
 public:
  Tensor forward(const Tensor& x) override;
};

}  // namespace tapegrad
