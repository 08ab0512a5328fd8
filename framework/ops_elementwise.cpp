// tapegrad — elementwise ops and the broadcast reducer. Each op: forward, then its VJP.
//
// Notation: g = dL/d(out). A binary op's input gradient is reduced to the input's own shape
// with sum_to (the one broadcast reducer), so broadcasting needs no special care elsewhere.
// VJPs are written with tapegrad ops, so they are themselves differentiable (create_graph).
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics as inlined
// into xsimd's exp and log: a false positive (_mm512_undefined_* on purpose), as in
// layers/fast/gru_fused.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xadapt.hpp>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xvectorize.hpp>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/parallel.hpp"
#include "framework/tape.hpp"
#include "framework/vector_math.hpp"

namespace tapegrad {

using detail::dispatch;

// Declared in framework/dispatch.hpp (shared with the reductions).
bool detail::block_layout(const Shape& small, const Shape& full, BlockLayout* layout) {
  if (small.size() > full.size()) return false;
  const std::size_t lead = full.size() - small.size();
  int part = 0;  // 0: leading broadcast axes, 1: kept axes, 2: trailing broadcast axes
  BlockLayout b;
  for (std::size_t d = 0; d < full.size(); ++d) {
    const std::size_t f = full[d], s = d < lead ? 1 : small[d - lead];
    if (f == 1 && s == 1) continue;  // neutral
    const bool kept = s == f;
    if (!kept && s != 1) return false;
    if (kept) {
      if (part == 2) return false;
      part = 1;
      b.mid *= f;
    } else if (part == 0) {
      b.outer *= f;
    } else {
      part = 2;
      b.inner *= f;
    }
  }
  if (b.mid == 1) b = {1, 1, b.outer * b.inner};  // a scalar: one block of every element
  *layout = b;
  return true;
}

namespace {

using detail::BlockLayout;
using detail::block_layout;
using detail::kParallelElements;

/// out = f(in...) for same-shape contiguous arrays, as two halves on two threads. The halves
/// split at a multiple of 16 elements, so that every element is computed by the same SIMD (or
/// scalar tail) code as in one pass: the result is bit-identical to xt::xarray<T>(f(in...)).
template <class T, class F, class... In>
Tensor two_core_elementwise(const char* op, const Shape& shape, F& f, const In&... in) {
  Tensor out = detail::empty_for<T>(op, shape);
  T* const data = out.data<T>().data();
  auto body = [&](std::size_t begin, std::size_t end) {
    const std::array<std::size_t, 1> flat{end - begin};
    auto part = [&](auto* p) { return xt::adapt(p + begin, end - begin, xt::no_ownership(), flat); };
    auto o = part(data);
    xt::noalias(o) = f(part(in.data())...);
  };
  detail::split_elements(out.numel(), 16, body);
  return out;
}

/// How a binary op's f may be evaluated: Expression (f on xtensor expressions only), or Scalar
/// (f is one IEEE operation, +, -, × or ÷, or std::pow (StdPow), also callable on two numbers:
/// same-shape inputs then take a plain loop, with none of xtensor's per-call shape and stepper
/// set-up, which is most of a small op's forward. One operation per element, so there is nothing
/// to contract into an FMA: the bits are those of f on the expressions, in any path.)
enum class Eval { Expression, Scalar };

/// o[i] = f(b[i], y[i]) for i < n (f(y[i], b[i]) when !small_is_y): y is small's row.
template <class T, class F>
inline void rows_pass(F& f, const T* b, const T* y, bool small_is_y, T* o, std::size_t n) {
  if (small_is_y)
    for (std::size_t i = 0; i < n; ++i) o[i] = f(b[i], y[i]);
  else
    for (std::size_t i = 0; i < n; ++i) o[i] = f(y[i], b[i]);
}

/// o[i] = f(b[i], s) for i < n (f(s, b[i]) when !small_is_y): s is one element of small.
template <class T, class F>
inline void scalar_pass(F& f, const T* b, T s, bool small_is_y, T* o, std::size_t n) {
  if (small_is_y)
    for (std::size_t i = 0; i < n; ++i) o[i] = f(b[i], s);
  else
    for (std::size_t i = 0; i < n; ++i) o[i] = f(s, b[i]);
}

/// out = f(x, y) where `small` (y when small_is_y, else x) broadcasts over `big` as `layout` says:
/// one IEEE operation per element, as in the same-shape loop, so the bits of xtensor's broadcast
/// evaluation (which, for these shapes, steps through the arrays one element at a time: about 70×
/// slower for a one-element operand or a column of (2048, 384), bench_ops BM_Broadcast/2 and /3
/// against BM_BroadcastXtensor). From kParallelElements elements on, the work is split over two
/// cores (any split gives the same bits).
template <class T, class F>
void block_broadcast(F& f, const T* big, const T* small, bool small_is_y, const BlockLayout& l,
                     T* out) {
  const std::size_t total = l.outer * l.mid * l.inner;
  if (total == 0) return;
  if (l.mid == 1) {  // one element: one flat loop
    auto body = [&](std::size_t e0, std::size_t e1) {
      scalar_pass(f, big + e0, small[0], small_is_y, out + e0, e1 - e0);
    };
    return detail::split_elements(total, 16, body);
  }
  if (l.inner > 1) {  // each element of small meets a run of `inner` elements (a column)
    auto body = [&](std::size_t e0, std::size_t e1) {
      for (std::size_t e = e0; e < e1; e += l.inner)
        scalar_pass(f, big + e, small[e / l.inner % l.mid], small_is_y, out + e, l.inner);
    };
    return detail::split_elements(total, l.inner, body);
  }
  // Rows. A short one (x + a bias of 3) is first repeated into a tile of at least 48 elements, so
  // that the loop runs over tiles rather than a few elements at a time.
  T tile[64];
  const T* row = small;
  std::size_t len = l.mid;
  if (len < 16) {
    len = 64 / l.mid * l.mid;
    for (std::size_t k = 0; k < len; ++k) tile[k] = small[k % l.mid];
    row = tile;
  }
  auto body = [&](std::size_t e0, std::size_t e1) {  // e1 − e0 is a whole number of small's rows
    for (std::size_t e = e0; e < e1; e += len)
      rows_pass(f, big + e, row, small_is_y, out + e, std::min(len, e1 - e));
  };
  detail::split_elements(total, len, body);
}

/// out = `small` repeated over `layout`'s blocks (broadcast_to): plain copies, split over two cores
/// from kParallelElements elements on. (xtensor's broadcast assignment steps through the arrays
/// one element at a time: about 2 ms for 786,432 elements here.)
template <class T>
void block_repeat(const T* small, const BlockLayout& l, T* out) {
  const std::size_t total = l.outer * l.mid * l.inner;
  if (total == 0) return;
  if (l.inner > 1 || l.mid == 1) {  // runs of one element of small (a column, or a scalar)
    auto body = [&](std::size_t e0, std::size_t e1) {
      for (std::size_t e = e0; e < e1;) {
        const std::size_t end = std::min(e1, (e / l.inner + 1) * l.inner);
        std::fill(out + e, out + end, small[e / l.inner % l.mid]);
        e = end;
      }
    };
    return detail::split_elements(total, l.inner > 1 ? l.inner : 16, body);
  }
  auto body = [&](std::size_t e0, std::size_t e1) {  // whole rows
    for (std::size_t e = e0; e < e1; e += l.mid) std::copy_n(small, l.mid, out + e);
  };
  detail::split_elements(total, l.mid, body);
}

/// Forward of a broadcasting binary op: checks dtypes and shapes, evaluates f(a, b) once.
template <Eval eval = Eval::Expression, class F>
Tensor binary_forward(const char* op, const Tensor& a, const Tensor& b, F&& f) {
  detail::require_same_dtype(a, b, op);
  // Equal shapes (the common case) are the result's shape as they are, already size-checked.
  const bool same = detail::same_shape(a.shape(), b.shape());
  const Shape broadcast = same ? Shape() : broadcast_shapes(a.shape(), b.shape(), op);
  const Shape& out_shape = same ? a.shape() : broadcast;
  if (!same) detail::checked_numel(op, out_shape);
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (same && a.numel() >= kParallelElements && detail::have_two_cores())
      return two_core_elementwise<T>(op, out_shape, f, a.data<T>(), b.data<T>());
    Tensor out = detail::empty_for<T>(op, out_shape);
    if constexpr (eval == Eval::Scalar) {
      if (same) {
        const T* x = a.data<T>().data();
        const T* y = b.data<T>().data();
        T* o = out.data<T>().data();
        const std::size_t n = out.numel();
        for (std::size_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
        return out;
      }
      // One operand repeats in blocks over the other (x + bias, x − mean(x, -1, true), x · a
      // one-element tensor): plain loops too.
      BlockLayout layout;
      if (block_layout(b.shape(), a.shape(), &layout)) {
        block_broadcast<T>(f, a.data<T>().data(), b.data<T>().data(), true, layout,
                           out.data<T>().data());
        return out;
      }
      if (block_layout(a.shape(), b.shape(), &layout)) {
        block_broadcast<T>(f, b.data<T>().data(), a.data<T>().data(), false, layout,
                           out.data<T>().data());
        return out;
      }
    }
    // (The result already has its shape: xtensor's assignment is the one an xarray built from
    // the expression would run.)
    detail::guard_alloc<T>(op, out_shape, [&] { xt::noalias(out.data<T>()) = f(a.data<T>(), b.data<T>()); });
    return out;
  });
}

/// Forward of a unary op.
template <class F>
Tensor unary_forward(const char* op, const Tensor& a, F&& f) {
  detail::require_defined(a, op, "a");
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (a.numel() >= kParallelElements && detail::have_two_cores())
      return two_core_elementwise<T>(op, a.shape(), f, a.data<T>());
    Tensor out = detail::empty_for<T>(op, a.shape());
    detail::guard_alloc<T>(op, a.shape(), [&] { xt::noalias(out.data<T>()) = f(a.data<T>()); });
    return out;
  });
}

