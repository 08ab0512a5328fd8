// tapegrad — LayerNorm (torch.nn.LayerNorm): normalises over the trailing dimensions given by
// normalized_shape, then scales and shifts elementwise.
//
//   μ = mean(x),  σ² = mean((x − μ)²)  over the last len(normalized_shape) axes (biased variance)
//   y = (x − μ) / √(σ² + eps) ⊙ weight + bias      weight = 1, bias = 0 initially
//
//   LayerNorm norm(LayerNormOptions({64}));        // x (B, T, 64) → (B, T, 64)
#pragma once

#include "layers/sequential.hpp"

namespace tapegrad {

struct LayerNormOptions {
  explicit LayerNormOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}
  TAPEGRAD_ARG(Shape, normalized_shape);
  TAPEGRAD_ARG(double, eps) = 1e-5;
  TAPEGRAD_ARG(bool, elementwise_affine) = true;
};

class LayerNorm : public TensorModule {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  explicit LayerNorm(std::size_t features) : LayerNorm(LayerNormOptions(Shape{features})) {}

  /// x (..., *normalized_shape) → the same shape.
  Tensor forward(const Tensor& x) override;

  LayerNormOptions options;
  Tensor weight;  // normalized_shape, ones (undefined without elementwise_affine)
  Tensor bias;    // normalized_shape, zeros
};

}  // namespace tapegrad
