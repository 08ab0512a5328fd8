// Tape semantics: reuse, diamonds, accumulation, no_grad, detach, hooks, retain_grad, long
// chains, clearing, create_graph, torch.autograd.grad-style capture, and VJPs writing their
// result over an incoming gradient no one else holds.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "framework/tapegrad.hpp"

#include <xtensor/xoperation.hpp>

using namespace tapegrad;

namespace {
Tensor scalar64(double v) { return scalar(v, DType::Float64).requires_grad_(); }
}  // namespace

TEST(Tape, TensorUsedTwiceAccumulates) {
  Tensor x = scalar64(3.0);
  Tensor y = x * x + x;  // dy/dx = 2x + 1 = 7
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 7.0);
}

TEST(Tape, ReusedNodeLikeMicrogradPlusEquals) {
  // micrograd's test: c = c + c + 1 reuses a node; gradients must add, never overwrite.
  Tensor a = scalar64(-4.0);
  Tensor c = a * 2.0;
  c = c + c + 1.0;
  c = c + 1.0 + c + (-a);
  c.backward();
  EXPECT_DOUBLE_EQ(a.grad().item(), 2 * 2 * 2 - 1);
}

TEST(Tape, DiamondGraph) {
  Tensor x = scalar64(0.5);
  Tensor a = tanh(x), b = sigmoid(x);
  Tensor y = a * b;
  y.backward();
  double t = std::tanh(0.5), s = 1 / (1 + std::exp(-0.5));
  EXPECT_NEAR(x.grad().item(), (1 - t * t) * s + t * s * (1 - s), 1e-15);
}

TEST(Tape, GradientsAccumulateAcrossBackwardCallsUntilZeroGrad) {
  Tensor x = scalar64(2.0);
  (x * 3.0).backward();
  (x * 3.0).backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 6.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  (x * 5.0).backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 5.0);
}

TEST(Tape, RetainGraphAllowsSecondBackward) {
  Tensor x = scalar64(2.0);
  Tensor y = x * x;
  y.backward(Tensor(), true);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 8.0);
}

TEST(Tape, NoGradRecordsNothing) {
  tape().clear();
  Tensor x = scalar64(1.0);
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(tape().size(), 0u);
  }
  Tensor z = x * 2.0;
  EXPECT_TRUE(z.requires_grad());
  EXPECT_EQ(tape().size(), 1u);
  tape().clear();
}

TEST(Tape, DetachCutsTheGraph) {
  Tensor x = scalar64(3.0);
  Tensor h = tanh(x);
  Tensor d = h.detach();
  EXPECT_TRUE(d.is_leaf());
  EXPECT_FALSE(d.requires_grad());
  Tensor y = d * x;  // only the direct path counts
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), std::tanh(3.0));
}

