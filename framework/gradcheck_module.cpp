// tapegrad — gradcheck of a whole Module (see gradcheck_module.hpp): the parameters, split into
// an exact group and a fast group, each checked by one gradcheck call.
#include "framework/gradcheck_module.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace tapegrad {

ModuleCheckResult gradcheck_module(Module& module, const std::function<Tensor()>& loss_fn,
                                   const ModuleCheckOptions& opt) {
  NamedTensors params = module.named_parameters();
  if (params.empty()) throw ValueError("gradcheck_module: the module has no parameters");
  // The checks run backward passes: keep the caller's gradients and put them back at the end.
  std::vector<Tensor> saved;
  for (auto& [name, p] : params) saved.push_back(p.grad());
  auto restore = [&] {
    for (std::size_t i = 0; i < params.size(); ++i) params[i].second.set_grad(saved[i]);
  };

  ModuleCheckResult result;
  std::map<std::string, ParameterCheck> checks;
  // gradcheck perturbs the parameters in place; loss_fn reads them from the module.
  TensorFunction f = [&](const std::vector<Tensor>&) { return loss_fn(); };
  auto run = [&](bool fast) {
    std::vector<Tensor> group;
    GradcheckOptions go;
    go.eps = opt.eps, go.tolerance = opt.tolerance, go.fast = fast;
    go.directions = opt.directions, go.seed = opt.seed;
    for (auto& [name, p] : params)
      if (opt.fast.value_or(p.numel() > opt.fast_threshold) == fast)
        group.push_back(p), go.names.push_back(name);
    if (group.empty()) return;
    GradcheckResult r = gradcheck(f, group, go);
    result.eps = r.eps, result.tolerance = r.tolerance;
    for (const std::string& w : r.warnings)
      if (std::find(result.warnings.begin(), result.warnings.end(), w) == result.warnings.end())
        result.warnings.push_back(w);
    for (const InputCheck& c : r.inputs) {
      ParameterCheck pc;
      static_cast<InputCheck&>(pc) = c;
      pc.fast = fast;
      checks[c.name] = pc;
    }
  };
  try {
    run(false);
    run(true);
  } catch (...) {
    restore();
    throw;
  }
  restore();

  for (auto& [name, p] : params) {  // named_parameters() order
    const ParameterCheck& c = checks.at(name);
    result.passed = result.passed && c.passed;
    result.max_relative_error = std::max(result.max_relative_error, c.relative_error);
    result.parameters.push_back(c);
  }
  return result;
}

const ParameterCheck& ModuleCheckResult::operator[](const std::string& name) const {
  for (const ParameterCheck& c : parameters)
    if (c.name == name) return c;
  throw ValueError(fmt::format("gradcheck_module: no parameter named '{}'", name));
}

std::string ModuleCheckResult::report() const {
  std::string out = fmt::format("gradcheck_module (eps={:g}, tolerance={:g}): {}\n", eps, tolerance,
                                passed ? "PASSED" : "FAILED");
  for (const auto& w : warnings) out += "  warning: " + w + "\n";
  out += fmt::format("  {:<26} {:<10} {:<6} {:>11}  {:<12} {:>15} {:>15}\n", "parameter", "shape",
                     "mode", "rel. error", "worst at", "analytic", "numeric");
  for (const ParameterCheck& c : parameters) {
    std::string at;
    for (std::size_t k = 0; k < c.worst_index.size(); ++k)
      at += (k ? ", " : "") + std::to_string(c.worst_index[k]);
    at = c.fast ? "dir " + at : "(" + at + ")";  // fast mode: the worst random direction
    out += fmt::format("  {:<26} {:<10} {:<6} {:>11.3e}  {:<12} {:>15.8g} {:>15.8g}  {}\n", c.name,
                       shape_str(c.shape), c.fast ? "fast" : "exact", c.relative_error, at,
                       c.analytic, c.numeric, c.passed ? "ok" : "FAIL");
  }
  return out;
}

}  // namespace tapegrad
