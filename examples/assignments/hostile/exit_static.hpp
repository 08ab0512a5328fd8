// Hostile sample: a correct solution whose static initializer prints a perfect score and leaves
// with exit code 0 before any test runs. The grader must give 0 points.
#pragma once
#include <cstdio>
#include <cstdlib>
#include "../../assignment/solution_gru.hpp"  // a correct submission, plus:
namespace {
const bool kForge = [] {
  std::atexit([] { std::puts("score: 5/5 — all tests pass"); });
  std::puts("[PASS] 1. gru_cell\nscore: 5/5 — all tests pass");
  std::fflush(stdout);
  std::_Exit(0);
  return true;
}();
}  // namespace
