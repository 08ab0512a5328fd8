// Hidden tests of the char-LM assignment (README.md), compiled with the student's header
// (TAPEGRAD_SUBMISSION). Sampling is tested statistically with fixed seeds and loose tolerances
// (each frequency within 0.015 of its probability over 20000 draws: more than 4 standard
// deviations); clipping against tapegrad::clip_grad_norm; training by the loss it reaches.
#include <chrono>
#include <cmath>

#include "framework/grading/grading.hpp"
#include "manifest.hpp"
#include TAPEGRAD_SUBMISSION

using namespace tapegrad;
using namespace tapegrad::grading;

namespace {

constexpr std::size_t kDraws = 20000;
constexpr double kFreqTol = 0.015;
const std::vector<double> kLogits = {1.0, 0.2, -0.5, 2.0, 0.0, -1.0};

Tensor logits_tensor(const std::vector<double>& v) {
  Tensor t = zeros({v.size()}, DType::Float64);
  for (std::size_t i = 0; i < v.size(); ++i) t.data<double>()(i) = v[i];
  return t;
}

std::vector<double> softmax_of(const std::vector<double>& logits, double scale) {
  std::vector<double> p;
  double m = *std::max_element(logits.begin(), logits.end()) * scale, s = 0;
  for (double l : logits) p.push_back(std::exp(l * scale - m)), s += p.back();
  for (double& x : p) x /= s;
  return p;
}

std::vector<double> frequencies(double T, std::uint64_t seed) {
  Generator gen(seed);
  Tensor logits = logits_tensor(kLogits);
  std::vector<double> f(kLogits.size(), 0.0);
  for (std::size_t k = 0; k < kDraws; ++k) {
    std::int64_t c = assignment::sample_next(logits, T, gen);
    if (c < 0 || c >= static_cast<std::int64_t>(f.size()))
      throw ValueError(fmt::format("sample_next returned {}, not an index in 0..{}", c, f.size() - 1));
    f[static_cast<std::size_t>(c)] += 1.0 / kDraws;
  }
  return f;
}

double max_gap(const std::vector<double>& a, const std::vector<double>& b) {
  double g = 0;
  for (std::size_t i = 0; i < a.size(); ++i) g = std::max(g, std::abs(a[i] - b[i]));
  return g;
}

std::string fmt_vec(const std::vector<double>& v) {
  std::string s = "(";
  for (std::size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{:.3f}", i ? ", " : "", v[i]);
  return s + ")";
}

Outcome argmax_at_zero(const Context&) {
  Outcome o{true, {}};
  Generator gen(5), perm(6);
  for (int row = 0; row < 5; ++row) {
    std::vector<double> l;  // a shuffle of 0, 0.3, ..., 2.1: gaps ≥ 0.3 (e^(−300) at T = 0.001)
    for (int k = 0; k < 8; ++k) l.push_back(0.3 * k);
    for (std::size_t k = l.size() - 1; k > 0; --k) std::swap(l[k], l[static_cast<std::size_t>(perm.uniform() * (k + 1))]);
    const std::int64_t want = std::max_element(l.begin(), l.end()) - l.begin();
    for (double T : {0.0, 1e-3})
      for (int d = 0; d < 30; ++d) {
        std::int64_t got = assignment::sample_next(logits_tensor(l), T, gen);
        if (got != want) {
          o.passed = false;
          o.add(fmt::format("at T = {} sample_next gave {}, the argmax of {} is {} (T → 0 must pick "
                            "the largest logit; T = 0 is the argmax itself)", T, got, fmt_vec(l), want));
          if (T > 0)
            o.add("hint: at T = 0.001 softmax(logits / T) puts all the mass on the largest logit; if yours "
                  "does not, T is not dividing the logits (dividing the probabilities after the softmax "
                  "changes nothing: multinomial renormalises them).");
          return o;
        }
      }
  }
  return o.add("T = 0 and T = 0.001 always gave the argmax (5 rows × 30 draws each)");
}

Outcome check_frequencies(const std::vector<double>& temperatures) {
  Outcome o{true, {}};
  std::uint64_t seed = 100;
  for (double T : temperatures) {
    std::vector<double> f = frequencies(T, seed++), want = softmax_of(kLogits, 1 / T);
    double gap = max_gap(f, want);
    if (gap < kFreqTol) {
      o.add(fmt::format("T = {}: frequencies {} within {:.3f} of softmax(logits / T) {}", T, fmt_vec(f), gap, fmt_vec(want)));
      continue;
    }
    o.passed = false;
    o.add(fmt::format("T = {}: frequencies {} over {} draws, softmax(logits / T) = {} (largest gap {:.3f}, "
                      "allowed {})", T, fmt_vec(f), kDraws, fmt_vec(want), gap, kFreqTol));
    if (max_gap(f, softmax_of(kLogits, 1)) < kFreqTol)
      o.add("hint: your frequencies are those of softmax(logits): the temperature has no effect. Dividing the "
            "probabilities by T after the softmax does nothing (multinomial renormalises them); divide the "
            "LOGITS: softmax(logits / T).");
    else if (max_gap(f, softmax_of(kLogits, T)) < kFreqTol)
      o.add("hint: your frequencies are those of softmax(logits · T): divide by T, do not multiply.");
    else
      o.add("hint: draw with multinomial(softmax(logits / T), 1, true, gen) — one draw per call.");
  }
  return o;
}

/// Random parameters with gradients (one without), twice: for the student and for clip_grad_norm.
std::pair<std::vector<Tensor>, std::vector<Tensor>> random_grads(std::uint64_t seed, double scale) {
  Generator gen(seed);
  std::vector<Tensor> a, b;
  for (const Shape& s : std::vector<Shape>{{4, 3}, {7}, {2, 2, 5}, {3}, {6, 1}}) {
    Tensor pa = zeros(s, DType::Float64).requires_grad_(), pb = zeros(s, DType::Float64).requires_grad_();
    if (s != Shape{3}) {  // this one has no gradient: must be skipped
      Tensor g = randn(s, gen, DType::Float64) * scale;
      pa.set_grad(g.detach());
      pb.set_grad(g.detach());
    }
    a.push_back(pa), b.push_back(pb);
  }
  return {a, b};
}

Outcome clip_matches(const Context&) {
  Outcome o{true, {}};
  for (auto [seed, max_norm] : std::vector<std::pair<std::uint64_t, double>>{{1, 1.0}, {2, 0.25}, {3, 3.0}}) {
    auto [mine, ref] = random_grads(seed, 1.5);
    std::vector<Tensor> before;
    for (const Tensor& p : mine) before.push_back(p.grad().defined() ? p.grad().detach() : Tensor());
    double total = assignment::clip_global_norm(mine, max_norm);
    double want = clip_grad_norm(ref, max_norm);
    if (std::abs(total - want) > 1e-10 * want) {
      o.passed = false;
      o.add(fmt::format("max_norm {}: you returned {:.10f}, the global norm before clipping is {:.10f}", max_norm,
                        total, want));
    }
    bool per_tensor = true;
    for (std::size_t k = 0; k < mine.size(); ++k) {
      if (!ref[k].grad().defined()) {
        if (mine[k].grad().defined()) {
          o.passed = false;
          o.add(fmt::format("parameter {} had no gradient and now has one: skip it", k));
        }
        continue;
      }
      check_close(o, fmt::format("max_norm {}: gradient {}", max_norm, k), mine[k].grad(), ref[k].grad(), 1e-12, {},
                  "clip_grad_norm");
      double n = std::sqrt(sum(before[k] * before[k]).item()), c = max_norm / (n + 1e-6);
      if (!compare(mine[k].grad(), c < 1 ? before[k] * c : before[k]).within(1e-12)) per_tensor = false;
    }
    if (!o.passed) {
      if (per_tensor)
        o.add("hint: each tensor was clipped to max_norm on its own. Clipping by GLOBAL norm scales every "
              "gradient by the same coef = max_norm / (total + 1e-6), total = sqrt(Σ over all tensors of Σ g²), "
              "which keeps the direction of the whole update.");
      return o;
    }
  }
  return o.add("three random sets of five parameters: gradients within 1e-12 of clip_grad_norm's, norms equal");
}

Outcome clip_small_unchanged(const Context&) {
  Outcome o{true, {}};
  auto [mine, ref] = random_grads(9, 0.01);
  double total = assignment::clip_global_norm(mine, 5.0);
  double want = clip_grad_norm(ref, 5.0);
  if (std::abs(total - want) > 1e-10 * want) {
    o.passed = false;
    o.add(fmt::format("you returned {:.10f}, the global norm is {:.10f}", total, want));
  }
  for (std::size_t k = 0; k < mine.size(); ++k)
    if (ref[k].grad().defined())
      check_close(o, fmt::format("gradient {}", k), mine[k].grad(), ref[k].grad(), 0.0 + 1e-300, {}, "unchanged");
  if (o.passed) o.add(fmt::format("norm {:.4f} < 5: every gradient left exactly as it was", want));
  return o;
}

Outcome training(const Context&) {
  Outcome o{true, {}};
  const auto start = std::chrono::steady_clock::now();
  assignment::Corpus c = assignment::corpus();
  const std::size_t V = c.vocab.size(), B = 16, T = 32, steps = 150;
  Generator init(7), batches(11);
  assignment::CharLM model(V, 16, 64, init);
  model.to(DType::Float32);
  Adam opt(model.parameters(), AdamOptions().lr(0.01));
  std::vector<double> losses;
  for (std::size_t s = 0; s < steps; ++s) {
    std::vector<std::int64_t> in, next;
    for (std::size_t b = 0; b < B; ++b) {
      auto p = static_cast<std::size_t>(batches.uniform() * static_cast<double>(c.ids.size() - T - 1));
      in.insert(in.end(), c.ids.begin() + p, c.ids.begin() + p + T);
      next.insert(next.end(), c.ids.begin() + p + 1, c.ids.begin() + p + T + 1);
    }
    double loss = assignment::train_step(model, opt, in, next, B, T, 1.0);
    if (!std::isfinite(loss)) {
      o.passed = false;
      return o.add(fmt::format("step {}: the loss is {}", s + 1, loss));
    }
    losses.push_back(loss);
  }
  double last = 0;
  for (std::size_t k = steps - 10; k < steps; ++k) last += losses[k] / 10;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double threshold = 0.5;
  std::string summary = fmt::format("loss {:.3f} at step 1, {:.3f} averaged over steps {}..{} ({:.1f} s; a model "
                                    "of the character frequencies alone gets about 2.8)",
                                    losses.front(), last, steps - 9, steps, secs);
  if (last < threshold) return o.add(summary);
  o.passed = false;
  o.add(summary + fmt::format(", not under {}", threshold));
  if (std::abs(losses.back() - losses.front()) < 1e-6)
    o.add("hint: the loss does not change: is opt.step() called after backward()?");
  else
    o.add("hint: call opt.zero_grad() before backward() (gradients accumulate), take the mean cross-entropy "
          "of model.forward(inputs, B, T) against the targets, clip, then opt.step().");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& t = assignment_manifest().tests;
  return test_main(argc, argv, assignment_manifest(),
                   {{t[0].name, argmax_at_zero},
                    {t[1].name, [](const Context&) { return check_frequencies({1.0}); }},
                    {t[2].name, [](const Context&) { return check_frequencies({0.5, 2.0}); }},
                    {t[3].name, clip_matches},
                    {t[4].name, clip_small_unchanged},
                    {t[5].name, training}});
}
