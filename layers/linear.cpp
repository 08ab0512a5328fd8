// tapegrad — Linear (see linear.hpp).
#include "layers/linear.hpp"

#include <fmt/format.h>

#include <cmath>

#include "framework/init.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

Linear::Linear(const LinearOptions& opts, Generator& gen) : options(opts) {
  const std::size_t in = opts.in_features(), out = opts.out_features();
  weight = register_parameter("weight", zeros({out, in}));
  init::kaiming_uniform_(weight, std::sqrt(5.0), gen);  // = U(±1/√in)
  if (opts.bias()) {
    bias = register_parameter("bias", zeros({out}));
    const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) const {
  if ((x.dim() != 2 && x.dim() != 3) || x.size(-1) != options.in_features())
    throw ShapeError(fmt::format("Linear: expected input (N, {0}) or (B, T, {0}), got {1}",
                                 options.in_features(), shape_str(x.shape())));
  Tensor y = matmul(x, weight, false, true);  // x @ Wᵀ: (..., out)
  return bias.defined() ? y + bias : y;       // bias (out) broadcasts over the rows
}

}  // namespace tapegrad
