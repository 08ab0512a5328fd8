// Hidden tests of the GRU-forms assignment (README.md), compiled with the student's header
// (TAPEGRAD_SUBMISSION). Reference values: tests/fixtures/assignments/gru_forms.npz, made by
// tools/make_assignment_fixtures.py (nn.GRUCell for part 1, explicit torch ops for part 2).
// A wrong cell is matched against the reference into which the known mistakes (update gate
// flipped, reset on the wrong side of the matmul) were put, alone or both at once.
#include "framework/grading/grading.hpp"
#include "manifest.hpp"
#include TAPEGRAD_SUBMISSION

using namespace tapegrad;
using namespace tapegrad::grading;

namespace {

constexpr double kTol = 1e-10;
const char* kFixture = "assignments/gru_forms.npz";
const Layout kGates = Layout::gates({"r", "z", "n"});
const std::vector<std::string> kTorchNames = {"x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"};
const std::vector<std::string> kCourseNames = {"c_prev", "W_u", "b_u", "W_r", "b_r", "W_c", "b_c"};

// ---- part 1: PyTorch's cell with known mistakes -----------------------------------------------
enum : unsigned { ZFlipped = 1, ResetBefore = 2 };
const std::vector<Mistake> kTorchMistakes = {
    {"the update gate is used the other way round: PyTorch computes h' = (1 − z) ⊙ n + z ⊙ h "
     "(z = 1 keeps the old state); z ⊙ n + (1 − z) ⊙ h is the course's Γu with Γu = z."},
    {"the reset gate is applied before the matmul, W_hn (r ⊙ h) + b_hn (the course's form); "
     "PyTorch applies it after: r ⊙ (W_hn h + b_hn)."},
};

Tensor torch_reference(const std::vector<Tensor>& in, unsigned m) {
  const Tensor &x = in[0], &h = in[1];
  const std::size_t H = h.size(1);
  auto i = chunk(matmul(x, in[2], false, true) + in[4], 3, -1);
  auto g = chunk(matmul(h, in[3], false, true) + in[5], 3, -1);
  Tensor r = sigmoid(i[0] + g[0]), z = sigmoid(i[1] + g[1]);
  Tensor n = (m & ResetBefore) ? tanh(i[2] + matmul(r * h, narrow(in[3], 0, 2 * H, H), false, true) +
                                      narrow(in[5], 0, 2 * H, H))
                               : tanh(i[2] + r * g[2]);
  return (m & ZFlipped) ? z * n + (1.0 - z) * h : (1.0 - z) * n + z * h;
}

// ---- part 2: the course's cell with known mistakes --------------------------------------------
enum : unsigned { GuFlipped = 1, ResetAfter = 2 };
const std::vector<Mistake> kCourseMistakes = {
    {"Γu is used the other way round: the course computes c<t> = Γu ⊙ c~ + (1 − Γu) ⊙ c<t−1> "
     "(Γu = 1 takes the new candidate); (1 − Γu) ⊙ c~ + Γu ⊙ c<t−1> is PyTorch's z convention."},
    {"Γr is applied after the matmul, Γr ⊙ (W_c[:, :H] c<t−1>) (PyTorch's habit); the course "
     "multiplies before: W_c [Γr ⊙ c<t−1>, x<t>]."},
};

/// in = {x, c_prev, W_u, b_u, W_r, b_r, W_c, b_c}.
Tensor course_reference(const std::vector<Tensor>& in, unsigned m) {
  const Tensor &x = in[0], &c = in[1];
  const std::size_t H = c.size(1), I = x.size(1);
  Tensor cx = concat({c, x}, 1);
  Tensor gu = sigmoid(matmul(cx, in[2], false, true) + in[3]);
  Tensor gr = sigmoid(matmul(cx, in[4], false, true) + in[5]);
  Tensor a = (m & ResetAfter)
                 ? gr * matmul(c, narrow(in[6], 1, 0, H), false, true) +
                       matmul(x, narrow(in[6], 1, H, I), false, true) + in[7]
                 : matmul(concat({gr * c, x}, 1), in[6], false, true) + in[7];
  Tensor ct = tanh(a);
  return (m & GuFlipped) ? (1.0 - gu) * ct + gu * c : gu * ct + (1.0 - gu) * c;
}

assignment::CourseParams course_params(const std::vector<Tensor>& p) {  // p = {W_u, ..., b_c}
  return assignment::CourseParams{p[0], p[1], p[2], p[3], p[4], p[5]};
}

std::vector<Tensor> from_fixture(const Fixture& fx, const std::vector<std::string>& names) {
  std::vector<Tensor> v;
  for (const auto& n : names) v.push_back(fx[n]);
  return v;
}

void explain(Outcome& o, const std::optional<std::vector<std::string>>& hint, const char* fallback) {
  if (hint)
    for (auto& l : *hint) o.add(l);
  else
    o.add(fallback);
}

Outcome torch_forward(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture(kFixture));
  std::vector<Tensor> in = from_fixture(fx, kTorchNames);
  Tensor out = assignment::torch_gru_cell(in[0], in[1], in[2], in[3], in[4], in[5]);
  if (check_close(o, "h'", out, fx["h_new"], kTol, {}, "PyTorch")) return o.add("max |yours − PyTorch| < 1e-10");
  explain(o, diagnose({out}, kTorchMistakes, [&](unsigned m) { return std::vector<Tensor>{torch_reference(in, m)}; }, kTol),
          "hint: check each gate against the formulas of part 1 (rows r | z | n).");
  return o;
}

