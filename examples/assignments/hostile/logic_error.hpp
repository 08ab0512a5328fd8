// Hostile sample: gru_cell reads past the end of a vector with .at(): std::out_of_range, which is a std::logic_error — reported as a bug, never as "not implemented".
#pragma once
#include <vector>
#include "../../assignment/solution_gru.hpp"  // a correct submission, plus:
namespace assignment {
inline Tensor gru_cell_logic_error(const Tensor& x, const Tensor& h, const Tensor& weight_ih, const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  std::vector<int> sizes = {2, 3};
  (void)sizes.at(2);
  return gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh);
}
}  // namespace assignment
#define gru_cell gru_cell_logic_error
