// tapegrad — reductions, softmax family and losses. Each op: forward, then its VJP.

// GCC 12 warns "'__Y' (may be) used uninitialized" inside its own AVX-512 intrinsics as inlined into
// xsimd's log (xtensor's vectorised log below, in a -march=native build on an AVX-512 machine): a
// false positive (_mm512_undefined_* on purpose), printed 35 times by a fresh build. The warning
// is reported at the intrinsic's own line, so this comes before the first include.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xsort.hpp>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/parallel.hpp"
#include "framework/tape.hpp"
#include "framework/vector_math.hpp"

namespace tapegrad {

using detail::dispatch;

namespace {

/// Sorted, unique, non-negative axes; all axes when `axes` is empty.
std::vector<std::size_t> resolve_axes(const Axes& axes, std::size_t rank, const char* op) {
  std::vector<std::size_t> out;
  if (axes.empty()) {
    for (std::size_t i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (auto a : axes) out.push_back(normalize_axis(a, rank, op));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    throw ValueError(fmt::format("{}: an axis is repeated", op));
  return out;
}

/// The input shape with the reduced axes set to 1.
Shape keepdims_shape(const Shape& s, const std::vector<std::size_t>& axes) {
  Shape k = s;
  for (auto a : axes) k[a] = 1;
  return k;
}

Shape reduced_shape(const Shape& s, const std::vector<std::size_t>& axes, bool keepdims) {
  if (keepdims) return keepdims_shape(s, axes);
  Shape r;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (std::find(axes.begin(), axes.end(), i) == axes.end()) r.push_back(s[i]);
  return r;
}

}  // namespace

// ---- sum / mean ---------------------------------------------------------------------------------

namespace {

/// Whether sum_rows reduces over layout l: the kept axes leading, the reduced ones trailing (a
/// keepdims row sum, as in softmax and layer norm). xtensor's reducer adds such a row one element
/// after the other, one row at a time: a chain of dependent additions (about 0.7 ns per element
/// here). A sum over the leading axes (a bias gradient) it already runs as fast as memory allows:
/// that stays with xtensor. A sum over all axes is sum_all's.
bool summable_by_rows(const detail::BlockLayout& l) {
  return l.outer == 1 && l.mid > 1 && l.inner > 1;
}

/// out[m] = Σ_i a[m·n + i] for m < rows: each sum starts at +0 and adds its n elements one after
/// the other, as xtensor's immediate sum does (the same bits: test BlockSum), but 8 rows at a time,
/// so that 8 chains of additions overlap. On two cores from kParallelElements elements on.
template <class T>
void sum_rows(const T* a, std::size_t rows, std::size_t n, T* out) {
  auto body = [&](std::size_t e0, std::size_t e1) {
    std::size_t m = e0 / n;
    const std::size_t m1 = e1 / n;
    for (; m + 8 <= m1; m += 8) {
      T acc[8] = {};
      const T* p = a + m * n;
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t k = 0; k < 8; ++k) acc[k] += p[k * n + i];
      std::copy_n(acc, 8, out + m);
    }
    for (; m < m1; ++m) {
      T acc = T(0);
      for (std::size_t i = 0; i < n; ++i) acc += a[m * n + i];
      out[m] = acc;
    }
  };
  detail::split_elements(rows * n, n, body);
}

/// The largest of a line's len elements (stride st). Which of two equal maxima (−0 and +0) it
/// keeps, or whether it keeps a NaN, does not change softmax's or log_softmax's results: a line
/// holding a NaN or +inf, or only −inf, comes out all NaN whatever the maximum (test SoftmaxLoops).
template <class T>
T line_max(const T* x, std::size_t len, std::size_t st) {
  T m = x[0];
  for (std::size_t k = 1; k < len; ++k) m = x[k * st] > m ? x[k * st] : m;
  return m;
}

/// The largest of a contiguous row of n elements over 16 lanes (k mod 16) combined pairwise at
/// the end, as lane_sum adds: independent chains that vectorise, where one running maximum is a
/// chain of dependent operations. Which of two equal maxima, or whether a NaN, it keeps does
/// not change softmax's result (line_max above); max() finds a run's first NaN itself.
template <class T>
T row_max(const T* x, std::size_t n) {
  constexpr std::size_t L = 16;
  if (n < L) return line_max(x, n, 1);
  T acc[L];
  std::copy_n(x, L, acc);
  std::size_t k = L;
  for (; k + L <= n; k += L)
    for (std::size_t j = 0; j < L; ++j) acc[j] = x[k + j] > acc[j] ? x[k + j] : acc[j];
  for (; k < n; ++k) acc[k % L] = x[k] > acc[k % L] ? x[k] : acc[k % L];
  for (std::size_t w = L / 2; w >= 1; w /= 2)
    for (std::size_t j = 0; j < w; ++j) acc[j] = acc[j + w] > acc[j] ? acc[j + w] : acc[j];
  return acc[0];
}

/// The sum of n contiguous values over 16 lanes (value k into lane k mod 16), the lanes added
/// pairwise at the end: 16 independent chains that vectorise. From kParallelElements values on,
/// the two halves (split at a multiple of 16 fixed by n alone) are summed this way on two cores
/// and then added, on one core too when the helper is busy: the same bits either way. Before,
/// xtensor's reducer added every value to one running sum (5.3× PyTorch's time for the sum of a
/// (256, 1024) tensor, forward and backward: docs/performance.md, session 33, run CG); the lanes are also
/// the more accurate sum (each chain is 16 times shorter).
template <class T>
T lane_sum(const T* a, std::size_t n) {
  constexpr std::size_t L = 16;
  T acc[L] = {};
  std::size_t k = 0;
  for (; k + L <= n; k += L)
    for (std::size_t j = 0; j < L; ++j) acc[j] += a[k + j];
  for (; k < n; ++k) acc[k % L] += a[k];
  for (std::size_t w = L / 2; w >= 1; w /= 2)
    for (std::size_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

template <class T>
T sum_all(const T* a, std::size_t n) {
  if (n < detail::kParallelElements) return lane_sum(a, n);
  const std::size_t mid = n / 2 / 16 * 16;
  T part[2];
  auto half = [&](int h) { part[h] = h == 0 ? lane_sum(a, mid) : lane_sum(a + mid, n - mid); };
  detail::two_halves(half);
  return part[0] + part[1];
}

}  // namespace

namespace detail {

Tensor sum_values(const char* op, const Tensor& a, const std::vector<std::size_t>& axes,
                  const Shape& shape) {
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (a.numel() == 0) {  // xtensor's reducers must not see an empty array (null data)
      Tensor r_t = empty_for<T>(op, shape);
      xt::xarray<T>& r = r_t.data<T>();
      r.fill(T(0));
      return r_t;
    }
    if (axes.size() == a.dim()) {  // every axis: one sum
      Tensor r = empty_for<T>(op, shape);
      r.data<T>().data()[0] = sum_all(a.data<T>().data(), a.numel());
      return r;
    }
    if (BlockLayout l;
        block_layout(keepdims_shape(a.shape(), axes), a.shape(), &l) && summable_by_rows(l)) {
      Tensor r = empty_for<T>(op, shape);
      sum_rows(a.data<T>().data(), l.mid, l.inner, r.data<T>().data());
      return r;
    }
    return guard_alloc<T>(op, shape, [&] {
      xt::xarray<T> r = xt::sum(a.data<T>(), axes, xt::evaluation_strategy::immediate);
      r.reshape(shape);
      return Tensor(std::move(r));
    });
  });
}

}  // namespace detail

Tensor sum(const Tensor& a, const Axes& axes_in, bool keepdims) {
  detail::require_defined(a, "sum", "a");
  auto axes = resolve_axes(axes_in, a.dim(), "sum");
  Shape out_shape = reduced_shape(a.shape(), axes, keepdims);
  Tensor out = detail::sum_values("sum", a, axes, out_shape);
  return record("sum", std::move(out), {a}, Reads::Nothing,
                [kshape = keepdims_shape(a.shape(), axes)](const Tensor& g, GradSink& s) {
    s.add(0, broadcast_to(reshape(g, kshape), s.input(0).shape()));
  });
}

Tensor sum(const Tensor& a) { return sum(a, Axes{}, false); }

Tensor mean(const Tensor& a, const Axes& axes_in, bool keepdims) {
  detail::require_defined(a, "mean", "a");
  auto axes = resolve_axes(axes_in, a.dim(), "mean");
  std::size_t count = 1;
  for (auto ax : axes) count *= a.shape()[ax];
  if (count == 0) throw ShapeError(fmt::format("mean: reducing an empty tensor {}", shape_str(a.shape())));
  return mul(sum(a, axes_in, keepdims), 1.0 / static_cast<double>(count));
}

Tensor mean(const Tensor& a) { return mean(a, Axes{}, false); }

// ---- max ------------------------------------------------------------------------------------------

Tensor max(const Tensor& a, std::ptrdiff_t axis_in, bool keepdims) {
  detail::require_defined(a, "max", "a");
  std::size_t axis = normalize_axis(axis_in, a.dim(), "max");
  if (a.shape()[axis] == 0) throw ShapeError(fmt::format("max: empty axis {} in {}", axis_in, shape_str(a.shape())));
  const Shape& s = a.shape();
  std::size_t outer = detail::prod(s, 0, axis), len = s[axis], inner = detail::prod(s, axis + 1, s.size());
  Shape kshape = keepdims_shape(s, {axis});
  // Forward and a 0/1 mask marking the first maximum of each run (the gradient's destination).
  Tensor mask = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor m_t = detail::empty_for<T>("max", s);
    xt::xarray<T>& m = m_t.data<T>();
    m.fill(T(0));
    return m_t;
  });
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* x = a.data<T>().data();
    T* m = mask.data<T>().data();
    Tensor r_t = detail::empty_for<T>("max", kshape);
    xt::xarray<T>& r = r_t.data<T>();
    if (a.numel() == 0) {  // an empty axis after this one (inner = 0; fuzz_api found it): no run
      if (!keepdims) r.reshape(reduced_shape(s, {axis}, false));
      return r_t;
    }
    // The first maximum of each run (a NaN, the first NaN): a value replaces the best so far if
    // it is larger, or a NaN where the best is not.
    auto better = [](T v, T bv) { return v > bv || (std::isnan(v) && !std::isnan(bv)); };
    if (inner > 1) {
      // Along an axis that is not the last: a whole row of `inner` runs at a time, reading x in
      // order (one run at a time, the reads went `inner` elements apart: a (256, 1024) max over
      // axis 0 took 1.6× PyTorch's time, forward and backward; docs/performance.md, run CG).
      std::vector<std::size_t> best(inner);
      for (std::size_t o = 0; o < outer; ++o) {
        const T* xo = x + o * len * inner;
        T* bv = r.data() + o * inner;
        std::copy_n(xo, inner, bv);
        std::fill(best.begin(), best.end(), std::size_t(0));
        for (std::size_t k = 1; k < len; ++k)
          for (std::size_t i = 0; i < inner; ++i)
            if (better(xo[k * inner + i], bv[i])) bv[i] = xo[k * inner + i], best[i] = k;
        for (std::size_t i = 0; i < inner; ++i) m[(o * len + best[i]) * inner + i] = T(1);
      }
      if (!keepdims) r.reshape(reduced_shape(s, {axis}, false));
      return r_t;
    }
    // Along the last axis, each run is contiguous: first whether it holds a NaN and its largest
    // value (row_max, 16 lanes), then the first element that is a NaN or that largest value: the
    // element the scan above would keep, in passes that vectorise (the scan's conditional
    // update is one chain: 1.4× PyTorch's time for a (256, 1024) max over the last axis, run CG).
    for (std::size_t o = 0; o < outer; ++o) {
      const T* run = x + o * len;
      unsigned nan = 0;
      for (std::size_t k = 0; k < len; ++k) nan |= unsigned(run[k] != run[k]);
      std::size_t best = 0;
      if (nan) {
        while (!std::isnan(run[best])) ++best;
      } else {
        const T top = row_max(run, len);
        while (run[best] != top) ++best;
      }
      r.data()[o] = run[best];
      m[o * len + best] = T(1);
    }
    if (!keepdims) r.reshape(reduced_shape(s, {axis}, false));
    return r_t;
  });
  return record("max", std::move(out), {a}, [mask, kshape](const Tensor& g, GradSink& sk) {
    sk.add(0, mul(reshape(g, kshape), mask));
  });
}

