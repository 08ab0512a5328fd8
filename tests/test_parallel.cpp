// The engine's second core (framework/parallel.hpp) and what runs on it: two_halves runs both
// halves exactly once, on two threads when it can, serially when nested or when another thread
// holds the helper, both on the caller when the helper had not started half 0 by the time half 1
// was done, and rethrows what a half throws; the elementwise ops it splits give
// bit-identical results to xtensor's one pass over the whole array, and a split GEMM the same bits
// whether or not the helper was free; a pair of independent GEMMs (a matmul's two gradients) the
// bits of two separate calls; same-shape add/sub/mul/div in a plain loop the bits of xtensor's;
// OpenBLAS's own threads are held at one except for a product big enough for them (blas.cpp).
#include <gtest/gtest.h>

#include <cblas.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "framework/blas.hpp"
#include "framework/ops.hpp"
#include "framework/parallel.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"
#include "framework/vector_math.hpp"

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xsort.hpp>

using namespace tapegrad;

namespace {

/// Spins (yielding) until `count` is non-zero, at most 10 s: a half that must outlast the start of
/// the other one.
void wait_until_started(const std::atomic<int>& count) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (count.load() == 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
}

TEST(TwoHalves, RunsEachHalfOnceOnTwoThreads) {
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> count[2] = {0, 0};
    std::thread::id who[2];
    auto f = [&](int h) {
      // Half 1 outlasts the start of half 0, so the helper takes half 0 (a caller whose half is
      // done before the helper has started takes half 0 itself: StealsAHalfTheHelperHas…).
      if (h == 1 && detail::have_two_cores()) wait_until_started(count[0]);
      who[h] = std::this_thread::get_id();
      ++count[h];
    };
    detail::two_halves(f);
    ASSERT_EQ(count[0].load(), 1);
    ASSERT_EQ(count[1].load(), 1);
    EXPECT_EQ(who[1], std::this_thread::get_id());  // the caller runs half 1
    if (detail::have_two_cores()) EXPECT_NE(who[0], who[1]);
  }
}

TEST(TwoHalves, StealsAHalfTheHelperHasNotStarted) {
  if (!detail::have_two_cores()) GTEST_SKIP() << "one core: both halves always run on the caller";
  // The helper sleeps after 200 µs without work; waking it takes microseconds, a trivial half 1
  // takes nanoseconds: the caller then runs half 0 as well instead of waiting for the helper.
  // (Usually in the first round; on a loaded machine the scheduler may run the woken helper
  // before the caller gets back, so up to 1,000 rounds are tried.)
  int stolen = 0;
  for (int round = 0; round < 1000 && stolen < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::atomic<int> count[2] = {0, 0};
    std::thread::id who[2];
    auto f = [&](int h) {
      who[h] = std::this_thread::get_id();
      ++count[h];
    };
    detail::two_halves(f);
    ASSERT_EQ(count[0].load(), 1);
    ASSERT_EQ(count[1].load(), 1);
    stolen += who[0] == std::this_thread::get_id();
  }
  EXPECT_GE(stolen, 1);
  // The helper, woken for tickets it found taken, still takes the next one it can.
  std::atomic<int> count0{0};
  std::thread::id who0;
  auto g = [&](int h) {
    if (h == 1) return wait_until_started(count0);
    who0 = std::this_thread::get_id();
    ++count0;
  };
  detail::two_halves(g);
  EXPECT_EQ(count0.load(), 1);
  EXPECT_NE(who0, std::this_thread::get_id());
}

TEST(TwoHalves, AStolenHalfRethrows) {
  if (!detail::have_two_cores()) GTEST_SKIP() << "one core: covered by RethrowsWhatAHalfThrows…";
  // As in StealsAHalfTheHelperHasNotStarted: rounds until half 0 has thrown on the caller.
  int stolen = 0;
  for (int round = 0; round < 1000 && stolen == 0; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the helper is likely asleep
    std::atomic<int> ran{0};
    std::thread::id who0;
    auto f = [&](int h) {
      ++ran;
      if (h == 0) {
        who0 = std::this_thread::get_id();
        throw std::runtime_error("half 0");
      }
    };
    try {
      detail::two_halves(f);
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "half 0");
    }
    EXPECT_EQ(ran.load(), 2);
    stolen += who0 == std::this_thread::get_id();
  }
  EXPECT_EQ(stolen, 1);
}

TEST(TwoHalves, NestedCallsRunSerially) {
  std::atomic<int> inner{0};
  auto outer = [&](int) {
    auto f = [&](int) { ++inner; };
    detail::two_halves(f);  // the helper is busy (or this is the helper): both halves here
  };
  detail::two_halves(outer);
  EXPECT_EQ(inner.load(), 4);
}

TEST(TwoHalves, ManyCallersAtOnce) {
  std::atomic<long> total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto f = [&](int h) { total += h + 1; };
        detail::two_halves(f);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(total.load(), 4L * 2000 * 3);
}

TEST(TwoHalves, RethrowsWhatAHalfThrowsAndStaysUsable) {
  for (int thrower = 0; thrower < 2; ++thrower) {
    std::atomic<int> ran{0};
    auto f = [&](int h) {
      ++ran;
      if (h == thrower) throw std::runtime_error("half " + std::to_string(h));
    };
    try {
      detail::two_halves(f);
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "half " + std::to_string(thrower));
    }
    EXPECT_EQ(ran.load(), 2);  // the other half still ran to the end
  }
  std::atomic<int> ok{0};
  auto g = [&](int) { ++ok; };
  detail::two_halves(g);
  EXPECT_EQ(ok.load(), 2);
}