/// out[i] = f(a[i]) by a plain loop over the contiguous values (f takes and returns T), split
/// over two cores from kParallelElements elements on: for ops whose xtensor expression is not
/// vectorised (a comparison cast to T, a function of the C library).
template <class F>
Tensor unary_loop(const char* op, const Tensor& a, F&& f) {
  detail::require_defined(a, op, "a");
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor out = detail::empty_for<T>(op, a.shape());
    const T* x = a.data<T>().data();
    T* y = out.data<T>().data();
    auto part = [&](std::size_t i0, std::size_t i1) {
      for (std::size_t i = i0; i < i1; ++i) y[i] = f(x[i]);
    };
    detail::split_elements(a.numel(), 16, part);
    return out;
  });
}

/// Forward of exp, log, tanh or sigmoid: `pick` names the function of the process's build of the
/// vector math (vector_math.hpp), compiled for the widest vectors the CPU has even in a portable
/// build, and giving every element the same instructions wherever it lies.
template <class Pick>
Tensor vector_math_forward(const char* op, const Tensor& a, Pick pick) {
  detail::require_defined(a, op, "a");
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const auto f = pick(detail::vector_math<T>());
    Tensor out = detail::empty_for<T>(op, a.shape());
    const T* x = a.data<T>().data();
    T* y = out.data<T>().data();
    auto part = [&](std::size_t i0, std::size_t i1) { f(x + i0, y + i0, i1 - i0); };
    if (a.numel() >= kParallelElements && detail::have_two_cores())
      detail::split_elements(a.numel(), 16, part);
    else
      part(0, a.numel());
    return out;
  });
}