TEST(Tape, HooksSeeTheGradientAndCanReplaceIt) {
  Tensor x = from_vector({0.1, 0.2, 0.3}, {3}, DType::Float64).requires_grad_();
  Tensor h = tanh(x);
  Tensor seen;
  h.register_hook([&](const Tensor& g) { seen = g.detach(); });
  Tensor y = sum(h * 4.0);
  y.backward();
  ASSERT_TRUE(seen.defined());
  for (std::size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(seen.at(i), 4.0);
  // A replacing hook changes what flows on.
  Tensor x2 = scalar64(1.0);
  Tensor h2 = x2 * 3.0;
  h2.register_hook([](const Tensor& g) { return mul(g, 0.0); });
  (h2 * 2.0).backward();
  EXPECT_DOUBLE_EQ(x2.grad().item(), 0.0);
}

TEST(Tape, RetainGradKeepsIntermediateGradients) {
  Tensor x = scalar64(0.3);
  Tensor h = (x * 2.0).retain_grad();
  Tensor other = x * 5.0;  // not retained
  (h * h + other).backward();
  EXPECT_DOUBLE_EQ(h.grad().item(), 2 * 0.6);
  EXPECT_FALSE(other.grad().defined());
}

TEST(Tape, TenThousandStepChainDoesNotOverflowTheStack) {
  Tensor w = scalar64(0.9999);
  Tensor h = scalar64(0.5);
  Tensor x = h;
  for (int t = 0; t < 10000; ++t) x = tanh(x * w + 0.001);
  x.backward();
  ASSERT_TRUE(h.grad().defined());
  EXPECT_TRUE(std::isfinite(h.grad().item()));
  EXPECT_TRUE(std::isfinite(w.grad().item()));
  EXPECT_EQ(tape().size(), 0u);  // cleared after backward
}

TEST(Tape, ClearingFreesMemoryAndTapeDoesNotGrowAcrossSteps) {
  Tensor w = randn({64, 64}, DType::Float64).requires_grad_();
  std::weak_ptr<TensorImpl> intermediate;
  for (int step = 0; step < 5; ++step) {
    Tensor x = randn({8, 64}, DType::Float64);
    Tensor h = tanh(matmul(x, w));
    if (step == 0) intermediate = h.impl_ptr();
    Tensor loss = mean(h * h);
    EXPECT_LT(tape().size(), 10u);
    loss.backward();
    EXPECT_EQ(tape().size(), 0u);
  }
  EXPECT_TRUE(intermediate.expired());  // the tape released the saved tensors
}

TEST(Tape, NonScalarRootNeedsASeed) {
  Tensor x = from_vector({1, 2}, {2}, DType::Float64).requires_grad_();
  Tensor y = x * 3.0;
  EXPECT_THROW(y.backward(), AutogradError);
  y = x * 3.0;
  y.backward(from_vector({1, 10}, {2}, DType::Float64));
  EXPECT_DOUBLE_EQ(x.grad().at(0), 3.0);
  EXPECT_DOUBLE_EQ(x.grad().at(1), 30.0);
}

TEST(Tape, BackwardThroughFreedTapeIsAnError) {
  Tensor x = scalar64(1.0);
  Tensor h = tanh(x);
  Tensor y = h * 2.0;
  y.backward();  // clears the tape
  try {
    y.backward();
    FAIL() << "expected AutogradError";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("freed tape"), std::string::npos) << e.what();
  }
  // Using h (made on the freed tape) in a new graph is also caught at backward.
  Tensor z = h * 3.0;
  EXPECT_THROW(z.backward(), AutogradError);
}

TEST(Tape, CreateGraphGivesHessianVectorProducts) {
  // f(x) = Σ x³ → ∇f = 3x², H = diag(6x); Hv = 6 x ⊙ v.
  Tensor x = from_vector({1.0, -2.0, 0.5}, {3}, DType::Float64).requires_grad_();
  Tensor v = from_vector({1.0, 1.0, 2.0}, {3}, DType::Float64);
  Tensor f = sum(pow(x, 3.0));
  std::vector<Tensor> g = grad(f, {x}, Tensor(), true, true);
  ASSERT_TRUE(g[0].requires_grad());
  Tensor gv = sum(g[0] * v);
  gv.backward();
  EXPECT_DOUBLE_EQ(x.grad().at(0), 6.0);
  EXPECT_DOUBLE_EQ(x.grad().at(1), -12.0);
  EXPECT_DOUBLE_EQ(x.grad().at(2), 6.0);
}

