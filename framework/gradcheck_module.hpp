// tapegrad — gradcheck of a whole Module: every parameter, by name, with its relative error.
//
//   GRUCell cell(GRUCellOptions(3, 4));  cell.to(DType::Float64);
//   auto r = gradcheck_module(cell, [&] { return sum(cell(x, h) * w); });
//   std::cout << r.report();
//
//   gradcheck_module (eps=1e-06, tolerance=1e-07): PASSED
//     parameter        shape    mode    rel. error  worst at   analytic   numeric
//     weight_ih        (12, 3)  exact    3.1e-10    (7, 2)     ...
//
// loss_fn recomputes the loss from the module's current parameters (it takes no arguments: the
// parameters are perturbed in place). Each parameter is checked like gradcheck checks an input:
// every element by central differences ("exact"), or, for parameters with more than
// `fast_threshold` elements (or all of them with fast = true), `directions` random directional
// derivatives vᵀJu ("fast": 2 loss evaluations per direction instead of 2 per element).
// Parameters' .grad are left as they were. Check in float64 (module.to(DType::Float64)):
// float32 runs warn and relax the tolerance, as gradcheck does.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "framework/gradcheck.hpp"
#include "framework/module.hpp"

namespace tapegrad {

struct ModuleCheckOptions {
  std::optional<double> eps;        ///< as GradcheckOptions (default 1e-6; 1e-3 in float32)
  std::optional<double> tolerance;  ///< as GradcheckOptions (default 1e-7; 1e-2 in float32)
  std::optional<bool> fast;  ///< unset: automatic (by size); true / false: for every parameter
  std::size_t fast_threshold = 4096;  ///< automatic fast mode above this many elements
  std::size_t directions = 8;         ///< directions per parameter in fast mode
  std::uint64_t seed = 0;
};

/// One parameter's result: gradcheck's InputCheck plus the mode it was checked in.
struct ParameterCheck : InputCheck {
  bool fast = false;  ///< worst_index is then a direction number, not an element
};

struct ModuleCheckResult {
  bool passed = true;
  double max_relative_error = 0;
  double eps = 0, tolerance = 0;
  std::vector<ParameterCheck> parameters;  ///< in named_parameters() order
  std::vector<std::string> warnings;
  /// The check of parameter `name` (ValueError if there is none).
  const ParameterCheck& operator[](const std::string& name) const;
  /// A table: parameter, shape, mode, relative error, worst element, analytic and numeric.
  std::string report() const;
};

/// Checks d loss_fn() / d p for every parameter p of `module` (see the file comment).
ModuleCheckResult gradcheck_module(Module& module, const std::function<Tensor()>& loss_fn,
                                   const ModuleCheckOptions& options = {});

}  // namespace tapegrad
