// Hidden tests of the LSTM assignment (README.md), compiled with the student's header
// (TAPEGRAD_SUBMISSION). The backward is compared with PyTorch's gradients (gate rows labelled
// i, f, g, o) and explained with the reference backward into which known mistakes were put.
#include "framework/grading/grading.hpp"
#include "manifest.hpp"
#include TAPEGRAD_SUBMISSION

using namespace tapegrad;
using namespace tapegrad::grading;

namespace {

constexpr double kTol = 1e-10;
const std::vector<std::string> kNames = {"x",         "h",       "c",      "weight_ih",
                                         "weight_hh", "bias_ih", "bias_hh"};
const Layout kGates = Layout::gates({"i", "f", "g", "o"});

enum : unsigned { NoDcIn = 1, NoTanhPrime = 2, NewCInDf = 4, NoDcOut = 8 };
const std::vector<Mistake> kMistakes = {
    {"dL/dc' from the next step (grad[1]) is not added: dc' = dL/dc' + dL/dh' ⊙ o ⊙ (1 − tanh²(c'))."},
    {"the derivative of tanh(c') is missing in dc': dL/dh' ⊙ o ⊙ (1 − tanh²(c'))."},
    {"da_f uses c' where the forward multiplied f by the OLD cell state c: da_f = dc' ⊙ c ⊙ f(1 − f)."},
    {"dL/dc is not dc' ⊙ f: the cell state's gradient passes back through the forget gate."},
};

std::vector<Tensor> call(const std::vector<Tensor>& in) {
  return assignment::lstm_cell(in[0], in[1], in[2], in[3], in[4], in[5], in[6]);
}

/// The reference gradients {dx, dh, dc, dW_ih, dW_hh, db_ih, db_hh} with mistakes switched on.
std::vector<Tensor> reference_grads(const std::vector<Tensor>& in, const Tensor& gh,
                                    const Tensor& gc, unsigned m) {
  NoGradGuard no_grad;
  auto a = chunk(matmul(in[0], in[3], false, true) + in[5] + matmul(in[1], in[4], false, true) + in[6], 4, -1);
  Tensor i = sigmoid(a[0]), f = sigmoid(a[1]), g = tanh(a[2]), o = sigmoid(a[3]);
  Tensor c2 = f * in[2] + i * g, tc = tanh(c2);
  Tensor dc2 = gh * o * ((m & NoTanhPrime) ? ones_like(tc) : 1.0 - tc * tc);
  if (!(m & NoDcIn)) dc2 = dc2 + gc;
  Tensor da = concat({dc2 * g * i * (1.0 - i), dc2 * ((m & NewCInDf) ? c2 : in[2]) * f * (1.0 - f),
                      dc2 * i * (1.0 - g * g), gh * tc * o * (1.0 - o)}, -1);
  Tensor db = sum(da, {0});
  return {matmul(da, in[3]), matmul(da, in[4]), (m & NoDcOut) ? dc2 : dc2 * f,
          matmul(da, in[0], true, false), matmul(da, in[1], true, false), db, db};
}

Outcome forward(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture("lstm_cell_f64.npz"));
  std::vector<Tensor> in;
  for (auto& n : kNames) in.push_back(fx[n]);
  auto out = call(in);
  if (out.size() != 2) return o.add(fmt::format("lstm_cell returned {} tensors, expected 2 (h', c')", out.size())), o.passed = false, o;
  check_close(o, "h'", out[0], fx["h_new"], kTol, {}, "PyTorch");
  check_close(o, "c'", out[1], fx["c_new"], kTol, {}, "PyTorch");
  if (o.passed) o.add("h' and c' within 1e-10");
  return o;
}

/// Gradients with upstream seeds (gh, gc) against `want`, explained by the known mistakes.
Outcome gradients(const std::vector<Tensor>& values, const Tensor& gh, const Tensor& gc,
                  const std::vector<Tensor>& want, const std::string& label) {
  Outcome o{true, {}};
  std::vector<Tensor> p = leaves(values, true);
  auto out = call(p);
  if (out.size() != 2) return o.add("lstm_cell must return {h', c'}"), o.passed = false, o;
  (sum(out[0] * gh) + sum(out[1] * gc)).backward();
  std::vector<Tensor> yours;
  for (std::size_t k = 0; k < kNames.size(); ++k) {
    yours.push_back(p[k].grad());
    check_close(o, "dL/d" + kNames[k], p[k].grad(), want[k], kTol, k >= 3 ? kGates : Layout::none(), label);
  }
  if (o.passed) return o.add("all seven gradients within 1e-10");
  if (auto hint = diagnose(yours, kMistakes, [&](unsigned m) { return reference_grads(values, gh, gc, m); }, kTol))
    for (auto& l : *hint) o.add(l);
  else
    o.add("hint: check each gate's local derivative: σ' = σ(1 − σ), tanh' = 1 − tanh².");
  return o;
}

Outcome backward_pytorch(const Context& ctx) {
  Fixture fx(ctx.fixture("lstm_cell_f64.npz"));
  std::vector<Tensor> in, want;
  for (auto& n : kNames) in.push_back(fx[n]), want.push_back(fx["grad_" + n]);
  return gradients(in, fx["seed_h_new"], fx["seed_c_new"], want, "PyTorch");
}

Outcome backward_c_only(const Context& ctx) {
  Fixture fx(ctx.fixture("lstm_cell_f64.npz"));
  std::vector<Tensor> in;
  for (auto& n : kNames) in.push_back(fx[n]);
  Tensor gh = zeros_like(fx["seed_h_new"]), gc = fx["seed_c_new"];
  return gradients(in, gh, gc, reference_grads(in, gh, gc, 0), "reference");
}

Outcome other_sizes(const Context&) {
  Outcome o;
  Generator gen(31);
  std::vector<Tensor> q;
  for (const Shape& s : std::vector<Shape>{{2, 3}, {2, 5}, {2, 5}, {20, 3}, {20, 5}, {20}, {20}})
    q.push_back(uniform(s, -1, 1, gen, DType::Float64).requires_grad_());
  GradcheckOptions opt;
  opt.names = kNames;
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& v) { return flatten_outputs(call(v)); }, q, opt);
  o.passed = r.passed;
  o.add(fmt::format("gradcheck: largest relative error {:.2e}", r.max_relative_error));
  if (!r.passed) o.add(r.report());
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& t = assignment_manifest().tests;
  return test_main(argc, argv, assignment_manifest(),
                   {{t[0].name, forward}, {t[1].name, backward_pytorch},
                    {t[2].name, backward_c_only}, {t[3].name, other_sizes}});
}
