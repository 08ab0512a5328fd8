// Gradient flow through the GRU's update gate: the claims of docs/gru.md and
// docs/gradient-flow.md as tests (PyTorch's convention: z = 1 keeps the old state; the course's
// Γu = 1 − z). Each claim is also gradient-checked in float64 on a short version, so the tape
// gradients the claim is read from are themselves known to be right.
//
//   1. z ≈ 1 keeps the gradient: a GRU with b_z = +6 keeps ‖dL/dh_0‖ / ‖dL/dh_T‖ ≥ 0.5 over
//      T = 100 (H = 32, PyTorch init), while the tanh RNN of the same size and init, on the same
//      data, falls below 1e-6. Measured for seeds 0–4: GRU 0.77–0.80, RNN 1e-31–4e-24. PyTorch's
//      U(±1/√H) gives W_hh entries of variance 1/(3H), so a spectral radius near 1/√3 ≈ 0.58, and
//      tanh' ≤ 1 only shrinks the per-step factor further: ~0.5^100 ≈ 1e-30.
//   2. z ≡ 1 (forced): dh_T/dh_0 is exactly the identity. z ≡ 0: the GRU is an RNN whose
//      candidate has the reset gate (and with r ≡ 1 too, a plain tanh RNN).
//   3. W_hh = 0: the one-step Jacobian dh_t/dh_{t−1} is diag(z_t), entry by entry, from the tape;
//      for W_hh ≠ 0 the tape's Jacobian is the three-term formula of docs/gradient-flow.md.
//   4. r = 0: n does not depend on h_{t−1}; the gradient reaching h_{t−1} through n is exactly 0.
//   5. A worked step with real numbers: h_t[i] = n_t[i] where z_t[i] = 0, h_{t−1}[i] where z_t[i] = 1.
//   6. The course's equations are tapegrad's reset-before GRU with Γu = 1 − z (docs/gru.md's table).
//
// Forcing a gate: tapegrad's sigmoid is σ(a) = 1/(1 + e^−a) for a ≥ 0 and e^a/(1 + e^a) for a < 0.
// In float64, σ(40) = 1/(1 + 4.2e−18) rounds to exactly 1.0, but σ(−40) = 4.2e−18 is not 0. With a
// bias of ±800, e^−800 underflows to 0, so σ(800) = 1 and σ(−800) = 0 exactly; the tests check it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "framework/gradcheck.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

constexpr DType f64 = DType::Float64;
constexpr double kForce = 800.0;  // σ(±800) is exactly 1 / 0 in float64

/// Float64 module built from a seeded generator (PyTorch init drawn directly in float64).
template <class M, class Opt>
M make(const Opt& opt, std::uint64_t seed) {
  DType saved = default_dtype();
  set_default_dtype(f64);
  Generator gen(seed);
  M m(opt, gen);
  set_default_dtype(saved);
  return m;
}

/// Sets rows [gate·H, (gate+1)·H) of a (3H) GRU bias to `value` (gate 0 = r, 1 = z, 2 = n).
void set_gate_bias(Tensor& bias, std::size_t gate, std::size_t H, double value) {
  for (std::size_t i = gate * H; i < (gate + 1) * H; ++i) bias.data<double>()(i) = value;
}

std::vector<double> values(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = t.at(i);
  return v;
}

double norm(const Tensor& t) {
  double s = 0;
  for (double v : values(t)) s += v * v;
  return std::sqrt(s);
}

/// e_i as a (1, H) seed.
Tensor unit_seed(std::size_t H, std::size_t i) {
  Tensor e = zeros({1, H}, f64);
  e.data<double>()(0, i) = 1.0;
  return e;
}

/// Expects gradcheck of f (a function of `inputs`) to pass in float64.
void expect_gradcheck(const std::function<Tensor()>& f, const std::vector<Tensor>& inputs,
                      const std::vector<std::string>& names) {
  GradcheckOptions opt;
  opt.names = names;
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return f(); }, inputs, opt);
  EXPECT_TRUE(r.passed) << r.report();
}

/// The experiment of examples/gradient_flow: x_t ~ N(0, 1)^8, h_0 ~ U(±0.5)^H (one batch row),
/// L = Σ h_T, ‖dL/dh_t‖ for t = 0..T recorded by hooks on every h_t.
struct Sequence {
  Tensor h0;  // (1, H)
  Tensor x;   // (T, 1, in)
};

Sequence make_sequence(std::size_t T, std::size_t in, std::size_t H, std::uint64_t seed) {
  Generator gen(seed);
  Tensor h0 = uniform({1, H}, -0.5, 0.5, gen, f64);
  Tensor x = randn({T, 1, in}, gen, f64);
  return {h0, x};
}

template <class Step>
std::vector<double> grad_norms(const Sequence& s, Step&& step) {
  const std::size_t T = s.x.size(0);
  std::vector<double> norms(T + 1, -1.0);
  Tensor h0 = s.h0.detach().requires_grad_();
  h0.register_hook([&norms](const Tensor& g) { norms[0] = norm(g); });
  Tensor h = h0;
  for (std::size_t t = 1; t <= T; ++t) {
    h = step(select(s.x, 0, t - 1), h);
    h.register_hook([&norms, t](const Tensor& g) { norms[t] = norm(g); });
  }
  sum(h).backward();
  return norms;
}

