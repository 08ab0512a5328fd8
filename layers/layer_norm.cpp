// tapegrad — LayerNorm (see layer_norm.hpp).
#include "layers/layer_norm.hpp"

#include <fmt/format.h>

#include <cmath>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

LayerNorm::LayerNorm(const LayerNormOptions& opts) : options(opts) {
  const Shape& s = opts.normalized_shape();
  if (s.empty()) throw ValueError("LayerNorm: normalized_shape must have at least one dimension");
  for (std::size_t d : s)
    if (d == 0)
      throw ValueError(fmt::format("LayerNorm: normalized_shape {} has a zero size", shape_str(s)));
  if (!(opts.eps() > 0.0) || !std::isfinite(opts.eps()))
    throw ValueError(fmt::format("LayerNorm: eps must be positive and finite, got {}", opts.eps()));
  if (opts.elementwise_affine()) {
    weight = register_parameter("weight", ones(s));
    bias = register_parameter("bias", zeros(s));
    detail::checked_numel("LayerNorm", s);
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  const Shape& s = options.normalized_shape();
  const std::size_t n = s.size();
  bool ok = x.defined() && x.dim() >= n;
  for (std::size_t i = 0; ok && i < n; ++i) ok = x.shape()[x.dim() - n + i] == s[i];
  if (!ok)
    throw ShapeError(fmt::format("LayerNorm: expected input of shape (*, {}), got {}",
                                 shape_str(s).substr(1, shape_str(s).size() - 2),
                                 x.defined() ? shape_str(x.shape()) : "undefined"));
  if (weight.defined()) detail::require_same_dtype(x, weight, "LayerNorm");
  Axes axes;
  for (std::size_t i = 0; i < n; ++i) axes.push_back(-static_cast<std::ptrdiff_t>(i) - 1);
  Tensor xc = x - mean(x, axes, true);          // x − μ
  Tensor var = mean(xc * xc, axes, true);       // biased variance
  Tensor y = xc / sqrt(var + options.eps());
  return weight.defined() ? y * weight + bias : y;
}

}  // namespace tapegrad
