// The engine's second core (framework/parallel.hpp) and what runs on it: two_halves runs both
// halves exactly once, on two threads when it can, serially when nested or when another thread
// holds the helper, and rethrows what a half throws; the elementwise ops it splits give
// bit-identical results to xtensor's one pass over the whole array, and a split GEMM the same bits
// whether or not the helper was free.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

#include "framework/blas.hpp"
#include "framework/ops.hpp"
#include "framework/parallel.hpp"
#include "framework/random.hpp"

#include <xtensor/xmath.hpp>

using namespace tapegrad;

namespace {

TEST(TwoHalves, RunsEachHalfOnceOnTwoThreads) {
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> count[2] = {0, 0};
    std::thread::id who[2];
    auto f = [&](int h) {
      ++count[h];
      who[h] = std::this_thread::get_id();
    };
    detail::two_halves(f);
    ASSERT_EQ(count[0].load(), 1);
    ASSERT_EQ(count[1].load(), 1);
    EXPECT_EQ(who[1], std::this_thread::get_id());  // the caller runs half 1
    if (detail::have_two_cores()) EXPECT_NE(who[0], who[1]);
  }
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
/// the same halves run in turn) against `ref`, the same expression evaluated by xtensor in one
/// pass over the whole array (what the op computed before it was split): bit-identical, since
/// the split falls on a multiple of 16 elements and every element goes through the same SIMD
/// lane or scalar tail code.
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
          [](const auto& a, const auto&) { return xt::tanh(a); });
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor&) { return exp(a); },
          [](const auto& a, const auto&) { return xt::exp(a); });
      expect_split_equals_one_pass(
          x, y, [](const Tensor& a, const Tensor&) { return rsub(a, 1.0); },
          [](const auto& a, const auto&) {
            using T = typename std::decay_t<decltype(a)>::value_type;
            return T(1) - a;
          });
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
  // B = 32 and char_gru's output layer (B·T = 1024), below kSplitProduct today (one piece, the
  // same either way); sizes above it that are odd.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      expect_gemm_split_deterministic<float>(ta, tb, 64, 1536, 512);
      expect_gemm_split_deterministic<float>(ta, tb, 1536, 512, 64);
      expect_gemm_split_deterministic<float>(ta, tb, 32, 384, 128);
      expect_gemm_split_deterministic<float>(ta, tb, 384, 128, 32);
      expect_gemm_split_deterministic<float>(ta, tb, 1024, 70, 128);
      expect_gemm_split_deterministic<float>(ta, tb, 70, 128, 1024);
      expect_gemm_split_deterministic<float>(ta, tb, 257, 301, 223);
      expect_gemm_split_deterministic<double>(ta, tb, 301, 257, 223);
    }
}

}  // namespace
