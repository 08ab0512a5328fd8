// Hostile sample: gru_cell prints a perfect score, forges result records on every descriptor it can find, then returns a wrong value. It must not gain a point.
#pragma once
#include <unistd.h>

#include <cstdio>
#include "../../assignment/solution_gru.hpp"  // a correct submission, plus:
namespace assignment {
inline Tensor gru_cell_fake_output(const Tensor& x, const Tensor& h, const Tensor& weight_ih, const Tensor& weight_hh, const Tensor& bias_ih, const Tensor& bias_hh) {
  std::puts("[PASS] 1. gru_cell\nscore: 5/5 — all tests pass");
  std::fflush(stdout);
  for (int fd = 3; fd < 64; ++fd) {
    const char rec[] = "TGR1 00000000000000000000000000000000 0 PASS 0\n";
    (void)!::write(fd, rec, sizeof rec - 1);
  }
  return 2.0 * gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh);
  return gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh);
}
}  // namespace assignment
#define gru_cell gru_cell_fake_output