// ---- softmax family -----------------------------------------------------------------------------

namespace {

/// The lines of `axis` in a row-major tensor: outer × inner lines of len elements, stride inner.
struct Lines {
  std::size_t outer, len, inner;
};
Lines lines_of(const Shape& s, std::size_t axis) {
  return {detail::prod(s, 0, axis), s[axis], detail::prod(s, axis + 1, s.size())};
}

/// f(base) for every line, base the flat index of its first element; the outer blocks split over
/// two cores from kParallelElements elements on (each line is computed on its own: the same bits).
template <class F>
void over_lines(const Lines& l, F&& f) {
  const std::size_t block = l.len * l.inner;
  if (block == 0) return;
  auto body = [&](std::size_t e0, std::size_t e1) {
    for (std::size_t b = e0; b < e1; b += block)
      for (std::size_t i = 0; i < l.inner; ++i) f(b + i);
  };
  detail::split_elements(l.outer * block, block, body);
}


}  // namespace

namespace {

/// For a contiguous row x of len elements: m its largest (row_max), e = exp(x − m) by `vexp` (the
/// vector math's exp), and Σ e over 16 lanes (lane_sum): softmax's and log_softmax's common part
/// along the last axis.
template <class T>
struct MaxAndSum {
  T max, sum;
};
template <class T, class Exp>
MaxAndSum<T> exp_of_shifted_row(const T* x, std::size_t len, Exp vexp, T* e) {
  const T m = row_max(x, len);
  for (std::size_t k = 0; k < len; ++k) e[k] = x[k] - m;
  vexp(e, e, len);
  return {m, lane_sum(e, len)};
}

}  // namespace

