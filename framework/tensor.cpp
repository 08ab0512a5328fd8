// tapegrad — Tensor handle, creation functions and the internal argument checks.
#include "framework/tensor.hpp"

#include <cmath>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"

namespace tapegrad {

namespace {
DType g_default_dtype = DType::Float32;
}

DType default_dtype() { return g_default_dtype; }

void set_default_dtype(DType dtype) {
  if (!is_tensor_dtype(dtype))
    throw DTypeError(fmt::format("set_default_dtype: tensors are float32 or float64, not {}",
                                 dtype_name(dtype)));
  g_default_dtype = dtype;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// ---- Tensor -----------------------------------------------------------------------------------

Tensor::Tensor(xt::xarray<float> value, bool requires_grad) {
  detail::checked_numel("tensor", value.shape());  // every tensor keeps within the size limit
  impl_ = std::allocate_shared<TensorImpl>(detail::pool_allocator<TensorImpl>(), std::move(value),
                                           requires_grad);
}

Tensor::Tensor(xt::xarray<double> value, bool requires_grad) {
  detail::checked_numel("tensor", value.shape());
  impl_ = std::allocate_shared<TensorImpl>(detail::pool_allocator<TensorImpl>(), std::move(value),
                                           requires_grad);
}

void Tensor::throw_undefined() { throw ValueError("tensor: operation on an undefined Tensor"); }

std::size_t Tensor::size(std::ptrdiff_t axis) const {
  return shape()[normalize_axis(axis, dim(), "size")];
}

void Tensor::throw_dtype_mismatch(DType asked) const {
  throw DTypeError(fmt::format("data: tensor{} is {}, asked for {}", shape_str(shape()),
                               dtype_name(dtype()), dtype_name(asked)));
}

void Tensor::throw_value_freed() const {
  throw AutogradError(fmt::format(
      "data: the value of tensor{} (made by '{}') was freed: no handle to it was left and the "
      "recorded ops that hold it never read it (their gradients need only its shape), or the "
      "backward that read it last has run",
      shape_str(shape()), op()));
}

xt::xarray<double> Tensor::to_f64() const {
  if (checked().value_freed) throw_value_freed();
  return std::visit([](const auto& a) -> xt::xarray<double> { return xt::cast<double>(a); },
                    checked().value);
}

double Tensor::item() const {
  if (numel() != 1)
    throw ShapeError(fmt::format("item: tensor of shape {} has {} elements, not 1",
                                 shape_str(shape()), numel()));
  return at(0);
}

double Tensor::at(std::size_t flat_index) const {
  if (flat_index >= numel())
    throw IndexError(fmt::format("at: flat index {} out of range for shape {}", flat_index,
                                 shape_str(shape())));
  if (checked().value_freed) throw_value_freed();
  return std::visit([&](const auto& a) { return static_cast<double>(a.data()[flat_index]); },
                    checked().value);
}

bool Tensor::requires_grad() const { return checked().requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  if (!is_leaf() && !on)
    throw AutogradError(fmt::format(
        "requires_grad_: '{}' is not a leaf (made by '{}'); use detach() instead", name(), op()));
  if (on && !is_leaf()) return *this;  // already tracked
  checked().requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return !checked().grad_fn; }
Tensor Tensor::grad() const { return checked().grad; }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && (g.dtype() != dtype() || g.shape() != shape()))
    throw ShapeError(fmt::format("set_grad: gradient {} {} does not match tensor {} {}",
                                 dtype_name(g.dtype()), shape_str(g.shape()), dtype_name(dtype()),
                                 shape_str(shape())));
  checked().grad = g;
}

void Tensor::zero_grad() { checked().grad = Tensor(); }

Tensor& Tensor::retain_grad() {
  checked().retains_grad = true;
  return *this;
}

Tensor& Tensor::add_hook(Hook hook) {
  if (!requires_grad())
    throw AutogradError(fmt::format(
        "register_hook: tensor '{}' {} does not require grad, so no gradient will reach it",
        name(), shape_str(shape())));
  checked().hooks.push_back(std::move(hook));
  return *this;
}

Tensor Tensor::detach() const {
  Tensor out = detail::dispatch(dtype(), [&](auto tag) {
    using T = decltype(tag);
    return detail::guard_alloc<T>("detach", shape(), [&] { return Tensor(data<T>()); });
  });
  out.impl_->name = checked().name;
  return out;
}

void Tensor::backward(const Tensor& seed, bool retain_graph, bool create_graph) const {
  tapegrad::backward(*this, seed, retain_graph, create_graph);
}

const char* Tensor::op() const { return checked().op; }
const std::string& Tensor::name() const { return checked().name; }

Tensor& Tensor::set_name(std::string name) {
  checked().name = std::move(name);
  return *this;
}