TEST(StartOnHelper, RunsTheWorkOnceWhileTheCallerGoesOn) {
  if (!detail::have_two_cores()) GTEST_SKIP() << "one core: there is no helper to start";
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> runs{0};
    std::atomic<bool> release{false};
    std::thread::id who;
    auto work = [&](int) {
      who = std::this_thread::get_id();
      ++runs;
      // Holds the helper until the caller has checked finished_on_helper (at most 10 s).
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!release.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    };
    const detail::HalfFn f(work);
    ASSERT_TRUE(detail::start_on_helper(f));
    wait_until_started(runs);
    EXPECT_FALSE(detail::finished_on_helper());
    // Meanwhile the helper is taken: two_halves runs both halves here.
    std::thread::id halves[2];
    auto g = [&](int h) { halves[h] = std::this_thread::get_id(); };
    detail::two_halves(g);
    EXPECT_EQ(halves[0], std::this_thread::get_id());
    EXPECT_EQ(halves[1], std::this_thread::get_id());
    EXPECT_FALSE(detail::start_on_helper(f));  // one at a time
    release = true;
    detail::finish_on_helper();
    EXPECT_EQ(runs.load(), 1);
    EXPECT_NE(who, std::this_thread::get_id());
  }
}

TEST(StartOnHelper, FinishRunsUntakenWorkHereAndRethrows) {
  if (!detail::have_two_cores()) GTEST_SKIP() << "one core: there is no helper to start";
  // Whoever runs it (the helper, or the caller when the helper had not taken it yet), it runs
  // once, and what it throws comes out of finish_on_helper; the helper is free again afterwards.
  for (int round = 0; round < 100; ++round) {
    std::atomic<int> runs{0};
    auto work = [&](int) {
      ++runs;
      throw std::runtime_error("from the helper's work");
    };
    const detail::HalfFn f(work);
    ASSERT_TRUE(detail::start_on_helper(f));
    EXPECT_THROW(detail::finish_on_helper(), std::runtime_error);
    EXPECT_EQ(runs.load(), 1);
    std::thread::id who[2];
    auto g = [&](int h) { who[h] = std::this_thread::get_id(); };
    detail::two_halves(g);
    EXPECT_EQ(who[1], std::this_thread::get_id());
  }
}

TEST(TwoHalves, RunsInAForkedChild) {
  auto warm = [](int) {};
  detail::two_halves(warm);  // the helper exists in the parent
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // the child has no helper thread: both halves must run here, not hang
    ::alarm(10);
    int ran = 0;
    auto f = [&](int) { ++ran; };
    detail::two_halves(f);
    ::_exit(ran == 2 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

/// `op` on tapegrad tensors (split over two cores, and again while the helper is busy, when
/// the same halves run in turn) against `ref`, the same expression evaluated in one pass over the
/// whole array (what the op computed before it was split): bit-identical, since the split falls
/// on a multiple of 16 elements and every element goes through the same SIMD lane or scalar tail
/// code (the vector math's tail through the same SIMD code).
template <class Op, class Ref>
void expect_split_equals_one_pass(const Tensor& x, const Tensor& y, Op op, Ref ref) {
  const Tensor split = op(x, y);
  Tensor serial;
  auto busy = [&](int h) {
    if (h == 1) serial = op(x, y);
  };
  detail::two_halves(busy);
  const Tensor whole = x.dtype() == DType::Float32
                           ? Tensor(xt::xarray<float>(ref(x.data<float>(), y.data<float>())))
                           : Tensor(xt::xarray<double>(ref(x.data<double>(), y.data<double>())));
  ASSERT_EQ(split.shape(), whole.shape());
  for (std::size_t i = 0; i < split.numel(); ++i) {
    ASSERT_EQ(split.at(i), whole.at(i)) << split.op() << " element " << i;
    ASSERT_EQ(serial.at(i), whole.at(i)) << split.op() << " (helper busy) element " << i;
  }
}

/// The reference for tanh and exp, which run on the vector math (framework/vector_math.hpp): the
/// process's build of it over the whole array in one call.
template <class Pick>
auto whole_array(Pick pick) {
  return [pick](const auto& a, const auto&) {
    using T = typename std::decay_t<decltype(a)>::value_type;
    xt::xarray<T> r = xt::xarray<T>::from_shape(a.shape());
    pick(detail::vector_math<T>())(a.data(), r.data(), a.size());
    return r;
  };
}

TEST(TwoCoreElementwise, BitIdenticalToOnePass) {
  for (DType dtype : {DType::Float32, DType::Float64})
    for (std::size_t cols : {6554u, 13001u}) {  // 32,770 and 65,005 elements: split, odd sizes
      Generator gen(7);
      const Tensor x = mul(randn({5, cols}, gen, dtype), 3.0), y = randn({5, cols}, gen, dtype);
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor& b) { return mul(a, b); },
          [](const auto& a, const auto& b) { return a * b; });
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor& b) { return add(a, b); },
          [](const auto& a, const auto& b) { return a + b; });
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor& b) { return div(a, b); },
          [](const auto& a, const auto& b) { return a / b; });
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor&) { return tanh(a); },
          whole_array([](const auto& m) { return m.tanh; }));
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor&) { return exp(a); },
          whole_array([](const auto& m) { return m.exp; }));
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor&) { return rsub(a, 1.0); },
          [](const auto& a, const auto&) {
            using T = typename std::decay_t<decltype(a)>::value_type;
            return T(1) - a;
          });
    }
}

/// add, sub, mul and div of x and y, each against xtensor's one pass (as above).
void expect_arithmetic_equals_xtensor(const Tensor& x, const Tensor& y) {
  expect_split_equals_one_pass(
      x, y, [](const Tensor& a, const Tensor& b) { return add(a, b); },
      [](const auto& a, const auto& b) { return a + b; });
  expect_split_equals_one_pass(
      x, y, [](const Tensor& a, const Tensor& b) { return sub(a, b); },
      [](const auto& a, const auto& b) { return a - b; });
  expect_split_equals_one_pass(
      x, y, [](const Tensor& a, const Tensor& b) { return mul(a, b); },
      [](const auto& a, const auto& b) { return a * b; });
  expect_split_equals_one_pass(
      x, y, [](const Tensor& a, const Tensor& b) { return div(a, b); },
      [](const auto& a, const auto& b) { return a / b; });
}