/// h_T after unrolling `step` over s from h0 (for gradcheck and Jacobians).
template <class Step>
Tensor unroll(const Tensor& x, const Tensor& h0, Step&& step) {
  Tensor h = h0;
  for (std::size_t t = 0; t < x.size(0); ++t) h = step(select(x, 0, t), h);
  return h;
}

/// Full Jacobian d(out)/d(in), (H_out, H_in), row i from a backward seeded with e_i.
xt::xarray<double> jacobian_rows(const Tensor& out, const Tensor& in) {
  const std::size_t m = out.size(1), n = in.numel();
  xt::xarray<double> J = xt::zeros<double>({m, n});
  for (std::size_t i = 0; i < m; ++i) {
    std::vector<Tensor> g = grad(out, {in}, unit_seed(m, i), /*retain_graph=*/true);
    if (!g[0].defined()) continue;  // no path: the row is zero
    for (std::size_t j = 0; j < n; ++j) J(i, j) = g[0].at(j);
  }
  return J;
}

}  // namespace

// ---- 0. the forcing trick itself -------------------------------------------------------------------

TEST(GradientFlow, SigmoidSaturatesExactlyAtPlusMinus800) {
  Tensor a = tensor({40.0, -40.0, 800.0, -800.0, 37.0, -37.0}, f64);
  std::vector<double> s = values(sigmoid(a));
  EXPECT_EQ(s[0], 1.0);         // 1/(1 + 4.2e−18) rounds to 1
  EXPECT_GT(s[1], 0.0);         // but σ(−40) = 4.2e−18 is not 0
  EXPECT_NEAR(s[1], std::exp(-40.0), 1e-30);
  EXPECT_EQ(s[2], 1.0);
  EXPECT_EQ(s[3], 0.0);         // e^−800 underflows to 0
  EXPECT_EQ(s[4], 1.0);
  EXPECT_GT(s[5], 0.0);
}

// ---- 1. z ≈ 1 keeps the gradient over T = 100; the tanh RNN loses it ----------------------------------

TEST(GradientFlow, GRUWithUpdateBiasPlus6KeepsGradientWhileRNNVanishes) {
  const std::size_t H = 32, in = 8, T = 100;
  for (std::uint64_t seed : {0, 1, 2, 3, 4}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Sequence s = make_sequence(T, in, H, seed + 1);

    auto gru = make<GRUCell>(GRUCellOptions(in, H), seed);
    set_gate_bias(gru.bias_ih, 1, H, 6.0);  // b_iz = +6
    set_gate_bias(gru.bias_hh, 1, H, 0.0);  // b_hz = 0
    double min_z = 1.0;
    std::vector<double> g_gru = grad_norms(s, [&](const Tensor& x, const Tensor& h) {
      GRUCell::Step st = gru.forward_with_gates(x, h);
      for (double z : values(st.z)) min_z = std::min(min_z, z);
      return st.h_new;
    });
    auto rnn = make<RNNCell>(RNNCellOptions(in, H), seed);  // same size, same init
    std::vector<double> g_rnn = grad_norms(s, [&](const Tensor& x, const Tensor& h) { return rnn(x, h); });

    EXPECT_DOUBLE_EQ(g_gru[T], std::sqrt(double(H)));  // dL/dh_T = (1, …, 1)
    EXPECT_DOUBLE_EQ(g_rnn[T], std::sqrt(double(H)));
    const double r_gru = g_gru[0] / g_gru[T], r_rnn = g_rnn[0] / g_rnn[T];
    RecordProperty("ratio_gru_seed" + std::to_string(seed), fmt::format("{:.4e}", r_gru));
    RecordProperty("ratio_rnn_seed" + std::to_string(seed), fmt::format("{:.4e}", r_rnn));
    EXPECT_GE(r_gru, 0.5) << "GRU b_z = +6, min z = " << min_z;
    EXPECT_LT(r_rnn, 1e-6);
    // The RNN's gradient shrinks by a roughly constant factor per step: it is not a cliff.
    EXPECT_LT(g_rnn[T / 2] / g_rnn[T], 1e-3);
    EXPECT_GT(min_z, 0.98);  // what b_z = +6 does: σ(6 ± small) ≈ 0.9975
  }
}

TEST(GradientFlow, HookNormsAreTheTapeGradientAndBothCellsPassGradcheck) {
  // The short version of the experiment (H = 4, T = 5): the hook's ‖dL/dh_0‖ is the norm of the
  // gradient gradcheck verifies against central differences.
  const std::size_t H = 4, in = 3, T = 5;
  Sequence s = make_sequence(T, in, H, 11);
  auto gru = make<GRUCell>(GRUCellOptions(in, H), 10);
  set_gate_bias(gru.bias_ih, 1, H, 6.0);
  set_gate_bias(gru.bias_hh, 1, H, 0.0);
  auto rnn = make<RNNCell>(RNNCellOptions(in, H), 10);
  auto gru_step = [&](const Tensor& x, const Tensor& h) { return gru(x, h); };
  auto rnn_step = [&](const Tensor& x, const Tensor& h) { return rnn(x, h); };

  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which == 0 ? "gru" : "rnn");
    std::vector<double> norms = which == 0 ? grad_norms(s, gru_step) : grad_norms(s, rnn_step);
    Tensor h0 = s.h0.detach().requires_grad_();
    Tensor hT = which == 0 ? unroll(s.x, h0, gru_step) : unroll(s.x, h0, rnn_step);
    Tensor g0 = grad(sum(hT), {h0})[0];
    EXPECT_DOUBLE_EQ(norms[0], norm(g0));
    const Module& m = which == 0 ? static_cast<const Module&>(gru) : static_cast<const Module&>(rnn);
    std::vector<Tensor> inputs = {h0};
    std::vector<std::string> names = {"h_0"};
    for (const auto& [name, p] : m.named_parameters()) {
      inputs.push_back(p);
      names.push_back(name);
    }
    expect_gradcheck([&] { return sum(which == 0 ? unroll(s.x, h0, gru_step) : unroll(s.x, h0, rnn_step)); },
                     inputs, names);
  }
}