Tensor Tensor::sum() const { return tapegrad::sum(*this); }
Tensor Tensor::mean() const { return tapegrad::mean(*this); }
Tensor Tensor::reshape(const std::vector<std::ptrdiff_t>& s) const {
  return tapegrad::reshape(*this, s);
}
Tensor Tensor::t() const { return tapegrad::transpose(*this); }
Tensor Tensor::pow(double exponent) const { return tapegrad::pow(*this, exponent); }
Tensor Tensor::to(DType dtype) const { return tapegrad::cast(*this, dtype); }

// ---- creation ---------------------------------------------------------------------------------

namespace {

Tensor full_named(const char* op, const Shape& shape, double value, DType dtype) {
  Tensor out = detail::empty_for(op, shape, dtype);
  detail::dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    out.data<T>().fill(static_cast<T>(value));
  });
  return out;
}

}  // namespace

Tensor full(const Shape& shape, double value, DType dtype) {
  return full_named("full", shape, value, dtype);
}

Tensor zeros(const Shape& shape, DType dtype) { return full_named("zeros", shape, 0.0, dtype); }
Tensor ones(const Shape& shape, DType dtype) { return full_named("ones", shape, 1.0, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor scalar(double value, DType dtype) { return full(Shape{}, value, dtype); }

Tensor arange(double start, double stop, double step, DType dtype) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw ValueError(fmt::format("arange: invalid range start={} stop={} step={}", start, stop, step));
  double count = std::ceil((stop - start) / step);  // may be +inf (huge range, tiny step)
  if (!(count <= static_cast<double>(detail::kMaxNumel)) && count > 0)
    throw ShapeError(fmt::format(
        "arange: start={} stop={} step={} gives {} elements, more than the limit of {}", start,
        stop, step, count, detail::kMaxNumel));
  std::size_t n = count > 0 ? static_cast<std::size_t>(count) : 0;
  return detail::dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T> a = detail::new_array<T>("arange", Shape{n});
    for (std::size_t i = 0; i < n; ++i) a(i) = static_cast<T>(start + step * double(i));
    return Tensor(std::move(a));
  });
}

Tensor arange(double stop, DType dtype) { return arange(0.0, stop, 1.0, dtype); }

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  if (detail::checked_numel("from_vector", shape) != values.size())
    throw ShapeError(fmt::format("from_vector: {} values do not fill shape {}", values.size(),
                                 shape_str(shape)));
  return detail::dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T> a = detail::new_array<T>("from_vector", shape);
    std::copy(values.begin(), values.end(), a.begin());
    return Tensor(std::move(a));
  });
}

Tensor tensor(std::initializer_list<double> values, DType dtype) {
  return from_vector(std::vector<double>(values), Shape{values.size()}, dtype);
}

Tensor tensor(std::initializer_list<std::initializer_list<double>> values, DType dtype) {
  std::vector<double> flat;
  std::size_t cols = values.size() ? values.begin()->size() : 0;
  for (const auto& row : values) {
    if (row.size() != cols)
      throw ShapeError(fmt::format("tensor: ragged nested list (rows of {} and {} elements)", cols,
                                   row.size()));
    flat.insert(flat.end(), row.begin(), row.end());
  }
  return from_vector(flat, Shape{values.size(), cols}, dtype);
}

Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<double>>> values,
              DType dtype) {
  std::vector<double> flat;
  std::size_t rows = values.size() ? values.begin()->size() : 0;
  std::size_t cols = rows ? values.begin()->begin()->size() : 0;
  for (const auto& mat : values) {
    if (mat.size() != rows) throw ShapeError("tensor: ragged nested list");
    for (const auto& row : mat) {
      if (row.size() != cols) throw ShapeError("tensor: ragged nested list");
      flat.insert(flat.end(), row.begin(), row.end());
    }
  }
  return from_vector(flat, Shape{values.size(), rows, cols}, dtype);
}

// ---- internal checks ----------------------------------------------------------------------------

namespace detail {

void require_defined(const Tensor& t, const char* op, const char* arg) {
  if (!t.defined()) throw ValueError(fmt::format("{}: argument '{}' is an undefined Tensor", op, arg));
}

void require_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  require_defined(a, op, "a");
  require_defined(b, op, "b");
  if (a.dtype() != b.dtype())
    throw DTypeError(fmt::format("{}: dtype mismatch: {} {} vs {} {} (convert with .to())", op,
                                 dtype_name(a.dtype()), shape_str(a.shape()),
                                 dtype_name(b.dtype()), shape_str(b.shape())));
}

void require_rank(const Tensor& t, std::size_t rank, const char* op, const char* arg) {
  require_defined(t, op, arg);
  if (t.dim() != rank)
    throw ShapeError(fmt::format("{}: expected '{}' to be {}-D, got shape {}", op, arg, rank,
                                 shape_str(t.shape())));
}