/// Below the split, same-shape add, sub, mul and div take a plain loop (ops_elementwise.cpp,
/// Eval::Scalar): one IEEE operation per element, so the same bits as xtensor's SIMD pass.
TEST(SameShapeLoop, BitIdenticalToXtensor) {
  for (DType dtype : {DType::Float32, DType::Float64})
    for (std::size_t n : {1u, 15u, 17u, 64u, 4099u, 32767u}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " n=" << n);
      Generator gen(n);
      const Tensor x = mul(randn({n}, gen, dtype), 3.0), y = randn({n}, gen, dtype);
      expect_arithmetic_equals_xtensor(x, y);
    }
}

/// mul's backward computes both gradients at once (ops_elementwise.cpp,
/// mul_grads_at_once), split over two cores from 32,768 elements: each must be the product
/// mul(g, b) or mul(g, a) computes, to the bit. With y = sum(mul(a, b) * w), the gradient reaching
/// mul(a, b) is w itself (1 · w), so a.grad must equal mul(w, b) and b.grad mul(w, a). mul(x, x)
/// gets both into one tensor: 2 · (w ⊙ x) when added, (w ⊙ x) + (w ⊙ x) to the bit.
TEST(MulGradients, AtOnceBitIdenticalToTheTwoProducts) {
  for (DType dtype : {DType::Float32, DType::Float64})
    for (std::size_t n : {1u, 17u, 256u, 4099u, 40000u}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " n=" << n);
      Generator gen(n + 7);
      Tensor a = randn({n}, gen, dtype).requires_grad_(), b = randn({n}, gen, dtype).requires_grad_();
      const Tensor w = randn({n}, gen, dtype);
      sum(mul(mul(a, b), w)).backward();
      EXPECT_TRUE(bool(xt::all(xt::equal(a.grad().to_f64(), mul(w, b).to_f64()))));
      EXPECT_TRUE(bool(xt::all(xt::equal(b.grad().to_f64(), mul(w, a).to_f64()))));
      Tensor x = randn({n}, gen, dtype).requires_grad_();
      sum(mul(mul(x, x), w)).backward();
      const Tensor wx = mul(w, x);
      EXPECT_TRUE(bool(xt::all(xt::equal(x.grad().to_f64(), add(wx, wx).to_f64()))));
      // Only one input requiring grad, and a broadcast operand, take the two-op path: same values.
      Tensor c = randn({n}, gen, dtype).requires_grad_();
      sum(mul(mul(c, b.detach()), w)).backward();
      EXPECT_TRUE(bool(xt::all(xt::equal(c.grad().to_f64(), mul(w, b).to_f64()))));
      Tensor d = randn({1}, gen, dtype).requires_grad_();
      c.zero_grad();
      sum(mul(mul(c, d), w)).backward();
      EXPECT_TRUE(bool(xt::all(xt::equal(c.grad().to_f64(), mul(w, d).to_f64()))));
      EXPECT_TRUE(bool(xt::all(xt::equal(d.grad().to_f64(), sum_to(mul(w, c), {1}).to_f64()))));
    }
}

/// A broadcast where one operand repeats in blocks over the other (a bias row, a keepdims column
/// such as x − mean(x, -1, true), a one-element tensor) takes plain loops (ops_elementwise.cpp,
/// block_broadcast), split over two cores from 32,768 elements: the bits of xtensor's broadcast
/// evaluation, on either side and for every op; broadcast_to copies the same blocks. Shapes that
/// keep xtensor's path (both operands growing, a broken block pattern, a scalar with more axes than
/// the other side) are checked too.
TEST(BlockBroadcastLoop, BitIdenticalToXtensor) {
  struct Case {
    Shape big, small;
  };
  const Case cases[] = {
      // rows (inner = 1)
      {{4, 16}, {16}}, {{3, 5, 17}, {17}}, {{2, 3, 8}, {3, 8}}, {{64, 384}, {384}}, {{4, 7}, {7}},
      {{4, 7}, {1, 7}}, {{6, 1, 5}, {1, 5}}, {{2049, 33}, {33}}, {{40, 1000}, {1000}},
      // columns and middles (inner > 1)
      {{4, 7}, {4, 1}}, {{64, 384}, {64, 1}}, {{2, 3, 5}, {2, 1, 1}}, {{2, 3, 5}, {1, 3, 1}},
      {{2, 3, 5}, {3, 1}}, {{1000, 40}, {1000, 1}}, {{7, 2, 3000}, {2, 1}},
      // one element
      {{9}, {}}, {{5, 1}, {1}}, {{7, 3}, {1, 1}}, {{40000}, {}}, {{300, 110}, {1}},
      // empty
      {{0, 6}, {6}}, {{6, 0}, {6, 1}},
      // xtensor's path: both grow, a broken pattern, more axes than the other side
      {{3, 1}, {1, 4}}, {{2, 3, 5}, {2, 1, 5}}, {{2, 3}, {2, 1, 1}}};
  for (DType dtype : {DType::Float32, DType::Float64})
    for (const Case& c : cases)
      for (bool small_second : {true, false}) {
        SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << shape_str(c.big) << " and "
                                        << shape_str(c.small) << (small_second ? "" : ", swapped"));
        Generator gen(c.big.size() * 100 + c.small.size());
        const Tensor big = mul(randn(c.big, gen, dtype), 3.0), small = randn(c.small, gen, dtype);
        const Tensor& x = small_second ? big : small;
        const Tensor& y = small_second ? small : big;
        expect_arithmetic_equals_xtensor(x, y);
        // broadcast_to copies the same blocks (block_repeat): xtensor's broadcast, element for
        // element.
        if (small_second && broadcast_shapes(c.big, c.small, "test") == c.big) {
          const Tensor r = broadcast_to(small, c.big);
          const Tensor ref =
              dtype == DType::Float32
                  ? Tensor(xt::xarray<float>(xt::broadcast(small.data<float>(), c.big)))
                  : Tensor(xt::xarray<double>(xt::broadcast(small.data<double>(), c.big)));
          ASSERT_EQ(r.shape(), c.big);
          for (std::size_t i = 0; i < r.numel(); ++i)
            ASSERT_EQ(r.at(i), ref.at(i)) << "broadcast_to, element " << i;
        }
      }
}

