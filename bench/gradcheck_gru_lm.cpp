// Times tapegrad's float64 gradcheck of a GRU language model — the workload of
// tools/torch_gradcheck_gru_lm.py (torch.autograd.gradcheck of the same model):
//   one-hot ids (B=2, T=8, V=10) → GRU(10 → 16) from h0 → Linear(16 → 10) → mean cross-entropy,
//   checked against central differences over all 1,546 inputs: weight_ih (48, 10),
//   weight_hh (48, 16), bias_ih (48), bias_hh (48), head weight (10, 16), head bias (10), h0 (1, 2, 16).
// gradcheck (framework/gradcheck.hpp) evaluates the loss twice per input element (3,092 forward
// passes, under no_grad) plus one backward, with eps = 1e-6 and tolerance 1e-7.
//
//   gradcheck_gru_lm [--path fused|composed|both] [--repeat N]
// prints one JSON object per path: {"path", "seconds" (median of N), "passed", "max_rel_error",
// "n_inputs"}.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "framework/gradcheck.hpp"
#include "framework/ops.hpp"
#include "framework/random.hpp"
#include "layers/gru.hpp"
#include "layers/fast/gru_fused.hpp"
#include "layers/linear.hpp"

using namespace tapegrad;

int main(int argc, char** argv) {
  std::string path = "both";
  int repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--path")) path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--repeat")) repeat = std::max(1, std::atoi(argv[i + 1]));
  }
  const std::size_t V = 10, H = 16, B = 2, T = 8;
  Generator gen(0);
  GRU gru(GRUOptions(V, H), gen);
  Linear head(H, V, gen);
  gru.to(DType::Float64);
  head.to(DType::Float64);
  std::vector<std::int64_t> ids, targets;
  for (std::size_t i = 0; i < B * T; ++i) ids.push_back(std::int64_t(gen.integer(V)));
  for (std::size_t i = 0; i < B * T; ++i) targets.push_back(std::int64_t(gen.integer(V)));
  Tensor h0 = zeros({1, B, H}, DType::Float64).requires_grad_();
  // The inputs are the modules' own parameter tensors (gradcheck perturbs them in place) and h0.
  std::vector<Tensor> inputs = {gru.weight_ih[0], gru.weight_hh[0], gru.bias_ih[0], gru.bias_hh[0],
                                head.weight, head.bias, h0};
  std::size_t n_inputs = 0;
  for (const Tensor& t : inputs) n_inputs += t.numel();

  for (bool fused : {true, false}) {
    if ((fused && path == "composed") || (!fused && path == "fused")) continue;
    gru.set_path(fused ? GRU::Path::Fused : GRU::Path::Composed);
    auto loss = [&](const std::vector<Tensor>& in) {
      GRU::Output o = fused ? gru_forward_ids_fused(gru, ids, B, T, V, in[6])
                            : gru.forward_ids(ids, B, T, V, in[6]);
      Tensor logits = head.forward(reshape(o.output, Shape{B * T, H}));
      return cross_entropy(logits, targets);
    };
    std::vector<double> seconds;
    GradcheckResult r;
    for (int k = 0; k < repeat; ++k) {
      auto t0 = std::chrono::steady_clock::now();
      r = gradcheck(loss, inputs);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(seconds.begin(), seconds.end());
    std::cout << fmt::format(
                     R"({{"path": "{}", "seconds": {:.5f}, "passed": {}, "max_rel_error": {:.3g}, "n_inputs": {}}})",
                     fused ? "fused" : "composed", seconds[seconds.size() / 2], r.passed ? "true" : "false",
                     r.max_relative_error, n_inputs)
              << std::endl;
    if (!r.passed) std::cerr << r.report();
  }
  return 0;
}
