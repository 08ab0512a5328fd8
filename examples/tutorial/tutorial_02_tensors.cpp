// Tutorial step 2 — tensors: shapes, broadcasting, matmul, gradients of intermediates, no_grad
// (docs/tutorial.md). Exit 0 when the gradients match the formulas written below.
#include <cmath>
#include <iostream>

#include "framework/tapegrad.hpp"

using namespace tapegrad;

int main() {
  // A linear layer by hand: h = tanh(x Wᵀ + b), x (2, 3), W (4, 3), b (4) broadcast over rows.
  Tensor x = tensor({{1.0, -1.0, 0.5}, {0.0, 2.0, -0.5}}, DType::Float64).set_name("x");
  Tensor W = tensor({{0.1, 0.2, 0.3}, {-0.3, 0.1, 0.0}, {0.2, -0.2, 0.1}, {0.0, 0.4, -0.1}},
                    DType::Float64)
                 .requires_grad_()
                 .set_name("W");
  Tensor b = tensor({0.5, -0.5, 0.0, 0.1}, DType::Float64).requires_grad_().set_name("b");
  Tensor h = tanh(matmul(x, W, /*transpose_a=*/false, /*transpose_b=*/true) + b);  // (2, 4)
  h.retain_grad();           // keep dL/dh of this intermediate (like torch's retain_grad)
  Tensor loss = sum(h * h);  // a scalar
  std::cout << "h = " << h << "\n" << tape().listing();
  loss.backward();

  // Gradients always have their tensor's shape; b's is summed over the broadcast rows.
  std::cout << "dL/dW = " << W.grad() << "\ndL/db = " << b.grad() << "\n";
  // By hand: dL/dh = 2h, dL/da = 2h(1 − h²) for a = x Wᵀ + b, dL/db = Σ_rows dL/da, dL/dW =
  // (dL/da)ᵀ x.
  xt::xarray<double> hv = h.data<double>(), da = 2.0 * hv * (1.0 - hv * hv);
  bool ok = W.grad().shape() == W.shape() && b.grad().shape() == b.shape();
  for (std::size_t j = 0; j < 4; ++j) {
    ok = ok && std::fabs(b.grad().at(j) - (da(0, j) + da(1, j))) < 1e-14;
    for (std::size_t k = 0; k < 3; ++k)
      ok = ok &&
           std::fabs(W.grad().data<double>()(j, k) - (da(0, j) * x.data<double>()(0, k) +
                                                      da(1, j) * x.data<double>()(1, k))) < 1e-14;
  }
  ok = ok && std::fabs(h.grad().at(0) - 2.0 * hv(0, 0)) < 1e-14;

  // Inside a NoGradGuard nothing is recorded (evaluation, parameter updates).
  {
    NoGradGuard no_grad;
    Tensor y = matmul(x, W, false, true);
    fmt::print("under no_grad: y.requires_grad() = {}, tape size = {}\n", y.requires_grad(),
               tape().size());
    ok = ok && !y.requires_grad();
  }
  fmt::print("{}\n", ok ? "gradients match the formulas" : "MISMATCH");
  return ok ? 0 : 1;
}
