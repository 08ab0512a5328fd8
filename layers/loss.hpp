// tapegrad — loss functions as small callable objects over the framework's ops
// (cross_entropy and mse live in framework/ops.hpp with their own stable implementations).
//
//   CrossEntropyLoss ce;                       // mean over rows
//   Tensor loss = ce(logits, targets);         // logits (N, C) or (B, T, C), targets N or B·T ids
#pragma once

#include <cstdint>
#include <vector>

#include "framework/module.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

/// −log softmax(logits)[row, target], reduced over the rows (torch.nn.CrossEntropyLoss with
/// class indices). Logits of any rank ≥ 2 are read as rows of C classes (the last axis), so a
/// sequence model's (B, T, C) logits pair with B·T row-major targets.
struct CrossEntropyLoss {
  TAPEGRAD_ARG(Reduction, reduction) = Reduction::Mean;

 public:
  Tensor operator()(const Tensor& logits, const std::vector<std::int64_t>& targets) const {
    const auto C = static_cast<std::ptrdiff_t>(logits.size(-1));
    Tensor rows = logits.dim() == 2 ? logits : reshape(logits, std::vector<std::ptrdiff_t>{-1, C});
    return cross_entropy(rows, targets, reduction());
  }
};

/// Mean (or sum) of (a − b)² (torch.nn.MSELoss).
struct MSELoss {
  TAPEGRAD_ARG(Reduction, reduction) = Reduction::Mean;

 public:
  Tensor operator()(const Tensor& a, const Tensor& b) const { return mse(a, b, reduction()); }
};

}  // namespace tapegrad
