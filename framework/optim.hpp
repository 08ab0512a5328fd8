// tapegrad — optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and gradient clipping.
//
// Every update rule is PyTorch 1.13's single-tensor implementation (foreach=False) step for
// step, computed in the parameter's own dtype (float32 or float64; scalar hyper-parameters are
// first combined in double, like Python does, then cast). tests/test_optim.cpp checks each one
// against torch's own trajectory (tests/fixtures/opt_*.npz).
//
//   Adam opt(model_params, AdamOptions().lr(1e-2));
//   for (...) {
//     opt.zero_grad();
//     Tensor loss = ...;
//     loss.backward();
//     clip_grad_norm(model_params, 5.0);
//     opt.step();
//   }
//
// Notation (per parameter): p the parameter, g its gradient, t the step count of p (1 at its
// first update), λ weight_decay. "g ← g + λp" is torch's L2 penalty, added to the gradient.
//
// Semantics shared by all optimizers (as in torch):
// - step() updates, under NoGradGuard and in place on the raw data, every parameter whose grad is
//   defined; a parameter without a grad is skipped: neither it nor its state (step count,
//   buffers) changes. State is created at a parameter's first update.
// - zero_grad() drops the gradients (set_to_none, torch's default).
// - Hyper-parameters are checked at construction (ValueError naming the optimizer, the option
//   and the value); the learning rate can be changed later with set_lr().
// - Options are small builders with torch's defaults: AdamOptions().lr(2e-3).betas(0.9, 0.99).
//   SGD has no default learning rate (torch requires one): SGDOptions(0.1).momentum(0.9).
//
// State export (checkpoints): state() lists, for each parameter index i that has state,
//   "optim.state.<i>.step"     0-d float64, the number of updates of parameter i
//   "optim.state.<i>.<buffer>" the optimizer's buffers (below), the parameter's shape and dtype
// Hyper-parameters (including lr) are not part of it: construct the resumed optimizer with the
// same options. load_state() takes exactly such a list (filter a checkpoint by the "optim."
// prefix first); see its comment for what it checks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/module.hpp"
#include "framework/tensor.hpp"

namespace tapegrad {

// NamedTensors (the format of state() / load_state() and of checkpoints) and the TAPEGRAD_ARG
// option macro come from framework/module.hpp.

/// torch.optim.SGD: lr (required), momentum 0, dampening 0, weight_decay 0, nesterov false.
struct SGDOptions {
  explicit SGDOptions(double lr) : lr_(lr) {}
  TAPEGRAD_ARG(double, lr) = 0.0;
  TAPEGRAD_ARG(double, momentum) = 0.0;
  TAPEGRAD_ARG(double, dampening) = 0.0;
  TAPEGRAD_ARG(double, weight_decay) = 0.0;
  TAPEGRAD_ARG(bool, nesterov) = false;
};

/// torch.optim.Adam and torch.optim.AdamW: lr 1e-3, betas (0.9, 0.999), eps 1e-8, amsgrad false;
/// weight_decay 0 for Adam, 1e-2 (decoupled) for AdamW. One struct for both: AdamOptions and
/// AdamWOptions differ only in that default.
template <bool Decoupled>
struct AdamOptionsT {
  TAPEGRAD_ARG(double, lr) = 1e-3;
  TAPEGRAD_ARG(double, beta1) = 0.9;
  TAPEGRAD_ARG(double, beta2) = 0.999;
  TAPEGRAD_ARG(double, eps) = 1e-8;
  TAPEGRAD_ARG(double, weight_decay) = Decoupled ? 1e-2 : 0.0;
  TAPEGRAD_ARG(bool, amsgrad) = false;

