// Hidden tests of the gradient-flow lab (README.md), compiled with the student's header
// (TAPEGRAD_SUBMISSION). The checkpoint is model.npz beside this file (TAPEGRAD_LAB_DIR, set by
// the CMakeLists). The reference measures ∂L/∂h_t with tapegrad::grad on the composed GRU's
// per-step states, independently of the student's hooks.
#include <algorithm>
#include <cmath>

#include "framework/grading/grading.hpp"
#include "manifest.hpp"
#include TAPEGRAD_SUBMISSION

#ifndef TAPEGRAD_LAB_DIR
#error "TAPEGRAD_LAB_DIR (the folder holding model.npz) must be defined by the CMakeLists"
#endif

using namespace tapegrad;
using namespace tapegrad::grading;

namespace {

constexpr double kTol = 1e-9;
const char* kText1 = "sotek\nbamor\nlenoka\n";
const char* kText2 = "dakober\nrosem\nmat\n";
constexpr std::size_t kTop = 5;

std::shared_ptr<assignment::LabModel> model() {
  return assignment::load_lab_model(std::string(TAPEGRAD_LAB_DIR) + "/model.npz");
}

struct Reference {
  std::vector<Tensor> grads;  // ∂L/∂h_t, t = 0..N, (1, H)
  std::vector<double> z;      // mean z per unit
};

/// L = mean −log p(text[t]), t = 1..N; every ∂L/∂h_t from one tapegrad::grad call.
Reference reference(assignment::LabModel& m, const std::vector<std::int64_t>& ids) {
  const std::size_t N = ids.size() - 1, V = m.vocab_size, H = m.hidden;
  std::vector<std::int64_t> in(ids.begin(), ids.end() - 1), next(ids.begin() + 1, ids.end());
  Tensor h0 = zeros({1, H}, DType::Float64).requires_grad_();
  m.gru->set_record_gates(true);
  auto out = m.gru->forward(reshape(one_hot(in, V, DType::Float64), Shape{1, N, V}), reshape(h0, Shape{1, 1, H}));
  m.gru->set_record_gates(false);
  Tensor lp = log_softmax(reshape(m.head->forward(out.output), Shape{N, V}), 1);
  Tensor nll = zeros({N, V}, DType::Float64);
  for (std::size_t t = 0; t < N; ++t) nll.data<double>()(t, static_cast<std::size_t>(next[t])) = -1.0 / double(N);
  std::vector<Tensor> hs = {h0};
  for (const Tensor& h : out.steps[0]) hs.push_back(h);
  Reference r;
  for (const Tensor& g : grad(lp, hs, nll)) r.grads.push_back(g.defined() ? g : zeros({1, H}, DType::Float64));
  r.z.assign(H, 0.0);
  for (const auto& rec : m.gru->gate_records()[0])
    for (std::size_t j = 0; j < H; ++j) r.z[j] += rec.z.at(j) / double(N);
  tape().clear();
  return r;
}

std::vector<double> norms(const std::vector<Tensor>& g) {
  std::vector<double> n;
  for (const Tensor& t : g) n.push_back(t.defined() ? std::sqrt(sum(t * t).item()) : 0.0);
  return n;
}

/// Explains a wrong list of gradients: h_0 missing, a factor N (normalised twice / a sum).
void explain_grads(Outcome& o, const std::vector<double>& yours, const std::vector<double>& want, std::size_t N) {
  auto scaled = [&](std::size_t offset, double f) {
    if (yours.size() + offset != want.size()) return false;
    for (std::size_t t = 0; t < yours.size(); ++t)
      if (std::abs(yours[t] - want[t + offset] * f) > kTol * std::max(1.0, want[t + offset] * f)) return false;
    return true;
  };
  if (yours.size() == N && scaled(1, 1.0))
    o.add("hint: h_0 is missing: return N + 1 gradients, t = 0..N; h_0 is a leaf (zeros (1, H), requires grad) "
          "that you pass to the GRU, and ∂L/∂h_0 is its gradient.");
  else if (scaled(0, 1.0 / double(N)))
    o.add(fmt::format("hint: every gradient is 1/N = 1/{} of the reference: the loss is normalised by N twice "
                      "(cross_entropy already takes the mean over the N predictions).", N));
  else if (scaled(0, double(N)))
    o.add("hint: every gradient is N times the reference: L is the MEAN of −log p over t = 1..N, not the sum.");
  else if (yours.size() != want.size())
    o.add(fmt::format("hint: expected N + 1 = {} gradients (t = 0..N), got {}.", want.size(), yours.size()));
  else
    o.add("hint: call retain_grad() on out.steps[0][t − 1] before the backward, and read h.grad() after it.");
}

Outcome grad_norms(const Context&) {
  Outcome o{true, {}};
  auto m = model();
  auto ids = m->encode(kText1);
  Reference ref = reference(*m, ids);
  std::vector<double> want = norms(ref.grads), yours = norms(assignment::hidden_grads(*m, ids));
  const std::size_t N = ids.size() - 1;
  bool ok = yours.size() == want.size();
  double worst = 0;
  for (std::size_t t = 0; ok && t < want.size(); ++t) worst = std::max(worst, std::abs(yours[t] - want[t]));
  if (ok && worst < kTol)
    return o.add(fmt::format("N = {}: ‖∂L/∂h_0‖ = {:.4e} … ‖∂L/∂h_N‖ = {:.4e}, all within 1e-9 (largest "
                             "difference {:.1e})", N, want.front(), want.back(), worst));
  o.passed = false;
  if (!ok)
    o.add(fmt::format("you returned {} gradients; the text has N = {} predictions, so t = 0..N is {}", yours.size(),
                      N, want.size()));
  else
    for (std::size_t t = 0, shown = 0; t < want.size() && shown < 3; ++t)
      if (std::abs(yours[t] - want[t]) >= kTol)
        ++shown, o.add(fmt::format("‖∂L/∂h_{}‖: yours {:.6e}, reference {:.6e}", t, yours[t], want[t]));
  explain_grads(o, yours, want, N);
  return o;
}

Outcome unit_grads(const Context&) {
  Outcome o{true, {}};
  auto m = model();
  auto ids = m->encode(kText2);
  Reference ref = reference(*m, ids);
  std::vector<Tensor> yours = assignment::hidden_grads(*m, ids);
  if (yours.size() != ref.grads.size()) {
    o.passed = false;
    o.add(fmt::format("you returned {} gradients, expected N + 1 = {}", yours.size(), ref.grads.size()));
    explain_grads(o, norms(yours), norms(ref.grads), ids.size() - 1);
    return o;
  }
  for (std::size_t t = 0; t < yours.size(); ++t)
    if (!check_close(o, fmt::format("∂L/∂h_{}", t), yours[t], ref.grads[t], kTol, {}, "reference")) break;
  if (o.passed) return o.add(fmt::format("all {} × {} entries within 1e-9", yours.size(), m->hidden));
  explain_grads(o, norms(yours), norms(ref.grads), ids.size() - 1);
  return o;
}

std::vector<std::size_t> reference_top(const Tensor& g, std::size_t k) {
  std::vector<std::size_t> u(g.numel());
  for (std::size_t j = 0; j < u.size(); ++j) u[j] = j;
  std::stable_sort(u.begin(), u.end(), [&](std::size_t a, std::size_t b) { return std::abs(g.at(a)) > std::abs(g.at(b)); });
  u.resize(k);
  return u;
}

std::string list(const std::vector<std::size_t>& v) {
  std::string s;
  for (std::size_t x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return "[" + s + "]";
}

Outcome top(const Context&) {
  Outcome o{true, {}};
  auto m = model();
  Reference ref = reference(*m, m->encode(kText1));
  const Tensor& g1 = ref.grads.at(1);
  std::vector<std::size_t> want = reference_top(g1, kTop), yours = assignment::top_units(g1, kTop);
  if (yours == want) return o.add("units " + list(want) + ", largest |∂L/∂h_1[j]| first");
  o.passed = false;
  o.add("your units " + list(yours) + ", expected " + list(want) + " (the largest |∂L/∂h_1[j]| first)");
  std::vector<std::size_t> sorted_yours = yours, sorted_want = want;
  std::sort(sorted_yours.begin(), sorted_yours.end()), std::sort(sorted_want.begin(), sorted_want.end());
  if (sorted_yours == sorted_want) o.add("hint: the right units in the wrong order: largest first.");
  else {
    std::vector<std::size_t> by_value(g1.numel());
    for (std::size_t j = 0; j < by_value.size(); ++j) by_value[j] = j;
    std::stable_sort(by_value.begin(), by_value.end(), [&](std::size_t a, std::size_t b) { return g1.at(a) > g1.at(b); });
    by_value.resize(kTop);
    if (yours == by_value) o.add("hint: you ranked by the signed value; the share of ‖·‖² is g[j]², rank by |g[j]|.");
  }
  return o;
}

Outcome gates(const Context&) {
  Outcome o{true, {}};
  auto m = model();
  auto ids = m->encode(kText1);
  Reference ref = reference(*m, ids);
  std::vector<double> yours = assignment::mean_update_gate(*m, ids);
  if (yours.size() != ref.z.size()) {
    o.passed = false;
    return o.add(fmt::format("you returned {} values, the model has H = {} units", yours.size(), ref.z.size()));
  }
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t j = 0; j < yours.size(); ++j)
    if (std::abs(yours[j] - ref.z[j]) > worst) worst = std::abs(yours[j] - ref.z[j]), at = j;
  if (worst < kTol) return o.add("all H mean update gates within 1e-9");
  o.passed = false;
  o.add(fmt::format("unit {}: yours {:.8f}, reference {:.8f} (the mean of z_t[j] over t = 1..N)", at, yours[at], ref.z[at]));
  return o;
}

Outcome finding(const Context&) {
  Outcome o{true, {}};
  auto m = model();
  auto ids = m->encode(kText1);
  std::vector<Tensor> g = assignment::hidden_grads(*m, ids);
  Reference ref = reference(*m, ids);
  if (g.size() != ref.grads.size() || !compare(g[1], ref.grads[1]).within(kTol)) {
    o.passed = false;
    return o.add("∂L/∂h_1 from your hidden_grads differs from the reference: fix tests 1 and 2 first");
  }
  std::vector<std::size_t> units = assignment::top_units(g[1], kTop);
  std::vector<double> z = assignment::mean_update_gate(*m, ids);
  if (units != reference_top(ref.grads[1], kTop) || z.size() != ref.z.size()) {
    o.passed = false;
    return o.add("top_units or mean_update_gate differ from the reference: fix tests 3 and 4 first");
  }
  const double total = sum(g[1] * g[1]).item();
  double share = 0, z_top = 0, z_all = 0;
  for (std::size_t j : units) share += g[1].at(j) * g[1].at(j) / total, z_top += z[j] / double(units.size());
  for (double v : z) z_all += v / double(z.size());
  const double uniform = double(units.size()) / double(z.size());
  if (share <= uniform) {
    o.passed = false;
    return o.add(fmt::format("the top {} units carry {:.1f}% of ‖∂L/∂h_1‖², no more than a uniform spread ({:.1f}%)",
                             units.size(), 100 * share, 100 * uniform));
  }
  o.add(fmt::format("the top {} of {} units carry {:.1f}% of ‖∂L/∂h_1‖² (a uniform spread: {:.1f}%)", units.size(),
                    z.size(), 100 * share, 100 * uniform));
  o.add(fmt::format("their mean update gate z = {:.4f}; all units: {:.4f} — {}", z_top, z_all,
                    z_top > z_all ? "higher: they keep their state, and the gradient with it"
                                  : "NOT higher in this small, briefly trained model (README: discuss why)"));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& t = assignment_manifest().tests;
  return test_main(argc, argv, assignment_manifest(),
                   {{t[0].name, grad_norms}, {t[1].name, unit_grads}, {t[2].name, top}, {t[3].name, gates},
                    {t[4].name, finding}});
}
