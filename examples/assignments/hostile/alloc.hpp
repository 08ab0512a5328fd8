// Hostile sample: gru_cell allocates and touches far more memory than the limit allows.
#pragma once
#include <cstring>
#include <memory>
#include "../../assignment/solution_gru.hpp"  // a correct submission, plus:
namespace assignment {
inline Tensor gru_cell_alloc(const Tensor& x, const Tensor& h, const Tensor& weight_ih, const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  std::vector<std::unique_ptr<char[]>> hog;
  for (int k = 0; k < 1024; ++k) {
    hog.emplace_back(new char[64u << 20]);
    std::memset(hog.back().get(), 1, 64u << 20);
  }
  return gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh);
}
}  // namespace assignment
#define gru_cell gru_cell_alloc