TEST(Tape, GradCapturesWithoutTouchingOtherLeaves) {
  Tensor a = scalar64(2.0), b = scalar64(3.0);
  Tensor h = (a * b).set_name("h");
  Tensor y = h * h;
  auto g = grad(y, {h, a});
  EXPECT_DOUBLE_EQ(g[0].item(), 12.0);
  EXPECT_DOUBLE_EQ(g[1].item(), 36.0);
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

// ---- several roots in one pass (torch.autograd.backward / grad with a list of tensors) ----------

namespace {
/// Two losses over one shared trunk h = tanh(w ⊙ x): l1 = Σh, l2 = Σh².
struct TwoHeads {
  Tensor w = from_vector({0.3, -0.8, 1.2}, {3}, DType::Float64).requires_grad_();
  Tensor x = from_vector({1.0, 0.5, -2.0}, {3}, DType::Float64);
  Tensor h, l1, l2;
  TwoHeads() { record(); }
  void record() {
    h = tanh(w * x);
    l1 = sum(h);
    l2 = sum(h * h);
  }
  /// d(c1·l1 + c2·l2)/dw_i = (c1 + 2 c2 h_i)(1 − h_i²) x_i
  double expected(int i, double c1, double c2) const {
    const double hi = std::tanh(w.at(i) * x.at(i));
    return (c1 + 2 * c2 * hi) * (1 - hi * hi) * x.at(i);
  }
};
}  // namespace

TEST(MultiRoot, TwoLossesSharingATrunkInOnePassNeedNoRetainGraph) {
  tape().clear();
  TwoHeads m;
  backward({m.l1, m.l2});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(m.w.grad().at(i), m.expected(i, 1, 1), 1e-15) << i;
  EXPECT_EQ(tape().size(), 0u);  // each shared node ran once, then was released
  // the same as the backward of their sum
  Tensor once = m.w.grad().detach();
  m.w.zero_grad();
  m.record();
  (m.l1 + m.l2).backward();
  for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(m.w.grad().at(i), once.at(i)) << i;
}

TEST(MultiRoot, SeedsWeighTheRootsAndARootGivenTwiceCountsTwice) {
  tape().clear();
  TwoHeads m;
  backward({m.l1, m.l2, m.l1}, {scalar(0.5, DType::Float64), scalar(-3.0, DType::Float64),
                                scalar(2.0, DType::Float64)});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(m.w.grad().at(i), m.expected(i, 2.5, -3.0), 1e-15) << i;
  // A non-scalar root with its seed, and a leaf among the roots (its seed goes to its .grad).
  m.w.zero_grad();
  m.record();
  Tensor seed_h = from_vector({1.0, 2.0, 3.0}, {3}, DType::Float64);
  Tensor seed_w = from_vector({10.0, 20.0, 30.0}, {3}, DType::Float64);
  backward({m.h, m.w}, {seed_h, seed_w});
  for (int i = 0; i < 3; ++i) {
    const double hi = std::tanh(m.w.at(i) * m.x.at(i));
    EXPECT_NEAR(m.w.grad().at(i), seed_w.at(i) + seed_h.at(i) * (1 - hi * hi) * m.x.at(i), 1e-14) << i;
  }
  EXPECT_DOUBLE_EQ(seed_h.at(0), 1.0);  // the caller's seeds are not written into
  EXPECT_DOUBLE_EQ(seed_w.at(0), 10.0);
}

TEST(MultiRoot, GradOfSeveralOutputsIsTheGradOfTheirSum) {
  tape().clear();
  TwoHeads m;
  std::vector<Tensor> g = grad({m.l1, m.l2}, {m.w, m.h});
  ASSERT_EQ(g.size(), 2u);
  EXPECT_FALSE(m.w.grad().defined());  // grad() does not touch .grad
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(g[0].at(i), m.expected(i, 1, 1), 1e-15) << i;
    const double hi = std::tanh(m.w.at(i) * m.x.at(i));
    EXPECT_NEAR(g[1].at(i), 1 + 2 * hi, 1e-15) << i;
  }
}

TEST(MultiRoot, BadCallsAreClearErrorsAndLeaveNothingBehind) {
  tape().clear();
  TwoHeads m;
  auto message = [](auto&& call) {
    try {
      call();
    } catch (const AutogradError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { backward(std::vector<Tensor>{}); }).find("backward: no tensors given"),
            std::string::npos);
  EXPECT_NE(message([&] { backward({m.l1, m.l2}, {scalar(1.0, DType::Float64)}); })
                .find("2 tensors but 1 seed gradients"),
            std::string::npos);
  // the second root is refused (a non-scalar without a seed): nothing may stay pending on the first
  EXPECT_NE(message([&] { backward({m.l1, m.h}); }).find("needs an explicit seed"),
            std::string::npos);
  EXPECT_NE(message([&] { grad({m.l1}, {m.x}); }).find("every input must be"), std::string::npos);
  EXPECT_FALSE(m.w.grad().defined());
  backward({m.l1, m.l2});  // the same graph, unharmed, and no stale seed added in
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(m.w.grad().at(i), m.expected(i, 1, 1), 1e-15) << i;
  // after a pass released the trunk, a second one through it is refused as for one root
  m.record();
  Tensor l3 = sum(m.h * 3.0);
  backward({m.l1});
  EXPECT_NE(message([&] { backward({m.l2, l3}); }).find("backward through a freed tape"),
            std::string::npos);
}