// -- an optimisation, set apart: a VJP's result written over its incoming gradient --

/// Whether a VJP may write its result over g: the pass alone holds g (values_takeable), the VJP
/// is not recorded (create_graph) nor checked op by op (anomaly mode), and g is small enough for
/// one core (from kParallelElements on, the forward functions split the work over two).
bool may_write_over(const Tensor& g, const GradSink& s) {
  return !s.create_graph() && !anomaly_enabled() && g.numel() < kParallelElements &&
         detail::values_takeable(g);
}

/// g ← f(g), then g goes on as input 0's gradient: the assignment unary_forward makes, into g's
/// own values instead of a new array (the same bits; one allocation and one cold array fewer).
/// False (nothing done) when may_write_over says no.
template <class F>
bool unary_over_g(const Tensor& g, GradSink& s, F&& f) {
  if (!may_write_over(g, s)) return false;
  dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T>& gd = const_cast<Tensor&>(g).data<T>();
    xt::noalias(gd) = f(std::as_const(gd));
  });
  s.add(0, g);
  return true;
}

/// g ← f(g, y) for a y of g's shape and dtype, then g goes on as input 0's gradient: the
/// assignment binary_forward makes for equal shapes below kParallelElements, into g's values.
template <class F>
bool binary_over_g(const Tensor& g, const Tensor& y, GradSink& s, F&& f) {
  if (!may_write_over(g, s) || !detail::same_shape(g.shape(), y.shape()) ||
      g.dtype() != y.dtype())
    return false;
  dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T>& gd = const_cast<Tensor&>(g).data<T>();
    xt::noalias(gd) = f(std::as_const(gd), y.data<T>());
  });
  s.add(0, g);
  return true;
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  if (detail::same_shape(a, b)) return a;
  std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    std::size_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw ShapeError(fmt::format("{}: shapes {} and {} cannot be broadcast together", op,
                                   shape_str(a), shape_str(b)));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// ---- the broadcast reducer and its adjoint ------------------------------------------------------

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (detail::same_shape(g.shape(), shape)) return g;
  const Shape& gs = g.shape();
  if (shape.size() > gs.size() || broadcast_shapes(gs, shape, "sum_to") != gs)
    throw ShapeError(fmt::format("sum_to: cannot reduce {} to {}", shape_str(gs), shape_str(shape)));
  // Sum the leading extra axes and the axes where `shape` has 1, then reshape.
  std::vector<std::size_t> axes;
  std::size_t lead = gs.size() - shape.size();
  for (std::size_t i = 0; i < gs.size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && gs[i] != 1)) axes.push_back(i);
  Tensor out = detail::sum_values("sum_to", g, axes, shape);
  return record("sum_to", std::move(out), {g}, Reads::Nothing, [](const Tensor& gg, GradSink& s) {
    s.add(0, broadcast_to(gg, s.input(0).shape()));
  });
}

Tensor sum_to(Tensor&& g, const Shape& shape) {
  if (g.defined() && detail::same_shape(g.shape(), shape)) return std::move(g);
  return sum_to(static_cast<const Tensor&>(g), shape);
}

Tensor broadcast_to(const Tensor& a, const Shape& shape) {
  detail::require_defined(a, "broadcast_to", "a");
  if (detail::same_shape(a.shape(), shape)) return a;
  if (broadcast_shapes(a.shape(), shape, "broadcast_to") != shape)
    throw ShapeError(fmt::format("broadcast_to: cannot broadcast {} to {}", shape_str(a.shape()),
                                 shape_str(shape)));
  detail::checked_numel("broadcast_to", shape);
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (BlockLayout layout; block_layout(a.shape(), shape, &layout)) {
      Tensor r = detail::empty_for<T>("broadcast_to", shape);
      block_repeat(a.data<T>().data(), layout, r.data<T>().data());
      return r;
    }
    return detail::guard_alloc<T>("broadcast_to", shape, [&] {
      return Tensor(xt::xarray<T>(xt::broadcast(a.data<T>(), shape)));
    });
  });
  return record("broadcast_to", std::move(out), {a}, Reads::Nothing,
                [](const Tensor& g, GradSink& s) {
    s.add_sum_to(0, g);
  });
}

