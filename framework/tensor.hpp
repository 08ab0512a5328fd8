// tapegrad — the Tensor: an n-d array of float32 or float64 with autograd bookkeeping.
//
// A Tensor is a cheap handle (a shared pointer) to a TensorImpl that owns
//   value          the data, an xt::xarray<float> or xt::xarray<double> (row-major)
//   grad           the accumulated gradient dL/d(this), same shape and dtype, or undefined
//   requires_grad  whether ops on it are recorded on the tape
//   name           optional, shown in printing, tape listings and error messages
// Copying a Tensor copies the handle, not the data (like torch.Tensor in Python).
//
// Ops never mix dtypes: float32 + float64 throws DTypeError. Training defaults to float32;
// gradcheck runs in float64. See framework/ops.hpp for the ops and framework/tape.hpp for
// how gradients are computed.
#pragma once

#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <xtensor/xarray.hpp>

#include "framework/dtype.hpp"
#include "framework/error.hpp"

namespace tapegrad {

// DType and dtype_name come from framework/dtype.hpp (shared with the npz reader); a tensor is
// always DType::Float32 or DType::Float64.

/// The dtype new tensors get when none is given (float32, like PyTorch).
DType default_dtype();
void set_default_dtype(DType dtype);

/// A tensor's shape: the same small-vector type xt::xarray uses.
using Shape = xt::xarray<float>::shape_type;

/// "(2, 3)"; "()" for a 0-d tensor.
std::string shape_str(const Shape& shape);

class Tensor;
class WeakTensor;
struct TensorImpl;
struct Node;

namespace detail {
/// Destroys a recorded node and gives its memory back to the pool (tape.cpp).
struct NodeDeleter {
  void operator()(Node* node) const noexcept;
};
}  // namespace detail
/// The one owner of a recorded node: its output tensor (TensorImpl::grad_fn).
using NodePtr = std::unique_ptr<Node, detail::NodeDeleter>;

namespace detail {
/// A new tensor of `shape` whose values are not initialised, for op's result: the op writes
/// every element through data<T>(). Its array is made in place, inside the TensorImpl: building
/// an xt::xarray and moving it in took about 45 of the 117 ns of a recorded 64-element add's
/// forward (docs/performance.md, session 8). Size-checked and out of memory reported, both
/// naming op (framework/tensor.cpp).
Tensor empty_for(const char* op, const Shape& shape, DType dtype);
/// Whether `t`'s values can be taken or changed in place without anyone seeing it: this handle is
/// the only one, `t` is no recorded op's output (the tape and VJPs see those through weak handles)
/// and its values are still there. A backward's incoming gradient is usually such a tensor.
bool values_takeable(const Tensor& t);
/// A new tensor of `shape` (as many elements as t) holding t's values, moved, not copied; t is
/// left with its shape and no values, like a value freed early (TensorImpl, "value lifetime").
/// Only for a tensor values_takeable says yes to.
Tensor take_values(const Tensor& t, const Shape& shape);

/// A field another thread may read while its own thread writes it: an atomic that reads and
/// writes with relaxed ordering, which on x86-64 are the plain loads and stores of a plain field
/// (TensorImpl, "value lifetime": a graph handed to another thread is destroyed there).
template <class T>
class Relaxed {
 public:
  constexpr Relaxed(T value) noexcept : v_(value) {}
  operator T() const noexcept { return v_.load(std::memory_order_relaxed); }
  Relaxed& operator=(T value) noexcept {
    v_.store(value, std::memory_order_relaxed);
    return *this;
  }

 private:
  std::atomic<T> v_;
};
}  // namespace detail

/// A gradient hook: sees the gradient flowing into a tensor during backward. It may return a
/// replacement gradient (same shape and dtype) or an undefined Tensor to keep the original.
using Hook = std::function<Tensor(const Tensor& grad)>;

class Tensor {
 public:
  /// An undefined tensor (like a null pointer); `defined()` is false.
  Tensor() = default;
  Tensor(const Tensor&) = default;
  Tensor(Tensor&&) noexcept = default;
  // Dropping a handle may free the value when only the tape still holds the tensor and no
  // recorded op reads it (see TensorImpl, "value lifetime").
  Tensor& operator=(const Tensor& other) {
    if (impl_ != other.impl_) {
      drop_handle();
      impl_ = other.impl_;
    }
    return *this;
  }
  Tensor& operator=(Tensor&& other) noexcept {
    if (this != &other) {
      drop_handle();
      impl_ = std::move(other.impl_);
    }
    return *this;
  }
  ~Tensor() { drop_handle(); }
  explicit Tensor(xt::xarray<float> value, bool requires_grad = false);
  explicit Tensor(xt::xarray<double> value, bool requires_grad = false);

  bool defined() const { return impl_ != nullptr; }