TEST(MultiRoot, AHookThrowingOnALeafRootLeavesNoSeedPendingOnTheOthers) {
  Tensor a = scalar64(1.0), b = scalar64(2.0);
  a.register_hook([](const Tensor&) -> Tensor { throw std::runtime_error("hook says no"); });
  EXPECT_THROW(backward({a, b}, {scalar(5.0, DType::Float64), scalar(7.0, DType::Float64)}),
               std::runtime_error);
  backward({b}, {scalar(7.0, DType::Float64)});
  EXPECT_DOUBLE_EQ(b.grad().item(), 7.0);  // not 14: the failed call's seed did not stay behind
}

TEST(MultiRoot, CreateGraphGivesGradientsThatCanBeDifferentiatedAgain) {
  tape().clear();
  TwoHeads m;
  backward({m.l1, m.l2}, {}, /*retain_graph=*/false, /*create_graph=*/true);
  Tensor g = m.w.grad();
  ASSERT_TRUE(g.requires_grad());
  // d/dw_i of Σ_j dL/dw_j, L = l1 + l2: with u = w_i x_i, dL/dw_i = (1 + 2h)(1 − h²) x and
  // its derivative in w_i is x² (2(1 − h²)² − 2h(1 + 2h)(1 − h²)).
  std::vector<Tensor> gg = grad(sum(g), {m.w});
  m.w.zero_grad();  // breaks the cycle w -> .grad -> its graph -> w
  for (int i = 0; i < 3; ++i) {
    const double xi = m.x.at(i), hi = std::tanh(m.w.at(i) * xi), s = 1 - hi * hi;
    EXPECT_NEAR(gg[0].at(i), xi * xi * (2 * s * s - 2 * hi * (1 + 2 * hi) * s), 1e-14) << i;
  }
}

TEST(Tape, SliceGradientsAccumulateInPlace) {
  // 3 narrows of one parent: the parent receives exactly one gradient buffer.
  Tensor p = randn({4, 6}, DType::Float64).requires_grad_();
  Tensor proj = p * 1.0;
  int calls = 0;
  const void* first = nullptr;
  bool same_buffer = true;
  proj.register_hook([&](const Tensor& g) {
    ++calls;
    first = g.impl();
    same_buffer = g.shape() == Shape{4, 6};
  });
  auto parts = chunk(proj, 3, 1);
  (sum(parts[0]) + sum(parts[1] * 2.0) + sum(parts[2] * 3.0)).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(same_buffer);
  EXPECT_NE(first, nullptr);
  for (std::size_t r = 0; r < 4; ++r)
    for (std::size_t c = 0; c < 6; ++c) EXPECT_DOUBLE_EQ(p.grad().at(r * 6 + c), double(c / 2 + 1));
}

