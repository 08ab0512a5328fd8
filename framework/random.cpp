// tapegrad — seedable random numbers.
#include "framework/random.hpp"

#include <cmath>

#include <fmt/format.h>

#include "framework/dispatch.hpp"

namespace tapegrad {

void Generator::manual_seed(std::uint64_t seed) {
  engine_.seed(seed);
  has_spare_ = false;
}

double Generator::uniform() {
  // 53 random bits → a double in [0, 1).
  return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
}

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  double r = std::sqrt(-2.0 * std::log(u1)), theta = 2.0 * M_PI * u2;
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

std::uint64_t Generator::integer(std::uint64_t n) {
  if (n == 0) throw ValueError("Generator::integer: n must be positive");
  // Rejection sampling: no modulo bias.
  std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  std::uint64_t x;
  do x = engine_();
  while (x >= limit);
  return x % n;
}

Generator& default_generator() {
  thread_local Generator gen(0);
  return gen;
}

void manual_seed(std::uint64_t seed) { default_generator().manual_seed(seed); }

namespace {

template <class Sample>
Tensor fill_random(const char* op, const Shape& shape, DType dtype, Sample&& sample) {
  return detail::dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T> a = detail::new_array<T>(op, shape);
    for (auto& v : a) v = static_cast<T>(sample());
    return Tensor(std::move(a));
  });
}

}  // namespace

Tensor randn(const Shape& shape, Generator& gen, DType dtype) {
  return fill_random("randn", shape, dtype, [&] { return gen.normal(); });
}

Tensor randn(const Shape& shape, DType dtype) { return randn(shape, default_generator(), dtype); }

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  if (!(lo <= hi))
    throw ValueError(fmt::format("uniform: lo ({}) must not exceed hi ({}) for shape {}", lo, hi,
                                 shape_str(shape)));
  return fill_random("uniform", shape, dtype, [&] { return gen.uniform(lo, hi); });
}

Tensor uniform(const Shape& shape, double lo, double hi, DType dtype) {
  return uniform(shape, lo, hi, default_generator(), dtype);
}

}  // namespace tapegrad