// ---- 2. z ≡ 1: the identity; z ≡ 0: an RNN with a reset gate ------------------------------------------

TEST(GradientFlow, UpdateGateForcedToOneMakesDhTdh0ExactlyTheIdentity) {
  const std::size_t H = 8, in = 5, T = 30;
  auto cell = make<GRUCell>(GRUCellOptions(in, H), 20);
  set_gate_bias(cell.bias_ih, 1, H, kForce);  // z = σ(800 + …) = 1 exactly
  Sequence s = make_sequence(T, in, H, 21);
  Tensor h0 = s.h0.detach().requires_grad_();
  Tensor h = h0;
  for (std::size_t t = 0; t < T; ++t) {
    GRUCell::Step st = cell.forward_with_gates(select(s.x, 0, t), h);
    for (double z : values(st.z)) ASSERT_EQ(z, 1.0) << "step " << t + 1;
    h = st.h_new;
  }
  // Forward: h' = n + z ⊙ (h − n) copies h up to one rounding of n + (h − n).
  for (std::size_t i = 0; i < H; ++i) EXPECT_NEAR(h.at(i), h0.at(i), 1e-15);
  // Backward: every row of dh_T/dh_0 is exactly e_i (the paths through n and z carry exact zeros).
  xt::xarray<double> J = jacobian_rows(h, h0);
  for (std::size_t i = 0; i < H; ++i)
    for (std::size_t j = 0; j < H; ++j) EXPECT_EQ(J(i, j), i == j ? 1.0 : 0.0) << i << ", " << j;

  // Short version, gradient-checked: the full numeric Jacobian of h_3(h_0) is I too.
  Tensor x3 = narrow(s.x, 0, 0, 3);
  Tensor h0s = s.h0.detach().requires_grad_();
  JacobianCheck jc = jacobian_check(
      [&](const std::vector<Tensor>& v) { return unroll(x3, v[0], [&](const auto& x, const auto& hh) { return cell(x, hh); }); },
      {h0s});
  EXPECT_TRUE(jc.passed) << jc.max_abs_error;
  for (std::size_t i = 0; i < H; ++i)
    for (std::size_t j = 0; j < H; ++j) EXPECT_NEAR(jc.numeric(i, j), i == j ? 1.0 : 0.0, 1e-9);
  auto f3 = [&] { return sum(unroll(x3, h0s, [&](const auto& x, const auto& hh) { return cell(x, hh); })); };
  expect_gradcheck(f3, {h0s}, {"h_0"});
  // The weights: with z ≡ 1 the exact derivative of h_T with respect to them is 0, and the tape
  // gives exactly 0. Central differences only see rounding noise there (h' = n + (h − n) moves by
  // an ulp when n moves: ~1e-16 / 2ε ≈ 1e-10), so a relative-error gradcheck is meaningless for
  // them; check the numbers instead.
  GradcheckResult w = gradcheck([&](const std::vector<Tensor>&) { return f3(); }, {cell.weight_hh, cell.weight_ih});
  for (const InputCheck& c : w.inputs) {
    EXPECT_EQ(c.analytic, 0.0) << c.name;
    EXPECT_LT(std::abs(c.numeric), 1e-9) << c.name;
  }
}