// Slice gradients (narrow's, select's) reach a pending gradient in whatever order the tape gives:
// adjacent ones are written into an array that was never zero-filled, and anything else (a gap
// left open, an overlap, another axis, a dense gradient, a hook, retain_grad) sees the zeros
// the rest must read as. Each case is compared with the sum of its pieces, element by element.
TEST(Tape, SliceGradientsInAnyOrderEqualTheirSum) {
  struct Piece {
    std::size_t axis, start, len;  // len 0: select(start) on axis
    double c;                      // the loss adds c · Σ piece
  };
  const std::vector<std::vector<Piece>> cases = {
      // every step of a sequence, as a recurrence's selects
      {{1, 0, 0, 1}, {1, 1, 0, 2}, {1, 2, 0, 3}, {1, 3, 0, 4}, {1, 4, 0, 5}, {1, 5, 0, 6}},
      {{1, 5, 0, 1}, {1, 3, 0, 2}, {1, 4, 0, 3}, {1, 0, 0, 4}},     // out of order, gaps
      {{2, 0, 2, 1}, {2, 2, 2, 2}},                                  // chunk, last axis
      {{1, 0, 2, 1}, {1, 4, 2, 2}, {1, 1, 3, 3}},                    // a gap, then an overlap
      {{1, 2, 2, 1}, {1, 2, 1, 2}, {1, 3, 1, 3}, {1, 0, 2, 4}},      // inside, then adjacent
      {{1, 0, 3, 1}, {2, 1, 2, 2}, {0, 1, 0, 3}},                    // three axes
      {{0, 0, 1, 1}, {0, 1, 2, 2}},                                  // covers axis 0 fully
  };
  for (std::size_t n = 0; n < cases.size(); ++n)
    for (bool dense : {false, true})
      for (bool hook : {false, true}) {
        SCOPED_TRACE(testing::Message() << "case " << n << " dense " << dense << " hook " << hook);
        Tensor p = randn({3, 6, 4}, DType::Float64).requires_grad_();
        Tensor proj = p * 1.0;  // not a leaf: its gradient is gathered during the pass
        proj.retain_grad();
        bool hook_saw_whole = !hook;
        if (hook)
          proj.register_hook(
              [&](const Tensor& g) { hook_saw_whole = g.shape() == Shape{3, 6, 4}; });
        Tensor loss = dense ? sum(proj * 0.5) : scalar(0.0, DType::Float64);
        for (const Piece& q : cases[n]) {
          const auto axis = static_cast<std::ptrdiff_t>(q.axis);
          Tensor part = q.len == 0 ? select(proj, axis, static_cast<std::ptrdiff_t>(q.start))
                                   : narrow(proj, axis, q.start, q.len);
          loss = loss + sum(part * q.c);
        }
        loss.backward();
        EXPECT_TRUE(hook_saw_whole);
        for (std::size_t i = 0; i < 3; ++i)
          for (std::size_t j = 0; j < 6; ++j)
            for (std::size_t k = 0; k < 4; ++k) {
              const std::size_t at[3] = {i, j, k};
              double want = dense ? 0.5 : 0.0;
              for (const Piece& q : cases[n]) {
                const std::size_t len = q.len == 0 ? 1 : q.len;
                if (at[q.axis] >= q.start && at[q.axis] < q.start + len) want += q.c;
              }
              const std::size_t flat = (i * 6 + j) * 4 + k;
              ASSERT_EQ(p.grad().at(flat), want) << i << "," << j << "," << k;
              ASSERT_EQ(proj.grad().at(flat), want) << i << "," << j << "," << k;
            }
      }
}

// A slice's gradient is added to zeros: −0 arrives as +0, as 0 + (−0) is, also where no zeros
// were written first.
TEST(Tape, SliceGradientOfMinusZeroIsPlusZero) {
  Tensor a = ones({2, 3}, DType::Float64).requires_grad_();
  Tensor h = a * 1.0;
  Tensor out = record("minus_zero_slice", zeros({2, 3}, DType::Float64), {h},
                      [](const Tensor&, GradSink& s) {
                        s.add_narrow(0, 1, 0, full({2, 3}, -0.0, DType::Float64));
                      });
  out.sum().backward();
  for (std::size_t k = 0; k < 6; ++k) EXPECT_FALSE(std::signbit(a.grad().at(k))) << k;
}

TEST(Tape, ListingAndDot) {
  tape().clear();
  Tensor W = randn({3, 2}, DType::Float64).requires_grad_().set_name("W");
  Tensor x = randn({1, 3}, DType::Float64).set_name("x");
  Tensor h = tanh(matmul(x, W)).set_name("h");
  std::string listing = tape().listing();
  EXPECT_NE(listing.find("matmul"), std::string::npos) << listing;
  EXPECT_NE(listing.find("(x, W)"), std::string::npos) << listing;
  EXPECT_NE(listing.find("tanh"), std::string::npos);
  EXPECT_NE(listing.find("(1, 2)  h"), std::string::npos) << listing;
  std::string dot = tape().to_dot();
  EXPECT_EQ(dot.rfind("digraph", 0), 0u);
  EXPECT_NE(dot.find("n0 -> n1"), std::string::npos) << dot;
  // Leaves are numbered by first appearance (x, then W), not by address.
  EXPECT_NE(dot.find("l0 [shape=ellipse, label=\"x\\n(1, 3)\"]"), std::string::npos) << dot;
  EXPECT_NE(dot.find("l1 -> n0"), std::string::npos) << dot;
  tape().clear();
  // The same graph from other tensors (other addresses) gives the same DOT, byte for byte.
  Tensor W2 = randn({3, 2}, DType::Float64).requires_grad_().set_name("W");
  Tensor x2 = randn({1, 3}, DType::Float64).set_name("x");
  Tensor h2 = tanh(matmul(x2, W2)).set_name("h");
  EXPECT_EQ(tape().to_dot(), dot);
  tape().clear();
}