/// The sum over every axis as ops_reduce.cpp's sum_all adds it: 16 lanes (value k into lane
/// k mod 16) added pairwise; from 2^15 values on, the two halves split at n/2 rounded down to a
/// multiple of 16, each summed so, then added.
template <class T>
T lane_sum_reference(const T* a, std::size_t n) {
  T acc[16] = {};
  for (std::size_t k = 0; k < n; ++k) acc[k % 16] += a[k];
  for (std::size_t w = 8; w >= 1; w /= 2)
    for (std::size_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}
template <class T>
T sum_all_reference(const T* a, std::size_t n) {
  if (n < (std::size_t(1) << 15)) return lane_sum_reference(a, n);
  const std::size_t mid = n / 2 / 16 * 16;
  return lane_sum_reference(a, mid) + lane_sum_reference(a + mid, n - mid);
}

/// sum over the trailing axes (a keepdims row sum) runs 8 row sums at once (ops_reduce.cpp,
/// sum_rows), each still adding its elements one after the other from +0: the bits of xtensor's
/// immediate sum, split over two cores or not. Other axis sets (the leading ones, a middle one,
/// two apart) keep xtensor's reducer and are checked too. The sum over every axis is sum_all's
/// (lane_sum_reference above), within 2 · (n/16 + 4) ε · Σ|x| of the exact sum, whether its
/// halves run on two cores or, the helper busy, one after the other.
TEST(BlockSum, BitIdenticalToXtensor) {
  struct Case {
    Shape shape;
    std::vector<std::ptrdiff_t> axes;
  };
  const Case cases[] = {{{64, 384}, {1}},      {{2048, 384}, {1}},     {{2048, 384}, {0}},
                        {{13, 7}, {1}},        {{13, 7}, {0}},         {{3, 4, 50}, {1, 2}},
                        {{3, 4, 50}, {2}},     {{3, 4, 50}, {0, 1}},   {{100, 2, 300}, {0}},
                        {{5, 1, 9}, {2}},      {{9, 1}, {1}},          {{300, 500}, {1}},
                        {{3, 4, 50}, {1}},     {{3, 4, 50}, {0, 2}},   {{64, 384}, {0, 1}},
                        {{0, 5}, {1}},         {{17}, {0}},            {{2048, 384}, {0, 1}},
                        {{3, 4, 50}, {0, 1, 2}}, {{40001}, {0}},       {{5}, {0}}};
  for (DType dtype : {DType::Float32, DType::Float64})
    for (const Case& c : cases)
      for (bool keepdims : {false, true}) {
        SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << shape_str(c.shape)
                                        << " axes " << c.axes.size() << " first " << c.axes[0]
                                        << (keepdims ? " keepdims" : ""));
        Generator gen(c.shape.size() * 10 + c.axes.size());
        const Tensor x = mul(randn(c.shape, gen, dtype), 100.0);
        const Tensor r = sum(x, c.axes, keepdims);
        std::vector<std::size_t> axes(c.axes.begin(), c.axes.end());
        const Tensor ref =
            x.numel() == 0 ? zeros(r.shape(), dtype)
            : dtype == DType::Float32
                ? Tensor(xt::xarray<float>(
                      xt::sum(x.data<float>(), axes, xt::evaluation_strategy::immediate)))
                : Tensor(xt::xarray<double>(
                      xt::sum(x.data<double>(), axes, xt::evaluation_strategy::immediate)));
        ASSERT_EQ(r.numel(), ref.numel());
        if (c.axes.size() == c.shape.size() && x.numel() != 0) {  // every axis: sum_all
          const double lanes = dtype == DType::Float32
                                   ? double(sum_all_reference(x.data<float>().data(), x.numel()))
                                   : sum_all_reference(x.data<double>().data(), x.numel());
          ASSERT_EQ(r.at(0), lanes);
          long double exact = 0, size = 0;
          for (std::size_t i = 0; i < x.numel(); ++i) exact += x.at(i), size += std::abs((long double)x.at(i));
          const double eps = dtype == DType::Float32 ? 0x1p-24 : 0x1p-53;
          EXPECT_NEAR(r.at(0), double(exact), 2 * (double(x.numel()) / 16 + 4) * eps * double(size));
          Tensor busy_sum;  // the halves one after the other
          auto busy = [&](int h) {
            if (h == 1) busy_sum = sum(x, c.axes, keepdims);
          };
          detail::two_halves(busy);
          ASSERT_EQ(busy_sum.at(0), r.at(0));
        } else {
          for (std::size_t i = 0; i < r.numel(); ++i) ASSERT_EQ(r.at(i), ref.at(i)) << "element " << i;
        }
        // A negative zero sums to +0, as in xtensor (each sum starts at +0).
        if (x.numel() != 0) {
          const Tensor z = sum(mul(zeros(c.shape, dtype), -1.0), c.axes, keepdims);
          for (std::size_t i = 0; i < z.numel(); ++i) ASSERT_FALSE(std::signbit(z.at(i)));
        }
      }
}

