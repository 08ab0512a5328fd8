// custom_op — define softplus as a custom op (your own forward and backward) and let gradcheck
// validate it.
//
//   custom_op            softplus with its correct backward: gradcheck PASSES, exit 0
//   custom_op --buggy    a deliberate bug in the backward (the sigmoid's sign flipped for x > 1):
//                        gradcheck FAILS and names the worst element; exit 0 because that is
//                        the expected outcome (exit 1 if the bug went unnoticed)
//
// softplus(x) = log(1 + eˣ) = max(x, 0) + log1p(e^−|x|)   (the stable form: no overflow)
// d softplus / dx = σ(x)
// Exit code 2: a usage error (an unknown flag, a value given to --buggy).
#include "framework/custom_op.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <xtensor/xmath.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {

/// softplus as a custom op. Forward on plain xtensor values (x.data<T>()); backward with
/// tapegrad ops, so it is itself differentiable (double backward works too).
Tensor softplus(const Tensor& x, bool buggy) {
  return apply_custom(
      "softplus", {x},
      // forward: runs under no_grad; keep x for the backward.
      [](CustomContext& ctx, const std::vector<Tensor>& in) {
        ctx.save_for_backward({in[0]});
        const xt::xarray<double>& v = in[0].data<double>();  // (N, M)
        return Tensor(xt::xarray<double>(xt::maximum(v, 0.0) + xt::log1p(xt::exp(-xt::abs(v)))));
      },
      // backward: dL/dx = dL/dy ⊙ σ(x).
      [buggy](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
        const Tensor& x = ctx.saved_tensors()[0];
        if (!buggy) return {g * sigmoid(x)};
        // The bug: σ(−x) instead of σ(x) where x > 1 (a typical sign slip, only for some inputs).
        Tensor wrong = where(gt(x, 1.0), sigmoid(-x), sigmoid(x));
        return {g * wrong};
      });
}

/// The demo; returns the exit code.
int demo(bool buggy) {
  Generator gen(42);
  Tensor x = uniform({3, 4}, -3.0, 3.0, gen, DType::Float64).requires_grad_().set_name("x");

  // The tape records softplus as one node, like a built-in op.
  Tensor y = softplus(x, buggy);
  fmt::print("y = softplus(x) is made by '{}'; the tape:\n{}\n", y.op(), tape().listing());
  tape().clear();

  // L = Σ softplus(x), so dL/dx = σ(x) element by element: easy to read in the report.
  GradcheckResult r =
      gradcheck([&](const std::vector<Tensor>& in) { return sum(softplus(in[0], buggy)); }, {x});
  fmt::print("{}\n", r.report());

  if (!buggy) {
    fmt::print(r.passed ? "the backward is right.\n"
                        : "unexpected: the correct backward failed.\n");
    return r.passed ? 0 : 1;
  }
  if (r.passed) {
    fmt::print("unexpected: gradcheck did not catch the bug.\n");
    return 1;
  }
  const InputCheck& c = r.inputs[0];
  std::size_t flat = c.worst_index[0] * x.size(1) + c.worst_index[1];
  fmt::print(
      "gradcheck caught the bug: worst element x[{}, {}] = {:.4f}: backward says {:.6f}, "
      "central differences say {:.6f} (= σ(x) = {:.6f}).\n",
      c.worst_index[0], c.worst_index[1], x.at(flat), c.analytic, c.numeric,
      1.0 / (1.0 + std::exp(-x.at(flat))));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"softplus as a custom op, checked by gradcheck"};
  bool buggy = false;
  app.add_flag("--buggy", buggy, "switch on a deliberate bug in the backward");
  return cli::run(app, argc, argv, [&] { return demo(buggy); });
}
