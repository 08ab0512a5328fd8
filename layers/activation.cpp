// tapegrad — activations (see activation.hpp).
#include "layers/activation.hpp"

#include <cmath>
#include <vector>

#include "framework/ops.hpp"

namespace tapegrad {

namespace {

/// a_n = 2ⁿ / (1·3·…·(2n+1)), n = 0..N: the coefficients of erf's positive series in y = u².
const std::vector<double>& erf_series() {
  static const std::vector<double> a = [] {
    std::vector<double> c(101);
    c[0] = 1.0;
    for (std::size_t n = 1; n < c.size(); ++n) c[n] = c[n - 1] * 2.0 / (2.0 * n + 1.0);
    return c;
  }();
  return a;
}

}  // namespace

Tensor erf(const Tensor& x) {
  if (x.dtype() == DType::Float32) return cast(erf(cast(x, DType::Float64)), DType::Float32);
  const auto& a = erf_series();
  Tensor u = clamp(x, -5.9, 5.9);  // |erf| = 1 to double precision beyond
  Tensor y = u * u;
  Tensor p = y * a.back() + a[a.size() - 2];  // Horner: Σ a_n yⁿ
  for (std::size_t n = a.size() - 2; n-- > 0;) p = p * y + a[n];
  return (2.0 / std::sqrt(M_PI)) * (u * exp(-y) * p);
}

Tensor gelu(const Tensor& x) { return 0.5 * x * (1.0 + erf(x * M_SQRT1_2)); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }

}  // namespace tapegrad