// ---- arithmetic ---------------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<Eval::Scalar>(
      "add", a, b, [](const auto& x, const auto& y) { return x + y; });
  // The VJP reads the inputs from its node (s.input(i)) instead of capturing copies.
  return record("add", std::move(out), {a, b}, Reads::Nothing, [](const Tensor& g, GradSink& s) {
    if (s.needs(0)) s.add_sum_to(0, g);  // sum_to(g, a.shape())
    if (s.needs(1)) s.add_sum_to(1, g);
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<Eval::Scalar>(
      "sub", a, b, [](const auto& x, const auto& y) { return x - y; });
  return record("sub", std::move(out), {a, b}, Reads::Nothing, [](const Tensor& g, GradSink& s) {
    if (s.needs(0)) s.add_sum_to(0, g);  // sum_to(g, a.shape())
    if (s.needs(1)) s.add(1, sum_to(neg(g), s.input(1).shape()));
  });
}

namespace {
/// ga[i] = g[i] · b[i] and gb[i] = g[i] · a[i], both gradients of a mul in one pass over g:
/// ga and gb are new arrays, so nothing overlaps. Said with __restrict, in a function of its own
/// (inlined into mul's VJP, even with __restrict the loop stayed scalar, and product_chain's
/// backward took about twice as long).
template <class T>
[[gnu::noinline]] void both_products(const T* __restrict g, const T* __restrict a,
                                     const T* __restrict b, T* __restrict ga, T* __restrict gb,
                                     std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i];
    gb[i] = gi * a[i];
    ga[i] = gi * b[i];
  }
}

/// The same two products with g ⊙ b written over g (read first at each element): g is the pass's
/// own gradient, which no one else holds, and is neither a nor b.
template <class T>
[[gnu::noinline]] void both_products_over_g(T* __restrict g, const T* __restrict a,
                                            const T* __restrict b, T* __restrict gb, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i];
    gb[i] = gi * a[i];
    g[i] = gi * b[i];
  }
}

/// Both gradients of a same-shape mul at once: g ⊙ b and g ⊙ a, the products mul(g, b) and
/// mul(g, a) compute (one IEEE multiply per element: the same bits), with one set-up instead of
/// two ops' checks and dispatch; split over two cores from kParallelElements on.
/// When g is the pass's own (held by no one else, like the chain gradient of a product chain),
/// g ⊙ b is written over g once g ⊙ a has read it, and g itself goes on as a's gradient: one new
/// tensor instead of two, and the stores go to memory the previous VJP has just written.
/// False (nothing done) when the shapes differ or are empty, or when the VJP must stay
/// differentiable (create_graph) or be checked op by op (anomaly mode).
bool mul_grads_at_once(const Tensor& g, GradSink& s) {
  const Tensor &a = s.input(0), &b = s.input(1);
  // (mul's inputs share their dtype with g; with equal shapes, g has theirs too.)
  if (s.create_graph() || anomaly_enabled() || !s.needs(0) || !s.needs(1) ||
      !detail::same_shape(a.shape(), b.shape()) || g.numel() == 0)
    return false;
  detail::dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool over_g = detail::values_takeable(g);
    Tensor ga = over_g ? Tensor() : detail::empty_for<T>("mul", a.shape());
    Tensor gb = detail::empty_for<T>("mul", a.shape());
    const T *pg = g.data<T>().data(), *pa = a.data<T>().data(), *pb = b.data<T>().data();
    T *oa = over_g ? nullptr : ga.data<T>().data(), *ob = gb.data<T>().data();
    auto body = [&](std::size_t e0, std::size_t e1) {
      if (over_g)
        both_products_over_g(const_cast<T*>(pg) + e0, pa + e0, pb + e0, ob + e0, e1 - e0);
      else
        both_products(pg + e0, pa + e0, pb + e0, oa + e0, ob + e0, e1 - e0);
    };
    detail::split_elements(g.numel(), 16, body);
    if (over_g)
      s.add(0, g);  // input 0 first, as the two products would; g now holds g ⊙ b
    else
      s.add(0, std::move(ga));
    s.add(1, std::move(gb));
  });
  return true;
}
}  // namespace

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<Eval::Scalar>(
      "mul", a, b, [](const auto& x, const auto& y) { return x * y; });
  return record("mul", std::move(out), {a, b}, Reads::Inputs, [](const Tensor& g, GradSink& s) {
    if (mul_grads_at_once(g, s)) return;  // an optimisation, set apart: the same two products
    const Tensor &a = s.input(0), &b = s.input(1);
    if (s.needs(0)) s.add(0, sum_to(mul(g, b), a.shape()));
    if (s.needs(1)) s.add(1, sum_to(mul(g, a), b.shape()));
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<Eval::Scalar>(
      "div", a, b, [](const auto& x, const auto& y) { return x / y; });
  return record("div", std::move(out), {a, b}, [](const Tensor& g, GradSink& s) {
    const Tensor &a = s.input(0), &b = s.input(1);
    Tensor ga = div(g, b);  // d(a/b)/da = 1/b
    if (s.needs(0)) s.add(0, sum_to(ga, a.shape()));
    if (s.needs(1)) s.add(1, sum_to(neg(mul(ga, div(a, b))), b.shape()));  // −g·a/b²
  });
}

Tensor add(const Tensor& a, double c) {
  Tensor out = unary_forward("add_scalar", a, [c](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return x + static_cast<T>(c);
  });
  return record("add_scalar", std::move(out), {a}, Reads::Nothing,
                [](const Tensor& g, GradSink& s) { s.add(0, g); });
}

namespace {
/// x · c: mul_scalar's forward, and its VJP (g · c) written over g.
auto times(double c) {
  return [c](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return x * static_cast<T>(c);
  };
}
auto negate() {
  return [](const auto& x) { return -x; };
}
}  // namespace

Tensor mul(const Tensor& a, double c) {
  Tensor out = unary_forward("mul_scalar", a, times(c));
  return record("mul_scalar", std::move(out), {a}, Reads::Nothing,
                [c](const Tensor& g, GradSink& s) {
                  if (!unary_over_g(g, s, times(c))) s.add(0, mul(g, c));
                });
}

Tensor rsub(const Tensor& a, double c) {
  Tensor out = unary_forward("rsub_scalar", a, [c](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return static_cast<T>(c) - x;
  });
  return record("rsub_scalar", std::move(out), {a}, Reads::Nothing,
                [](const Tensor& g, GradSink& s) {
                  if (!unary_over_g(g, s, negate())) s.add(0, neg(g));
                });
}

Tensor neg(const Tensor& a) {
  Tensor out = unary_forward("neg", a, negate());
  return record("neg", std::move(out), {a}, Reads::Nothing, [](const Tensor& g, GradSink& s) {
    if (!unary_over_g(g, s, negate())) s.add(0, neg(g));
  });
}

namespace {

/// 1 where x ≠ 0 (NaN included), else 0, in x's dtype: a mask for where (no gradient).
Tensor nonzero_mask(const Tensor& x) {
  return dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor m = detail::empty_for<T>("pow", x.shape());
    const T* in = x.data<T>().data();
    T* out = m.data<T>().data();
    for (std::size_t i = 0, n = x.numel(); i < n; ++i) out[i] = in[i] == T(0) ? T(0) : T(1);
    return m;
  });
}

