// tapegrad — printing tensors, PyTorch-style:
//
//   tensor([[ 0.1000, -0.2000],
//           [ 0.3000,  0.4000]], shape=(2, 2), dtype=float32, op=tanh, name='h')
//
// Large tensors are abbreviated with "..." (the first and last `edgeitems` entries of each axis).
// Works with fmt (a real fmt::formatter: fmt 9 no longer uses operator<<) and with iostreams.
#pragma once

#include <ostream>
#include <string>

#include <fmt/format.h>

#include "framework/tensor.hpp"

namespace tapegrad {

struct PrintOptions {
  std::size_t threshold = 1000;  ///< abbreviate when numel exceeds this
  std::size_t edgeitems = 3;     ///< entries kept at each end of an abbreviated axis
  int precision = 4;             ///< digits after the decimal point
};

/// The full PyTorch-like rendering (values and metadata).
std::string to_string(const Tensor& t, const PrintOptions& options = {});

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace tapegrad

template <>
struct fmt::formatter<tapegrad::Tensor> : fmt::formatter<fmt::string_view> {
  template <class FormatContext>
  auto format(const tapegrad::Tensor& t, FormatContext& ctx) const {
    std::string s = tapegrad::to_string(t);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s), ctx);
  }
};
