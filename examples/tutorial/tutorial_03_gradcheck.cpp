// Tutorial step 3 — trust, but verify: gradcheck compares the tape's gradients with central
// differences (docs/tutorial.md). Exit 0 when every check passes.
#include <iostream>

#include "framework/tapegrad.hpp"

using namespace tapegrad;

int main() {
  Generator gen(0);
  // Always gradcheck in float64: central differences in float32 keep only ~3 digits.
  Tensor a = uniform({3, 4}, -1, 1, gen, DType::Float64).requires_grad_().set_name("a");
  Tensor b = uniform({4, 2}, -1, 1, gen, DType::Float64).requires_grad_().set_name("b");
  auto f = [](const std::vector<Tensor>& in) {
    return sum(sigmoid(matmul(in[0], in[1])) * in[0].sum());
  };

  GradcheckResult r = gradcheck(f, {a, b});  // every element: 2 evaluations of f each
  std::cout << r.report();

  GradcheckOptions fast;  // large inputs: random directional derivatives vᵀJu instead
  fast.fast = true;
  GradcheckResult rf = gradcheck(f, {a, b}, fast);
  std::cout << "fast mode:\n" << rf.report();

  GradcheckResult rr = gradgradcheck(f, {a, b});  // second derivatives (create_graph backward)
  std::cout << "second derivatives:\n" << rr.report();

  // A full Jacobian of a small vector function: softmax's rows sum to zero.
  Tensor v = uniform({3}, -1, 1, gen, DType::Float64).requires_grad_();
  JacobianCheck j =
      jacobian_check([](const std::vector<Tensor>& in) { return softmax(in[0], 0); }, {v});
  std::cout << "softmax Jacobian (analytic):\n"
            << Tensor(j.analytic) << "\nmax |analytic − numeric| = " << j.max_abs_error << "\n";

  bool ok = r.passed && rf.passed && rr.passed && j.passed;
  fmt::print("{}\n", ok ? "all checks passed" : "a check FAILED");
  return ok ? 0 : 1;
}
