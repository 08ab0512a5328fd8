// tapegrad — gradient checking by central differences.
#include "framework/gradcheck.hpp"

#include <cmath>

#include <fmt/format.h>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"

namespace tapegrad {

namespace {

/// Sets element i of a leaf's data (bypassing autograd).
void set_element(const Tensor& t, std::size_t i, double value) {
  detail::dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const_cast<Tensor&>(t).data<T>().data()[i] = static_cast<T>(value);
  });
}

/// f reduced to a scalar: itself if one element, else Σ f ⊙ w with a fixed random w.
struct Scalarized {
  const TensorFunction& f;
  std::uint64_t seed;
  Tensor w;
  Tensor operator()(const std::vector<Tensor>& x) {
    Tensor y = f(x);
    if (!y.defined()) throw ValueError("gradcheck: the function returned an undefined Tensor");
    if (y.numel() == 1) return sum(y);
    if (!w.defined() || w.shape() != y.shape()) {
      Generator gen(seed + 7919);
      w = randn(y.shape(), gen, y.dtype());
    }
    return sum(mul(y, w));
  }
};

double eval_no_grad(Scalarized& L, const std::vector<Tensor>& x) {
  NoGradGuard guard;
  return L(x).item();
}

std::vector<std::size_t> unravel(std::size_t flat, const Shape& shape) {
  std::vector<std::size_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return idx;
}

std::string input_name(const GradcheckOptions& o, const std::vector<Tensor>& in, std::size_t i) {
  if (i < o.names.size()) return o.names[i];
  if (!in[i].name().empty()) return in[i].name();
  return fmt::format("input {}", i);
}

/// Fills `check` from analytic and numeric vectors.
void compare(const std::vector<double>& g, const std::vector<double>& n, InputCheck& check,
             const Shape& shape, bool flat_index) {
  double diff = 0, ng = 0, nn = 0, worst = -1;
  for (std::size_t k = 0; k < g.size(); ++k) {
    double d = g[k] - n[k];
    diff += d * d, ng += g[k] * g[k], nn += n[k] * n[k];
    if (std::fabs(d) > worst || std::isnan(d)) {
      worst = std::isnan(d) ? INFINITY : std::fabs(d);
      check.worst_index = flat_index ? std::vector<std::size_t>{k} : unravel(k, shape);
      check.analytic = g[k];
      check.numeric = n[k];
    }
  }
  double denom = std::sqrt(ng) + std::sqrt(nn);
  check.relative_error = denom == 0 ? (diff == 0 ? 0 : INFINITY) : std::sqrt(diff) / denom;
  if (std::isnan(check.relative_error)) check.relative_error = INFINITY;
}

}  // namespace

GradcheckResult gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opt) {
  GradcheckResult result;
  bool f32 = false;
  for (const Tensor& x : inputs) {
    detail::require_defined(x, "gradcheck", "inputs[i]");
    if (x.requires_grad() && !x.is_leaf())
      throw ValueError("gradcheck: inputs must be leaves (use detach().requires_grad_())");
    f32 = f32 || x.dtype() == DType::Float32;
  }
  result.eps = opt.eps.value_or(f32 ? 1e-3 : 1e-6);
  result.tolerance = opt.tolerance.value_or(f32 ? 1e-2 : 1e-7);
  if (f32) {
    result.warnings.push_back(
        "gradcheck: running in float32: central differences keep only ~3 significant digits; "
        "tolerance relaxed to " + fmt::format("{:g}", result.tolerance) +
        ". Check in float64 for a real test.");
    fmt::print(stderr, "warning: {}\n", result.warnings.back());
  }
  Scalarized L{f, opt.seed, Tensor()};

  // Analytic gradients: one backward.
  std::vector<Tensor> analytic;
  {
    std::vector<Tensor> saved;
    for (const Tensor& x : inputs) saved.push_back(x.grad()), const_cast<Tensor&>(x).zero_grad();
    Tensor loss = L(inputs);
    if (loss.requires_grad()) loss.backward();
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      analytic.push_back(inputs[i].grad());
      const_cast<Tensor&>(inputs[i]).set_grad(saved[i]);
    }
  }

  Generator gen(opt.seed);
  double eps = result.eps;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    InputCheck check;
    check.fast = opt.fast;
    check.name = input_name(opt, inputs, i);
    check.shape = x.shape();
    std::size_t n = x.numel();
    std::vector<double> g(n, 0.0), num;
    if (analytic[i].defined())
      for (std::size_t k = 0; k < n; ++k) g[k] = analytic[i].at(k);
    if (!opt.fast) {
      num.resize(n);
      for (std::size_t k = 0; k < n; ++k) {
        double original = x.at(k);
        set_element(x, k, original + eps);
        double plus = eval_no_grad(L, inputs);
        set_element(x, k, original - eps);
        double minus = eval_no_grad(L, inputs);
        set_element(x, k, original);
        num[k] = (plus - minus) / (2 * eps);
      }
      compare(g, num, check, x.shape(), false);
    } else {
      // vᵀJu: directional derivatives along random unit directions u.
      std::vector<double> ga, gn;
      Tensor original = x.detach();
      for (std::size_t d = 0; d < opt.directions; ++d) {
        std::vector<double> u(n);
        double norm = 0;
        for (auto& v : u) v = gen.normal(), norm += v * v;
        norm = std::sqrt(norm);
        double dot = 0;
        for (std::size_t k = 0; k < n; ++k) u[k] /= norm, dot += g[k] * u[k];
        auto shift = [&](double s) {
          for (std::size_t k = 0; k < n; ++k) set_element(x, k, original.at(k) + s * u[k]);
        };
        shift(eps);
        double plus = eval_no_grad(L, inputs);
        shift(-eps);
        double minus = eval_no_grad(L, inputs);
        detail::dispatch(x.dtype(), [&](auto tag) {  // restore exactly
          using T = decltype(tag);
          const_cast<Tensor&>(x).data<T>() = original.data<T>();
        });
        ga.push_back(dot);
        gn.push_back((plus - minus) / (2 * eps));
      }
      compare(ga, gn, check, x.shape(), true);
    }
    check.passed = check.relative_error < result.tolerance;
    result.passed = result.passed && check.passed;
    result.max_relative_error = std::max(result.max_relative_error, check.relative_error);
    result.inputs.push_back(std::move(check));
  }
  tape().clear();
  return result;
}

