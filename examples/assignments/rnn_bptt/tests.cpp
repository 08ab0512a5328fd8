// Hidden tests of the RNN / BPTT assignment (README.md), compiled with the student's header
// (TAPEGRAD_SUBMISSION). The hand-written BPTT is compared with the tape's gradients of the same
// unroll, and a wrong result with the reference BPTT into which known mistakes were put.
#include "framework/grading/grading.hpp"
#include "manifest.hpp"
#include TAPEGRAD_SUBMISSION

using namespace tapegrad;
using namespace tapegrad::grading;

namespace {

constexpr double kTol = 1e-10;
const std::vector<std::string> kParams = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

enum : unsigned { NoCarry = 1, NoTanh = 2, HtInWhh = 4, CarrySkipsWhh = 8 };
const std::vector<Mistake> kMistakes = {
    {"nothing flows back from step t+1: the gradient at h_t is dL/dh_t + (da_{t+1} W_hh), and the "
     "second term is missing (each step is treated alone)."},
    {"the tanh derivative is missing: da = dh ⊙ (1 − h_t²)."},
    {"dW_hh uses h_t; the matmul of step t multiplies h_{t−1}: dW_hh += daᵀ h_{t−1}."},
    {"the gradient sent to step t−1 skips W_hh: it is da W_hh, not da."},
};

std::vector<Tensor> bptt_reference(const std::vector<Tensor>& xs, const std::vector<Tensor>& hs,
                                   const assignment::RnnParams& p, const std::vector<Tensor>& dhs,
                                   unsigned m) {
  Tensor gi = zeros_like(p.weight_ih), gh = zeros_like(p.weight_hh), gb = zeros_like(p.bias_ih);
  Tensor carry = zeros_like(hs[0]);
  for (std::size_t t = xs.size(); t >= 1; --t) {
    Tensor dh = (m & NoCarry) ? dhs[t - 1] : dhs[t - 1] + carry;
    Tensor da = (m & NoTanh) ? dh : dh * (1.0 - hs[t] * hs[t]);
    gi = gi + matmul(da, xs[t - 1], true, false);
    gh = gh + matmul(da, (m & HtInWhh) ? hs[t] : hs[t - 1], true, false);
    gb = gb + sum(da, {0});
    carry = (m & CarrySkipsWhh) ? da : matmul(da, p.weight_hh);
  }
  return {gi, gh, gb, gb, carry};
}

std::vector<Tensor> as_list(const assignment::RnnGrads& g) {
  return {g.weight_ih, g.weight_hh, g.bias_ih, g.bias_hh, g.h0};
}

/// Checks the student's BPTT on a random unroll against the tape and explains a difference.
Outcome check_bptt(std::size_t B, std::size_t I, std::size_t H, std::size_t T, bool last_only,
                   std::uint64_t seed) {
  Outcome o{true, {}};
  Generator gen(seed);
  auto u = [&](const Shape& s) { return uniform(s, -0.8, 0.8, gen, DType::Float64); };
  assignment::RnnParams p{u({H, I}).requires_grad_(), u({H, H}).requires_grad_(),
                          u({H}).requires_grad_(), u({H}).requires_grad_()};
  Tensor h0 = u({B, H}).requires_grad_();
  std::vector<Tensor> xs, hs = {h0.detach()}, dhs;
  for (std::size_t t = 0; t < T; ++t) xs.push_back(u({B, I}));
  for (std::size_t t = 0; t < T; ++t)
    dhs.push_back(last_only && t + 1 < T ? zeros({B, H}, DType::Float64) : u({B, H}));
  // The tape's gradients of L = Σ_t Σ h_t ⊙ dhs[t−1], through the reference cell.
  Tensor h = h0, L;
  for (std::size_t t = 0; t < T; ++t) {
    h = tanh(matmul(xs[t], p.weight_ih, false, true) + p.bias_ih +
             matmul(h, p.weight_hh, false, true) + p.bias_hh);
    hs.push_back(h.detach());
    Tensor term = sum(h * dhs[t]);
    L = t == 0 ? term : L + term;
  }
  L.backward();
  assignment::RnnParams values{p.weight_ih.detach(), p.weight_hh.detach(), p.bias_ih.detach(),
                               p.bias_hh.detach()};
  assignment::RnnGrads g;
  {
    NoGradGuard no_grad;
    g = assignment::rnn_bptt(xs, hs, values, dhs);
  }
  std::vector<Tensor> yours = as_list(g);
  std::vector<Tensor> want = {p.weight_ih.grad(), p.weight_hh.grad(), p.bias_ih.grad(),
                              p.bias_hh.grad(), h0.grad()};
  for (std::size_t k = 0; k < 5; ++k)
    check_close(o, "dL/d" + (k < 4 ? kParams[k] : std::string("h0")), yours[k], want[k], kTol, {},
                "tape");
  if (o.passed) return o.add(fmt::format("all five gradients within 1e-10 (T = {})", T));
  NoGradGuard no_grad;
  if (auto hint = diagnose(yours, kMistakes,
                           [&](unsigned m) { return bptt_reference(xs, hs, values, dhs, m); }, kTol))
    for (auto& l : *hint) o.add(l);
  else
    o.add("hint: write out step T by hand first (no carry), then add what step T+1 sends back.");
  return o;
}

Outcome cell_forward(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture("rnn_cell_f64.npz"));
  assignment::RnnParams p{fx["weight_ih"], fx["weight_hh"], fx["bias_ih"], fx["bias_hh"]};
  if (check_close(o, "h'", assignment::rnn_cell(fx["x"], fx["h"], p), fx["h_new"], kTol, {}, "PyTorch"))
    o.add("max |yours − PyTorch| < 1e-10");
  return o;
}

