// tapegrad — matmul through BLAS (framework/blas.hpp: cblas_sgemm / cblas_dgemm), transposes as
// BLAS flags.
//
// C = op(A) · op(B) where op(X) = Xᵀ when the flag is set. The VJP is again a pair of matmuls
// with flags, so no transposed copy is ever made:
//   dA = g · op(B)ᵀ      (or op(B) · gᵀ when A was transposed)
//   dB = op(A)ᵀ · g      (or gᵀ · op(A) when B was transposed)
// linear(x, W, b) = x Wᵀ + b is the same product with the bias as the GEMM's starting C.
#include <algorithm>

#include <fmt/format.h>

#include "framework/blas.hpp"
#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"

namespace tapegrad {

using detail::dispatch;

namespace {

std::string operand(const Tensor& t, bool transposed) {
  return shape_str(t.shape()) + (transposed ? "ᵀ" : "");
}

/// 2-D or batched product; the shapes are already checked.
Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  bool batched = a.dim() == 3;
  std::size_t batch = batched ? a.shape()[0] : 1;
  std::size_t ar = a.shape()[a.dim() - 2], ac = a.shape()[a.dim() - 1];
  std::size_t br = b.shape()[b.dim() - 2], bc = b.shape()[b.dim() - 1];
  std::size_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  Shape out_shape = batched ? Shape{batch, m, n} : Shape{m, n};
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor c_t = detail::empty_for<T>("matmul", out_shape);
    xt::xarray<T>& c = c_t.data<T>();
    if (m == 0 || n == 0) return c_t;
    if (k == 0) {
      c.fill(T(0));
      return c_t;
    }
    const T* pa = a.data<T>().data();
    const T* pb = b.data<T>().data();
    T* pc = c.data();
    if (batched && b.dim() == 2 && !ta) {
      // One GEMM over all batch·m rows.
      detail::gemm(false, tb, batch * m, n, k, pa, ac, pb, bc, T(0), pc, n);
    } else {
      std::size_t sa = ar * ac, sb = b.dim() == 3 ? br * bc : 0;
      for (std::size_t i = 0; i < batch; ++i)
        detail::gemm(ta, tb, m, n, k, pa + i * sa, ac, pb + i * sb, bc, T(0), pc + i * m * n, n);
    }
    return c_t;
  });
}