Outcome torch_gradients(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture(kFixture));
  std::vector<Tensor> in = leaves(from_fixture(fx, kTorchNames), true);
  sum(assignment::torch_gru_cell(in[0], in[1], in[2], in[3], in[4], in[5]) * fx["seed_h_new"]).backward();
  for (std::size_t k = 0; k < in.size(); ++k)
    check_close(o, "dL/d" + kTorchNames[k], in[k].grad(), fx["grad_" + kTorchNames[k]], kTol,
                k >= 2 ? kGates : Layout::none(), "PyTorch");
  if (o.passed) o.add("all six gradients within 1e-10");
  return o;
}

Outcome course_forward(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture(kFixture));
  std::vector<Tensor> in = {fx["x"]};
  for (const auto& n : kCourseNames) in.push_back(fx[n]);
  Tensor out = assignment::course_gru_cell(in[0], in[1], course_params({in.begin() + 2, in.end()}));
  if (check_close(o, "c<t>", out, fx["c_new"], kTol, {}, "PyTorch")) return o.add("max |yours − PyTorch| < 1e-10");
  explain(o, diagnose({out}, kCourseMistakes, [&](unsigned m) { return std::vector<Tensor>{course_reference(in, m)}; }, kTol),
          "hint: check Γu, Γr, c~ and c<t> against the formulas of part 2; [c<t−1>, x<t>] puts c first.");
  return o;
}

Outcome course_gradients(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture(kFixture));
  std::vector<Tensor> in = {fx["x"]};
  for (const auto& n : kCourseNames) in.push_back(fx[n]);
  in = leaves(in, true);
  sum(assignment::course_gru_cell(in[0], in[1], course_params({in.begin() + 2, in.end()})) * fx["seed_c_new"])
      .backward();
  check_close(o, "dL/dx", in[0].grad(), fx["grad_x_course"], kTol, {}, "PyTorch");
  for (std::size_t k = 0; k < kCourseNames.size(); ++k)
    check_close(o, "dL/d" + kCourseNames[k], in[k + 1].grad(), fx["grad_" + kCourseNames[k]], kTol, {}, "PyTorch");
  if (o.passed) o.add("all eight gradients within 1e-10");
  return o;
}

