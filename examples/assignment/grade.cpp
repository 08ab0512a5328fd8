// grade — the hidden grading tests of the GRU assignment (docs/assignments.md).
//
//   grade_<submission> [--fixtures DIR]
//
// Compiled once per submission (CMakeLists.txt): TAPEGRAD_ASSIGNMENT_HEADER names the header
// that provides assignment::gru_cell and assignment::swish. Five tests; exit 0 only when all
// pass. A failure says what differs, where and by how much, and gives a hint, found by comparing
// the submission with the reference into which a known mistake was put.
//   1. gru_cell forward == PyTorch's nn.GRUCell        (tests/fixtures/gru_cell_f64.npz, 1e-10)
//   2. its gradients == PyTorch's, L = Σ h' ⊙ seed     (same fixture, 1e-10)
//   3. at other sizes: == the reference and gradcheck passes (no hard-coded sizes, no detach)
//   4. swish forward == x ⊙ σ(x)
//   5. swish backward passes gradcheck (float64)
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "framework/module.hpp"
#include "framework/npz.hpp"
#include TAPEGRAD_ASSIGNMENT_HEADER

using namespace tapegrad;

namespace {

constexpr double kTol = 1e-10;  // float64, same formula as PyTorch: only rounding may differ

// ---- the reference, with known mistakes that can be switched on ---------------------------------
enum class Mistake { None, ZFlipped, ResetBefore, BhnOutside, RZSwapped, NoHiddenBias };
const std::vector<std::pair<Mistake, const char*>> kKnownMistakes = {
    {Mistake::ZFlipped,
     "the update gate is used the other way round. PyTorch computes h' = (1 − z) ⊙ n + z ⊙ h "
     "(z = 1 keeps the old state); the course's Γu is 1 − z."},
    {Mistake::ResetBefore,
     "the reset gate is applied before the matmul, W_hn (r ⊙ h) + b_hn (the course's form). "
     "PyTorch applies it after: r ⊙ (W_hn h + b_hn)."},
    {Mistake::BhnOutside,
     "b_hn is added outside the reset gate. In PyTorch it is inside: r ⊙ (W_hn h + b_hn)."},
    {Mistake::RZSwapped,
     "the r and z gates are swapped. The rows of weight_ih, weight_hh and the biases are "
     "ordered r | z | n."},
    {Mistake::NoHiddenBias, "bias_hh is not used. The hidden projection is W_hh h + b_hh."},
};

/// in = {x, h, weight_ih, weight_hh, bias_ih, bias_hh}.
Tensor reference(const std::vector<Tensor>& in, Mistake m) {
  const Tensor &x = in[0], &h = in[1];
  const std::size_t H = h.size(1);
  Tensor b_hn = narrow(in[5], 0, 2 * H, H);
  auto i = chunk(matmul(x, in[2], false, true) + in[4], 3, -1);  // (B, H) each
  Tensor gh = matmul(h, in[3], false, true);
  auto g = chunk(m == Mistake::NoHiddenBias ? gh : gh + in[5], 3, -1);
  const int ir = m == Mistake::RZSwapped ? 1 : 0, iz = 1 - ir;
  Tensor r = sigmoid(i[ir] + g[ir]), z = sigmoid(i[iz] + g[iz]);
  Tensor n = m == Mistake::ResetBefore
                 ? tanh(i[2] + matmul(r * h, narrow(in[3], 0, 2 * H, H), false, true) + b_hn)
             : m == Mistake::BhnOutside ? tanh(i[2] + r * (g[2] - b_hn) + b_hn)
                                        : tanh(i[2] + r * g[2]);
  return m == Mistake::ZFlipped ? z * n + (1.0 - z) * h : (1.0 - z) * n + z * h;
}

Tensor call_gru(const std::vector<Tensor>& in) {
  return assignment::gru_cell(in[0], in[1], in[2], in[3], in[4], in[5]);
}

// ---- comparing tensors --------------------------------------------------------------------------
struct Diff {
  double max_abs = 0;
  std::vector<std::size_t> at;  // multi-index of the largest difference
  double yours = 0, expected = 0;
};

Diff compare(const Tensor& yours, const Tensor& expected) {
  Diff d;
  for (std::size_t k = 0; k < yours.numel(); ++k) {
    double e = std::fabs(yours.at(k) - expected.at(k));
    if (e > d.max_abs || std::isnan(e) || k == 0) {
      d.max_abs = std::isnan(e) ? INFINITY : e, d.yours = yours.at(k), d.expected = expected.at(k);
      d.at.assign(yours.dim(), 0);
      for (std::size_t a = yours.dim(), rest = k; a-- > 0; rest /= yours.shape()[a])
        d.at[a] = rest % yours.shape()[a];
    }
  }
  return d;
}

std::string where(const Diff& d) { return fmt::format("({})", fmt::join(d.at, ", ")); }

/// "the z gate (rows 4..7)" for a row of a (3H, ·) weight or (3H) bias.
std::string gate_of(const std::string& name, const Diff& d, std::size_t H) {
  if (name.rfind("weight", 0) != 0 && name.rfind("bias", 0) != 0) return "";
  std::size_t block = d.at[0] / H;
  return fmt::format(" — the {} gate (rows {}..{})", "rzn"[block], block * H, block * H + H - 1);
}

// ---- running tests ------------------------------------------------------------------------------
struct Outcome {
  bool passed = false;
  std::vector<std::string> lines;
  /// Adds a line and returns the outcome, for `return o.add(...)`.
  Outcome& add(std::string line) {
    lines.push_back(std::move(line));
    return *this;
  }
};

int g_passed = 0, g_total = 0;

bool run(const std::string& title, const std::function<Outcome()>& test) {
  Outcome o;
  try {
    o = test();
  } catch (const std::logic_error& e) {  // the skeleton's TODOs
    o.lines.push_back(fmt::format("not implemented yet ({})", e.what()));
  } catch (const std::exception& e) {
    o.lines.push_back(fmt::format("your code raised an error: {}", e.what()));
  }
  ++g_total, g_passed += o.passed;
  fmt::print("[{}] {}\n", o.passed ? "PASS" : "FAIL", title);
  for (const std::string& l : o.lines) fmt::print("       {}\n", l);
  return o.passed;
}

std::vector<Tensor> leaves(const std::vector<Tensor>& in, bool requires_grad) {
  std::vector<Tensor> out;
  for (const Tensor& t : in) out.push_back(t.detach().requires_grad_(requires_grad));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"grades the GRU assignment"};
  std::string fixtures = TAPEGRAD_FIXTURE_DIR;
  app.add_option("--fixtures", fixtures, "directory holding gru_cell_f64.npz");
  CLI11_PARSE(app, argc, argv);

