// Tutorial step 1 — a scalar and its derivative (docs/tutorial.md).
//
// Every op on a tensor that requires grad is appended to the thread's tape; backward() walks the
// tape once in reverse and adds dy/dx into x.grad(). Exit 0 when the gradients are the expected
// ones.
#include <cmath>
#include <iostream>

#include "framework/tapegrad.hpp"

using namespace tapegrad;

int main() {
  // y = x² + 3x at x = 2:  dy/dx = 2x + 3 = 7.
  Tensor x = scalar(2.0, DType::Float64).requires_grad_().set_name("x");
  Tensor y = x * x + 3.0 * x;
  std::cout << "the tape after y = x*x + 3*x:\n" << tape().listing();
  y.backward();  // reverse sweep; the nodes it ran are released and leave the tape
  fmt::print("y = {}, dy/dx = {} (expected 7)\n", y.item(), x.grad().item());
  bool ok = x.grad().item() == 7.0;

  // Gradients accumulate (+=) until you drop them: a second backward adds another 7.
  (x * x + 3.0 * x).backward();
  fmt::print("after a second backward, x.grad = {} (accumulated); zero_grad() drops it\n",
             x.grad().item());
  ok = ok && x.grad().item() == 14.0;
  x.zero_grad();

  // A neuron: o = tanh(w·x + b). do/dw = (1 − o²)·x, do/db = 1 − o².
  Tensor w = scalar(-0.5, DType::Float64).requires_grad_().set_name("w");
  Tensor b = scalar(0.8, DType::Float64).requires_grad_().set_name("b");
  Tensor o = tanh(w * x + b);
  o.backward();
  double d = 1.0 - o.item() * o.item();
  fmt::print(
      "o = tanh(w*x + b) = {:.6f}: do/dw = {:.6f} (by hand {:.6f}), do/db = {:.6f}, do/dx = "
      "{:.6f}\n",
      o.item(), w.grad().item(), d * 2.0, b.grad().item(), x.grad().item());
  ok = ok && std::fabs(w.grad().item() - d * 2.0) < 1e-15 &&
       std::fabs(x.grad().item() + 0.5 * d) < 1e-15;
  return ok ? 0 : 1;
}