/// softmax and log_softmax along other axes than the last are the xtensor expressions below
/// (log_softmax by plain loops per line, ops_reduce.cpp: the expressions' bits), split over two
/// cores or not, with rows holding ±inf and NaN too (NaN where the expressions give NaN). Along
/// the last axis both take exp from the vector math and sum over 16 lanes (lane_sum): within
/// 4 ulp (and the rounding of x − max) of the long double result there, exactly 0 or ±inf where
/// the expression is, and NaN where it is NaN.
template <class T>
void expect_softmax_equals_expressions(const xt::xarray<T>& x, std::size_t axis) {
  const auto keep = xt::keep_dims | xt::evaluation_strategy::immediate;
  const xt::xarray<T> m = xt::amax(x, {axis}, keep);
  const xt::xarray<T> e = xt::exp(x - m);
  const xt::xarray<T> z = xt::sum(e, {axis}, keep);
  const xt::xarray<T> soft = e / z;
  const xt::xarray<T> shifted = x - m;
  const xt::xarray<T> lse = xt::log(xt::sum(xt::exp(shifted), {axis}, keep));
  const xt::xarray<T> logsoft = shifted - lse;
  // softmax along the last axis, in long double (rows where the expression is finite).
  // (x − max, rounded to T, is exp's argument: its rounding moves the result by up to
  // |x − max| ε/2 relative, `shift`.)
  std::vector<long double> exact(x.size(), 0.0L), exact_log(x.size(), 0.0L), shift(x.size(), 0.0L);
  if (axis + 1 == x.dimension() && x.size() != 0) {
    const std::size_t len = x.shape()[axis];
    for (std::size_t r = 0; r < x.size() / len; ++r) {
      const T* row = x.data() + r * len;
      const long double mx = *std::max_element(row, row + len);
      long double z = 0;
      for (std::size_t k = 0; k < len; ++k) z += std::exp((long double)row[k] - mx);
      for (std::size_t k = 0; k < len; ++k) {
        exact[r * len + k] = std::exp((long double)row[k] - mx) / z;
        exact_log[r * len + k] = ((long double)row[k] - mx) - std::log(z);
        shift[r * len + k] = std::abs((long double)row[k] - mx);
      }
    }
  }
  const Tensor t(x);
  const Tensor got[2] = {softmax(t, std::ptrdiff_t(axis)), log_softmax(t, std::ptrdiff_t(axis))};
  const xt::xarray<T>* want[2] = {&soft, &logsoft};
  for (int j = 0; j < 2; ++j) {
    ASSERT_EQ(got[j].shape(), x.shape());
    const T* g = got[j].data<T>().data();
    for (std::size_t i = 0; i < x.size(); ++i) {
      const T w = want[j]->data()[i];
      if (std::isnan(w))
        ASSERT_TRUE(std::isnan(g[i])) << (j ? "log_softmax" : "softmax") << " element " << i;
      else if (j == 0 && axis + 1 == x.dimension() && w != T(0))
        ASSERT_NEAR(g[i], exact[i], (4 + shift[i]) * std::numeric_limits<T>::epsilon() * exact[i] +
                                        std::numeric_limits<T>::denorm_min())
            << "softmax element " << i << " (the expression: " << w << ")";
      else if (j == 1 && axis + 1 == x.dimension() && !std::isinf(w))
        ASSERT_NEAR(g[i], exact_log[i], 4 * std::numeric_limits<T>::epsilon() * (1 + shift[i] + std::abs(exact_log[i])))
            << "log_softmax element " << i << " (the expression: " << w << ")";
      else
        ASSERT_EQ(g[i], w) << (j ? "log_softmax" : "softmax") << " element " << i;
    }
  }
}

TEST(SoftmaxLoops, BitIdenticalToXtensorExpressions) {
  const Shape shapes[] = {{7}, {64, 384}, {5, 9, 11}, {3, 1, 4}, {2048, 40}, {1, 1}};
  for (const Shape& shape : shapes)
    for (std::size_t axis = 0; axis < shape.size(); ++axis) {
      SCOPED_TRACE(testing::Message() << shape_str(shape) << " axis " << axis);
      Generator gen(shape.size() * 7 + axis);
      const Tensor f = mul(randn(shape, gen, DType::Float64), 6.0);
      expect_softmax_equals_expressions(xt::xarray<double>(f.data<double>()), axis);
      expect_softmax_equals_expressions(xt::xarray<float>(xt::cast<float>(f.data<double>())), axis);
    }
  // Rows with +inf, −inf everywhere, NaN, and a −inf mask (attention's padding).
  xt::xarray<double> odd = {{1.0, INFINITY, 2.0},
                            {-INFINITY, -INFINITY, -INFINITY},
                            {0.5, NAN, -1.0},
                            {NAN, 3.0, 4.0},
                            {-INFINITY, 0.25, -INFINITY},
                            {-0.0, 0.0, -0.0}};
  for (std::size_t axis : {0u, 1u}) {
    expect_softmax_equals_expressions(odd, axis);
    expect_softmax_equals_expressions(xt::xarray<float>(xt::cast<float>(odd)), axis);
  }
}

/// A split GEMM gives the same bits whether its halves run on two threads or, the helper being
/// busy, one after the other (the split depends on the shape alone), and it is the product:
/// within rounding of a float64 triple loop.
template <class T>
void expect_gemm_split_deterministic(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k) {
  SCOPED_TRACE(testing::Message() << "ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n
                                  << " k=" << k << " " << sizeof(T) * 8 << "-bit");
  Generator gen(m + n + k);
  const DType dtype = sizeof(T) == 4 ? DType::Float32 : DType::Float64;
  const Tensor a = randn({m * k}, gen, dtype), b = randn({k * n}, gen, dtype),
               c0 = randn({m * n}, gen, dtype);
  const T* pa = a.data<T>().data();
  const T* pb = b.data<T>().data();
  const std::size_t lda = ta ? m : k, ldb = tb ? k : n;
  for (T beta : {T(0), T(1)}) {
    std::vector<T> two_threads(c0.data<T>().begin(), c0.data<T>().end()), serial = two_threads;
    detail::gemm(ta, tb, m, n, k, pa, lda, pb, ldb, beta, two_threads.data(), n);
    auto busy = [&](int h) {  // the same call while the helper is busy: the halves in turn
      if (h == 1) detail::gemm(ta, tb, m, n, k, pa, lda, pb, ldb, beta, serial.data(), n);
    };
    detail::two_halves(busy);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        ASSERT_EQ(two_threads[i * n + j], serial[i * n + j]) << "C[" << i << ", " << j << "]";
        double exact = double(beta) * double(c0.data<T>()[i * n + j]), scale = 0;
        for (std::size_t p = 0; p < k; ++p) {
          const double x = pa[ta ? p * lda + i : i * lda + p], y = pb[tb ? j * ldb + p : p * ldb + j];
          exact += x * y;
          scale += std::abs(x * y);
        }
        ASSERT_NEAR(two_threads[i * n + j], exact, (sizeof(T) == 4 ? 1e-5 : 1e-13) * (scale + 1))
            << "C[" << i << ", " << j << "]";
      }
  }
}