Tensor softmax(const Tensor& a, std::ptrdiff_t axis_in) {
  detail::require_defined(a, "softmax", "a");
  std::size_t axis = normalize_axis(axis_in, a.dim(), "softmax");
  const Lines lines = lines_of(a.shape(), axis);
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (a.numel() == 0) return detail::empty_for<T>("softmax", a.shape());  // nothing to normalise
    if (lines.inner > 1) {
      // Along an axis that is not the last, xtensor evaluates exp(x − m) on SIMD batches of the
      // contiguous inner elements (xsimd's exp, whose last bit can differ from std::exp's):
      // kept as it was, so that results do not change.
      return detail::guard_alloc<T>("softmax", a.shape(), [&] {
        const auto& x = a.data<T>();
        const auto keep = xt::keep_dims | xt::evaluation_strategy::immediate;
        xt::xarray<T> m = xt::amax(x, {axis}, keep);
        xt::xarray<T> e = xt::exp(x - m);
        xt::xarray<T> z = xt::sum(e, {axis}, keep);
        return Tensor(xt::xarray<T>(e / z));
      });
    }
    // Along the last axis, per row (contiguous): m its maximum, e = exp(x − m) by the vector
    // math of exp() (vector_math.hpp), z = Σ e over 16 lanes (lane_sum), e / z. Before, std::exp
    // one element at a time and one chain of additions: 2.9× PyTorch's time for a (256, 1024)
    // softmax forward and backward (docs/performance.md, session 33, run CG).
    Tensor r = detail::empty_for<T>("softmax", a.shape());
    const T* x = a.data<T>().data();
    T* y = r.data<T>().data();
    const auto vexp = detail::vector_math<T>().exp;
    over_lines(lines, [&](std::size_t base) {
      T* e = y + base;
      const T z = exp_of_shifted_row(x + base, lines.len, vexp, e).sum;
      for (std::size_t k = 0; k < lines.len; ++k) e[k] /= z;
    });
    return r;
  });
  return record("softmax", std::move(out), {a}, [w = WeakTensor(out), axis](const Tensor& g, GradSink& s) {
    // y ⊙ (g − Σ g⊙y); y is the output, held weakly (it owns this node: tape.hpp)
    Tensor y = w.lock();
    Tensor gy = mul(g, y);
    s.add(0, sub(gy, mul(y, sum(gy, {static_cast<std::ptrdiff_t>(axis)}, true))));
  });
}