  // ---- metadata -------------------------------------------------------------------------
  DType dtype() const;  // (these two are inline, at the end of this file)
  const Shape& shape() const;
  std::size_t dim() const { return shape().size(); }
  /// Size along `axis` (negative counts from the end).
  std::size_t size(std::ptrdiff_t axis) const;
  std::size_t numel() const;

  // ---- data ---------------------------------------------------------------------------------
  /// The underlying array; T must match dtype() (else DTypeError). Writing through it bypasses
  /// autograd: do it only on leaves or under NoGradGuard.
  template <class T>
  xt::xarray<T>& data();
  template <class T>
  const xt::xarray<T>& data() const;
  /// A float64 copy of the values, whatever the dtype.
  xt::xarray<double> to_f64() const;
  /// The value of a one-element tensor.
  double item() const;
  /// Element at a flat (row-major) index, as double.
  double at(std::size_t flat_index) const;

  // ---- autograd -----------------------------------------------------------------------------
  bool requires_grad() const;
  /// Marks a leaf as a parameter whose gradient is wanted. Returns *this for chaining.
  Tensor& requires_grad_(bool on = true);
  /// True for tensors not produced by a recorded op (parameters, inputs, detached values).
  bool is_leaf() const;
  /// The accumulated gradient (undefined until a backward reaches this tensor).
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  /// Drops the accumulated gradient (set_to_none semantics, like PyTorch's default).
  void zero_grad();
  /// Keep the gradient of a non-leaf tensor in grad() after backward.
  Tensor& retain_grad();
  /// Calls `hook(grad)` with the gradient flowing into this tensor, at each backward. A hook
  /// returning void only observes; one returning a Tensor may replace the gradient (return an
  /// undefined Tensor to keep it).
  template <class F>
  Tensor& register_hook(F&& hook) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const Tensor&>>)
      return add_hook(Hook([h = std::forward<F>(hook)](const Tensor& g) mutable {
        h(g);
        return Tensor();
      }));
    else
      return add_hook(Hook(std::forward<F>(hook)));
  }
  Tensor& add_hook(Hook hook);
  /// A new leaf with a copy of the values and no history.
  Tensor detach() const;
  /// Reverse-mode autodiff from this tensor: see tapegrad::backward in tape.hpp.
  void backward(const Tensor& seed = Tensor(), bool retain_graph = false,
                bool create_graph = false) const;
  /// The name of the op that produced this tensor ("leaf" for leaves).
  const char* op() const;

  // ---- naming -------------------------------------------------------------------------------
  const std::string& name() const;
  Tensor& set_name(std::string name);

  // ---- method sugar for common ops (see ops.hpp for the free functions) ----------------------
  Tensor sum() const;
  Tensor mean() const;
  Tensor reshape(const std::vector<std::ptrdiff_t>& shape) const;
  Tensor t() const;  ///< 2-D transpose
  Tensor pow(double exponent) const;
  Tensor to(DType dtype) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  /// Same underlying tensor (not value equality).
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  friend class WeakTensor;
  friend Tensor detail::empty_for(const char* op, const Shape& shape, DType dtype);
  friend Tensor detail::take_values(const Tensor& t, const Shape& shape);
  std::shared_ptr<TensorImpl> impl_;
  TensorImpl& checked() const;  // *impl_, or ValueError for an undefined Tensor
  [[noreturn]] static void throw_undefined();
  [[noreturn]] void throw_dtype_mismatch(DType asked) const;  // data<T>() of the other dtype
  [[noreturn]] void throw_value_freed() const;                 // data<T>() of a freed value
  /// Before this handle lets go of its tensor: frees the value if only value-free nodes hold it.
  void drop_handle() noexcept;
  void free_value_if_unread() noexcept;
};

/// A non-owning handle (std::weak_ptr): what the tape lists, and what a VJP captures when it
/// needs its own op's output (a Tensor there would keep the output, its node and the VJP alive
/// in a cycle). lock() gives the Tensor back, or an undefined one once it is gone.
class WeakTensor {
 public:
  WeakTensor() = default;
  explicit WeakTensor(const Tensor& t) : impl_(t.impl_) {}
  Tensor lock() const {
    Tensor t;
    t.impl_ = impl_.lock();
    return t;
  }
  bool expired() const { return impl_.expired(); }
  void reset() { impl_.reset(); }

 private:
  std::weak_ptr<TensorImpl> impl_;
};

/// What a Tensor handle points to. Fields below `autograd bookkeeping` belong to the tape.
struct TensorImpl {
  /// Holds `value` (moved in: a default xt::xarray would allocate an element of its own first).
  template <class T>
  TensorImpl(xt::xarray<T>&& value, bool requires_grad)
      : value(std::move(value)), requires_grad(requires_grad) {}
  /// Holds a new uninitialised xt::xarray<T> of `shape`, made in place (detail::empty_for).
  template <class T>
  TensorImpl(std::in_place_type_t<xt::xarray<T>> type, const Shape& shape) : value(type, shape) {}

