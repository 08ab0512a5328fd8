// The hidden tests of the GRU + swish assignment (docs/assignments.md), compiled with the student's
// header (TAPEGRAD_SUBMISSION: assignment::gru_cell and assignment::swish). The grader
// (tapegrad_add_grader) runs each test in its own process and scores. A failure says what
// differs, where and by how much, and gives a hint, found by comparing the submission with the
// reference into which known mistakes (alone or two at once) were put.
//   1. gru_cell forward == PyTorch's nn.GRUCell        (gru_cell_f64.npz, 1e-10)
//   2. its gradients == PyTorch's, L = Σ h' ⊙ seed     (same fixture, 1e-10)
//   3. at other sizes: == the reference and gradcheck passes (no hard-coded sizes, no detach)
//   4. swish backward == the closed form at chosen points (forward unchanged)
//   5. swish backward passes gradcheck (float64)
#include "framework/grading/grading.hpp"
#include "manifest.hpp"
#include TAPEGRAD_SUBMISSION

using namespace tapegrad;
using namespace tapegrad::grading;

namespace {

constexpr double kTol = 1e-10;  // float64, same formula as PyTorch: only rounding may differ
const std::vector<std::string> kNames = {"x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"};
const Layout kGates = Layout::gates({"r", "z", "n"});

// ---- the reference, with known mistakes that can be switched on (bit k = kMistakes[k]) ---------
enum : unsigned { ZFlipped = 1, ResetBefore = 2, BhnOutside = 4, RZSwapped = 8, NoHiddenBias = 16 };
const std::vector<Mistake> kMistakes = {
    {"the update gate is used the other way round. PyTorch computes h' = (1 − z) ⊙ n + z ⊙ h "
     "(z = 1 keeps the old state); the course's Γu is 1 − z."},
    {"the reset gate is applied before the matmul, W_hn (r ⊙ h) + b_hn (the course's form). "
     "PyTorch applies it after: r ⊙ (W_hn h + b_hn)."},
    {"b_hn is added outside the reset gate. In PyTorch it is inside: r ⊙ (W_hn h + b_hn)."},
    {"the r and z gates are swapped. The rows of weight_ih, weight_hh and the biases are ordered "
     "r | z | n."},
    {"bias_hh is not used. The hidden projection is W_hh h + b_hh."},
};

/// in = {x, h, weight_ih, weight_hh, bias_ih, bias_hh}.
Tensor reference(const std::vector<Tensor>& in, unsigned m) {
  const Tensor &x = in[0], &h = in[1];
  const std::size_t H = h.size(1);
  Tensor b_hn = (m & NoHiddenBias) ? zeros_like(narrow(in[5], 0, 2 * H, H)) : narrow(in[5], 0, 2 * H, H);
  auto i = chunk(matmul(x, in[2], false, true) + in[4], 3, -1);  // (B, H) each
  Tensor gh = matmul(h, in[3], false, true);
  auto g = chunk((m & NoHiddenBias) ? gh : gh + in[5], 3, -1);
  const int ir = (m & RZSwapped) ? 1 : 0, iz = 1 - ir;
  Tensor r = sigmoid(i[ir] + g[ir]), z = sigmoid(i[iz] + g[iz]);
  Tensor n = (m & ResetBefore)
                 ? tanh(i[2] + matmul(r * h, narrow(in[3], 0, 2 * H, H), false, true) + b_hn)
             : (m & BhnOutside) ? tanh(i[2] + r * (g[2] - b_hn) + b_hn)
                                : tanh(i[2] + r * g[2]);
  return (m & ZFlipped) ? z * n + (1.0 - z) * h : (1.0 - z) * n + z * h;
}

Tensor call_gru(const std::vector<Tensor>& in) {
  return assignment::gru_cell(in[0], in[1], in[2], in[3], in[4], in[5]);
}

std::vector<Tensor> fixture_inputs(const Fixture& fx) {
  std::vector<Tensor> in;
  for (const auto& n : kNames) in.push_back(fx[n]);
  return in;
}

Outcome forward_matches_pytorch(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture("gru_cell_f64.npz"));
  std::vector<Tensor> in = fixture_inputs(fx);
  Tensor out = call_gru(leaves(in, false)), want = fx["h_new"];
  if (check_close(o, "h'", out, want, kTol, {}, "PyTorch")) return o.add("max |yours − PyTorch| < 1e-10");
  if (auto hint = diagnose({out}, kMistakes, [&](unsigned m) { return std::vector<Tensor>{reference(in, m)}; }, kTol))
    for (auto& l : *hint) o.add(l);
  else
    o.add("hint: compare each gate with the formulas in student_gru.hpp; the fixture also holds "
          "PyTorch's r, z and n of this step.");
  return o;
}