TEST(GradientFlow, UpdateGateForcedToZeroIsAnRNNWhoseCandidateHasTheResetGate) {
  const std::size_t H = 6, in = 4, T = 12;
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after (PyTorch)" : "reset before (course)");
    auto cell = make<GRUCell>(GRUCellOptions(in, H).reset_after(reset_after), 30);
    set_gate_bias(cell.bias_ih, 1, H, -kForce);  // z = σ(−800 + …) = 0 exactly
    // The reset-gated RNN, written with ops from the GRU's r and n rows only (z's rows unused):
    //   r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    //   h' = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      (reset after)
    //   h' = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      (reset before)
    auto rows = [H](const Tensor& w, std::size_t gate) { return narrow(w, 0, gate * H, H); };
    auto rnn_step = [&](const Tensor& x, const Tensor& h) {
      Tensor r = sigmoid(matmul(x, rows(cell.weight_ih, 0), false, true) + rows(cell.bias_ih, 0) +
                         matmul(h, rows(cell.weight_hh, 0), false, true) + rows(cell.bias_hh, 0));
      Tensor in_n = matmul(x, rows(cell.weight_ih, 2), false, true) + rows(cell.bias_ih, 2);
      if (reset_after)
        return tanh(in_n + r * (matmul(h, rows(cell.weight_hh, 2), false, true) + rows(cell.bias_hh, 2)));
      return tanh(in_n + matmul(r * h, rows(cell.weight_hh, 2), false, true) + rows(cell.bias_hh, 2));
    };
    auto gru_step = [&](const Tensor& x, const Tensor& h) {
      GRUCell::Step st = cell.forward_with_gates(x, h);
      for (double z : values(st.z)) EXPECT_EQ(z, 0.0);
      for (std::size_t i = 0; i < H; ++i) EXPECT_EQ(st.h_new.at(i), st.n.at(i));  // n + 0 ⊙ (h − n) = n
      return st.h_new;
    };
    Sequence s = make_sequence(T, in, H, 31);
    Tensor h0a = s.h0.detach().requires_grad_(), h0b = s.h0.detach().requires_grad_();
    Tensor ha = unroll(s.x, h0a, gru_step), hb = unroll(s.x, h0b, rnn_step);
    for (std::size_t i = 0; i < H; ++i) EXPECT_NEAR(ha.at(i), hb.at(i), 1e-14);
    xt::xarray<double> Ja = jacobian_rows(ha, h0a), Jb = jacobian_rows(hb, h0b);
    EXPECT_LT(xt::amax(xt::abs(Ja - Jb))(), 1e-14);
    tape().clear();

    // Short version, both gradient-checked (h_0 and the weights the RNN reads).
    Tensor x3 = narrow(s.x, 0, 0, 3);
    expect_gradcheck([&] { return sum(unroll(x3, h0a, gru_step)); }, {h0a, cell.weight_hh, cell.weight_ih},
                     {"h_0", "weight_hh", "weight_ih"});
    expect_gradcheck([&] { return sum(unroll(x3, h0b, rnn_step)); }, {h0b, cell.weight_hh, cell.bias_hh},
                     {"h_0", "weight_hh", "bias_hh"});
  }
}

TEST(GradientFlow, UpdateZeroAndResetOneIsAPlainTanhRNN) {
  // With z ≡ 0 and r ≡ 1 (reset after) the GRU is RNNCell with W_hh = W_hn, b_ih = b_in, b_hh = b_hn.
  const std::size_t H = 5, in = 3, T = 10;
  auto gru = make<GRUCell>(GRUCellOptions(in, H), 40);
  set_gate_bias(gru.bias_ih, 1, H, -kForce);  // z = 0
  set_gate_bias(gru.bias_ih, 0, H, kForce);   // r = 1
  auto rnn = make<RNNCell>(RNNCellOptions(in, H), 41);
  {
    NoGradGuard ng;
    rnn.weight_ih.data<double>() = narrow(gru.weight_ih, 0, 2 * H, H).data<double>();
    rnn.weight_hh.data<double>() = narrow(gru.weight_hh, 0, 2 * H, H).data<double>();
    rnn.bias_ih.data<double>() = narrow(gru.bias_ih, 0, 2 * H, H).data<double>();
    rnn.bias_hh.data<double>() = narrow(gru.bias_hh, 0, 2 * H, H).data<double>();
  }
  Sequence s = make_sequence(T, in, H, 42);
  Tensor ha = unroll(s.x, s.h0, [&](const auto& x, const auto& h) { return gru(x, h); });
  Tensor hb = unroll(s.x, s.h0, [&](const auto& x, const auto& h) { return rnn(x, h); });
  for (std::size_t i = 0; i < H; ++i) EXPECT_NEAR(ha.at(i), hb.at(i), 1e-14);
  tape().clear();
  Tensor h0 = s.h0.detach().requires_grad_();
  Tensor x3 = narrow(s.x, 0, 0, 3);
  expect_gradcheck([&] { return sum(unroll(x3, h0, [&](const auto& x, const auto& h) { return gru(x, h); })); },
                   {h0, gru.weight_hh}, {"h_0", "weight_hh"});
}

// ---- 3. the one-step Jacobian ------------------------------------------------------------------------

TEST(GradientFlow, WithZeroRecurrentWeightsTheOneStepJacobianIsDiagZ) {
  const std::size_t H = 6, in = 4;
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    auto cell = make<GRUCell>(GRUCellOptions(in, H).reset_after(reset_after), 50);
    cell.weight_hh.data<double>().fill(0.0);  // W_hh = 0: r, z, n see only x
    Sequence s = make_sequence(1, in, H, 51);
    Tensor x = select(s.x, 0, 0);
    Tensor h = s.h0.detach().requires_grad_();
    GRUCell::Step st = cell.forward_with_gates(x, h);
    std::vector<double> z = values(st.z);
    for (double v : z) {  // z strictly inside (0, 1): a real test of diag(z), not of 0/1
      EXPECT_GT(v, 0.05);
      EXPECT_LT(v, 0.95);
    }
    xt::xarray<double> J = jacobian_rows(st.h_new, h);
    for (std::size_t i = 0; i < H; ++i)
      for (std::size_t j = 0; j < H; ++j) EXPECT_EQ(J(i, j), i == j ? z[i] : 0.0) << i << ", " << j;
    tape().clear();

    // Gradient-checked: the numeric Jacobian is diag(z) too.
    JacobianCheck jc = jacobian_check([&](const std::vector<Tensor>& v) { return cell(x, v[0]); }, {h});
    EXPECT_TRUE(jc.passed) << jc.max_abs_error;
    for (std::size_t i = 0; i < H; ++i)
      for (std::size_t j = 0; j < H; ++j) EXPECT_NEAR(jc.numeric(i, j), i == j ? z[i] : 0.0, 1e-9);
  }
}

