// tapegrad — Dropout (see dropout.hpp).
#include "layers/dropout.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "framework/error.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

namespace {
void check_p(double p, const char* op) {
  if (!(p >= 0.0 && p < 1.0))
    throw ValueError(fmt::format("{}: p must be in [0, 1), got {}", op, p));
}
}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_p(p, "dropout");
  if (!x.defined()) throw ValueError("dropout: x is undefined");
  if (!training || p == 0.0) return x;
  // keep ~ Bernoulli(1 − p): u ~ U[0, 1), keep where u < 1 − p; survivors scaled by 1/(1 − p).
  Tensor keep = lt(uniform(x.shape(), 0.0, 1.0, gen, x.dtype()), 1.0 - p);
  return x * (keep * (1.0 / (1.0 - p)));
}

Dropout::Dropout(double p, Generator& gen) : p_(p) {
  check_p(p, "Dropout");
  gen_.manual_seed(gen.integer(std::numeric_limits<std::uint64_t>::max()));
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training(), gen_); }

}  // namespace tapegrad