  // ---- value lifetime (framework/tape.cpp, push_node) ----
  // First in the object: next to the reference count every dropped handle touches anyway.
  // A node owns its inputs, but many VJPs never read them: add, narrow, select, reshape only
  // need the shapes. record() says what an op's VJP reads (Reads, tape.hpp). A tensor that only
  // such nodes still hold, with no handle left in the program, has its value freed at once, so
  // that the forward reuses that memory while it is still in cache; its shape and dtype stay
  // (data<T>() of a freed value is an AutogradError, never stale numbers).
  // Threads: only the thread that recorded the tensor counts its holders and frees its value. A
  // graph handed to another thread may be destroyed there: a node that dies there sets
  // keep_value rather than touching the count, and the value then lives as long as the tensor.
  detail::Relaxed<bool> keep_value = true;  // false: made by an op that does not read its
                                            // output, and read by no recorded op so far
  detail::Relaxed<bool> value_freed = false;
  // Recorded nodes holding this tensor that never read it; written by the recording thread only.
  detail::Relaxed<std::uint32_t> unread_holders = 0;

  std::variant<xt::xarray<float>, xt::xarray<double>> value;
  bool requires_grad = false;
  bool retains_grad = false;
  std::string name;
  const char* op = "leaf";  // op that produced it (static string)
  Tensor grad;
  std::vector<Hook> hooks;

  // ---- autograd bookkeeping (framework/tape.cpp) ----
  NodePtr grad_fn;             // the node that made this tensor (owned), null for leaves
  Tensor pending;              // gradient gathered during the current backward pass
  bool pending_owned = false;  // pending's storage is private to us (safe to add in place)
  // A pending gradient built from slices (the backward of narrow, select, chunk) holds values
  // only in slices [pending_lo, pending_hi) of axis pending_axis while pending_partial is set;
  // the rest is written with zeros when anything else reads or adds to it (tape.cpp).
  bool pending_partial = false;
  std::size_t pending_axis = 0, pending_lo = 0, pending_hi = 0;
};

// Inline: every op asks for shapes, sizes, dtypes and data several times.
inline TensorImpl& Tensor::checked() const {
  if (!impl_) throw_undefined();
  return *impl_;
}

inline DType Tensor::dtype() const {
  return checked().value.index() == 0 ? DType::Float32 : DType::Float64;
}

inline void Tensor::drop_handle() noexcept {
  if (impl_ && !impl_->keep_value && impl_->unread_holders != 0 && !impl_->value_freed)
    free_value_if_unread();
}

inline std::size_t Tensor::numel() const {
  const TensorImpl& impl = checked();
  const auto& value = impl.value;
  if (impl.value_freed) {
    std::size_t n = 1;
    for (std::size_t d : shape()) n *= d;
    return n;
  }
  if (const auto* f = std::get_if<xt::xarray<float>>(&value)) return f->size();
  return std::get<xt::xarray<double>>(value).size();
}

template <class T>
inline xt::xarray<T>& Tensor::data() {
  TensorImpl& impl = checked();
  auto* p = std::get_if<xt::xarray<T>>(&impl.value);
  if (!p) throw_dtype_mismatch(std::is_same_v<T, float> ? DType::Float32 : DType::Float64);
  if (impl.value_freed) throw_value_freed();
  return *p;
}

template <class T>
inline const xt::xarray<T>& Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

inline const Shape& Tensor::shape() const {
  const auto& value = checked().value;
  if (const auto* f = std::get_if<xt::xarray<float>>(&value)) return f->shape();
  return std::get<xt::xarray<double>>(value).shape();
}

// ---- creation ---------------------------------------------------------------------------------
Tensor zeros(const Shape& shape, DType dtype = default_dtype());
Tensor ones(const Shape& shape, DType dtype = default_dtype());
Tensor full(const Shape& shape, double value, DType dtype = default_dtype());
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
/// 0-d tensor holding `value`.
Tensor scalar(double value, DType dtype = default_dtype());
/// [start, stop) in steps of `step`, 1-D.
Tensor arange(double start, double stop, double step = 1.0, DType dtype = default_dtype());
Tensor arange(double stop, DType dtype = default_dtype());

/// From nested initializer lists: tensor({{1, 2}, {3, 4}}).
Tensor tensor(std::initializer_list<double> values, DType dtype = default_dtype());
Tensor tensor(std::initializer_list<std::initializer_list<double>> values,
              DType dtype = default_dtype());
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<double>>> values,
              DType dtype = default_dtype());
/// From a flat vector and a shape.
Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                   DType dtype = default_dtype());

}  // namespace tapegrad