TEST(Tape, TwoThreadsTrainIndependently) {
  auto train = [](double target, double* out) {
    Tensor w = scalar(0.0, DType::Float64).requires_grad_();
    for (int i = 0; i < 200; ++i) {
      Tensor loss = pow(w - target, 2.0);
      loss.backward();
      NoGradGuard g;
      w.data<double>()() -= 0.1 * w.grad().item();
      w.zero_grad();
    }
    *out = w.item();
  };
  double a = 0, b = 0;
  std::thread t1(train, 1.5, &a), t2(train, -2.0, &b);
  t1.join();
  t2.join();
  EXPECT_NEAR(a, 1.5, 1e-9);
  EXPECT_NEAR(b, -2.0, 1e-9);
}

// GradSink::add_narrow (narrow's and select's VJP, open to custom ops) checks that the gradient
// fits the slice it names, instead of writing outside the input's gradient.
TEST(Tape, AddNarrowRejectsAGradientThatDoesNotFit) {
  Tensor a = ones({4, 3}).requires_grad_();
  auto op = [&](std::size_t axis, std::size_t start, Shape g_shape) {
    Tensor out = record("slice_test", zeros(g_shape), {a},
                        [=](const Tensor& g, GradSink& s) { s.add_narrow(0, axis, start, g); });
    out.sum().backward();
  };
  op(0, 1, {2, 3});  // rows 1..2: fits
  EXPECT_EQ(a.grad().at(3), 1.0);
  EXPECT_EQ(a.grad().at(0), 0.0);
  op(0, 3, {3});     // row 3 without the axis (select's form): fits
  EXPECT_EQ(a.grad().at(9), 1.0);
  for (auto [axis, start, shape] : {std::tuple<std::size_t, std::size_t, Shape>{0, 3, {2, 3}},
                                    {0, 4, {3}}, {1, 0, {4, 4}}, {2, 0, {4, 3}}, {0, 0, {2, 2}},
                                    {0, 0, {1, 1, 3}}})
    try {
      op(axis, start, shape);
      ADD_FAILURE() << "no error for axis " << axis << " start " << start;
    } catch (const AutogradError& e) {
      EXPECT_NE(std::string(e.what()).find("does not fit slice"), std::string::npos) << e.what();
    }
}

// ---- a VJP's result written over its incoming gradient ---------------------------------------------
// When the pass alone holds a node's incoming gradient g, the VJPs of mul, mul_scalar, rsub, neg,
// tanh and sigmoid write their result into g's values and hand g on (ops_elementwise.cpp,
// may_write_over). Anyone else holding g (retain_grad, a hook keeping it, grad()) gets a new array.

namespace {
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && bool(xt::all(xt::equal(a.to_f64(), b.to_f64())));
}
}  // namespace