 public:
  AdamOptionsT& betas(double b1, double b2) { return beta1(b1).beta2(b2); }
};
using AdamOptions = AdamOptionsT<false>;
using AdamWOptions = AdamOptionsT<true>;

/// torch.optim.RMSprop: lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0, momentum 0, centered false.
struct RMSpropOptions {
  TAPEGRAD_ARG(double, lr) = 1e-2;
  TAPEGRAD_ARG(double, alpha) = 0.99;
  TAPEGRAD_ARG(double, eps) = 1e-8;
  TAPEGRAD_ARG(double, weight_decay) = 0.0;
  TAPEGRAD_ARG(double, momentum) = 0.0;
  TAPEGRAD_ARG(bool, centered) = false;
};

/// torch.optim.Adagrad: lr 1e-2, lr_decay 0, weight_decay 0, initial_accumulator_value 0,
/// eps 1e-10.
struct AdagradOptions {
  TAPEGRAD_ARG(double, lr) = 1e-2;
  TAPEGRAD_ARG(double, lr_decay) = 0.0;
  TAPEGRAD_ARG(double, weight_decay) = 0.0;
  TAPEGRAD_ARG(double, initial_accumulator_value) = 0.0;
  TAPEGRAD_ARG(double, eps) = 1e-10;
};


// ---- the base class -------------------------------------------------------------------------

/// Holds the parameters, their per-parameter state and the learning rate; subclasses supply
/// the update rule of one parameter.
class Optimizer {
 public:
  /// The state of one parameter: its update count and its buffers (in buffer_names() order,
  /// each of the parameter's shape and dtype). Empty (step 0, no buffers) until its first update.
  struct ParamState {
    std::int64_t step = 0;
    NamedTensors buffers;
  };

  /// `params`: leaves that require grad, each listed once, at least one (else ValueError).
  Optimizer(std::vector<Tensor> params, double lr, std::string name);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every parameter that has a gradient (see the file comment).
  void step();
  /// Drops every parameter's gradient (set_to_none).
  void zero_grad();

  double lr() const { return lr_; }
  /// Changes the learning rate used by the following steps (ValueError if negative or NaN).
  void set_lr(double lr);

  const std::vector<Tensor>& params() const { return params_; }
  /// "SGD", "Adam", ... (used in error messages).
  const std::string& name() const { return name_; }
  /// The state of parameter i (step 0 and no buffers if it was never updated).
  const ParamState& param_state(std::size_t i) const { return state_.at(i); }

  /// Copies of the state, named "optim.state.<i>.step" / "optim.state.<i>.<buffer>" (see the
  /// file comment); parameters never updated are absent.
  NamedTensors state() const;
  /// Replaces the whole state by `entries` (copied), as exported by state() of an optimizer of
  /// the same kind, options and parameter shapes. Throws ValueError naming the key, and changes
  /// nothing, when a key is malformed, duplicated or unknown to this optimizer, refers to a
  /// parameter index out of range, when a parameter's entries are incomplete, when a buffer's
  /// shape or dtype differs from its parameter's, or when a step is not a 0-d non-negative
  /// integer. Parameters with no entries get an empty state (as if never updated).
  void load_state(const NamedTensors& entries);

 protected:
  /// Names of the per-parameter buffers, fixed by the options ("exp_avg", ...).
  virtual std::vector<std::string> buffer_names() const = 0;
  /// The value a new buffer starts with (0 except Adagrad's "sum").
  virtual double initial_value(const std::string& buffer) const;
  /// Updates p in place from its gradient g (same shape and dtype). Called under NoGradGuard,
  /// after state.step was incremented (so state.step == t, 1 at the first update).
  virtual void update(Tensor& p, const Tensor& g, ParamState& state) = 0;
  /// Throws ValueError "<name>: invalid <what>: <value> (<rule>)" unless ok.
  void check_option(bool ok, const char* what, double value, const char* rule) const;

 private:
  std::vector<Tensor> params_;
  std::vector<ParamState> state_;
  double lr_;
  std::string name_;
};

// ---- the optimizers ----------------------------------------------------------------------------

/// Stochastic gradient descent with optional momentum (torch.optim.SGD):
///   g ← g + λp
///   if momentum μ ≠ 0:  b ← g (t = 1),  b ← μb + (1 − dampening)g (t > 1)
///                       g ← g + μb (nesterov)  or  g ← b
///   p ← p − lr·g
/// Buffers: "momentum_buffer" (only when momentum ≠ 0).
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  const SGDOptions& options() const { return options_; }  ///< lr as constructed (see lr())