TEST(GradientFlow, OneStepJacobianIsTheThreeTermFormula) {
  // ∂h'/∂h = diag(z) + diag(1 − z) ∂n/∂h + diag(h − n) ∂z/∂h, with
  //   ∂z/∂h = diag(z(1 − z)) W_hz,   ∂r/∂h = diag(r(1 − r)) W_hr,
  //   ∂n/∂h = diag(1 − n²) [diag(r) W_hn + diag(W_hn h + b_hn) ∂r/∂h]    (reset after)
  //   ∂n/∂h = diag(1 − n²) W_hn [diag(r) + diag(h) ∂r/∂h]                 (reset before)
  // and for the RNN ∂h'/∂h = diag(1 − h'²) W_hh. All against the tape, entry by entry.
  const std::size_t H = 5, in = 3;
  Sequence s = make_sequence(1, in, H, 61);
  Tensor x = select(s.x, 0, 0);
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    auto cell = make<GRUCell>(GRUCellOptions(in, H).reset_after(reset_after), 60);
    Tensor h = s.h0.detach().requires_grad_();
    GRUCell::Step st = cell.forward_with_gates(x, h);
    xt::xarray<double> J = jacobian_rows(st.h_new, h);
    tape().clear();

    const xt::xarray<double>& W = cell.weight_hh.data<double>();  // (3H, H) rows r|z|n
    const xt::xarray<double>& b = cell.bias_hh.data<double>();
    auto r = values(st.r), z = values(st.z), n = values(st.n), hp = values(h);
    auto W_hr = [&](std::size_t i, std::size_t j) { return W(i, j); };
    auto W_hz = [&](std::size_t i, std::size_t j) { return W(H + i, j); };
    auto W_hn = [&](std::size_t i, std::size_t j) { return W(2 * H + i, j); };
    auto dr = [&](std::size_t k, std::size_t j) { return r[k] * (1 - r[k]) * W_hr(k, j); };
    xt::xarray<double> F = xt::zeros<double>({H, H});
    for (std::size_t i = 0; i < H; ++i) {
      double ghn = b(2 * H + i);  // W_hn h + b_hn, unit i
      for (std::size_t k = 0; k < H; ++k) ghn += W_hn(i, k) * hp[k];
      for (std::size_t j = 0; j < H; ++j) {
        double dz = z[i] * (1 - z[i]) * W_hz(i, j);
        double dn = 0;
        if (reset_after) {
          dn = (1 - n[i] * n[i]) * (r[i] * W_hn(i, j) + ghn * dr(i, j));
        } else {
          double s_ij = W_hn(i, j) * r[j];
          for (std::size_t k = 0; k < H; ++k) s_ij += W_hn(i, k) * hp[k] * dr(k, j);
          dn = (1 - n[i] * n[i]) * s_ij;
        }
        F(i, j) = (i == j ? z[i] : 0.0) + (1 - z[i]) * dn + (hp[i] - n[i]) * dz;
      }
    }
    EXPECT_LT(xt::amax(xt::abs(J - F))(), 1e-14);

    JacobianCheck jc = jacobian_check([&](const std::vector<Tensor>& v) { return cell(x, v[0]); }, {h});
    EXPECT_TRUE(jc.passed) << jc.max_abs_error;
    EXPECT_LT(xt::amax(xt::abs(jc.numeric - F))(), 1e-8);
  }

  auto rnn = make<RNNCell>(RNNCellOptions(in, H), 62);
  Tensor h2 = s.h0.detach().requires_grad_();
  Tensor hn = rnn(x, h2);
  xt::xarray<double> Jr = jacobian_rows(hn, h2);
  tape().clear();
  const xt::xarray<double>& Wr = rnn.weight_hh.data<double>();
  for (std::size_t i = 0; i < H; ++i)
    for (std::size_t j = 0; j < H; ++j)
      EXPECT_NEAR(Jr(i, j), (1 - hn.at(i) * hn.at(i)) * Wr(i, j), 1e-15);
  JacobianCheck jr = jacobian_check([&](const std::vector<Tensor>& v) { return rnn(x, v[0]); }, {h2});
  EXPECT_TRUE(jr.passed) << jr.max_abs_error;
}

// ---- 4. r = 0 cuts the candidate off from h_{t−1} ----------------------------------------------------

