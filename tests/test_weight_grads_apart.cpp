// A weight's gradient on the helper while the backward goes on (framework/tape.cpp, "a weight's
// gradient on the helper"): every gradient is bit-identical to the serial order
// (detail::SerialWeightGradientsGuard), for the composed GRU and for a hand-written recurrence,
// in float32 and float64; a weight that also gets a gradient from another op gets every
// contribution; torch.autograd.grad-style capture sees the finished sums; a pass that fails midway
// leaves no gradient behind and the next pass is right; two user threads training at once each
// get their serial bits. Each test also checks that the helper really took some products (on a
// machine with two cores), so that it cannot pass by never taking the path it tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/packed_gemm.hpp"
#include "framework/parallel.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"
#include "layers/gru.hpp"

using namespace tapegrad;

namespace {

/// Same dtype, shape and bytes.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  return detail::dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    return std::memcmp(a.data<T>().data(), b.data<T>().data(), a.numel() * sizeof(T)) == 0;
  });
}

std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> g;
  for (const Tensor& p : params) g.push_back(p.grad().defined() ? p.grad().detach() : Tensor());
  return g;
}

void zero(const std::vector<Tensor>& params) {
  for (Tensor p : params) p.zero_grad();
}

/// The helper takes products only where there are two cores and the process has the engine's own
/// kernel (framework/packed_gemm.hpp: none on a CPU without AVX2, or with
/// TAPEGRAD_GEMM_KERNEL=blas): elsewhere the count stays, and the tests check the bits alone.
void expect_started(std::size_t before, DType dt) {
  const bool kernel = dt == DType::Float32 ? detail::PackedGemm<float>::available()
                                           : detail::PackedGemm<double>::available();
  if (detail::have_two_cores() && kernel)
    EXPECT_GT(detail::weight_gradients_started_apart(), before)
        << "no weight gradient ran on the helper: the test did not test the path";
}

/// A recurrence h ← tanh(h Wᵀ + b + x_t), W (256 × 256): every step's dW = gᵀ h is a product the
/// helper can take (32 rows, on the engine's kernel); `reg` adds c·Σ W², recorded before the
/// recurrence so that its gradient reaches W after the helper has started on W's.
struct Recurrence {
  Tensor W, b, h0;
  std::vector<Tensor> xs;
  explicit Recurrence(DType dt, std::uint64_t seed = 7) {
    Generator gen(seed);
    W = (randn({256, 256}, gen, dt) * 0.06).detach().requires_grad_();
    b = (randn({256}, gen, dt) * 0.1).detach().requires_grad_();
    h0 = randn({32, 256}, gen, dt);
    for (int t = 0; t < 9; ++t) xs.push_back(randn({32, 256}, gen, dt));
  }
  Tensor loss(bool reg, const std::function<void(Tensor&, int)>& on_state = nullptr) const {
    Tensor penalty = reg ? sum(W * W) * 0.01 : Tensor();
    Tensor h = h0;
    for (int t = 0; t < int(xs.size()); ++t) {
      h = tanh(linear(h, W, b) + xs[t]);
      if (on_state) on_state(h, t);
    }
    Tensor l = sum(h * h);
    return reg ? l + penalty : l;
  }
};

class WeightGradsApart : public ::testing::TestWithParam<DType> {};

TEST_P(WeightGradsApart, ComposedGruGradientsAreBitIdenticalToSerial) {
  Generator gen(3);
  GRU gru(GRUOptions(16, 128), gen);
  gru.set_path(GRU::Path::Composed);
  gru.to(GetParam());
  const Tensor x = randn({32, 12, 16}, gen, GetParam());
  const std::vector<Tensor> params = gru.parameters();
  auto run = [&] {
    zero(params);
    sum(gru.forward(x).output * 0.5).backward();
    return grads_of(params);
  };
  std::vector<Tensor> serial;
  {
    detail::SerialWeightGradientsGuard guard;
    serial = run();
  }
  const std::size_t before = detail::weight_gradients_started_apart();
  const std::vector<Tensor> apart = run();
  expect_started(before, GetParam());
  ASSERT_EQ(serial.size(), apart.size());
  for (std::size_t i = 0; i < serial.size(); ++i)
    EXPECT_TRUE(same_bits(serial[i], apart[i])) << "parameter " << i;
  // Twice more: the order of the helper's and this thread's work varies, the bits may not.
  for (int again = 0; again < 2; ++again) {
    const std::vector<Tensor> more = run();
    for (std::size_t i = 0; i < serial.size(); ++i) EXPECT_TRUE(same_bits(serial[i], more[i]));
  }
}