TEST(GradientReuse, UnaryVjpsWriteOverAGradientOnlyThePassHolds) {
  struct Op {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
  };
  const Op ops[] = {{"mul_scalar", [](const Tensor& x) { return mul(x, -1.5); }},
                    {"rsub_scalar", [](const Tensor& x) { return rsub(x, 1.0); }},
                    {"neg", [](const Tensor& x) { return neg(x); }},
                    {"tanh", [](const Tensor& x) { return tanh(x); }},
                    {"sigmoid", [](const Tensor& x) { return sigmoid(x); }}};
  for (DType dtype : {DType::Float32, DType::Float64})
    for (std::size_t n : {1u, 37u, 4099u, 40000u}) {  // 40000: two cores, a new array
      for (const Op& op : ops) {
        SCOPED_TRACE(testing::Message() << op.name << " " << dtype_name(dtype) << " n=" << n);
        Generator gen(n);
        Tensor x = randn({n}, gen, dtype).requires_grad_();
        const Tensor w = randn({n}, gen, dtype);
        // Where each gradient's values live, seen by hooks that keep no handle.
        const void* into_y = nullptr;
        const void* into_x = nullptr;
        auto where = [](const Tensor& g) -> const void* {
          return g.dtype() == DType::Float32 ? static_cast<const void*>(g.data<float>().data())
                                             : static_cast<const void*>(g.data<double>().data());
        };
        x.register_hook([&](const Tensor& g) {
          into_x = where(g);
          return Tensor();
        });
        Tensor y = op.f(x);
        y.register_hook([&](const Tensor& g) {
          into_y = where(g);
          return Tensor();
        });
        sum(mul(y, w)).backward();
        const Tensor over_g = x.grad();
        EXPECT_EQ(into_x == into_y, n < 32768) << "written over g below two cores' size";
        x.zero_grad();
        // The same with y's gradient retained: g is y.grad too, so the VJP makes a new array.
        Tensor y2 = op.f(x);
        y2.retain_grad();
        sum(mul(y2, w)).backward();
        EXPECT_TRUE(same_bits(y2.grad(), w)) << "y.grad was overwritten";
        EXPECT_TRUE(same_bits(x.grad(), over_g)) << "not the bits of the new-array path";
      }
    }
}

/// mul's VJP writes g ⊙ b over its incoming gradient g when the pass alone holds g (a product
/// chain hands one array down the chain). A gradient anyone else can see is left as it was: a
/// retained .grad, a copy a hook kept, a gradient grad() returns.
TEST(GradientReuse, MulLeavesAGradientSomeoneElseHoldsAsItWas) {
  for (std::size_t n : {3u, 4099u, 40000u}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    Generator gen(n);
    Tensor a = randn({n}, gen, DType::Float64).requires_grad_();
    Tensor b = randn({n}, gen, DType::Float64).requires_grad_();
    const Tensor w = randn({n}, gen, DType::Float64);
    const auto same = [](const Tensor& x, const Tensor& y) {
      return bool(xt::all(xt::equal(x.to_f64(), y.to_f64())));
    };
    {  // retain_grad: y.grad is y's incoming gradient, w
      Tensor y = mul(a, b);
      y.retain_grad();
      sum(mul(y, w)).backward();
      EXPECT_TRUE(same(y.grad(), w));
      EXPECT_TRUE(same(a.grad(), mul(w, b)));
      EXPECT_TRUE(same(b.grad(), mul(w, a)));
      a.zero_grad(), b.zero_grad();
    }
    {  // a hook keeping what it saw
      Tensor y = mul(a, b), seen;
      y.register_hook([&](const Tensor& g) {
        seen = g;
        return Tensor();
      });
      sum(mul(y, w)).backward();
      EXPECT_TRUE(same(seen, w));
      EXPECT_TRUE(same(a.grad(), mul(w, b)));
      a.zero_grad(), b.zero_grad();
    }
    {  // grad() of the product and of a factor
      Tensor y = mul(a, b);
      std::vector<Tensor> g = grad(sum(mul(y, w)), {y, a});
      EXPECT_TRUE(same(g[0], w));
      EXPECT_TRUE(same(g[1], mul(w, b)));
    }
    {  // a chain: every link's gradient is the pass's own, written over as it goes down
      std::vector<Tensor> xs;
      for (int k = 0; k < 5; ++k) xs.push_back(randn({n}, gen, DType::Float64).requires_grad_());
      Tensor p = xs[0];
      for (int k = 1; k < 5; ++k) p = mul(p, xs[k]);
      sum(p).backward();
      for (int k = 0; k < 5; ++k) {
        // the product of the others, in the order the backward multiplies them: from the last
        // factor down to k + 1, then the prefix product x_0 ⊙ … ⊙ x_(k-1)
        Tensor expect = ones({n}, DType::Float64);
        for (int j = 4; j > k; --j) expect = mul(expect, xs[j]);
        if (k > 0) {
          Tensor prefix = xs[0];
          for (int j = 1; j < k; ++j) prefix = mul(prefix, xs[j]);
          expect = mul(expect, prefix);
        }
        EXPECT_TRUE(same(xs[k].grad(), expect)) << "x_" << k;
      }
    }
  }
}
