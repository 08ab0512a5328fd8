// hvp — a Hessian-vector product of a small GRU loss by double backward, checked by finite
// differences of gradients.
//
//   hvp          prints the relative error per parameter; exit 1 if the total is > 1e-6
//                (exit 2 for any flag but --help)
//
// θ = every parameter of a GRU (I=3, H=4) + Linear read-out (4 → 5), float64; L(θ) is the
// cross-entropy of the read-out at every step of a (B=2, T=5) sequence. For a direction v:
//   double backward:    g = ∇L(θ) with create_graph (g is itself on the tape),
//                       Hv = ∇_θ ⟨g, v⟩                    (one more backward, no Hessian built)
//   finite differences: Hv ≈ (∇L(θ + εv) − ∇L(θ − εv)) / 2ε   (two ordinary backward passes)
#include <cmath>

#include <CLI/CLI.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

/// ⟨a, b⟩ summed over lists of tensors (as a tape op, so it can be differentiated).
Tensor inner(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  Tensor s = scalar(0.0, DType::Float64);
  for (std::size_t i = 0; i < a.size(); ++i) s = s + sum(a[i] * b[i]);
  return s;
}

double norm(const std::vector<xt::xarray<double>>& a) {
  double s = 0;
  for (const auto& x : a) s += xt::sum(x * x)();
  return std::sqrt(s);
}

/// The whole check; returns the exit code.
int check_hvp() {
  Generator gen(7);
  GRU gru(GRUOptions(3, 4), gen);
  Linear head(4, 5, gen);
  gru.to(DType::Float64);
  head.to(DType::Float64);
  Tensor x = uniform({2, 5, 3}, -1, 1, gen, DType::Float64);           // (B, T, I)
  std::vector<std::int64_t> targets = {0, 1, 2, 3, 4, 4, 3, 2, 1, 0};  // B·T
  auto loss = [&] { return CrossEntropyLoss()(head(gru(x).output), targets); };

  NamedTensors named;
  for (auto& [n, p] : gru.named_parameters()) named.emplace_back("gru." + n, p);
  for (auto& [n, p] : head.named_parameters()) named.emplace_back("head." + n, p);
  std::vector<Tensor> params, v;
  for (auto& [n, p] : named)
    params.push_back(p), v.push_back(randn(p.shape(), gen, DType::Float64));

  // ---- Hv by double backward --------------------------------------------------------------------
  std::vector<Tensor> g =
      grad(loss(), params, Tensor(), /*retain_graph=*/true, /*create_graph=*/true);
  std::vector<Tensor> hv = grad(inner(g, v), params);  // ∇_θ ⟨∇L, v⟩ = H v

  // ---- Hv by central differences of the gradient ------------------------------------------------
  const double eps = 1e-5;
  auto grad_at = [&](double shift) {  // ∇L(θ + shift·v), θ restored afterwards
    for (std::size_t i = 0; i < params.size(); ++i)
      params[i].data<double>() += shift * v[i].data<double>();
    std::vector<Tensor> gs = grad(loss(), params);
    for (std::size_t i = 0; i < params.size(); ++i)
      params[i].data<double>() -= shift * v[i].data<double>();
    return gs;
  };
  std::vector<Tensor> plus = grad_at(eps), minus = grad_at(-eps);

  fmt::print(
      "Hessian-vector product of a GRU loss ({} parameters), double backward vs central "
      "differences of gradients (eps = {:g})\n  {:<16} {:<8} {:>12}\n",
      [&] {
        std::size_t n = 0;
        for (auto& p : params) n += p.numel();
        return n;
      }(),
      eps, "parameter", "shape", "rel. error");
  std::vector<xt::xarray<double>> exact, approx, diffs;  // per parameter: Hv, its FD estimate
  for (std::size_t i = 0; i < params.size(); ++i) {
    exact.push_back(hv[i].data<double>());
    approx.push_back((plus[i].data<double>() - minus[i].data<double>()) / (2 * eps));
    diffs.push_back(exact[i] - approx[i]);
    double e = norm({diffs[i]}) / (norm({exact[i]}) + norm({approx[i]}));
    fmt::print("  {:<16} {:<8} {:>12.3e}\n", named[i].first, shape_str(params[i].shape()), e);
  }
  // Total: ‖Hv − Hv_fd‖ / (‖Hv‖ + ‖Hv_fd‖) over all parameters at once.
  double total = norm(diffs) / (norm(exact) + norm(approx));
  fmt::print("  {:<25} {:>12.3e}   (‖Hv‖ = {:.6f})\n", "total", total, norm(exact));

  // The Hessian is symmetric: ⟨u, Hv⟩ = ⟨v, Hu⟩ for any u (a second check of the same machinery).
  std::vector<Tensor> u;
  for (const Tensor& p : params) u.push_back(randn(p.shape(), gen, DType::Float64));
  std::vector<Tensor> g2 = grad(loss(), params, Tensor(), true, true);
  std::vector<Tensor> hu = grad(inner(g2, u), params);
  double uHv = inner(u, hv).item(), vHu = inner(v, hu).item();
  fmt::print("  symmetry: <u, Hv> = {:.12f}, <v, Hu> = {:.12f}\n", uHv, vHu);

  bool ok = total <= 1e-6 && std::fabs(uHv - vHu) <= 1e-10 * (1 + std::fabs(uHv));
  fmt::print("{}\n", ok ? "ok: double backward gives the Hessian-vector product."
                        : "FAILED: relative error > 1e-6 (or the Hessian is not symmetric).");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hvp: a Hessian-vector product of a small GRU loss by double backward, checked by "
               "finite differences (no options)"};
  return cli::run(app, argc, argv, check_hvp);
}