Outcome cell_gradients(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture("rnn_cell_f64.npz"));
  std::vector<std::string> names = {"x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  std::vector<Tensor> in;
  for (auto& n : names) in.push_back(fx[n].requires_grad_());
  assignment::RnnParams p{in[2], in[3], in[4], in[5]};
  sum(assignment::rnn_cell(in[0], in[1], p) * fx["seed_h_new"]).backward();
  for (std::size_t k = 0; k < names.size(); ++k)
    check_close(o, "dL/d" + names[k], in[k].grad(), fx["grad_" + names[k]], kTol, {}, "PyTorch");
  if (o.passed) o.add("all six gradients within 1e-10");
  return o;
}

Outcome bptt_one_step(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture("rnn_cell_f64.npz"));
  assignment::RnnParams p{fx["weight_ih"], fx["weight_hh"], fx["bias_ih"], fx["bias_hh"]};
  assignment::RnnGrads g;
  {
    NoGradGuard no_grad;
    g = assignment::rnn_bptt({fx["x"]}, {fx["h"], fx["h_new"]}, p, {fx["seed_h_new"]});
  }
  std::vector<Tensor> yours = as_list(g);
  for (std::size_t k = 0; k < 4; ++k)
    check_close(o, "dL/d" + kParams[k], yours[k], fx["grad_" + kParams[k]], kTol, {}, "PyTorch");
  check_close(o, "dL/dh0", yours[4], fx["grad_h"], kTol, {}, "PyTorch");
  if (o.passed) o.add("all five gradients within 1e-10");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& t = assignment_manifest().tests;
  return test_main(argc, argv, assignment_manifest(),
                   {{t[0].name, cell_forward},
                    {t[1].name, cell_gradients},
                    {t[2].name, bptt_one_step},
                    {t[3].name, [](const Context&) { return check_bptt(3, 4, 5, 6, false, 21); }},
                    {t[4].name, [](const Context&) { return check_bptt(1, 2, 7, 9, true, 22); }}});
}
