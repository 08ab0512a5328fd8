// tapegrad — Linear (see linear.hpp).
#include "layers/linear.hpp"

#include <fmt/format.h>

#include <cmath>

#include "framework/dispatch.hpp"
#include "framework/init.hpp"
#include "framework/ops.hpp"
#include "layers/init_params.hpp"

namespace tapegrad {

Linear::Linear(const LinearOptions& opts, Generator& gen) : options(opts) {
  const std::size_t in = opts.in_features(), out = opts.out_features();
  detail::require_positive("Linear", "in_features", in);
  detail::require_positive("Linear", "out_features", out);
  weight = register_parameter("weight", detail::zeros_for("Linear", {out, in}, default_dtype()));
  init::kaiming_uniform_(weight, std::sqrt(5.0), gen);  // = U(±1/√in)
  if (opts.bias())  // torch uses the weight's bound for the bias
    bias = detail::uniform_parameter(*this, "Linear", "bias", {out}, detail::inv_sqrt_bound(in),
                                     gen);
}

Tensor Linear::forward(const Tensor& x) const {
  if ((x.dim() != 2 && x.dim() != 3) || x.size(-1) != options.in_features())
    throw ShapeError(fmt::format("Linear: expected input (N, {0}) or (B, T, {0}), got {1}",
                                 options.in_features(), shape_str(x.shape())));
  Tensor y = matmul(x, weight, false, true);  // x @ Wᵀ: (..., out)
  return bias.defined() ? y + bias : y;       // bias (out) broadcasts over the rows
}

}  // namespace tapegrad
