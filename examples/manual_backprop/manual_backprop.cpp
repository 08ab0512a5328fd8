// manual_backprop — "RNN and GRU step by step": forward and backward written by hand with plain
// xtensor (no tape), checked against the tape's gradients and against central differences.
//
//   manual_backprop            prints one table per model; exit 1 if any relative error > 1e-7
//                              (exit 2 for any flag but --help)
//
// Models (float64, PyTorch's conventions, see docs/gru.md):
//   GRU cell, reset after (PyTorch):   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//   GRU cell, reset before (course):   n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
//   tanh RNN over T steps (BPTT):      h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)
// Loss: L = Σ h ⊙ w with a fixed random w (for the RNN: Σ_t ⟨h_t, w_t⟩), so dL/dh = w.
// Shapes: B batch, I input size, H hidden size; weights (3H, I), (3H, H) with rows r|z|n.
// Row-vector convention, as in PyTorch: x (B, I), so "W x" is computed as x · Wᵀ.
#include <cmath>
#include <functional>
#include <string>
#include <vector>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnorm.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xview.hpp>

#include <CLI/CLI.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;
using A = xt::xarray<double>;  // always a container: never store an xtensor expression (auto)

namespace {

// ---- small helpers on plain arrays --------------------------------------------------------------
A dot(const A& a, const A& b) { return xt::linalg::dot(a, b); }
A dot_t(const A& a, const A& b) { return xt::linalg::dot(a, A(xt::transpose(b))); }  // a · bᵀ
A t_dot(const A& a, const A& b) { return xt::linalg::dot(A(xt::transpose(a)), b); }  // aᵀ · b
A sigmoid(const A& a) { return 1.0 / (1.0 + xt::exp(-a)); }
A cols(const A& m, std::size_t start, std::size_t n) {
  return xt::view(m, xt::all(), xt::range(start, start + n));
}
A rows(const A& m, std::size_t start, std::size_t n) {
  return xt::view(m, xt::range(start, start + n));
}
A cat_cols(const A& a, const A& b) { return xt::concatenate(xt::xtuple(a, b), 1); }
A cat_cols(const A& a, const A& b, const A& c) { return xt::concatenate(xt::xtuple(a, b, c), 1); }
A sum_rows(const A& m) {  // (B, k) → (k)
  return xt::sum(m, {0}, xt::evaluation_strategy::immediate);
}
A random(const Shape& shape, Generator& gen) {
  return uniform(shape, -0.5, 0.5, gen, DType::Float64).data<double>();
}

/// Central differences of loss() with respect to every element of `target` (changed in place).
A numeric_grad(A& target, const std::function<double()>& loss, double eps = 1e-6) {
  A g = xt::zeros<double>(target.shape());
  for (std::size_t k = 0; k < target.size(); ++k) {
    double original = target.data()[k];
    target.data()[k] = original + eps;
    double plus = loss();
    target.data()[k] = original - eps;
    double minus = loss();
    target.data()[k] = original;
    g.data()[k] = (plus - minus) / (2 * eps);
  }
  return g;
}

/// ‖a − b‖ / (‖a‖ + ‖b‖), 0 when both are 0.
double rel_error(const A& a, const A& b) {
  double d = xt::norm_l2(a - b)(), s = xt::norm_l2(a)() + xt::norm_l2(b)();
  return s == 0 ? 0 : d / s;
}

struct Row {
  std::string name;
  A hand, tape, numeric;
};

/// Prints one table; returns whether every relative error is ≤ 1e-7.
bool print_table(const std::string& title, const std::vector<Row>& rows) {
  fmt::print("\n{}\n  {:<10} {:<9} {:<9} {:>14} {:>14} {:>14} {:>11} {:>11}\n", title, "gradient",
             "shape", "worst at", "by hand", "tape", "numeric", "rel(tape)", "rel(num)");
  bool ok = true;
  for (const Row& r : rows) {
    std::size_t worst = xt::argmax(xt::abs(r.hand - r.numeric))();  // flat index
    std::vector<std::size_t> idx(r.hand.dimension());
    for (std::size_t d = idx.size(), rest = worst; d-- > 0; rest /= r.hand.shape()[d])
      idx[d] = rest % r.hand.shape()[d];
    double e_tape = rel_error(r.hand, r.tape), e_num = rel_error(r.hand, r.numeric);
    bool row_ok = e_tape <= 1e-7 && e_num <= 1e-7;
    ok = ok && row_ok;
    fmt::print("  {:<10} {:<9} {:<9} {:>14.8f} {:>14.8f} {:>14.8f} {:>11.2e} {:>11.2e}{}\n", r.name,
               shape_str(r.hand.shape()), fmt::format("({})", fmt::join(idx, ",")),
               r.hand.data()[worst], r.tape.data()[worst], r.numeric.data()[worst], e_tape, e_num,
               row_ok ? "" : "  FAIL");
  }
  return ok;
}

// ---- GRU cell: forward and backward by hand -----------------------------------------------------

struct GruParams {
  A W_ih, W_hh, b_ih, b_hh;  // (3H, I), (3H, H), (3H), (3H); rows r|z|n
};
struct GruCache {         // what the backward needs from the forward, all (B, H) but x
  A x, h, r, z, n, gh_n;  // gh_n = W_hn h + b_hn (reset after only)
};
struct GruGrads {
  A W_ih, W_hh, b_ih, b_hh, x, h;
};

/// h' = (1 − z) ⊙ n + z ⊙ h for x (B, I), h (B, H).
A gru_forward(const GruParams& p, const A& x, const A& h, bool reset_after, GruCache* c = nullptr) {
  const std::size_t H = h.shape()[1];
  A gi = dot_t(x, p.W_ih) + p.b_ih;                                 // (B, 3H)
  A gh = dot_t(h, reset_after ? p.W_hh : rows(p.W_hh, 0, 2 * H)) +  // (B, 3H) or (B, 2H)
         (reset_after ? p.b_hh : rows(p.b_hh, 0, 2 * H));
  A r = sigmoid(cols(gi, 0, H) + cols(gh, 0, H));  // (B, H)
  A z = sigmoid(cols(gi, H, H) + cols(gh, H, H));
  A gh_n = reset_after ? cols(gh, 2 * H, H) : A();
  A n = reset_after ? A(xt::tanh(cols(gi, 2 * H, H) + r * gh_n))
                    : A(xt::tanh(cols(gi, 2 * H, H) + dot_t(r * h, rows(p.W_hh, 2 * H, H)) +
                                 rows(p.b_hh, 2 * H, H)));
  if (c) *c = {x, h, r, z, n, gh_n};
  return (1.0 - z) * n + z * h;
}

/// Given dL/dh' (B, H), every gradient of the step, by the chain rule, line by line.
GruGrads gru_backward(const GruParams& p, const GruCache& c, const A& dh_new, bool reset_after) {
  const std::size_t H = c.h.shape()[1];
  A dn = dh_new * (1.0 - c.z);  // h' = (1 − z) n + z h
  A dz = dh_new * (c.h - c.n);
  A dh = dh_new * c.z;              // the direct path: z ⊙ h
  A da_n = dn * (1.0 - c.n * c.n);  // through tanh: pre-activation of n
  A da_z = dz * c.z * (1.0 - c.z);  // through σ
  GruGrads g;
  A dr;
  if (reset_after) {  // a_n = gi_n + r ⊙ gh_n
    dr = da_n * c.gh_n;
    A da_r = dr * c.r * (1.0 - c.r);
    A dgh = cat_cols(da_r, da_z, da_n * c.r);  // (B, 3H): d(W_hh h + b_hh)
    g.W_hh = t_dot(dgh, c.h);                  // (3H, H)
    g.b_hh = sum_rows(dgh);
    dh += dot(dgh, p.W_hh);
    g.b_ih = sum_rows(cat_cols(da_r, da_z, da_n));
    g.W_ih = t_dot(cat_cols(da_r, da_z, da_n), c.x);
    g.x = dot(cat_cols(da_r, da_z, da_n), p.W_ih);
  } else {  // a_n = gi_n + (r ⊙ h) W_hnᵀ + b_hn
    A W_hn = rows(p.W_hh, 2 * H, H), W_hrz = rows(p.W_hh, 0, 2 * H);
    A d_rh = dot(da_n, W_hn);  // d(r ⊙ h), (B, H)
    dr = d_rh * c.h;
    dh += d_rh * c.r;
    A da_r = dr * c.r * (1.0 - c.r);
    A dgh = cat_cols(da_r, da_z);  // (B, 2H): d(W_hh[:2H] h + b_hh[:2H])
    g.W_hh = xt::concatenate(xt::xtuple(t_dot(dgh, c.h), t_dot(da_n, A(c.r * c.h))), 0);  // (3H, H)
    g.b_hh = xt::concatenate(xt::xtuple(sum_rows(dgh), sum_rows(da_n)), 0);
    dh += dot(dgh, W_hrz);
    A dgi = cat_cols(da_r, da_z, da_n);
    g.b_ih = sum_rows(dgi);
    g.W_ih = t_dot(dgi, c.x);
    g.x = dot(dgi, p.W_ih);
  }
  g.h = dh;
  return g;
}

bool check_gru(bool reset_after) {
  const std::size_t B = 3, I = 5, H = 4;
  Generator gen(reset_after ? 1 : 2);
  GruParams p{random({3 * H, I}, gen), random({3 * H, H}, gen), random({3 * H}, gen),
              random({3 * H}, gen)};
  A x = random({B, I}, gen), h = random({B, H}, gen), w = random({B, H}, gen);

  // 1. By hand.
  GruCache cache;
  gru_forward(p, x, h, reset_after, &cache);
  GruGrads hand = gru_backward(p, cache, w, reset_after);  // dL/dh' = w

  // 2. The tape: the library's GRUCell (composed from tapegrad ops) with the same numbers.
  GRUCell cell(GRUCellOptions(I, H).reset_after(reset_after));
  cell.to(DType::Float64);
  cell.weight_ih.data<double>() = p.W_ih, cell.weight_hh.data<double>() = p.W_hh;
  cell.bias_ih.data<double>() = p.b_ih, cell.bias_hh.data<double>() = p.b_hh;
  Tensor tx(x, true), th(h, true);
  sum(cell(tx, th) * Tensor(w)).backward();

  // 3. Central differences of the plain forward.
  auto loss = [&] { return xt::sum(gru_forward(p, x, h, reset_after) * w)(); };
  return print_table(
      fmt::format("GRU cell, reset {} — B={}, I={}, H={}, L = Σ h' ⊙ w",
                  reset_after ? "after (PyTorch)" : "before (the course, Cho et al.)", B, I, H),
      {{"dL/dW_ih", hand.W_ih, cell.weight_ih.grad().data<double>(), numeric_grad(p.W_ih, loss)},
       {"dL/dW_hh", hand.W_hh, cell.weight_hh.grad().data<double>(), numeric_grad(p.W_hh, loss)},
       {"dL/db_ih", hand.b_ih, cell.bias_ih.grad().data<double>(), numeric_grad(p.b_ih, loss)},
       {"dL/db_hh", hand.b_hh, cell.bias_hh.grad().data<double>(), numeric_grad(p.b_hh, loss)},
       {"dL/dx", hand.x, tx.grad().data<double>(), numeric_grad(x, loss)},
       {"dL/dh_prev", hand.h, th.grad().data<double>(), numeric_grad(h, loss)}});
}

// ---- tanh RNN over T steps: backpropagation through time by hand --------------------------------

struct RnnParams {
  A W_ih, W_hh, b_ih, b_hh;  // (H, I), (H, H), (H), (H)
};

/// Runs T steps from h0; returns h_1..h_T as (T, B, H). xs (T, B, I).
A rnn_forward(const RnnParams& p, const A& xs, const A& h0) {
  const std::size_t T = xs.shape()[0];
  A hs = xt::zeros<double>({T, h0.shape()[0], h0.shape()[1]});
  A h = h0;
  for (std::size_t t = 0; t < T; ++t) {
    A x_t = xt::view(xs, t);
    h = xt::tanh(dot_t(x_t, p.W_ih) + p.b_ih + dot_t(h, p.W_hh) + p.b_hh);  // (B, H)
    xt::view(hs, t) = h;
  }
  return hs;
}

bool check_rnn() {
  const std::size_t T = 6, B = 2, I = 3, H = 4;
  Generator gen(3);
  RnnParams p{random({H, I}, gen), random({H, H}, gen), random({H}, gen), random({H}, gen)};
  A xs = random({T, B, I}, gen), h0 = random({B, H}, gen), ws = random({T, B, H}, gen);

  // 1. BPTT by hand: walk back from T; dh_next carries dL/dh_t from the future steps.
  A hs = rnn_forward(p, xs, h0);
  A dW_ih = xt::zeros<double>(p.W_ih.shape()), dW_hh = xt::zeros<double>(p.W_hh.shape());
  A db = xt::zeros<double>({H}), dxs = xt::zeros<double>(xs.shape());
  A dh_next = xt::zeros<double>({B, H});
  for (std::size_t t = T; t-- > 0;) {
    A h_t = xt::view(hs, t), h_prev = t ? A(xt::view(hs, t - 1)) : h0, x_t = xt::view(xs, t);
    A dh = A(xt::view(ws, t)) + dh_next;  // this step's loss term + what flows back from t+1
    A da = dh * (1.0 - h_t * h_t);        // through tanh
    dW_ih += t_dot(da, x_t);              // gradients accumulate over time (+=, never =)
    dW_hh += t_dot(da, h_prev);
    db += sum_rows(da);  // b_ih and b_hh only appear as a sum: same gradient
    xt::view(dxs, t) = dot(da, p.W_ih);
    dh_next = dot(da, p.W_hh);  // ∂h_t/∂h_{t−1} = diag(1 − h_t²) W_hh
  }

  // 2. The tape: the library's RNNCell, unrolled.
  RNNCell cell(RNNCellOptions(I, H));
  cell.to(DType::Float64);
  cell.weight_ih.data<double>() = p.W_ih, cell.weight_hh.data<double>() = p.W_hh;
  cell.bias_ih.data<double>() = p.b_ih, cell.bias_hh.data<double>() = p.b_hh;
  Tensor txs(xs, true), th0(h0, true), tws(ws);
  Tensor h = th0, loss = scalar(0.0, DType::Float64);
  for (std::size_t t = 0; t < T; ++t) {
    h = cell(select(txs, 0, t), h);
    loss = loss + sum(h * select(tws, 0, t));
  }
  loss.backward();

  // 3. Central differences.
  auto L = [&] { return xt::sum(rnn_forward(p, xs, h0) * ws)(); };
  return print_table(
      fmt::format("tanh RNN over T={} steps (BPTT) — B={}, I={}, H={}, L = Σ_t ⟨h_t, w_t⟩", T, B, I,
                  H),
      {{"dL/dW_ih", dW_ih, cell.weight_ih.grad().data<double>(), numeric_grad(p.W_ih, L)},
       {"dL/dW_hh", dW_hh, cell.weight_hh.grad().data<double>(), numeric_grad(p.W_hh, L)},
       {"dL/db_ih", db, cell.bias_ih.grad().data<double>(), numeric_grad(p.b_ih, L)},
       {"dL/db_hh", db, cell.bias_hh.grad().data<double>(), numeric_grad(p.b_hh, L)},
       {"dL/dx", dxs, txs.grad().data<double>(), numeric_grad(xs, L)},
       {"dL/dh0", dh_next, th0.grad().data<double>(), numeric_grad(h0, L)}});
}

/// All three tables; returns the exit code.
int check_all() {
  fmt::print(
      "Gradients by hand vs the tape vs central differences (float64, eps = 1e-6).\n"
      "'worst at' is the element where hand and numeric differ most; rel = ‖a − b‖ / (‖a‖ + "
      "‖b‖).\n");
  bool ok = check_gru(true);
  ok = check_gru(false) && ok;
  ok = check_rnn() && ok;
  fmt::print("\n{}\n", ok ? "all relative errors ≤ 1e-7: the hand-written backward passes agree."
                          : "FAILED: some relative error > 1e-7.");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"manual_backprop: GRU and RNN gradients by hand vs the tape vs central differences "
               "(no options)"};
  return cli::run(app, argc, argv, check_all);
}