/// The exact conversion, or the update gate without its sign change (mask 1).
std::vector<Tensor> conversion_reference(const std::vector<Tensor>& t, unsigned m) {
  const std::size_t H = t[1].size(1);
  auto rows = [&](const Tensor& w, std::size_t k) { return narrow(w, 0, k * H, H); };
  auto W = [&](std::size_t k) { return concat({rows(t[1], k), rows(t[0], k)}, 1); };
  auto b = [&](std::size_t k) { return rows(t[2], k) + rows(t[3], k); };
  const bool flip = !(m & 1);
  return {flip ? -W(1) : W(1), flip ? -b(1) : b(1), W(0), b(0), W(2), b(2)};
}

Outcome conversion(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture(kFixture));
  std::vector<Tensor> t = {fx["weight_ih"], fx["weight_hh"], fx["bias_ih"], fx["bias_hh"]};
  assignment::CourseParams p = assignment::to_course(t[0], t[1], t[2], t[3]);
  std::vector<Tensor> yours = {p.W_u, p.b_u, p.W_r, p.b_r, p.W_c, p.b_c}, want = conversion_reference(t, 0);
  const char* names[] = {"W_u", "b_u", "W_r", "b_r", "W_c", "b_c"};
  for (std::size_t k = 0; k < 6; ++k) check_close(o, names[k], yours[k], want[k], 1e-12, {}, "the exact conversion");
  if (o.passed) return o.add("W_u = −[W_hz, W_iz], b_u = −(b_iz + b_hz); Γr and c~ rearranged exactly");
  explain(o,
          diagnose(yours, {{"the update gate keeps PyTorch's sign: Γu = 1 − z = 1 − σ(a_z) = σ(−a_z), "
                            "so W_u = −[W_hz, W_iz] and b_u = −(b_iz + b_hz)."}},
                   [&](unsigned m) { return conversion_reference(t, m); }, 1e-12, 1),
          "hint: W acts on [c<t−1>, x<t>]: the hidden columns (W_h·) come first; b = b_i· + b_h·.");
  return o;
}

Outcome agree_when_r_is_one(const Context& ctx) {
  Outcome o{true, {}};
  Fixture fx(ctx.fixture(kFixture));
  assignment::CourseParams p =
      assignment::to_course(fx["r1_weight_ih"], fx["r1_weight_hh"], fx["r1_bias_ih"], fx["r1_bias_hh"]);
  Tensor c = assignment::course_gru_cell(fx["x"], fx["h"], p);
  if (!check_close(o, "course_gru_cell(to_course(θ)) with r ≡ 1", c, fx["r1_h_new"], 1e-12, {}, "nn.GRUCell")) {
    o.add("hint: with r ≡ 1 both candidates are tanh(W_in x + b_in + W_hn h + b_hn) and Γu = 1 − z, so "
          "the two cells must agree; check test 5 (the conversion) and test 3 (the course's cell) first.");
    return o;
  }
  o.add("with r ≡ 1 the converted course cell equals nn.GRUCell to 1e-12");
  // For the record: with PyTorch's own r the same conversion does not reproduce nn.GRUCell.
  Tensor general = assignment::course_gru_cell(fx["x"], fx["h"],
                                               assignment::to_course(fx["weight_ih"], fx["weight_hh"],
                                                                     fx["bias_ih"], fx["bias_hh"]));
  o.add(fmt::format("(with PyTorch's r the converted cell differs by up to {:.2e}: reset after ≠ reset before)",
                    compare(general, fx["h_new"]).max_abs));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& t = assignment_manifest().tests;
  return test_main(argc, argv, assignment_manifest(),
                   {{t[0].name, torch_forward},
                    {t[1].name, torch_gradients},
                    {t[2].name, course_forward},
                    {t[3].name, course_gradients},
                    {t[4].name, conversion},
                    {t[5].name, agree_when_r_is_one}});
}
