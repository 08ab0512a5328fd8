// tapegrad — gradient checking: the tape's gradients against central differences.
//
//   auto r = gradcheck([](const std::vector<Tensor>& x) { return sum(tanh(x[0]) * x[1]); },
//                      {a, b});
//   if (!r.passed) std::cerr << r.report();
//
// For each input that requires grad, gradcheck compares the analytic gradient g (one backward)
// with the numeric one g̃ (central differences, (L(x+ε) − L(x−ε)) / 2ε per element) and reports
//   relative error = ‖g − g̃‖ / (‖g‖ + ‖g̃‖)      (the course's formula; 0 when both are 0)
// and the worst element (index, analytic, numeric). A non-scalar f is reduced to a scalar with a
// fixed random projection L = Σ f(x) ⊙ w.
//
// Defaults (float64): ε = 1e-6, pass when every relative error < 1e-7. In float32, central
// differences lose about half the digits: gradcheck warns, and unless you set them it uses
// ε = 1e-3 and tolerance 1e-2. gradcheck evaluates f many times and clears the thread's tape.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xarray.hpp>

#include "framework/tensor.hpp"

namespace tapegrad {

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  std::optional<double> eps;        ///< finite-difference step (default 1e-6; 1e-3 in float32)
  std::optional<double> tolerance;  ///< pass when relative error < this (default 1e-7; 1e-2 in float32)
  bool fast = false;                ///< check random directional derivatives vᵀJu instead of every element
  std::size_t directions = 4;       ///< directions per input in fast mode
  std::uint64_t seed = 0;           ///< for the projection w and the fast-mode directions
  std::vector<std::string> names;   ///< names for the inputs in the report (default: tensor names or "input i")
};

/// The result for one input.
struct InputCheck {
  std::string name;
  Shape shape;
  double relative_error = 0;
  std::vector<std::size_t> worst_index;  ///< multi-index of the worst element (direction index in fast mode)
  double analytic = 0, numeric = 0;      ///< at the worst element
  bool passed = true;
  bool fast = false;  ///< fast mode: worst_index[0] numbers a random direction, not an element
};

struct GradcheckResult {
  bool passed = true;
  double max_relative_error = 0;
  double eps = 0, tolerance = 0;
  std::vector<InputCheck> inputs;
  std::vector<std::string> warnings;
  /// A table: input, shape, relative error, worst element with analytic and numeric values.
  std::string report() const;
};

/// Checks the gradients of f at `inputs` (those with requires_grad; the others are constants).
GradcheckResult gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

/// Checks second derivatives: gradcheck of x ↦ Σ_i ⟨∂L/∂x_i, v_i⟩ with the gradient computed by
/// a create_graph backward and fixed random v_i (torch.autograd.gradgradcheck).
GradcheckResult gradgradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

/// Full Jacobians of a small f: Rⁿ → Rᵐ, analytic (one backward per output) and numeric.
struct JacobianCheck {
  xt::xarray<double> analytic, numeric;  ///< (m, n): m outputs, n = all inputs' elements
  double max_abs_error = 0;
  bool passed = true;
};
JacobianCheck jacobian_check(const TensorFunction& f, const std::vector<Tensor>& inputs,
                             double eps = 1e-6, double tolerance = 1e-7);

}  // namespace tapegrad