Tensor log_softmax(const Tensor& a, std::ptrdiff_t axis_in) {
  detail::require_defined(a, "log_softmax", "a");
  std::size_t axis = normalize_axis(axis_in, a.dim(), "log_softmax");
  const Lines lines = lines_of(a.shape(), axis);
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r = detail::empty_for<T>("log_softmax", a.shape());
    if (a.numel() == 0) return r;
    const T* x = a.data<T>().data();
    xt::xarray<T>& shifted = r.data<T>();
    T* y = shifted.data();
    if (lines.inner == 1) {
      // Along the last axis, per row (contiguous): e = exp(x − m) by the vector math into the
      // result row, lse = log Σ e over 16 lanes (lane_sum), then (x − m) − lse over it. Before,
      // xtensor's lazy exp and one chain of additions: 1.3× PyTorch's time for (256, 1024)
      // forward and backward (docs/performance.md, session 33, run CG).
      const auto vexp = detail::vector_math<T>().exp;
      over_lines(lines, [&](std::size_t base) {
        T* row = y + base;
        const auto [m, z] = exp_of_shifted_row(x + base, lines.len, vexp, row);
        const T lse = std::log(z);
        for (std::size_t k = 0; k < lines.len; ++k) row[k] = (x[base + k] - m) - lse;
      });
      return r;
    }
    // shifted = x − max per line; lse = log Σ exp(shifted) per line; the result shifted − lse.
    // The subtractions are exact operations, whatever the loop: the same bits as the broadcast
    // expressions they replace (test SoftmaxLoops).
    over_lines(lines, [&](std::size_t base) {
      const std::size_t len = lines.len, st = lines.inner;
      const T m = line_max(x + base, len, st);
      for (std::size_t k = 0; k < len; ++k) y[base + k * st] = x[base + k * st] - m;
    });
    // (xtensor's reducer, as before: its order of additions over the lazy exp is its own, and
    // the printed results of the examples depend on those bits.)
    const xt::xarray<T> lse = xt::log(
        xt::sum(xt::exp(shifted), {axis}, xt::keep_dims | xt::evaluation_strategy::immediate));
    const T* l = lse.data();
    over_lines(lines, [&](std::size_t base) {
      const T v = l[base / (lines.len * lines.inner) * lines.inner + base % lines.inner];
      for (std::size_t k = 0; k < lines.len; ++k) y[base + k * lines.inner] -= v;
    });
    return r;
  });
  return record("log_softmax", std::move(out), {a}, [y = WeakTensor(out), axis](const Tensor& g, GradSink& s) {
    // g − softmax ⊙ Σ g
    s.add(0, sub(g, mul(exp(y.lock()), sum(g, {static_cast<std::ptrdiff_t>(axis)}, true))));
  });
}