TEST(TwoCoreGemm, DeterministicAndExact) {
  // The composed GRU's per-step products at H = 512, B = 64 (split along n or m); at H = 128,
  // B = 32 (32 × 384, k = 128: split as a per-step product, blas.hpp's kSplitFewRows; its
  // transposed twin and char_gru's output layer (B·T = 1024) stay whole); the LSTM's per-step
  // product at H = 128 and an odd per-step shape; sizes above kSplitProduct that are odd.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      expect_gemm_split_deterministic<float>(ta, tb, 64, 1536, 512);
      expect_gemm_split_deterministic<float>(ta, tb, 1536, 512, 64);
      expect_gemm_split_deterministic<float>(ta, tb, 32, 384, 128);
      expect_gemm_split_deterministic<float>(ta, tb, 384, 128, 32);
      expect_gemm_split_deterministic<float>(ta, tb, 1024, 70, 128);
      expect_gemm_split_deterministic<float>(ta, tb, 70, 128, 1024);
      expect_gemm_split_deterministic<float>(ta, tb, 32, 512, 128);
      expect_gemm_split_deterministic<double>(ta, tb, 40, 301, 97);
      expect_gemm_split_deterministic<float>(ta, tb, 257, 301, 223);
      expect_gemm_split_deterministic<double>(ta, tb, 301, 257, 223);
    }
}

/// gemm_pair gives each product the bits of its own gemm() call, whether the pair ran on two
/// threads (both in [kPairProduct, kSplitProduct)), one after the other (the helper busy), or
/// was never paired (a product out of that range).
template <class T>
void expect_pair_equals_two_calls(std::size_t m, std::size_t n, std::size_t k, bool ta, bool tb) {
  SCOPED_TRACE(testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ta=" << ta
                                  << " tb=" << tb << " " << sizeof(T) * 8 << "-bit");
  Generator gen(m * 3 + n + k);
  const DType dtype = sizeof(T) == 4 ? DType::Float32 : DType::Float64;
  // p: (m×k)·(k×n); q: its transposed twin (n×k)·(k×m), as a matmul's two gradients are.
  const Tensor a = randn({m * k}, gen, dtype), b = randn({k * n}, gen, dtype),
               c0 = randn({m * n}, gen, dtype);
  const T* pa = a.data<T>().data();
  const T* pb = b.data<T>().data();
  for (T beta : {T(0), T(1)}) {
    std::vector<T> want_p(c0.data<T>().begin(), c0.data<T>().end()), want_q = want_p;
    detail::gemm(ta, tb, m, n, k, pa, ta ? m : k, pb, tb ? k : n, beta, want_p.data(), n);
    detail::gemm(!tb, !ta, n, m, k, pb, tb ? k : n, pa, ta ? m : k, beta, want_q.data(), m);
    for (bool helper_busy : {false, true}) {
      std::vector<T> got_p(c0.data<T>().begin(), c0.data<T>().end()), got_q = got_p;
      const std::size_t lda = ta ? m : k, ldb = tb ? k : n;
      const detail::GemmArgs<T> p{ta, tb, m, n, k, pa, lda, pb, ldb, beta, got_p.data(), n};
      const detail::GemmArgs<T> q{!tb, !ta, n, m, k, pb, ldb, pa, lda, beta, got_q.data(), m};
      auto run = [&](int h) {
        if (h == 1) detail::gemm_pair(p, q);
      };
      if (helper_busy)
        detail::two_halves(run);  // half 1 runs while the helper is busy with half 0
      else
        detail::gemm_pair(p, q);
      ASSERT_EQ(got_p, want_p) << "helper busy: " << helper_busy;
      ASSERT_EQ(got_q, want_q) << "helper busy: " << helper_busy;
    }
  }
}

TEST(TwoCoreGemm, PairBitIdenticalToTwoCalls) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      expect_pair_equals_two_calls<float>(32, 384, 128, ta, tb);   // the GRU's H = 128, B = 32 step
      expect_pair_equals_two_calls<float>(64, 64, 64, ta, tb);     // exactly kPairProduct
      expect_pair_equals_two_calls<double>(37, 301, 53, ta, tb);   // odd sizes, float64
      expect_pair_equals_two_calls<float>(8, 16, 16, ta, tb);      // below: never paired
      expect_pair_equals_two_calls<float>(64, 1536, 512, ta, tb);  // above: each split itself
    }
}

/// A matmul whose two inputs both need a gradient gets them from GradSink::add_matmuls: with the
/// helper free (the pair on two threads) and busy (in turn) the gradients have the same bits, and
/// they are the products: a weight used at four steps of a recurrence (its gradient added in
/// place, beta = 1), an input that is also the other operand (matmul(x, xᵀ): never paired).
TEST(TwoCoreGemm, MatmulGradientsOnTwoThreads) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    SCOPED_TRACE(dtype_name(dtype));
    Generator gen(11);
    const Tensor h0 = randn({32, 128}, gen, dtype), w0 = mul(randn({384, 128}, gen, dtype), 0.05),
                 v0 = mul(randn({384, 128}, gen, dtype), 0.05);
    auto grads = [&] {
      Tensor h = h0.detach().requires_grad_(), w = w0.detach().requires_grad_(),
             v = v0.detach().requires_grad_();
      Tensor x = h;
      for (int t = 0; t < 4; ++t) x = tanh(matmul(matmul(x, w, false, true), v));  // (32, 128)
      Tensor loss = add(sum(mul(x, x)), sum(matmul(h, h, false, true)));  // h also as both operands
      backward(loss);
      return std::vector<Tensor>{h.grad(), w.grad(), v.grad()};
    };
    const std::vector<Tensor> free_helper = grads();
    std::vector<Tensor> busy_helper;
    auto run = [&](int half) {
      if (half == 1) busy_helper = grads();
    };
    detail::two_halves(run);
    ASSERT_EQ(busy_helper.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(free_helper[i].defined() && busy_helper[i].defined()) << "gradient " << i;
      ASSERT_EQ(free_helper[i].shape(), busy_helper[i].shape());
      for (std::size_t e = 0; e < free_helper[i].numel(); ++e)
        ASSERT_EQ(free_helper[i].at(e), busy_helper[i].at(e)) << "gradient " << i << ", " << e;
    }
  }
}

