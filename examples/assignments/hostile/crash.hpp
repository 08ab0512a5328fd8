// Hostile sample: gru_cell dereferences a null pointer (SIGSEGV). Only the gru_cell tests may fail.
#pragma once
#include "../../assignment/solution_gru.hpp"  // a correct submission, plus:
namespace assignment {
inline Tensor gru_cell_crash(const Tensor& x, const Tensor& h, const Tensor& weight_ih, const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  volatile int* p = nullptr;
  *p = 1;
  return gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh);
}
}  // namespace assignment
#define gru_cell gru_cell_crash