// ---- losses ---------------------------------------------------------------------------------------

Tensor cross_entropy(const Tensor& logits, const std::vector<std::int64_t>& targets,
                     Reduction reduction) {
  detail::require_rank(logits, 2, "cross_entropy", "logits");
  std::size_t n = logits.shape()[0], c = logits.shape()[1];
  if (targets.size() != n)
    throw ShapeError(fmt::format("cross_entropy: logits {} need {} targets, got {}",
                                 shape_str(logits.shape()), n, targets.size()));
  for (std::size_t i = 0; i < n; ++i)
    if (targets[i] < 0 || static_cast<std::size_t>(targets[i]) >= c)
      throw IndexError(fmt::format("cross_entropy: target {} at position {} is out of range for {} classes",
                                   targets[i], i, c));
  if (n == 0 && reduction == Reduction::Mean)
    throw ShapeError("cross_entropy: mean over an empty batch");
  // Forward: −log_softmax picked at the targets, computed stably row by row. The softmax rows
  // are kept for the VJP (one exp per logit in all).
  Tensor probs;
  Tensor logp = dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* x = logits.data<T>().data();
    Tensor p_t = detail::empty_for<T>("cross_entropy", Shape{n, c});
    xt::xarray<T>& p = p_t.data<T>();
    std::vector<T> m(n);
    for (std::size_t i = 0; i < n; ++i) {
      const T* row = x + i * c;
      m[i] = row_max(row, c);
      for (std::size_t k = 0; k < c; ++k) p.data()[i * c + k] = row[k] - m[i];
    }
    detail::vector_math<T>().exp(p.data(), p.data(), n * c);  // one vectorised pass (vector_math.hpp)
    Tensor r_t = detail::empty_for<T>("cross_entropy", Shape{n});
    xt::xarray<T>& r = r_t.data<T>();
    // Each row's sum from +0 in order, as one loop per row added it (the losses and gradients of
    // the documented training runs depend on these bits), 8 rows at a time (sum_rows): with one
    // row at a time, a (256, 1024) cross-entropy took 502 µs forward and backward, 274 µs now
    // (docs/performance.md, session 33, run CG).
    std::vector<T> zs(n);
    if (n > 0) sum_rows(p.data(), n, c, zs.data());  // (c > 0: a target is in range)
    for (std::size_t i = 0; i < n; ++i) {
      T* e = p.data() + i * c;
      const T z = zs[i];
      r(i) = -(x[i * c + targets[i]] - m[i] - std::log(z));
      for (std::size_t k = 0; k < c; ++k) e[k] /= z;
    }
    probs = p_t;
    return r_t;
  });
  double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(n) : 1.0;
  Tensor out = reduction == Reduction::None ? logp : dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T total = 0;
    for (auto v : logp.data<T>()) total += v;
    return Tensor(xt::xarray<T>(T(total * scale)));
  });
  return record("cross_entropy", std::move(out), {logits},
                [logits, probs, targets, scale, reduction, c](const Tensor& g, GradSink& s) {
                  // d/dlogits = (softmax − onehot(targets)) · g · scale
                  if (s.create_graph()) {  // differentiable: built from tapegrad ops
                    Tensor p = sub(softmax(logits, 1), one_hot(targets, c, logits.dtype()));
                    Tensor gs = reduction == Reduction::None ? reshape(g, std::vector<std::ptrdiff_t>{-1, 1}) : g;
                    s.add(0, mul(mul(p, gs), scale));
                    return;
                  }
                  // The same from the saved softmax, in one pass (no one-hot or product tensors).
                  s.add(0, dispatch(logits.dtype(), [&](auto tag) {
                    using T = decltype(tag);
                    const std::size_t n = logits.shape()[0];
                    const T* gv = g.data<T>().data();
                    xt::xarray<T> d = probs.data<T>();
                    for (std::size_t i = 0; i < n; ++i) {
                      T* out = d.data() + i * c;
                      const T w = (reduction == Reduction::None ? gv[i] : gv[0]) * T(scale);
                      for (std::size_t k = 0; k < c; ++k) out[k] *= w;
                      out[targets[i]] -= w;
                    }
                    return Tensor(std::move(d));
                  }));
                });
}

Tensor mse(const Tensor& a, const Tensor& b, Reduction reduction) {
  detail::require_defined(a, "mse", "prediction");
  detail::require_defined(b, "mse", "target");
  // PyTorch warns and broadcasts; a (8, 1) prediction against an (8) target would silently
  // compare every pair (8 × 8). Refuse instead: the shapes must be equal.
  if (a.shape() != b.shape())
    throw ShapeError(fmt::format("mse: prediction {} and target {} differ in shape; reshape one of them "
                                 "(no broadcasting between prediction and target)",
                                 shape_str(a.shape()), shape_str(b.shape())));
  Tensor d = sub(a, b);
  Tensor sq = mul(d, d);
  switch (reduction) {
    case Reduction::Mean: return mean(sq);
    case Reduction::Sum: return sum(sq);
    default: return sq;
  }
}

}  // namespace tapegrad