/// And they are the products: loss = Σ (x·w) ⊙ r gives dx = r·wᵀ and dw = xᵀ·r, checked against
/// float64 loops, for a pair of 1.6 M multiply-adds each (on two threads).
TEST(TwoCoreGemm, MatmulGradientsAreTheProducts) {
  Generator gen(5);
  const std::size_t m = 32, k = 128, n = 384;
  Tensor x = randn({m, k}, gen, DType::Float64).requires_grad_(),
         w = randn({k, n}, gen, DType::Float64).requires_grad_();
  const Tensor r = randn({m, n}, gen, DType::Float64);
  backward(sum(mul(matmul(x, w), r)));
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t p = 0; p < k; ++p) {
      double want = 0;
      for (std::size_t j = 0; j < n; ++j) want += r.at(i * n + j) * w.at(p * n + j);
      ASSERT_NEAR(x.grad().at(i * k + p), want, 1e-10) << "dx[" << i << ", " << p << "]";
    }
  for (std::size_t p = 0; p < k; ++p)
    for (std::size_t j = 0; j < n; ++j) {
      double want = 0;
      for (std::size_t i = 0; i < m; ++i) want += x.at(i * k + p) * r.at(i * n + j);
      ASSERT_NEAR(w.grad().at(p * n + j), want, 1e-10) << "dw[" << p << ", " << j << "]";
    }
}

/// OpenBLAS's own thread count while the engine runs (blas.cpp, configured_blas_threads): one,
/// with its worker threads stopped when the library loads, except during a product of
/// kSmallProduct multiply-adds or more, which gets the configured count for its call (OpenBLAS's
/// threads, started again) and leaves one behind; that product is the right one. Integer-valued
/// operands, so every sum is exact in float32 whatever order the threads add in.
TEST(BlasThreads, OneOutsideBigProductsAndBigProductsAreExact) {
  if (openblas_get_parallel() != 1) GTEST_SKIP() << "not OpenBLAS's pthreads build";
  EXPECT_EQ(openblas_get_num_threads(), 1);
  const std::size_t m = 1024, k = 512, n = 512;  // 2^28 multiply-adds: kSmallProduct
  ASSERT_GE(m * k * n, detail::kSmallProduct);
  std::vector<float> a(m * k), b(k * n), c(m * n, -1.0f);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 7) - 3);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(int(i % 5) - 2);
  detail::gemm(false, false, m, n, k, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  EXPECT_EQ(openblas_get_num_threads(), 1);
  for (std::size_t i = 0; i < m; i += 31)
    for (std::size_t j = 0; j < n; ++j) {
      long want = 0;
      for (std::size_t p = 0; p < k; ++p) want += long(a[i * k + p]) * long(b[p * n + j]);
      ASSERT_EQ(c[i * n + j], float(want)) << "c[" << i << ", " << j << "]";
    }
  // A small product on one thread, the count untouched.
  std::vector<float> small(64 * 64);
  detail::gemm(false, false, 64, 64, 64, a.data(), k, b.data(), n, 0.0f, small.data(), 64);
  EXPECT_EQ(openblas_get_num_threads(), 1);
}

/// The threads of this process (/proc/self/task).
int process_threads() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