TEST_P(WeightGradsApart, AWeightAlsoUsedElsewhereGetsEveryContribution) {
  const Recurrence r(GetParam());
  std::vector<Tensor> serial, serial_plain;
  {
    detail::SerialWeightGradientsGuard guard;
    r.loss(true).backward();
    serial = grads_of({r.W, r.b});
    zero({r.W, r.b});
    r.loss(false).backward();
    serial_plain = grads_of({r.W, r.b});
    zero({r.W, r.b});
  }
  const std::size_t before = detail::weight_gradients_started_apart();
  r.loss(true).backward();
  expect_started(before, GetParam());
  EXPECT_TRUE(same_bits(r.W.grad(), serial[0]));
  EXPECT_TRUE(same_bits(r.b.grad(), serial[1]));
  // The penalty's share is there: dW(with) − dW(without) = 0.02·W (to rounding).
  const Tensor share = r.W.grad() - serial_plain[0];
  const Tensor expected = r.W.detach() * 0.02;
  detail::dispatch(share.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* got = share.data<T>().data();
    const T* want = expected.data<T>().data();
    double worst = 0;
    for (std::size_t i = 0; i < share.numel(); ++i)
      worst = std::max(worst, std::abs(double(got[i]) - double(want[i])));
    EXPECT_LT(worst, GetParam() == DType::Float32 ? 2e-4 : 1e-10);
  });
}

TEST_P(WeightGradsApart, GradCapturesTheFinishedSums) {
  const Recurrence r(GetParam());
  std::vector<Tensor> serial;
  {
    detail::SerialWeightGradientsGuard guard;
    serial = grad(r.loss(true), {r.W, r.b});
  }
  const std::size_t before = detail::weight_gradients_started_apart();
  const std::vector<Tensor> apart = grad(r.loss(true), {r.W, r.b});
  expect_started(before, GetParam());
  EXPECT_TRUE(same_bits(apart[0], serial[0]));
  EXPECT_TRUE(same_bits(apart[1], serial[1]));
  EXPECT_FALSE(r.W.grad().defined());  // grad() leaves .grad alone
}

TEST_P(WeightGradsApart, AFailedPassLeavesNothingAndTheNextIsRight) {
  const Recurrence r(GetParam());
  std::vector<Tensor> serial;
  {
    detail::SerialWeightGradientsGuard guard;
    r.loss(false).backward();
    serial = grads_of({r.W, r.b});
    zero({r.W, r.b});
  }
  // A hook on the second state throws once the helper has taken the later steps' dW.
  const std::size_t before = detail::weight_gradients_started_apart();
  Tensor l = r.loss(false, [](Tensor& h, int t) {
    if (t == 1) h.register_hook([](const Tensor&) { throw std::runtime_error("hook says no"); });
  });
  EXPECT_THROW(l.backward(), std::runtime_error);
  expect_started(before, GetParam());
  EXPECT_FALSE(r.W.grad().defined());
  EXPECT_FALSE(r.b.grad().defined());
  r.loss(false).backward();
  EXPECT_TRUE(same_bits(r.W.grad(), serial[0]));
  EXPECT_TRUE(same_bits(r.b.grad(), serial[1]));
}

TEST_P(WeightGradsApart, TwoThreadsTrainingAtOnceEachGetTheirSerialBits) {
  // Two user threads share one helper: whichever does not get it computes on its own thread.
  const DType dt = GetParam();
  std::vector<Tensor> serial[2];
  for (int k = 0; k < 2; ++k) {
    detail::SerialWeightGradientsGuard guard;
    const Recurrence r(dt, 11 + k);
    r.loss(true).backward();
    serial[k] = grads_of({r.W, r.b});
  }
  bool ok[2] = {true, true};
  auto work = [&](int k) {
    const Recurrence r(dt, 11 + k);
    for (int round = 0; round < 5; ++round) {
      zero({r.W, r.b});
      r.loss(true).backward();
      ok[k] = ok[k] && same_bits(r.W.grad(), serial[k][0]) && same_bits(r.b.grad(), serial[k][1]);
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  EXPECT_TRUE(ok[0]);
  EXPECT_TRUE(ok[1]);
}

INSTANTIATE_TEST_SUITE_P(BothDtypes, WeightGradsApart,
                         ::testing::Values(DType::Float32, DType::Float64),
                         [](const auto& info) { return info.param == DType::Float32 ? "f32" : "f64"; });

}  // namespace