/// std::pow on two numbers, or elementwise on two xtensor expressions (broadcasting), never
/// xsimd's vector pow: xsimd 8 gets IEEE's special cases wrong where a SIMD batch covers the
/// element (pow(0, 0) = 0, pow(0, −1) = 0, pow(±inf, 0) and pow(1, inf) NaN, denormal results
/// flushed to 0, pow(−2, 1e10) = −inf in float), so a result depended on the element's position
/// and on the build. std::pow is IEEE's (and PyTorch's) in every build.
struct StdPow {
  template <class X, class Y>
  auto operator()(const X& x, const Y& y) const {
    if constexpr (std::is_arithmetic_v<X> && std::is_arithmetic_v<Y>) {
      return std::pow(x, y);
    } else {
      using T = typename X::value_type;
      return xt::vectorize([](T u, T v) -> T { return std::pow(u, v); })(x, y);
    }
  }
};

}  // namespace

namespace {

/// x^p for a number p: the forms PyTorch uses for the exponents models write most (x·x for 2,
/// x·x·x for 3, 1/x for −1, 1/(x·x) for −2, √x for ½: the same bits as torch.pow), std::pow for
/// every other p. They keep the C library's special values (a zero's sign, ±inf, NaN), which
/// torch.pow's √ does not for −0 and −inf (tests SpecialValuesAreTheCLibrarysInEveryPositionAndBuild
/// and ScalarExponentsTakePyTorchsForms). Before, every element called std::pow: pow(x, 2.0)
/// forward and backward took 15× PyTorch's time (docs/performance.md, session 33, run CG).
template <class T>
struct PowScalar {
  T p;
  enum class Form { Zero, One, Two, Three, MinusOne, MinusTwo, Half, General } form;
  explicit PowScalar(double e) : p(static_cast<T>(e)) {
    form = p == T(0) ? Form::Zero : p == T(1) ? Form::One : p == T(2) ? Form::Two
         : p == T(3) ? Form::Three : p == T(-1) ? Form::MinusOne : p == T(-2) ? Form::MinusTwo
         : p == T(0.5) ? Form::Half : Form::General;
  }
};

/// y = x^p over n contiguous values, one loop per form (each vectorises).
template <class T>
void pow_scalar_values(const PowScalar<T>& e, const T* x, T* y, std::size_t i0, std::size_t i1) {
  using Form = typename PowScalar<T>::Form;
  const T inf = std::numeric_limits<T>::infinity();
  switch (e.form) {
    case Form::Zero: std::fill(y + i0, y + i1, T(1)); return;  // also 0⁰, inf⁰ and NaN⁰
    case Form::One: std::copy(x + i0, x + i1, y + i0); return;
    case Form::Two: for (std::size_t i = i0; i < i1; ++i) y[i] = x[i] * x[i]; return;
    case Form::Three: for (std::size_t i = i0; i < i1; ++i) y[i] = x[i] * x[i] * x[i]; return;
    case Form::MinusOne: for (std::size_t i = i0; i < i1; ++i) y[i] = T(1) / x[i]; return;
    case Form::MinusTwo: for (std::size_t i = i0; i < i1; ++i) y[i] = T(1) / (x[i] * x[i]); return;
    // pow(−0, ½) = +0 (√ gives −0, made +0 by adding +0) and pow(−inf, ½) = inf.
    case Form::Half:
      for (std::size_t i = i0; i < i1; ++i) y[i] = x[i] == -inf ? inf : std::sqrt(x[i]) + T(0);
      return;
    case Form::General: for (std::size_t i = i0; i < i1; ++i) y[i] = std::pow(x[i], e.p); return;
  }
}

}  // namespace