GradcheckResult gradgradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& opt) {
  std::vector<Tensor> v;
  Generator gen(opt.seed + 104729);
  for (const Tensor& x : inputs) v.push_back(randn(x.shape(), gen, x.dtype()));
  TensorFunction first_derivative = [&](const std::vector<Tensor>& x) {
    GradModeGuard on(true);  // gradients of gradients need a recorded graph, even when probed
    Scalarized L{f, opt.seed, Tensor()};
    Tensor loss = L(x);
    std::vector<Tensor> wrt;
    std::vector<std::size_t> where;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i].requires_grad()) wrt.push_back(x[i]), where.push_back(i);
    Tensor total = scalar(0.0, loss.dtype());
    if (!loss.requires_grad()) return total;
    std::vector<Tensor> g = grad(loss, wrt, Tensor(), true, true);
    for (std::size_t k = 0; k < g.size(); ++k)
      if (g[k].defined()) total = add(total, sum(mul(g[k], v[where[k]])));
    return total;
  };
  GradcheckResult r = gradcheck(first_derivative, inputs, opt);
  tape().clear();
  return r;
}

JacobianCheck jacobian_check(const TensorFunction& f, const std::vector<Tensor>& inputs,
                             double eps, double tolerance) {
  std::size_t n = 0;
  for (const Tensor& x : inputs) n += x.requires_grad() ? x.numel() : 0;
  Tensor y0;
  {
    NoGradGuard guard;
    y0 = f(inputs);
  }
  std::size_t m = y0.numel();
  JacobianCheck r;
  r.analytic = xt::zeros<double>({m, n});
  r.numeric = xt::zeros<double>({m, n});
  std::vector<Tensor> wrt;
  for (const Tensor& x : inputs)
    if (x.requires_grad()) wrt.push_back(x);
  // Analytic: one backward per output element, seeded with a unit vector.
  for (std::size_t row = 0; row < m; ++row) {
    Tensor y = f(inputs);
    Tensor seed = zeros_like(y);
    set_element(seed, row, 1.0);
    std::vector<Tensor> g = grad(y, wrt, seed);
    std::size_t col = 0;
    for (std::size_t k = 0; k < wrt.size(); ++k)
      for (std::size_t e = 0; e < wrt[k].numel(); ++e, ++col)
        r.analytic(row, col) = g[k].defined() ? g[k].at(e) : 0.0;
  }
  // Numeric: one column per input element.
  std::size_t col = 0;
  for (const Tensor& x : wrt)
    for (std::size_t e = 0; e < x.numel(); ++e, ++col) {
      NoGradGuard guard;
      double original = x.at(e);
      set_element(x, e, original + eps);
      xt::xarray<double> plus = f(inputs).to_f64();
      set_element(x, e, original - eps);
      xt::xarray<double> minus = f(inputs).to_f64();
      set_element(x, e, original);
      for (std::size_t row = 0; row < m; ++row)
        r.numeric(row, col) = (plus.data()[row] - minus.data()[row]) / (2 * eps);
    }
  for (std::size_t i = 0; i < r.analytic.size(); ++i)
    r.max_abs_error = std::max(r.max_abs_error, std::fabs(r.analytic.data()[i] - r.numeric.data()[i]));
  r.passed = r.max_abs_error < tolerance;
  tape().clear();
  return r;
}

std::string GradcheckResult::report() const {
  std::string out = fmt::format("gradcheck (eps={:g}, tolerance={:g}): {}\n", eps, tolerance,
                                passed ? "PASSED" : "FAILED");
  for (const auto& w : warnings) out += "  warning: " + w + "\n";
  out += fmt::format("  {:<22} {:<14} {:>11}  {:<16} {:>15} {:>15}\n", "input", "shape",
                     "rel. error", "worst at", "analytic", "numeric");
  for (const InputCheck& c : inputs) {
    std::string at = "(";
    for (std::size_t k = 0; k < c.worst_index.size(); ++k) at += (k ? ", " : "") + std::to_string(c.worst_index[k]);
    at += ")";
    if (c.fast && !c.worst_index.empty())  // vᵀJu mode compares directions, not elements
      at = fmt::format("direction #{}", c.worst_index[0]);
    out += fmt::format("  {:<22} {:<14} {:>11.3e}  {:<16} {:>15.8g} {:>15.8g}  {}\n", c.name,
                       shape_str(c.shape), c.relative_error, at, c.analytic, c.numeric,
                       c.passed ? "ok" : "FAIL");
  }
  return out;
}

}  // namespace tapegrad