  const std::string path = fixtures + "/gru_cell_f64.npz";
  npz::Archive fx = npz::load_npz(path);
  auto get = [&](const std::string& key) {
    return from_npz_array(npz::find(fx, key, path), path + ":" + key);
  };
  const std::vector<std::string> names = {"x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  std::vector<Tensor> in;
  for (const auto& n : names) in.push_back(get(n));
  const std::size_t H = in[1].size(1);
  fmt::print("Grading submission {} (PyTorch fixture {})\n\n", TAPEGRAD_ASSIGNMENT_HEADER, path);

  bool forward_ok = run("1. gru_cell: h' matches PyTorch's nn.GRUCell", [&] {
    Outcome o;
    Tensor out = call_gru(leaves(in, false)), want = get("h_new");
    if (!out.defined()) return o.add("gru_cell returned an undefined Tensor");
    if (out.shape() != want.shape())
      return o.add(fmt::format("h' has shape {}, expected {} (B, H)", shape_str(out.shape()),
                               shape_str(want.shape())));
    Diff d = compare(out, want);
    o.passed = d.max_abs < kTol;
    o.lines.push_back(fmt::format("max |yours − PyTorch| = {:.2e}{}", d.max_abs,
                                  o.passed ? ""
                                           : fmt::format(" at {}: yours {:.8f}, PyTorch {:.8f}",
                                                         where(d), d.yours, d.expected)));
    if (o.passed) return o;
    for (const auto& [mistake, hint] : kKnownMistakes)
      if (compare(out, reference(in, mistake)).max_abs < kTol)
        return o.add(std::string("hint: ") + hint);
    o.lines.push_back(
        "hint: compare each gate with the formulas in student_gru.hpp; the fixture also holds "
        "PyTorch's r, z and n of this step.");
    return o;
  });

  run("2. gru_cell: gradients match PyTorch's (L = Σ h' ⊙ seed)", [&] {
    Outcome o{true, {}};
    std::vector<Tensor> p = leaves(in, true);
    sum(call_gru(p) * get("seed_h_new")).backward();
    for (std::size_t k = 0; k < names.size(); ++k) {
      Tensor want = get("grad_" + names[k]);
      if (!p[k].grad().defined()) {
        o.passed = false;
        o.lines.push_back(
            fmt::format("dL/d{}: no gradient reached it (unused, or detached?)", names[k]));
        continue;
      }
      Diff d = compare(p[k].grad(), want);
      if (d.max_abs < kTol) continue;
      o.passed = false;
      o.lines.push_back(
          fmt::format("dL/d{} differs by up to {:.2e} at {}{}: yours {:.8f}, PyTorch {:.8f}",
                      names[k], d.max_abs, where(d), gate_of(names[k], d, H), d.yours, d.expected));
    }
    if (o.passed)
      o.lines.push_back("all six gradients within 1e-10");
    else if (!forward_ok)
      o.lines.push_back("(the forward is already wrong: fix test 1 first)");
    return o;
  });

  run("3. gru_cell at other sizes (B=2, I=3, H=5): matches the reference, gradcheck passes", [&] {
    Outcome o;
    Generator gen(11);
    std::vector<Tensor> q;
    for (const Shape& s : std::vector<Shape>{{2, 3}, {2, 5}, {15, 3}, {15, 5}, {15}, {15}})
      q.push_back(uniform(s, -1, 1, gen, DType::Float64).requires_grad_());
    Tensor out = call_gru(q);
    if (!out.defined() || out.shape() != Shape{2, 5})
      return o.add("h' should have shape (2, 5) here: are sizes hard-coded?");
    Diff d = compare(out, reference(q, Mistake::None));
    if (d.max_abs >= kTol)
      return o.add(fmt::format("h' differs from the reference by {:.2e} at {}{}", d.max_abs,
                               where(d), forward_ok ? ": are sizes hard-coded?" : " (see test 1)"));
    GradcheckOptions opt;
    opt.names = names;
    GradcheckResult r = gradcheck(call_gru, q, opt);
    o.passed = r.passed;
    o.lines.push_back(
        fmt::format("gradcheck: largest relative error {:.2e}", r.max_relative_error));
    if (!r.passed) {
      o.lines.push_back(r.report());
      o.lines.push_back(
          "hint: values were changed outside the tape (data<T>() writes, detach(), NoGradGuard).");
    }
    return o;
  });

  Tensor xs = tensor({{-4.0, -1.5, -0.3, 0.2}, {0.7, 1.1, 2.5, 5.0}}, DType::Float64);
  run("4. swish forward: x ⊙ σ(x)", [&] {
    Outcome o;
    Diff d = compare(assignment::swish(xs), xs * sigmoid(xs));
    o.passed = d.max_abs < 1e-14;
    if (!o.passed)
      o.lines.push_back(fmt::format("differs by {:.2e} at {}: the forward was given, restore it",
                                    d.max_abs, where(d)));
    return o;
  });

  run("5. swish backward: passes gradcheck (float64)", [&] {
    Outcome o;
    Tensor x = xs.detach().requires_grad_().set_name("x");
    GradcheckResult r =
        gradcheck([](const std::vector<Tensor>& v) { return sum(assignment::swish(v[0])); }, {x});
    o.passed = r.passed;
    const InputCheck& c = r.inputs.at(0);
    o.lines.push_back(fmt::format(
        "relative error {:.2e}{}", c.relative_error,
        o.passed ? ""
                 : fmt::format("; worst element x({}) = {}: your backward gives {:.8f}, "
                               "central differences {:.8f}",
                               fmt::join(c.worst_index, ", "),
                               x.at(c.worst_index[0] * x.size(1) + c.worst_index[1]), c.analytic,
                               c.numeric)));
    if (o.passed) return o;
    // What did the backward return? dL/dx for L = Σ swish(x) is the derivative itself.
    sum(assignment::swish(x)).backward();
    Tensor s = sigmoid(xs);
    const std::vector<std::pair<Tensor, const char*>> guesses = {
        {s,
         "your dL/dx is g ⊙ σ(x): the product rule's second term, x ⊙ σ(x) ⊙ (1 − σ(x)), is "
         "missing."},
        {xs * s * (1.0 - s), "your dL/dx lacks the product rule's first term, σ(x)."},
        {s * (1.0 - s), "σ(x) ⊙ (1 − σ(x)) is the derivative of σ alone, not of x ⊙ σ(x)."},
        {ones_like(xs), "you returned g unchanged: multiply it by d swish/dx."}};
    for (const auto& [guess, hint] : guesses)
      if (compare(x.grad(), guess).max_abs < 1e-12) return o.add(std::string("hint: ") + hint);
    o.lines.push_back("hint: dL/dx = g ⊙ (σ(x) + x ⊙ σ(x) ⊙ (1 − σ(x))).");
    return o;
  });

  fmt::print("\nscore: {}/{}{}\n", g_passed, g_total,
             g_passed == g_total ? " — all tests pass" : "");
  return g_passed == g_total ? 0 : 1;
}