/// dL/db when a (Bt, M, K) multiplies a shared 2-D b: one GEMM over the Bt·M rows, read in
/// place (a row-major (Bt, M, K) array is the (Bt·M, K) matrix). g is dL/dc (Bt, M, N).
///   b (K, N):  db = a₂ᵀ · g₂       b (N, K) used transposed:  db = g₂ᵀ · a₂
Tensor shared_operand_grad(const Tensor& a, const Tensor& g, bool tb) {
  const std::size_t rows = a.shape()[0] * a.shape()[1], k = a.shape()[2], n = g.shape()[2];
  return dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor d_t = detail::empty_for<T>("matmul", tb ? Shape{n, k} : Shape{k, n});
    xt::xarray<T>& d = d_t.data<T>();
    if (tb)
      detail::gemm(true, false, n, k, rows, g.data<T>().data(), n, a.data<T>().data(), k, T(0), d.data(), k);
    else
      detail::gemm(true, false, k, n, rows, a.data<T>().data(), k, g.data<T>().data(), n, T(0), d.data(), n);
    return d_t;
  });
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  detail::require_same_dtype(a, b, "matmul");
  if (a.dim() < 2 || a.dim() > 3 || b.dim() < 2 || b.dim() > 3 || (a.dim() == 2 && b.dim() == 3))
    throw ShapeError(fmt::format(
        "matmul: supports (M,K)@(K,N), (B,M,K)@(K,N) and (B,M,K)@(B,K,N); got {} @ {}",
        shape_str(a.shape()), shape_str(b.shape())));
  if (a.dim() == 3 && b.dim() == 2 && ta)
    throw ShapeError(fmt::format("matmul: a transposed batched a {} needs a batched b, got {}",
                                 shape_str(a.shape()), shape_str(b.shape())));
  std::size_t k_a = a.shape()[a.dim() - (ta ? 2 : 1)];
  std::size_t k_b = b.shape()[b.dim() - (tb ? 1 : 2)];
  if (k_a != k_b)
    throw ShapeError(fmt::format("matmul: inner dimensions differ: {} @ {} ({} vs {})",
                                 operand(a, ta), operand(b, tb), k_a, k_b));
  if (a.dim() == 3 && b.dim() == 3 && a.shape()[0] != b.shape()[0])
    throw ShapeError(fmt::format("matmul: batch sizes differ: {} @ {}", shape_str(a.shape()),
                                 shape_str(b.shape())));
  {
    // The result's size, checked before anything is allocated (every dim then fits BLAS's int).
    const std::size_t m = a.shape()[a.dim() - (ta ? 1 : 2)], n = b.shape()[b.dim() - (tb ? 2 : 1)];
    Shape out_shape = a.dim() == 3 ? Shape{a.shape()[0], m, n} : Shape{m, n};
    detail::checked_numel("matmul", out_shape);
  }
  Tensor out = matmul_forward(a, b, ta, tb);
  return record("matmul", std::move(out), {a, b}, Reads::Inputs,
                [ta, tb](const Tensor& g, GradSink& s) {
    const Tensor &a = s.input(0), &b = s.input(1);
    if (s.needs(0) && s.needs(1) && a.dim() == 2 && b.dim() == 2) {
      // Both gradients, added in place where they can be; independent, so they may run at once.
      using P = GradSink::Product;
      s.add_matmuls(ta ? P{0, b, tb, g, true} : P{0, g, false, b, !tb},
                    tb ? P{1, g, true, a, ta} : P{1, a, !ta, g, false});
      return;
    }
    if (s.needs(0)) {
      if (a.dim() == 2 && b.dim() == 2)  // added in place into a gradient already there
        ta ? s.add_matmul(0, b, tb, g, true) : s.add_matmul(0, g, false, b, !tb);
      else
        s.add(0, ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb));
    }
    if (s.needs(1)) {
      if (a.dim() == 3 && b.dim() == 2 && !s.create_graph()) {
        s.add(1, shared_operand_grad(a, g, tb));
      } else if (a.dim() == 3 && b.dim() == 2) {
        // b is shared by every batch: flatten the batch into rows so one GEMM sums over it.
        Tensor a2 = reshape(a, std::vector<std::ptrdiff_t>{-1, std::ptrdiff_t(a.shape()[2])});
        Tensor g2 = reshape(g, std::vector<std::ptrdiff_t>{-1, std::ptrdiff_t(g.shape()[2])});
        s.add(1, tb ? matmul(g2, a2, true, false) : matmul(a2, g2, true, false));
      } else if (a.dim() == 2) {  // a weight used at every step: its gradients added in place
        tb ? s.add_matmul(1, g, true, a, ta) : s.add_matmul(1, a, !ta, g, false);
      } else {
        s.add(1, tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false));
      }
    }
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::require_defined(x, "linear", "x");
  detail::require_defined(weight, "linear", "weight");
  if (!bias.defined()) return matmul(x, weight, false, true);
  if (x.dim() != 2) return add(matmul(x, weight, false, true), bias);  // (B, T, in) and others
  detail::require_same_dtype(x, weight, "linear");
  detail::require_same_dtype(x, bias, "linear");
  if (weight.dim() != 2 || bias.dim() != 1 || bias.shape()[0] != weight.shape()[0] ||
      weight.shape()[1] != x.shape()[1])
    throw ShapeError(fmt::format(
        "linear: expects x (N, in), weight (out, in), bias (out); got x {}, weight {}, bias {}",
        shape_str(x.shape()), shape_str(weight.shape()), shape_str(bias.shape())));
  const std::size_t n = x.shape()[0], in = x.shape()[1], out = weight.shape()[0];
  detail::checked_numel("linear", Shape{n, out});
  Tensor y = dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor y_t = detail::empty_for<T>("linear", Shape{n, out});
    T* py = y_t.data<T>().data();
    const T* pb = bias.data<T>().data();
    for (std::size_t i = 0; i < n; ++i) std::copy_n(pb, out, py + i * out);  // every row: b
    if (n != 0 && out != 0 && in != 0)
      detail::gemm(false, true, n, out, in, x.data<T>().data(), in, weight.data<T>().data(), in,
                   T(1), py, out);  // y += x Wᵀ
    return y_t;
  });
  return record("linear", std::move(y), {x, weight, bias}, Reads::Inputs,
                [](const Tensor& g, GradSink& s) {
    const Tensor &x = s.input(0), &w = s.input(1);
    using P = GradSink::Product;
    if (s.needs(0) && s.needs(1)) {  // dx = g W, dW = gᵀ x: independent, so they may run at once
      s.add_matmuls(P{0, g, false, w, false}, P{1, g, true, x, false});
    } else {
      if (s.needs(0)) s.add_matmul(0, g, false, w, false);
      if (s.needs(1)) s.add_matmul(1, g, true, x, false);
    }
    if (s.needs(2)) s.add_sum_to(2, g);  // db = Σ over rows of g
  });
}

}  // namespace tapegrad