std::size_t prod(const Shape& s, std::size_t begin, std::size_t end) {
  std::size_t p = 1;
  for (std::size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

std::size_t checked_numel(const char* op, const Shape& shape) {
  // The product with every 0 counted as 1 bounds every partial product (outer, inner, runs) as
  // well as the element count, so nothing downstream can overflow. capacity and d are both at
  // most kMaxNumel < 2^31 when they are multiplied, so capacity · d cannot overflow 64 bits
  // (and needs no division, which this check, run by every op, would otherwise pay per dimension).
  std::size_t capacity = 1, numel = 1;
  for (std::size_t d : shape) {
    if (d > kMaxNumel || (d > 1 && capacity * d > kMaxNumel))
      throw ShapeError(fmt::format(
          "{}: shape {} is too large: the product of its dimensions exceeds the limit of {} "
          "elements",
          op, shape_str(shape), kMaxNumel));
    if (d > 0) capacity *= d;
    numel *= d;
  }
  return numel;
}

std::size_t checked_add(const char* op, std::size_t a, std::size_t b, const Shape& shape) {
  if (a > kMaxNumel || b > kMaxNumel - a)
    throw ShapeError(fmt::format("{}: {} + {} is out of range for shape {} (limit {})", op, a, b,
                                 shape_str(shape), kMaxNumel));
  return a + b;
}

std::size_t checked_mul(const char* op, std::size_t a, std::size_t b, const Shape& shape) {
  if (a > kMaxNumel || b > kMaxNumel || (b != 0 && a > kMaxNumel / b))
    throw ShapeError(fmt::format("{}: {} * {} is out of range for shape {} (limit {})", op, a, b,
                                 shape_str(shape), kMaxNumel));
  return a * b;
}

Tensor empty_for(const char* op, const Shape& shape, DType dtype) {
  checked_numel(op, shape);
  Tensor out;
  try {
    if (dtype == DType::Float32)
      out.impl_ = std::allocate_shared<TensorImpl>(pool_allocator<TensorImpl>(),
                                                   std::in_place_type<xt::xarray<float>>, shape);
    else if (dtype == DType::Float64)
      out.impl_ = std::allocate_shared<TensorImpl>(pool_allocator<TensorImpl>(),
                                                   std::in_place_type<xt::xarray<double>>, shape);
    else
      throw_not_tensor_dtype(dtype);
  } catch (const std::bad_alloc&) {
    throw_out_of_memory(op, shape, dtype);
  }
  return out;
}

bool values_takeable(const Tensor& t) {
  return t.defined() && t.impl_ptr().use_count() == 1 && !t.impl()->grad_fn &&
         !t.impl()->value_freed;
}

Tensor take_values(const Tensor& t, const Shape& shape) {
  TensorImpl& from = *t.impl();
  Tensor out;
  std::visit(
      [&](auto& a) {
        using A = std::decay_t<decltype(a)>;
        // An empty array made in place (no allocation), then the storage moved in.
        out.impl_ = std::allocate_shared<TensorImpl>(pool_allocator<TensorImpl>(),
                                                     std::in_place_type<A>, Shape{0});
        A& to = std::get<A>(out.impl_->value);
        to.storage() = std::move(a.storage());
        a.storage() = typename A::storage_type();  // t: its shape, no values
        to.reshape(shape);
      },
      from.value);
  from.value_freed = true;
  return out;
}

Tensor zeros_for(const char* op, const Shape& shape, DType dtype) {
  return full_named(op, shape, 0.0, dtype);
}

void require_positive(const char* layer, const char* arg, std::size_t value) {
  if (value == 0)
    throw ValueError(fmt::format("{}: {} must be positive, got 0", layer, arg));
}

void throw_out_of_memory(const char* op, const Shape& shape, DType dtype) {
  throw MemoryError(fmt::format("{}: out of memory allocating a {} tensor of shape {}", op,
                                dtype_name(dtype), shape_str(shape)));
}

void throw_not_tensor_dtype(DType dtype) {
  throw DTypeError(fmt::format("tensors are float32 or float64, not {}", dtype_name(dtype)));
}

void throw_out_of_memory(const char* what) {
  throw MemoryError(fmt::format("out of memory (in a {} op)", what));
}

}  // namespace detail

std::size_t normalize_axis(std::ptrdiff_t axis, std::size_t rank, const char* op) {
  std::ptrdiff_t r = static_cast<std::ptrdiff_t>(rank);
  std::ptrdiff_t a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r)
    throw IndexError(fmt::format("{}: axis {} out of range for a {}-D tensor", op, axis, rank));
  return static_cast<std::size_t>(a);
}

}  // namespace tapegrad