Tensor pow(const Tensor& a, double p) {
  detail::require_defined(a, "pow", "a");
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const PowScalar<T> e(p);
    Tensor r = detail::empty_for<T>("pow", a.shape());
    const T* x = a.data<T>().data();
    T* y = r.data<T>().data();
    auto part = [&](std::size_t i0, std::size_t i1) { pow_scalar_values(e, x, y, i0, i1); };
    detail::split_elements(a.numel(), 16, part);
    return r;
  });
  return record("pow", std::move(out), {a}, [p](const Tensor& g, GradSink& s) {
    // a⁰ = 1 has gradient 0, also at a = 0 where p·a^(p−1) would be 0·∞ (PyTorch's convention).
    if (p == 0.0) return s.add(0, zeros_like(g));
    s.add(0, mul(mul(g, pow(s.input(0), p - 1.0)), p));  // p·a^(p−1)
  });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<Eval::Scalar>("pow", a, b, StdPow());
  return record("pow", std::move(out), {a, b}, [y = WeakTensor(out)](const Tensor& g, GradSink& s) {
    const Tensor &a = s.input(0), &b = s.input(1);
    // PyTorch's conventions where the formulas give 0·∞: d/da is 0 where b = 0 (a⁰ = 1), and
    // d/db is 0 where a = 0 and b ≥ 0 (0^b is 0 or 1 there); NaN stays NaN.
    if (s.needs(0)) {
      Tensor da = mul(mul(g, b), pow(a, add(b, -1.0)));  // b·a^(b−1)
      s.add(0, sum_to(where(nonzero_mask(b), da, zeros_like(da)), a.shape()));
    }
    if (s.needs(1)) {
      Tensor db = mul(mul(g, y.lock()), log(a));  // a^b·ln a
      Tensor keep = where(nonzero_mask(a), ones_like(a), lt(b, 0.0));  // a ≠ 0, or b < 0
      s.add(1, sum_to(where(keep, db, zeros_like(db)), b.shape()));
    }
  });
}

// ---- transcendental -----------------------------------------------------------------------------

Tensor exp(const Tensor& a) {
  Tensor out = vector_math_forward("exp", a, [](const auto& m) { return m.exp; });
  // The VJP needs the output: a WeakTensor, since the output owns this node (tape.hpp).
  return record("exp", std::move(out), {a}, [y = WeakTensor(out)](const Tensor& g, GradSink& s) {
    s.add(0, mul(g, y.lock()));
  });
}

Tensor log(const Tensor& a) {
  Tensor out = vector_math_forward("log", a, [](const auto& m) { return m.log; });
  return record("log", std::move(out), {a}, [](const Tensor& g, GradSink& s) { s.add(0, div(g, s.input(0))); });
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_forward("sqrt", a, [](const auto& x) { return xt::sqrt(x); });
  return record("sqrt", std::move(out), {a}, [y = WeakTensor(out)](const Tensor& g, GradSink& s) {
    s.add(0, div(mul(g, 0.5), y.lock()));  // 1 / (2√a)
  });
}

Tensor abs(const Tensor& a) {
  Tensor out = unary_forward("abs", a, [](const auto& x) { return xt::abs(x); });
  return record("abs", std::move(out), {a}, [](const Tensor& g, GradSink& s) {
    Tensor sign = unary_forward("sign", s.input(0), [](const auto& x) { return xt::sign(x); });
    s.add(0, mul(g, sign));
  });
}

namespace {

/// g·(1 − y²) and g·y·(1 − y), as expressions: the VJPs of tanh and sigmoid from their outputs.
const auto tanh_grad = [](const auto& gd, const auto& yd) {
  using T = typename std::decay_t<decltype(yd)>::value_type;
  return gd * (T(1) - yd * yd);
};
const auto sigmoid_grad = [](const auto& gd, const auto& yd) {
  using T = typename std::decay_t<decltype(yd)>::value_type;
  return gd * yd * (T(1) - yd);
};

/// g·(1 − y²): tanh's VJP from its output, itself a differentiable op (for double backward).
Tensor tanh_backward(const Tensor& g, const Tensor& y) {
  Tensor out = binary_forward("tanh_backward", g, y, tanh_grad);
  return record("tanh_backward", std::move(out), {g, y}, [](const Tensor& gg, GradSink& s) {
    const Tensor &g = s.input(0), &y = s.input(1);
    if (s.needs(0)) s.add(0, tanh_backward(gg, y));
    if (s.needs(1)) s.add(1, mul(mul(mul(gg, g), y), -2.0));
  });
}

/// g·y·(1 − y): sigmoid's VJP from its output, itself differentiable.
Tensor sigmoid_backward(const Tensor& g, const Tensor& y) {
  Tensor out = binary_forward("sigmoid_backward", g, y, sigmoid_grad);
  return record("sigmoid_backward", std::move(out), {g, y}, [](const Tensor& gg, GradSink& s) {
    const Tensor &g = s.input(0), &y = s.input(1);
    if (s.needs(0)) s.add(0, sigmoid_backward(gg, y));
    if (s.needs(1)) s.add(1, mul(mul(gg, g), rsub(mul(y, 2.0), 1.0)));  // g·(1 − 2y)
  });
}

}  // namespace

