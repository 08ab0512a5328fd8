// tapegrad — torch.nn.init-style initialisers (see init.hpp).
#include "framework/init.hpp"

#include <fmt/format.h>

#include <cmath>

#include "framework/dispatch.hpp"

namespace tapegrad::init {

namespace {

/// Overwrites t's values with sample(), in row-major order.
template <class Sample>
void fill_(Tensor& t, const char* what, Sample&& sample) {
  if (!t.defined() || !t.is_leaf())
    throw ValueError(fmt::format("init::{}: needs a defined leaf tensor", what));
  detail::dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (auto& v : t.data<T>()) v = static_cast<T>(sample());
  });
}

}  // namespace

std::size_t fan_in(const Tensor& weight) {
  if (weight.dim() < 2)
    throw ShapeError(fmt::format("init::fan_in: needs a weight of at least 2 dims, got {}",
                                 shape_str(weight.shape())));
  // in · (product of the remaining dims), without dividing by out (which may be 0).
  return detail::prod(weight.shape(), 1, weight.dim());
}

void uniform_(Tensor& t, double lo, double hi, Generator& gen) {
  if (!(lo <= hi)) throw ValueError(fmt::format("init::uniform_: lo {} > hi {}", lo, hi));
  fill_(t, "uniform_", [&] { return gen.uniform(lo, hi); });
}

void normal_(Tensor& t, double mean, double std, Generator& gen) {
  fill_(t, "normal_", [&] { return mean + std * gen.normal(); });
}

void kaiming_uniform_(Tensor& weight, double a, Generator& gen) {
  if (!weight.defined() || !weight.is_leaf())
    throw ValueError("init::kaiming_uniform_: needs a defined leaf tensor");
  const std::size_t fan = fan_in(weight);
  // A zero-element weight (out or fan_in 0) has nothing to fill: a no-op, as in PyTorch. The
  // bound is never computed, so there is no division by zero.
  if (weight.numel() == 0 || fan == 0) return;
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = gain * std::sqrt(3.0 / static_cast<double>(fan));
  uniform_(weight, -bound, bound, gen);
}

}  // namespace tapegrad::init