TEST(GradientFlow, ResetZeroMakesTheCandidateIndependentOfThePreviousState) {
  const std::size_t H = 6, in = 4;
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    auto cell = make<GRUCell>(GRUCellOptions(in, H).reset_after(reset_after), 70);
    Sequence s = make_sequence(1, in, H, 71);
    Tensor x = select(s.x, 0, 0);

    // Control: with the PyTorch init the candidate does depend on h.
    Tensor hc = s.h0.detach().requires_grad_();
    Tensor gc = grad(cell.forward_with_gates(x, hc).n, {hc}, ones({1, H}, f64))[0];
    EXPECT_GT(norm(gc), 1e-3);

    set_gate_bias(cell.bias_ih, 0, H, -kForce);  // r = σ(−800 + …) = 0 exactly
    Tensor h = s.h0.detach().requires_grad_();
    GRUCell::Step st = cell.forward_with_gates(x, h);
    for (double v : values(st.r)) ASSERT_EQ(v, 0.0);
    // The candidate's value does not change when h does ...
    Tensor h_other = full({1, H}, 0.37, f64);
    Tensor n_other = cell.forward_with_gates(x, h_other).n;
    for (std::size_t i = 0; i < H; ++i) EXPECT_EQ(st.n.at(i), n_other.at(i));
    // ... and the gradient that reaches h_{t−1} through n is exactly zero, for any seed.
    Generator gen(72);
    for (int k = 0; k < 3; ++k) {
      std::vector<Tensor> g = grad(st.n, {h}, randn({1, H}, gen, f64), /*retain_graph=*/true);
      if (g[0].defined())
        for (double v : values(g[0])) EXPECT_EQ(v, 0.0);
    }
    // What still reaches h_{t−1}: the copy path z and the update gate's own dependence on h.
    Tensor g_total = grad(st.h_new, {h}, ones({1, H}, f64))[0];
    EXPECT_GT(norm(g_total), 0.1);

    // Gradient-checked: numerically, ∂n/∂h is zero, and the step's gradients pass.
    JacobianCheck jc = jacobian_check(
        [&](const std::vector<Tensor>& v) { return cell.forward_with_gates(x, v[0]).n; }, {h});
    EXPECT_TRUE(jc.passed) << jc.max_abs_error;
    EXPECT_EQ(xt::amax(xt::abs(jc.numeric))(), 0.0);
    expect_gradcheck([&] { return sum(cell(x, h)); }, {h, cell.weight_hh, cell.weight_ih},
                     {"h", "weight_hh", "weight_ih"});
  }
}

// ---- 5. a worked step with real numbers --------------------------------------------------------------

TEST(GradientFlow, WorkedStepTakesTheCandidateWhereZIsZeroAndKeepsTheStateWhereZIsOne) {
  // H = 3, one input x = 0.5, hand-picked weights so the numbers can be followed on paper:
  //   W_i* = 0.4 (every row), W_h* = 0.2 · I, b_ih = b_hh = 0 except the update-gate biases
  //   b_iz = (−800, +800, 0): unit 0 takes the candidate, unit 1 keeps its state, unit 2 mixes.
  // h_{t−1} = (0.5, −0.3, 0.8).
  const std::size_t H = 3;
  auto cell = make<GRUCell>(GRUCellOptions(1, H), 80);
  cell.weight_ih.data<double>().fill(0.4);
  cell.weight_hh.data<double>().fill(0.0);
  for (std::size_t g = 0; g < 3; ++g)
    for (std::size_t i = 0; i < H; ++i) cell.weight_hh.data<double>()(g * H + i, i) = 0.2;
  cell.bias_ih.data<double>().fill(0.0);
  cell.bias_hh.data<double>().fill(0.0);
  cell.bias_ih.data<double>()(H + 0) = -kForce;
  cell.bias_ih.data<double>()(H + 1) = kForce;
  Tensor x = full({1, 1}, 0.5, f64);
  Tensor h = tensor({{0.5, -0.3, 0.8}}, f64).requires_grad_();
  GRUCell::Step st = cell.forward_with_gates(x, h);

  // By hand: r_i = σ(0.4·0.5 + 0.2 h_i) = σ(0.2 + 0.2 h_i); n_i = tanh(0.2 + r_i · 0.2 h_i).
  const double hp[3] = {0.5, -0.3, 0.8};
  auto sig = [](double a) { return 1 / (1 + std::exp(-a)); };
  for (std::size_t i = 0; i < H; ++i) {
    double r = sig(0.2 + 0.2 * hp[i]);
    EXPECT_NEAR(st.r.at(i), r, 1e-15);
    EXPECT_NEAR(st.n.at(i), std::tanh(0.2 + r * 0.2 * hp[i]), 1e-15);
  }
  // The real numbers: r = (0.574443, 0.534943, 0.589040), n = (0.251904, 0.166343, 0.286039).
  EXPECT_NEAR(st.r.at(0), 0.574443, 1e-6);
  EXPECT_NEAR(st.n.at(0), 0.251904, 1e-6);
  EXPECT_NEAR(st.n.at(1), 0.166343, 1e-6);
  // z = (0, 1, σ(0.2 + 0.16) = 0.589040) (unit 2's z equals its r: same weights, same input).
  EXPECT_EQ(st.z.at(0), 0.0);
  EXPECT_EQ(st.z.at(1), 1.0);
  EXPECT_NEAR(st.z.at(2), sig(0.36), 1e-15);
  // Unit 0 (z = 0): h_t = n_t exactly, 0.251904, whatever h_{t−1} = 0.5 was.
  EXPECT_EQ(st.h_new.at(0), st.n.at(0));
  EXPECT_NEAR(st.h_new.at(0), 0.251904, 1e-6);
  // Unit 1 (z = 1): h_t = h_{t−1} = −0.3 exactly ((1 − 1)·n + 1·h: the equation as written).
  EXPECT_EQ(st.h_new.at(1), -0.3);
  // Unit 2 (z = 0.589): h_t = 0.411 · 0.286039 + 0.589 · 0.8 = 0.588783, in between.
  const double z2 = sig(0.36);
  EXPECT_NEAR(st.h_new.at(2), (1 - z2) * st.n.at(2) + z2 * 0.8, 1e-15);
  EXPECT_NEAR(st.h_new.at(2), 0.588783, 1e-6);

  // The gradients of this step, gradient-checked (h_{t−1}, x and the weights).
  Tensor xg = x.detach().requires_grad_();
  expect_gradcheck([&] { return cell(xg, h); }, {h, xg, cell.weight_ih, cell.weight_hh},
                   {"h_prev", "x", "weight_ih", "weight_hh"});
}