Tensor tanh(const Tensor& a) {
  Tensor out = vector_math_forward("tanh", a, [](const auto& m) { return m.tanh; });
  return record("tanh", std::move(out), {a}, Reads::Output,
                [y = WeakTensor(out)](const Tensor& g, GradSink& s) {
    const Tensor yv = y.lock();
    if (!binary_over_g(g, yv, s, tanh_grad)) s.add(0, tanh_backward(g, yv));
  });
}

Tensor sigmoid(const Tensor& a) {
  // σ(x) = 1/(1+e^−x) for x ≥ 0 and e^x/(1+e^x) for x < 0: e^−|x| never overflows.
  Tensor out = vector_math_forward("sigmoid", a, [](const auto& m) { return m.sigmoid; });
  return record("sigmoid", std::move(out), {a}, Reads::Output,
                [y = WeakTensor(out)](const Tensor& g, GradSink& s) {
    const Tensor yv = y.lock();
    if (!binary_over_g(g, yv, s, sigmoid_grad)) s.add(0, sigmoid_backward(g, yv));
  });
}

// ---- piecewise ----------------------------------------------------------------------------------

// (Plain loops: xtensor's cast of a comparison is not vectorised; relu forward and backward,
// whose VJP is mul(g, gt(x, 0)), took 103 µs for (256, 1024) with it and 42 µs now: run CG.)
Tensor gt(const Tensor& a, double v) {
  return unary_loop("gt", a, [v](auto x) {
    using T = decltype(x);
    return x > static_cast<T>(v) ? T(1) : T(0);
  });
}

Tensor lt(const Tensor& a, double v) {
  return unary_loop("lt", a, [v](auto x) {
    using T = decltype(x);
    return x < static_cast<T>(v) ? T(1) : T(0);
  });
}

// relu as PyTorch's: x < 0 ? 0 : x, so that a NaN stays NaN (a diverging run shows it) and −0
// stays −0; its gradient g where x > 0 or x is NaN, else exactly 0 (torch's threshold_backward:
// x ≤ 0 ? 0 : g). xtensor's maximum(x, 0), used before, turned NaN into 0. Test ReluIsPyTorchs.
Tensor relu(const Tensor& a) {
  Tensor out = unary_loop("relu", a, [](auto x) { return x < decltype(x)(0) ? decltype(x)(0) : x; });
  return record("relu", std::move(out), {a}, [](const Tensor& g, GradSink& s) {
    const Tensor& x = s.input(0);
    if (!s.create_graph()) {  // one pass: x ≤ 0 ? 0 : g
      s.add(0, dispatch(g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        Tensor d = detail::empty_for<T>("relu", g.shape());
        const T *px = x.data<T>().data(), *pg = g.data<T>().data();
        T* pd = d.data<T>().data();
        auto part = [&](std::size_t i0, std::size_t i1) {
          for (std::size_t i = i0; i < i1; ++i) {  // g read first: a select, not a branch
            const T gi = pg[i];
            pd[i] = px[i] <= T(0) ? T(0) : gi;
          }
        };
        detail::split_elements(g.numel(), 16, part);
        return d;
      }));
      return;
    }
    Tensor passes = unary_loop("relu_mask", x, [](auto v) {
      using T = decltype(v);
      return v <= T(0) ? T(0) : T(1);
    });
    s.add(0, where(passes, g, full(Shape{}, 0.0, g.dtype())));  // differentiable in g
  });
}

Tensor clamp(const Tensor& a, double lo, double hi) {
  if (lo > hi) throw ValueError(fmt::format("clamp: lo ({}) > hi ({})", lo, hi));
  Tensor out = unary_forward("clamp", a, [lo, hi](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return xt::clip(x, static_cast<T>(lo), static_cast<T>(hi));
  });
  return record("clamp", std::move(out), {a}, [lo, hi](const Tensor& g, GradSink& s) {
    Tensor inside = unary_loop("clamp_mask", s.input(0), [lo, hi](auto x) {
      using T = decltype(x);
      return T((x >= static_cast<T>(lo)) & (x <= static_cast<T>(hi)));  // & not &&: no branch
    });
    s.add(0, mul(g, inside));
  });
}

