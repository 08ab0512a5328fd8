// tapegrad — internal helpers for op implementations: dtype dispatch and argument checks.
// Not part of the public API (not included by tapegrad.hpp).
#pragma once

#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "framework/tensor.hpp"

namespace tapegrad::detail {

template <class T>
constexpr DType dtype_of() {
  return std::is_same_v<T, float> ? DType::Float32 : DType::Float64;
}

/// empty_for (tensor.hpp) with the dtype of T: an op's uninitialised result inside dispatch.
template <class T>
Tensor empty_for(const char* op, const Shape& shape) {
  return empty_for(op, shape, dtype_of<T>());
}

/// How a broadcast operand `small` lies in the other operand `full` (row-major): `full` is
/// outer × mid × inner elements, and small's mid elements each stand for inner consecutive
/// elements, the same for each of the outer blocks. A bias row is inner = 1 (x + b), a keepdims
/// column outer = 1 (x − mean(x, -1, true)), a one-element tensor mid = 1 (then outer = 1 too).
/// A reduction's keepdims result lies in its input the same way (sum over the outer and inner
/// elements of each of the mid ones).
struct BlockLayout {
  std::size_t outer = 1, mid = 1, inner = 1;
};

/// Whether `small` broadcasts to `full` as one block pattern: aligned at the last axis, every axis
/// of small is 1 or full's, and the axes where small keeps full's size are contiguous (ignoring
/// axes of size 1). False for any other broadcast (both operands growing, as in a column plus a
/// row, or a broken pattern), which xtensor evaluates instead. (ops_elementwise.cpp)
bool block_layout(const Shape& small, const Shape& full, BlockLayout* layout);

/// Throws MemoryError: "<op>: out of memory allocating a float32 tensor of shape (…)".
[[noreturn]] void throw_out_of_memory(const char* op, const Shape& shape, DType dtype);
[[noreturn]] void throw_out_of_memory(const char* op);

/// Throws DTypeError: "tensors are float32 or float64, not int64".
[[noreturn]] void throw_not_tensor_dtype(DType dtype);

/// Calls f(T{}) with T = float or double according to dtype, the one place where an op's code
/// is instantiated for both element types:
///
///   Tensor out = dispatch(a.dtype(), [&](auto tag) {
///     using T = decltype(tag);  // float or double
///     ...
///   });
///
/// (C++17 has no lambdas with an explicit template parameter, `[&]<class T>()`, so the type
/// arrives as the tag's type. A macro hiding the lambda, TAPEGRAD_DISPATCH(dtype, T, body), was
/// considered and not taken: a `return` in its body would silently return from the hidden
/// lambda, not from the op, which misleads exactly the readers this code is written for.)
/// A std::bad_alloc escaping f (an op that did not catch it itself with new_array /
/// guard_alloc) becomes a MemoryError.
template <class F>
decltype(auto) dispatch(DType dtype, F&& f) {
  try {
    if (dtype == DType::Float32) return f(float{});
    if (dtype != DType::Float64) throw_not_tensor_dtype(dtype);
    return f(double{});
  } catch (const std::bad_alloc&) {
    throw_out_of_memory(dtype_name(dtype));
  }
}

// ---- size checks: every shape product and offset sum of the public API goes through these --------

/// The largest element count a tensor may have (2^31 − 1: 8 GiB of float32). It also bounds
/// every dimension, so BLAS's int sizes and all index arithmetic stay in range.
constexpr std::size_t kMaxNumel = (std::size_t(1) << 31) - 1;

/// The number of elements of `shape`, or ShapeError naming op and shape when the product of its
/// dimensions (a 0 counted as 1, so that every partial product is bounded too) exceeds
/// kMaxNumel or overflows.
std::size_t checked_numel(const char* op, const Shape& shape);
/// a + b, or ShapeError naming op and `shape` when the sum exceeds kMaxNumel.
std::size_t checked_add(const char* op, std::size_t a, std::size_t b, const Shape& shape);
/// a · b, or ShapeError naming op and `shape` when the product exceeds kMaxNumel.
std::size_t checked_mul(const char* op, std::size_t a, std::size_t b, const Shape& shape);

/// zeros(shape) for op's result: size-checked and out of memory reported, both naming op.
Tensor zeros_for(const char* op, const Shape& shape, DType dtype);

/// Throws ValueError "<layer>: <arg> must be positive, got 0" unless value > 0.
void require_positive(const char* layer, const char* arg, std::size_t value);

/// A new uninitialised array of `shape` for op's result: checked_numel, and a std::bad_alloc
/// becomes a MemoryError naming op and shape.
template <class T>
xt::xarray<T> new_array(const char* op, const Shape& shape) {
  checked_numel(op, shape);
  try {
    return xt::xarray<T>::from_shape(shape);
  } catch (const std::bad_alloc&) {
    throw_out_of_memory(op, shape, dtype_of<T>());
  }
}

/// Runs f() (which builds op's result of `shape`), turning std::bad_alloc into MemoryError.
template <class T, class F>
decltype(auto) guard_alloc(const char* op, const Shape& shape, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw_out_of_memory(op, shape, dtype_of<T>());
  }
}

/// Throws a ValueError if t is undefined, naming the op and the argument.
void require_defined(const Tensor& t, const char* op, const char* arg);

/// Throws DTypeError unless a and b share a dtype: "add: dtype mismatch: float32 (2, 3) vs float64 (3)".
void require_same_dtype(const Tensor& a, const Tensor& b, const char* op);

/// Throws ShapeError unless a.dim() == rank: "matmul: expected a 2-D tensor, got (2, 3, 4)".
void require_rank(const Tensor& t, std::size_t rank, const char* op, const char* arg);

/// a == b, inline: every op compares shapes several times, and xtensor's operator== calls memcmp
/// for what is a handful of numbers.
inline bool same_shape(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

/// Product of the dims in [begin, end).
std::size_t prod(const Shape& s, std::size_t begin, std::size_t end);

/// The values of `a` summed over `axes` (sorted, distinct) and laid out as `shape` (the remaining
/// dims, possibly with 1s): a new tensor, not recorded; zeros when `a` is empty. The forward
/// kernel of sum and sum_to (ops_reduce.cpp); `op` names the op in MemoryError.
Tensor sum_values(const char* op, const Tensor& a, const std::vector<std::size_t>& axes,
                  const Shape& shape);

}  // namespace tapegrad::detail