 protected:
  std::vector<std::string> buffer_names() const override;
  void update(Tensor& p, const Tensor& g, ParamState& state) override;

 private:
  SGDOptions options_;
};

/// Adam (torch.optim.Adam, Decoupled = false), with L2 weight decay added to the gradient:
///   g ← g + λp
///   m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
///   v̂ ← max(v̂, v) (amsgrad, and v̂ replaces v below)
///   p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)
/// Buffers: "exp_avg" (m), "exp_avg_sq" (v), and "max_exp_avg_sq" (v̂) with amsgrad.
template <bool Decoupled>
class AdamT : public Optimizer {
 public:
  AdamT(std::vector<Tensor> params, const AdamOptionsT<Decoupled>& options = AdamOptionsT<Decoupled>());
  const AdamOptionsT<Decoupled>& options() const { return options_; }  ///< lr as constructed (see lr())

 protected:
  std::vector<std::string> buffer_names() const override;
  void update(Tensor& p, const Tensor& g, ParamState& state) override;

 private:
  AdamOptionsT<Decoupled> options_;
};
using Adam = AdamT<false>;
/// AdamW (torch.optim.AdamW): Adam with decoupled weight decay, p ← p·(1 − lr·λ) first, then
/// Adam's update with λ = 0. Same buffers as Adam.
using AdamW = AdamT<true>;
extern template class AdamT<false>;
extern template class AdamT<true>;

/// RMSprop (torch.optim.RMSprop):
///   g ← g + λp
///   s ← αs + (1 − α)g²
///   centered: ḡ ← αḡ + (1 − α)g,  d = √(s − ḡ²) + eps;   else d = √s + eps
///   momentum μ > 0: b ← μb + g/d,  p ← p − lr·b;          else p ← p − lr·g/d
/// Buffers: "square_avg" (s), "momentum_buffer" (b, when μ > 0), "grad_avg" (ḡ, when centered).
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Tensor> params, const RMSpropOptions& options = RMSpropOptions());
  const RMSpropOptions& options() const { return options_; }  ///< lr as constructed (see lr())

 protected:
  std::vector<std::string> buffer_names() const override;
  void update(Tensor& p, const Tensor& g, ParamState& state) override;

 private:
  RMSpropOptions options_;
};

/// Adagrad (torch.optim.Adagrad):
///   g ← g + λp
///   s ← s + g²                         (s starts at initial_accumulator_value)
///   p ← p − (lr / (1 + (t − 1)·lr_decay)) · g / (√s + eps)
/// Buffers: "sum" (s).
class Adagrad : public Optimizer {
 public:
  Adagrad(std::vector<Tensor> params, const AdagradOptions& options = AdagradOptions());
  const AdagradOptions& options() const { return options_; }  ///< lr as constructed (see lr())

 protected:
  std::vector<std::string> buffer_names() const override;
  double initial_value(const std::string& buffer) const override;
  void update(Tensor& p, const Tensor& g, ParamState& state) override;

 private:
  AdagradOptions options_;
};

// ---- gradient clipping -----------------------------------------------------------------------

/// Rescales the gradients of `params` together so that their global norm is at most max_norm
/// (torch.nn.utils.clip_grad_norm_), in place; parameters without a gradient are skipped.
///   total = ‖(‖g₁‖_p, ‖g₂‖_p, …)‖_p       (norm_type p > 0, or INFINITY for max |g|)
///   coef  = max_norm / (total + 1e-6);   every g ← g·coef when coef < 1
/// Returns total, the norm before clipping (0 when no parameter has a gradient). Norms are
/// accumulated in double; the gradients are scaled in their own dtype. Like torch, a NaN total
/// scales every gradient by NaN and an infinite one by 0. ValueError if max_norm < 0 or
/// norm_type ≤ 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

/// Clamps every gradient element to [−clip_value, clip_value] in place
/// (torch.nn.utils.clip_grad_value_); NaNs stay NaN, parameters without a gradient are
/// skipped. ValueError if clip_value < 0.
void clip_grad_value(const std::vector<Tensor>& params, double clip_value);

}  // namespace tapegrad
