// tapegrad — Sequential (see sequential.hpp).
#include "layers/sequential.hpp"

#include <fmt/format.h>

#include "framework/error.hpp"

namespace tapegrad {

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& step : steps_) y = step(y);
  return y;
}

std::shared_ptr<Module> Sequential::operator[](std::size_t i) const {
  if (i >= steps_.size())
    throw IndexError(fmt::format("Sequential: index {} out of range for {} modules", i, steps_.size()));
  return named_children()[i].second;
}

void Sequential::check_not_null(bool ok) {
  if (!ok) throw ValueError("Sequential::push_back: the module is null");
}

}  // namespace tapegrad