/// Inside a OneBlasThread scope (the engine's own two threads each multiplying, as the fused
/// LSTM's per-half weight gradients do) a product of kSmallProduct multiply-adds and more stays
/// on one OpenBLAS thread: it starts no OpenBLAS pool. In a child process, which has neither the
/// engine's helper nor OpenBLAS's workers (OpenBLAS stops them around fork), so that any thread
/// the product started would show. (Where OpenBLAS's kernel is narrower than the engine's, as
/// with OPENBLAS_CORETYPE=Haswell on an AVX-512 machine, the product runs on the engine's kernel
/// instead (blas.hpp): then the engine's one helper thread may start, and nothing else.)
TEST(BlasThreads, BigProductInsideOneBlasThreadScopeStartsNoPool) {
  if (openblas_get_parallel() != 1) GTEST_SKIP() << "not OpenBLAS's pthreads build";
  const std::size_t m = 1024, k = 512, n = 512;
  std::vector<float> a(m * k, 1.0f), b(k * n, 1.0f), c(m * n);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(20);
    const int before = process_threads();
    {
      detail::OneBlasThread one;
      detail::gemm(false, false, m, n, k, a.data(), k, b.data(), n, 0.0f, c.data(), n);
    }
    const int after = process_threads(), allowed = detail::engine_replaces_blas() ? 1 : 0;
    ::_exit(before > 0 && after >= before && after <= before + allowed && c[0] == float(k) && c[m * n - 1] == float(k) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

}  // namespace

/// where() selects by runs when every operand repeats whole over the result (ops_elementwise.cpp,
/// where_by_runs: same shapes, one element, a mask over leading axes) and by xtensor's broadcast
/// otherwise: cond ≠ 0 ? a : b element for element, on both paths, split over two cores or not,
/// with a condition holding NaN (nonzero: true) and −0 (false). (xtensor's own where, which every
/// call used before, took a NaN for false inside a SIMD batch and for true in an array's tail.)
TEST(WhereByRuns, NonzeroConditionTakesAOnEveryPath) {
  struct Case {
    Shape cond, a, b;
  };
  const Case cases[] = {{{4, 5, 6}, {4, 5, 6}, {4, 5, 6}}, {{5, 6}, {4, 5, 6}, {}},
                        {{4, 5, 6}, {1}, {6}},             {{}, {4, 5, 6}, {4, 5, 6}},
                        {{1, 5, 6}, {4, 1, 6}, {4, 5, 6}}, {{4, 1, 1}, {4, 5, 6}, {}},
                        {{128, 128}, {16, 128, 128}, {}},  {{16, 128, 128}, {1, 128}, {16, 128, 128}},
                        {{0, 3}, {0, 3}, {}}};
  for (DType dtype : {DType::Float32, DType::Float64})
    for (const Case& c : cases) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " cond " << shape_str(c.cond) << " a "
                                      << shape_str(c.a) << " b " << shape_str(c.b));
      Generator gen(c.cond.size() + 3 * c.a.size());
      Tensor cond = gt(randn(c.cond, gen, dtype), 0.0);
      if (cond.numel() > 2) {  // a NaN is true, a −0 false
        cond = cast(cond, DType::Float64);
        cond.data<double>().data()[0] = NAN;
        cond.data<double>().data()[1] = -0.0;
        cond = cast(cond, dtype);
      }
      const Tensor a = randn(c.a, gen, dtype), b = randn(c.b, gen, dtype);
      const Tensor r = where(cond, a, b);
      const Shape out = broadcast_shapes(broadcast_shapes(c.cond, c.a, "test"), c.b, "test");
      ASSERT_EQ(r.shape(), out);
      const xt::xarray<double> cc = xt::broadcast(cond.to_f64(), out), aa = xt::broadcast(a.to_f64(), out),
                               bb = xt::broadcast(b.to_f64(), out);
      for (std::size_t i = 0; i < r.numel(); ++i)
        ASSERT_EQ(r.at(i), cc.data()[i] != 0.0 ? aa.data()[i] : bb.data()[i]) << "element " << i;
    }
}

// The swap of the last two axes (transpose, permute(.., {.., n-1, n-2})) goes by 32 × 32 tiles of
// 8 × 8 float / 4 × 4 double register blocks where the build has AVX, element by element at the
// tiles' edges: every element lands where xtensor's transpose puts it, in both dtypes, for sizes
// that are and are not multiples of the block and the tile, one matrix or a batch of them.
TEST(TransposeLastTwo, EveryElementWhereXtensorPutsIt) {
  const Shape shapes[] = {{8, 8}, {4, 4}, {1, 7}, {16, 1}, {9, 17}, {33, 70}, {64, 32}, {3, 40, 24},
                          {2, 5, 33, 9}, {256, 1024}, {2, 0, 5}};
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const Shape& shape : shapes) {
      SCOPED_TRACE(testing::Message() << shape_str(shape) << " " << dtype_name(dtype));
      Generator gen(shape.size());
      Tensor x = randn(shape, gen, dtype).requires_grad_();
      Tensor y = transpose(x);
      std::vector<std::size_t> dims(shape.size());
      std::iota(dims.begin(), dims.end(), std::size_t(0));
      std::swap(dims[dims.size() - 2], dims[dims.size() - 1]);
      const Tensor x64 = cast(x.detach(), DType::Float64);
      const xt::xarray<double> ref = xt::transpose(x64.data<double>(), dims);
      ASSERT_EQ(y.shape(), Shape(ref.shape().begin(), ref.shape().end()));
      for (std::size_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y.at(i), ref.data()[i]) << "element " << i;
      const Tensor seed = randn(y.shape(), gen, dtype);
      backward(y, seed);
      const Tensor seed64 = cast(seed, DType::Float64);
      const xt::xarray<double> back = xt::transpose(seed64.data<double>(), dims);
      for (std::size_t i = 0; i < x.numel(); ++i) ASSERT_EQ(x.grad().at(i), back.data()[i]) << "gradient element " << i;
    }
  }
}

/// permute() of any axes (ops_shape.cpp: a swap of the last two by transpose_last_two, the others
/// by permute_copy's tiles) is xtensor's transpose, element for element: every permutation of
/// rank 0 to 4, sizes that leave partial tiles, and its gradient the inverse permutation.
TEST(PermuteCopy, EveryPermutationIsXtensorsTranspose) {
  const Shape shapes[] = {{}, {7}, {3, 5}, {33, 65, 2}, {3, 5, 7}, {2, 3, 4, 5}, {40, 1, 37, 3}, {0, 4, 2}};
  for (const Shape& shape : shapes) {
    std::vector<std::size_t> dims(shape.size());
    for (std::size_t d = 0; d < dims.size(); ++d) dims[d] = d;
    do {
      SCOPED_TRACE(testing::Message() << shape_str(shape) << " dims " << ::testing::PrintToString(dims));
      Generator gen(shape.size());
      Tensor x = randn(shape, gen, DType::Float64).requires_grad_();
      Tensor y = permute(x, dims);
      const xt::xarray<double> ref = xt::transpose(x.data<double>(), dims);
      ASSERT_EQ(y.shape(), Shape(ref.shape().begin(), ref.shape().end()));
      for (std::size_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y.at(i), ref.data()[i]) << "element " << i;
      const Tensor seed = randn(y.shape(), gen, DType::Float64);
      backward(y, seed);
      std::vector<std::size_t> inverse(dims.size());
      for (std::size_t d = 0; d < dims.size(); ++d) inverse[dims[d]] = d;
      const xt::xarray<double> back = xt::transpose(seed.data<double>(), inverse);
      for (std::size_t i = 0; i < x.numel(); ++i) ASSERT_EQ(x.grad().at(i), back.data()[i]) << "gradient element " << i;
    } while (std::next_permutation(dims.begin(), dims.end()));
  }
}