// ---- the course's notation is PyTorch's reset-before GRU with Γu = 1 − z -------------------------------

TEST(GradientFlow, CourseNotationIsResetBeforeWithUpdateGateOneMinusZ) {
  // The course:  Γu = σ(W_u [c, x] + b_u),  Γr = σ(W_r [c, x] + b_r),
  //              c~ = tanh(W_c [Γr ∗ c, x] + b_c),  c' = Γu ∗ c~ + (1 − Γu) ∗ c   (W_*: (H, H + in))
  // Conversion (docs/gru.md): W_hr | W_ir = W_r split by columns (hidden first), b_ir = b_r, b_hr = 0;
  // W_hz | W_iz = −W_u, b_iz = −b_u, b_hz = 0; W_hn | W_in = W_c, b_in = b_c, b_hn = 0; reset before.
  const std::size_t H = 4, in = 3;
  Generator gen(90);
  auto param = [&](const Shape& shape) { return uniform(shape, -0.8, 0.8, gen, f64).requires_grad_(); };
  Tensor W_u = param({H, H + in}), W_r = param({H, H + in}), W_c = param({H, H + in});
  Tensor b_u = param({H}), b_r = param({H}), b_c = param({H});
  Tensor x = uniform({2, in}, -1, 1, gen, f64), c = uniform({2, H}, -1, 1, gen, f64).requires_grad_();
  auto course_step = [&](const Tensor& xx, const Tensor& cc) {
    Tensor gu = sigmoid(matmul(concat({cc, xx}, 1), W_u, false, true) + b_u);
    Tensor gr = sigmoid(matmul(concat({cc, xx}, 1), W_r, false, true) + b_r);
    Tensor ct = tanh(matmul(concat({gr * cc, xx}, 1), W_c, false, true) + b_c);
    return std::vector<Tensor>{gu * ct + (1.0 - gu) * cc, gu, gr, ct};
  };

  auto gru = make<GRUCell>(GRUCellOptions(in, H).reset_after(false), 91);
  {
    auto& wi = gru.weight_ih.data<double>();
    auto& wh = gru.weight_hh.data<double>();
    auto& bi = gru.bias_ih.data<double>();
    auto& bh = gru.bias_hh.data<double>();
    const Tensor* course_w[3] = {&W_r, &W_u, &W_c};  // PyTorch's gate order r, z, n
    const Tensor* course_b[3] = {&b_r, &b_u, &b_c};
    for (std::size_t g = 0; g < 3; ++g) {
      const double sign = g == 1 ? -1.0 : 1.0;  // z = 1 − Γu: negate the update gate's weights
      for (std::size_t i = 0; i < H; ++i) {
        for (std::size_t k = 0; k < H; ++k) wh(g * H + i, k) = sign * course_w[g]->data<double>()(i, k);
        for (std::size_t k = 0; k < in; ++k) wi(g * H + i, k) = sign * course_w[g]->data<double>()(i, H + k);
        bi(g * H + i) = sign * course_b[g]->data<double>()(i);
        bh(g * H + i) = 0.0;
      }
    }
  }
  std::vector<Tensor> course = course_step(x, c);
  GRUCell::Step st = gru.forward_with_gates(x, c);
  for (std::size_t k = 0; k < 2 * H; ++k) {
    EXPECT_NEAR(st.h_new.at(k), course[0].at(k), 1e-15);
    EXPECT_NEAR(st.z.at(k), 1.0 - course[1].at(k), 1e-15);  // Γu = 1 − z
    EXPECT_NEAR(st.r.at(k), course[2].at(k), 1e-15);        // Γr = r
    EXPECT_NEAR(st.n.at(k), course[3].at(k), 1e-15);        // c~ = n
  }
  // The same weights in a reset-after cell give a different model (r scales W_hn h, not h).
  auto after = make<GRUCell>(GRUCellOptions(in, H).reset_after(true), 92);
  after.load_state_dict(gru.state_dict());
  double diff = 0;
  Tensor h_after = after(x, c);
  for (std::size_t k = 0; k < 2 * H; ++k) diff = std::max(diff, std::abs(h_after.at(k) - course[0].at(k)));
  EXPECT_GT(diff, 1e-3);
  tape().clear();

  expect_gradcheck([&] { return course_step(x, c)[0]; }, {c, W_u, W_r, W_c, b_u, b_r, b_c},
                   {"c<t-1>", "W_u", "W_r", "W_c", "b_u", "b_r", "b_c"});
}

// ---- the example's command-line contract ------------------------------------------------------------