namespace {

/// The period with which an operand of shape s repeats over the flat elements of a result of
/// shape `out` it broadcasts to, when it does so by repeating whole: s's axes other than
/// leading 1s are out's trailing axes (a (T, T) mask over (B, T, T) scores: period T·T; one
/// element: 1; out's own shape: all of it). 0 otherwise.
std::size_t repeat_period(const Shape& s, const Shape& out) {
  if (s.size() > out.size()) return 0;
  const std::size_t lead = out.size() - s.size();
  std::size_t i = 0;
  while (i < s.size() && s[i] == 1) ++i;
  std::size_t period = 1;
  for (; i < s.size(); ++i) {
    if (s[i] != out[lead + i]) return 0;
    period *= s[i];
  }
  return period;
}

/// out = c ≠ 0 ? a : b over n elements, each operand read at its flat index modulo its period
/// (1: one element; else a multiple of `run`, the smallest period above 1): runs of `run`
/// elements, in which every operand is contiguous or one value. CS, AS, BS: the operand is one
/// element (so that each case's loop vectorises).
template <class T, bool CS, bool AS, bool BS>
void where_runs(const T* c, std::size_t pc, const T* a, std::size_t pa, const T* b, std::size_t pb,
                T* out, std::size_t e0, std::size_t e1, std::size_t run) {
  for (std::size_t e = e0; e < e1; e += run) {
    const T* cr = CS ? c : c + e % pc;
    const T* ar = AS ? a : a + e % pa;
    const T* br = BS ? b : b + e % pb;
    T* o = out + e;
    for (std::size_t k = 0; k < run; ++k) {  // both read first: a select, not a branch
      const T av = ar[AS ? 0 : k], bv = br[BS ? 0 : k];
      o[k] = cr[CS ? 0 : k] != T(0) ? av : bv;
    }
  }
}

/// where() of `shape` by where_runs into *out when every operand repeats whole (repeat_period):
/// same shapes, a scalar fill value (masked_fill, the VJP's zero), a mask over leading batch
/// axes. cond ≠ 0 ? a : b, a NaN condition true wherever it lies, without xtensor's broadcast
/// stepping (masked_fill of a (256, 1024) tensor took 2.1× PyTorch's time, run CG). False, nothing
/// allocated, when some operand broadcasts otherwise.
template <class T>
bool where_by_runs(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape, Tensor* out) {
  const std::size_t pc = repeat_period(cond.shape(), shape), pa = repeat_period(a.shape(), shape),
                    pb = repeat_period(b.shape(), shape);
  if (pc == 0 || pa == 0 || pb == 0) return false;
  *out = detail::empty_for<T>("where", shape);
  const std::size_t n = out->numel();
  std::size_t run = n;
  for (std::size_t p : {pc, pa, pb})
    if (p > 1) run = std::min(run, p);
  if (n == 0) return true;
  const T *pcv = cond.data<T>().data(), *pav = a.data<T>().data(), *pbv = b.data<T>().data();
  T* o = out->data<T>().data();
  using Fn = void (*)(const T*, std::size_t, const T*, std::size_t, const T*, std::size_t, T*,
                      std::size_t, std::size_t, std::size_t);
  static constexpr Fn kinds[8] = {where_runs<T, false, false, false>, where_runs<T, false, false, true>,
                                  where_runs<T, false, true, false>,  where_runs<T, false, true, true>,
                                  where_runs<T, true, false, false>,  where_runs<T, true, false, true>,
                                  where_runs<T, true, true, false>,   where_runs<T, true, true, true>};
  const Fn f = kinds[(pc == 1) * 4 + (pa == 1) * 2 + (pb == 1)];
  auto body = [&](std::size_t e0, std::size_t e1) { f(pcv, pc, pav, pa, pbv, pb, o, e0, e1, run); };
  detail::split_elements(n, run, body);
  return true;
}

}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::require_same_dtype(a, b, "where");
  detail::require_same_dtype(cond, a, "where");
  const Shape out_shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  detail::checked_numel("where", out_shape);
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (Tensor r; where_by_runs<T>(cond, a, b, out_shape, &r)) return r;
    return detail::guard_alloc<T>("where", out_shape, [&] {
      return Tensor(xt::xarray<T>(
          xt::where(xt::not_equal(cond.data<T>(), T(0)), a.data<T>(), b.data<T>())));
    });
  });
  return record("where", std::move(out), {a, b}, [cond](const Tensor& g, GradSink& s) {
    const Tensor zero = full(Shape{}, 0.0, g.dtype());  // broadcast: one element, not a tensor of zeros
    if (s.needs(0)) s.add(0, sum_to(where(cond, g, zero), s.input(0).shape()));
    if (s.needs(1)) s.add(1, sum_to(where(cond, zero, g), s.input(1).shape()));
  });
}

Tensor cast(const Tensor& a, DType dtype) {
  detail::require_defined(a, "cast", "a");
  if (a.dtype() == dtype) return a;
  Tensor out = dispatch(a.dtype(), [&](auto from) {
    using F = decltype(from);
    return dispatch(dtype, [&](auto to) {
      using T = decltype(to);
      return detail::guard_alloc<T>("cast", a.shape(),
                                    [&] { return Tensor(xt::xarray<T>(xt::cast<T>(a.data<F>()))); });
    });
  });
  return record("cast", std::move(out), {a}, [from = a.dtype()](const Tensor& g, GradSink& s) {
    s.add(0, cast(g, from));
  });
}

}  // namespace tapegrad
