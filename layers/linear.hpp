// tapegrad — Linear: y = x Wᵀ + b (torch.nn.Linear).
//
//   Linear head(LinearOptions(64, 27));     // or Linear head(64, 27);
//   Tensor logits = head(h);                 // (B, 64) → (B, 27), or (B, T, 64) → (B, T, 27)
#pragma once

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

struct LinearOptions {
  LinearOptions(std::size_t in_features, std::size_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TAPEGRAD_ARG(std::size_t, in_features);
  TAPEGRAD_ARG(std::size_t, out_features);
  TAPEGRAD_ARG(bool, bias) = true;
};

class Linear : public Module {
 public:
  /// weight, bias ~ U(±1/√in_features) (PyTorch's default), drawn from `gen`.
  explicit Linear(const LinearOptions& options, Generator& gen = default_generator());
  Linear(std::size_t in_features, std::size_t out_features, Generator& gen = default_generator())
      : Linear(LinearOptions(in_features, out_features), gen) {}

  /// x (N, in) or (B, T, in) → (N, out) or (B, T, out). One GEMM either way.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  LinearOptions options;
  Tensor weight;  // (out, in)
  Tensor bias;    // (out), undefined when options.bias() is false
};

}  // namespace tapegrad
