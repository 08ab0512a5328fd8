// tapegrad — index ops: argmax/argmin, top-k, multinomial sampling, masked fill (see ops.hpp).
// Indices carry no gradient; topk's values and masked_fill are built from differentiable ops
// (gather, where), so they need no VJP of their own.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "framework/xtensor_config.hpp"  // before any xtensor header
#include "framework/dispatch.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

namespace {

/// a as (outer, n, inner) around `axis`: the element (o, j, i) is at flat (o·n + j)·inner + i.
struct AxisView {
  std::size_t outer = 1, n = 1, inner = 1, axis = 0;
};

AxisView axis_view(const Tensor& a, std::ptrdiff_t axis, const char* op) {
  detail::require_defined(a, op, "a");
  if (a.dim() == 0) throw ShapeError(fmt::format("{}: needs at least one dimension, got a 0-d tensor", op));
  AxisView v;
  v.axis = normalize_axis(axis, a.dim(), op);
  for (std::size_t d = 0; d < a.dim(); ++d) {
    if (d < v.axis) v.outer *= a.shape()[d];
    else if (d > v.axis) v.inner *= a.shape()[d];
  }
  v.n = a.shape()[v.axis];
  return v;
}

Shape reduced_shape(const Tensor& a, std::size_t axis, bool keepdims, std::size_t keep = 1) {
  Shape s = a.shape();
  if (keepdims || keep != 1) s[axis] = keep;
  else s.erase(s.begin() + std::ptrdiff_t(axis));
  return s;
}

IndexTensor arg_extreme(const Tensor& a, std::ptrdiff_t axis, bool keepdims, bool largest, const char* op) {
  AxisView v = axis_view(a, axis, op);
  if (v.n == 0) throw ShapeError(fmt::format("{}: axis {} of {} is empty", op, axis, shape_str(a.shape())));
  const xt::xarray<double> x = a.to_f64();
  const double* p = x.data();
  IndexTensor out;
  out.shape = reduced_shape(a, v.axis, keepdims);
  out.values.resize(v.outer * v.inner);
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < v.inner; ++i) {
      std::size_t best = 0;
      double bv = p[(o * v.n) * v.inner + i];
      for (std::size_t j = 1; j < v.n && !std::isnan(bv); ++j) {
        double x_j = p[(o * v.n + j) * v.inner + i];
        if (std::isnan(x_j) || (largest ? x_j > bv : x_j < bv)) best = j, bv = x_j;
      }
      out.values[o * v.inner + i] = std::int64_t(best);
    }
  return out;
}

}  // namespace

IndexTensor argmax(const Tensor& a, std::ptrdiff_t axis, bool keepdims) {
  return arg_extreme(a, axis, keepdims, true, "argmax");
}

IndexTensor argmin(const Tensor& a, std::ptrdiff_t axis, bool keepdims) {
  return arg_extreme(a, axis, keepdims, false, "argmin");
}

TopK topk(const Tensor& a, std::size_t k, std::ptrdiff_t axis, bool largest) {
  AxisView v = axis_view(a, axis, "topk");
  if (k > v.n)
    throw IndexError(fmt::format("topk: k = {} is larger than axis {} of {} ({} entries)", k, axis,
                                 shape_str(a.shape()), v.n));
  const xt::xarray<double> x = a.to_f64();
  const double* p = x.data();
  Shape out_shape = reduced_shape(a, v.axis, true, k);
  xt::xarray<std::int64_t> index = xt::xarray<std::int64_t>::from_shape(out_shape);
  std::vector<std::size_t> order(v.n);
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < v.inner; ++i) {
      auto val = [&](std::size_t j) { return p[(o * v.n + j) * v.inner + i]; };
      std::iota(order.begin(), order.end(), std::size_t(0));
      // NaN first when largest (PyTorch's order), stable on ties.
      std::stable_sort(order.begin(), order.end(), [&](std::size_t l, std::size_t r) {
        double x_l = val(l), x_r = val(r);
        if (std::isnan(x_l) || std::isnan(x_r)) return largest ? std::isnan(x_l) && !std::isnan(x_r)
                                                               : !std::isnan(x_l) && std::isnan(x_r);
        return largest ? x_l > x_r : x_l < x_r;
      });
      for (std::size_t j = 0; j < k; ++j) index.data()[(o * k + j) * v.inner + i] = std::int64_t(order[j]);
    }
  TopK out;
  out.values = gather(a, axis, index);
  out.indices.shape = out_shape;
  out.indices.values.assign(index.begin(), index.end());
  return out;
}

IndexTensor multinomial(const Tensor& probs, std::size_t num_samples, bool replacement, Generator& gen) {
  detail::require_defined(probs, "multinomial", "probs");
  if (probs.dim() != 1 && probs.dim() != 2)
    throw ShapeError(fmt::format("multinomial: probs must be (V) or (N, V), got {}", shape_str(probs.shape())));
  const std::size_t rows = probs.dim() == 2 ? probs.size(0) : 1, V = probs.shape().back();
  if (V == 0) throw ShapeError(fmt::format("multinomial: no categories in {}", shape_str(probs.shape())));
  const xt::xarray<double> x = probs.to_f64();
  IndexTensor out;
  out.shape = probs.dim() == 2 ? Shape{rows, num_samples} : Shape{num_samples};
  out.values.reserve(rows * num_samples);
  for (std::size_t r = 0; r < rows; ++r) {
    std::vector<double> w(x.data() + r * V, x.data() + (r + 1) * V);
    std::size_t positive = 0;
    for (std::size_t j = 0; j < V; ++j) {
      if (!std::isfinite(w[j]) || w[j] < 0)
        throw ValueError(fmt::format("multinomial: probability {} of row {} is {}; they must be finite and >= 0",
                                     j, r, w[j]));
      positive += w[j] > 0;
    }
    if (positive == 0) throw ValueError(fmt::format("multinomial: row {} sums to 0", r));
    if (!replacement && num_samples > positive)
      throw ValueError(fmt::format("multinomial: {} samples without replacement from row {} with only {} "
                                   "non-zero probabilities", num_samples, r, positive));
    for (std::size_t s = 0; s < num_samples; ++s) {
      double total = std::accumulate(w.begin(), w.end(), 0.0), u = gen.uniform() * total, acc = 0;
      std::size_t j = 0;
      while (j + 1 < V && (w[j] == 0 || (acc += w[j]) <= u)) ++j;
      while (w[j] == 0) --j;  // rounding at the top end: the last category with weight
      out.values.push_back(std::int64_t(j));
      if (!replacement) w[j] = 0;
    }
  }
  return out;
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  detail::require_defined(a, "masked_fill", "a");
  detail::require_defined(mask, "masked_fill", "mask");
  if (broadcast_shapes(mask.shape(), a.shape(), "masked_fill") != a.shape())
    throw ShapeError(fmt::format("masked_fill: mask {} does not broadcast to a's shape {}",
                                 shape_str(mask.shape()), shape_str(a.shape())));
  return where(mask, full(Shape{}, value, a.dtype()), a);
}

}  // namespace tapegrad