Outcome gradients_match_pytorch(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture("gru_cell_f64.npz"));
  std::vector<Tensor> p = leaves(fixture_inputs(fx), true);
  sum(call_gru(p) * fx["seed_h_new"]).backward();
  for (std::size_t k = 0; k < kNames.size(); ++k)
    check_close(o, "dL/d" + kNames[k], p[k].grad(), fx["grad_" + kNames[k]], kTol,
                k >= 2 ? kGates : Layout::none(), "PyTorch");
  if (o.passed) o.add("all six gradients within 1e-10");
  return o;
}

Outcome other_sizes(const Context&) {
  Outcome o;
  Generator gen(11);
  std::vector<Tensor> q;
  for (const Shape& s : std::vector<Shape>{{2, 3}, {2, 5}, {15, 3}, {15, 5}, {15}, {15}})
    q.push_back(uniform(s, -1, 1, gen, DType::Float64).requires_grad_());
  Tensor out = call_gru(q);
  if (!out.defined() || out.shape() != Shape{2, 5})
    return o.add("h' should have shape (2, 5) here: are sizes hard-coded?");
  o.passed = true;
  if (!check_close(o, "h'", out, reference(q, 0), kTol, {}, "reference"))
    return o.add("(are sizes hard-coded? if test 1 fails too, fix it first)");
  GradcheckOptions opt;
  opt.names = kNames;
  GradcheckResult r = gradcheck(call_gru, q, opt);
  o.passed = r.passed;
  o.add(fmt::format("gradcheck: largest relative error {:.2e}", r.max_relative_error));
  if (!r.passed) {
    o.add(r.report());
    o.add("hint: values were changed outside the tape (data<T>() writes, detach(), NoGradGuard).");
  }
  return o;
}

Tensor swish_points() {
  return tensor({{-4.0, -1.5, -0.3, 0.2}, {0.7, 1.1, 2.5, 5.0}}, DType::Float64);
}

/// The known wrong derivatives of swish, as hints.
std::vector<std::string> swish_hint(const Tensor& derivative, const Tensor& xs) {
  Tensor s = sigmoid(xs);
  const std::vector<std::pair<Tensor, const char*>> guesses = {
      {s, "your dL/dx is g ⊙ σ(x): the product rule's second term, x ⊙ σ(x) ⊙ (1 − σ(x)), is "
          "missing."},
      {xs * s * (1.0 - s), "your dL/dx lacks the product rule's first term, σ(x)."},
      {s * (1.0 - s), "σ(x) ⊙ (1 − σ(x)) is the derivative of σ alone, not of x ⊙ σ(x)."},
      {ones_like(xs), "you returned g unchanged: multiply it by d swish/dx."}};
  for (const auto& [guess, hint] : guesses)
    if (compare(derivative, guess).within(1e-12)) return {std::string("hint: ") + hint};
  return {"hint: dL/dx = g ⊙ (σ(x) + x ⊙ σ(x) ⊙ (1 − σ(x)))."};
}

Outcome swish_closed_form(const Context&) {
  Outcome o{true, {}};
  Tensor xs = swish_points(), x = xs.detach().requires_grad_().set_name("x");
  Tensor y = assignment::swish(x);
  if (!check_close(o, "swish(x)", y, xs * sigmoid(xs), 1e-14))
    return o.add("the forward was given: restore it");
  sum(y).backward();  // dL/dx for L = Σ swish(x) is the derivative itself
  Tensor s = sigmoid(xs);
  if (check_close(o, "dL/dx", x.grad(), s + xs * s * (1.0 - s), 1e-12, {}, "expected")) return o;
  if (x.grad().defined())
    for (auto& l : swish_hint(x.grad(), xs)) o.add(l);
  return o;
}

Outcome swish_gradcheck(const Context&) {
  Outcome o;
  Tensor xs = swish_points(), x = xs.detach().requires_grad_().set_name("x");
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& v) { return sum(assignment::swish(v[0])); }, {x});
  o.passed = r.passed;
  o.add(gradcheck_line(r.inputs.at(0), xs));
  if (o.passed) return o;
  sum(assignment::swish(x)).backward();
  for (auto& l : swish_hint(x.grad(), xs)) o.add(l);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  return test_main(argc, argv, assignment_manifest(),
                   {{assignment_manifest().tests[0].name, forward_matches_pytorch},
                    {assignment_manifest().tests[1].name, gradients_match_pytorch},
                    {assignment_manifest().tests[2].name, other_sizes},
                    {assignment_manifest().tests[3].name, swish_closed_form},
                    {assignment_manifest().tests[4].name, swish_gradcheck}});
}
