// tapegrad — seedable random numbers and random tensors.
//
// Generator wraps a 64-bit Mersenne Twister with its own normal sampler (Box–Muller), so the same
// seed gives the same numbers with any standard library. Every random function takes a
// Generator; the overloads without one use the thread's default generator (manual_seed sets it).
#pragma once

#include <cstdint>
#include <random>

#include "framework/tensor.hpp"

namespace tapegrad {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(std::uint64_t seed);
  /// Uniform in [0, 1).
  double uniform();
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Standard normal.
  double normal();
  /// Uniform integer in [0, n).
  std::uint64_t integer(std::uint64_t n);
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0;
};

/// This thread's default generator.
Generator& default_generator();
/// Seeds the default generator (torch.manual_seed).
void manual_seed(std::uint64_t seed);

/// Standard normal entries.
Tensor randn(const Shape& shape, Generator& gen, DType dtype = default_dtype());
Tensor randn(const Shape& shape, DType dtype = default_dtype());
/// Entries uniform in [lo, hi).
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype = default_dtype());
Tensor uniform(const Shape& shape, double lo, double hi, DType dtype = default_dtype());

}  // namespace tapegrad
