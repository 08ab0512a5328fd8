// tapegrad — internal helpers for op implementations: dtype dispatch and argument checks.
// Not part of the public API (not included by tapegrad.hpp).
#pragma once

#include <string>
#include <vector>

#include <fmt/format.h>

#include "framework/tensor.hpp"

namespace tapegrad::detail {

/// Calls f(T{}) with T = float or double according to dtype.
template <class F>
decltype(auto) dispatch(DType dtype, F&& f) {
  if (dtype == DType::Float32) return f(float{});
  return f(double{});
}

template <class T>
constexpr DType dtype_of() {
  return std::is_same_v<T, float> ? DType::Float32 : DType::Float64;
}

/// Throws a ValueError if t is undefined, naming the op and the argument.
void require_defined(const Tensor& t, const char* op, const char* arg);

/// Throws DTypeError unless a and b share a dtype: "add: dtype mismatch: float32 (2, 3) vs float64 (3)".
void require_same_dtype(const Tensor& a, const Tensor& b, const char* op);

/// Throws ShapeError unless a.dim() == rank: "matmul: expected a 2-D tensor, got (2, 3, 4)".
void require_rank(const Tensor& t, std::size_t rank, const char* op, const char* arg);

/// Product of the dims in [begin, end).
std::size_t prod(const Shape& s, std::size_t begin, std::size_t end);

}  // namespace tapegrad::detail