namespace {

struct CliRun {
  int code;
  std::string out, err;
};

/// Runs gradient_flow with `args` through the shell; captures stdout, stderr and the exit code
/// (via two temporary files, removed afterwards).
CliRun run_cli(const std::string& args) {
  auto temp_file = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tapegrad_flow_XXXXXX").string();
    int fd = mkstemp(tmpl.data());
    if (fd >= 0) close(fd);
    return tmpl;
  };
  const std::string out = temp_file(), err = temp_file();
  int status = std::system((std::string(TAPEGRAD_EXAMPLES_BIN_DIR) + "/gradient_flow " + args + " >" + out +
                            " 2>" + err).c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CliRun r{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

bool example_built() {
  return access((std::string(TAPEGRAD_EXAMPLES_BIN_DIR) + "/gradient_flow").c_str(), X_OK) == 0;
}

}  // namespace

TEST(GradientFlowCli, JsonContract) {
  if (!example_built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  CliRun r = run_cli("--cell all --hidden 32 --steps 100 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 3u + 5u);  // gru, rnn, lstm, then the sweep B = −6, −3, 0, 3, 6
  std::vector<std::string> cells = {"gru", "rnn", "lstm", "gru", "gru", "gru", "gru", "gru"};
  const double sweep[] = {-6, -3, 0, 3, 6};
  for (std::size_t k = 0; k < j.size(); ++k) {
    const auto& o = j[k];
    EXPECT_EQ(o["cell"], cells[k]);
    EXPECT_EQ(o["hidden"], 32);
    EXPECT_EQ(o["steps"], 100);
    ASSERT_EQ(o["grad_norm"].size(), 101u);
    EXPECT_DOUBLE_EQ(o["grad_norm"][100].get<double>(), std::sqrt(32.0));
    if (k < 3) EXPECT_TRUE(o["update_bias"].is_null());
    else EXPECT_EQ(o["update_bias"].get<double>(), sweep[k - 3]);
    if (o["cell"] == "gru") {
      ASSERT_EQ(o["mean_z"].size(), 100u);
      EXPECT_EQ(o["mean_r"].size(), 100u);
    } else {
      EXPECT_FALSE(o.contains("mean_z"));
    }
  }
  // The sweep: ‖dL/dh_0‖ grows with B.
  for (std::size_t k = 4; k < 8; ++k)
    EXPECT_GT(j[k]["grad_norm"][0].get<double>(), j[k - 1]["grad_norm"][0].get<double>());
  // b_z = +6 run through the CLI matches the test's claim.
  CliRun g = run_cli("--cell gru --update-bias 6 --json");
  ASSERT_EQ(g.code, 0) << g.err;
  nlohmann::json jg = nlohmann::json::parse(g.out);
  ASSERT_EQ(jg.size(), 1u);
  EXPECT_EQ(jg[0]["update_bias"].get<double>(), 6.0);
  EXPECT_GE(jg[0]["grad_norm"][0].get<double>() / jg[0]["grad_norm"][100].get<double>(), 0.5);
  EXPECT_LT(j[1]["grad_norm"][0].get<double>() / j[1]["grad_norm"][100].get<double>(), 1e-6);
}

TEST(GradientFlowCli, UsageErrorsExitWith2) {
  if (!example_built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  CliRun bad_ext = run_cli("--steps 3 --plot flow.jpg");
  EXPECT_EQ(bad_ext.code, 2);
  EXPECT_NE(bad_ext.err.find(".png or .svg"), std::string::npos) << bad_ext.err;
  EXPECT_EQ(run_cli("--cell gru2").code, 2);
  EXPECT_EQ(run_cli("--hidden 0").code, 2);
  CliRun rnn_bias = run_cli("--cell rnn --update-bias 3");
  EXPECT_EQ(rnn_bias.code, 2);
  EXPECT_NE(rnn_bias.err.find("GRU"), std::string::npos) << rnn_bias.err;
}

TEST(GradientFlowCli, BadValuesAreRefusedBeforeAnyWorkWithTheFlagAndReadableBounds) {
  if (!example_built()) GTEST_SKIP() << "examples/gradient_flow is not built";
  struct Bad {
    const char* args;
    const char* flag;
    const char* says;  // part of the message ("" = just the flag)
  };
  for (const Bad& b : std::vector<Bad>{
           {"--hidden 0", "--hidden", "1..4096"},
           {"--hidden 4097", "--hidden", "1..4096"},
           {"--hidden -3", "--hidden", "1..4096"},
           {"--hidden 18446744073709551617", "--hidden", "1..4096"},
           {"--hidden 1e3", "--hidden", "1..4096"},
           {"--hidden nan", "--hidden", "1..4096"},
           {"--steps 100001", "--steps", "1..100000"},
           {"--steps abc", "--steps", "1..100000"},
           {"--update-bias nan", "--update-bias", "finite"},
           {"--update-bias inf", "--update-bias", "finite"},
           {"--update-bias -inf", "--update-bias", "finite"},
           {"--update-bias 1e999", "--update-bias", "finite"},
           {"--update-bias 3x", "--update-bias", "finite"},
           {"--weight-scale 0", "--weight-scale", "positive"},
           {"--weight-scale -1", "--weight-scale", "positive"},
           {"--weight-scale nan", "--weight-scale", ""},
           {"--seed -1", "--seed", ""},
           {"--seed 18446744073709551616", "--seed", ""},
           {"--seed 99999999999999999999999", "--seed", ""},
           {"--plot missing-dir/x.png", "--plot", "does not exist"},
           {"--plot .", "--plot", ""},
           {"--plot /dev/null", "--plot", ""},
           {"--text abc", "--text", "--checkpoint"},
           {"--layer 0", "--layer", "--checkpoint"},
       }) {
    SCOPED_TRACE(b.args);
    CliRun r = run_cli(b.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(b.flag), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(b.says), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("18446744073709551615"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << "work was done before the check: " << r.out;
  }
  EXPECT_EQ(run_cli("--bogus").code, 2);
  EXPECT_EQ(run_cli("stray").code, 2);
  // The largest seed is a seed.
  EXPECT_EQ(run_cli("--cell rnn --hidden 2 --steps 2 --seed 18446744073709551615").code, 0);
}
