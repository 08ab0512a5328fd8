// tapegrad — optimizers and gradient clipping (see optim.hpp for the formulas).
//
// Each update is torch 1.13's _single_tensor_<optimizer> transcribed op by op, in the
// parameter's dtype T: scalar factors are computed in double (as Python does) and cast to T
// where torch passes them to a tensor op (mul_, add_(alpha=), addcmul_(value=), addcdiv_(value=)).
// The expressions are written in torch's operand order, e.g. addcdiv_ is p + (value·m) / d.
// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics as inlined
// into xsimd's sqrt: a false positive (_mm512_undefined_* on purpose), as in ops_elementwise.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "framework/optim.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xoperation.hpp>

#include "framework/dispatch.hpp"
#include "framework/parallel.hpp"
#include "framework/tape.hpp"
#include "framework/vector_math.hpp"

namespace tapegrad {

using detail::dispatch;

namespace {

/// The buffer called `name` of a parameter's state, as an array of T.
template <class T>
xt::xarray<T>& buffer(Optimizer::ParamState& state, const char* name) {
  for (auto& [buffer_name, t] : state.buffers)
    if (buffer_name == name) return t.template data<T>();
  throw std::logic_error(fmt::format("optimizer state has no buffer '{}'", name));
}

/// torch's L2 penalty `grad.add(param, alpha=weight_decay)`: g + λp in `scratch`, or g itself
/// (no copy) when λ = 0.
template <class T>
const xt::xarray<T>& l2_penalized(const xt::xarray<T>& g, const xt::xarray<T>& p,
                                  double weight_decay, xt::xarray<T>& scratch) {
  if (weight_decay == 0) return g;
  scratch = g + static_cast<T>(weight_decay) * p;
  return scratch;
}

/// The hyper-parameters Adam and AdamW share; `decoupled` selects AdamW's weight decay.
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, decoupled;
};

/// torch's _single_tensor_adam / _single_tensor_adamw (capturable=False), on one parameter. Each
/// element's update reads only that element, so a large parameter (from kParallelElements) is
/// updated as two ranges on the engine's two cores (parallel.hpp), split at a multiple of 64
/// elements: the same expressions over each range, the same bits as one pass (an LM's 512 × 1536
/// weight and its two moments are 9 MiB a step). The update itself is the vector math's
/// (vector_math.hpp), compiled for the CPU's widest vectors also in a portable build.
template <class T>
void adam_update(xt::xarray<T>& p_all, const xt::xarray<T>& g_all, Optimizer::ParamState& state,
                 const AdamHyper& h) {
  xt::xarray<T>& m_all = buffer<T>(state, "exp_avg");     // first moment
  xt::xarray<T>& v_all = buffer<T>(state, "exp_avg_sq");  // second moment
  xt::xarray<T>* v_max_all = h.amsgrad ? &buffer<T>(state, "max_exp_avg_sq") : nullptr;

  const double t = static_cast<double>(state.step);
  const double bias_correction1 = 1 - std::pow(h.beta1, t);
  const double bias_correction2 = 1 - std::pow(h.beta2, t);
  const double step_size = h.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);

  const detail::AdamStep<T> step{h.decoupled,
                                 static_cast<T>(1 - h.lr * h.weight_decay),
                                 !h.decoupled && h.weight_decay != 0,
                                 static_cast<T>(h.weight_decay),
                                 static_cast<T>(h.beta1),
                                 static_cast<T>(1 - h.beta1),
                                 static_cast<T>(h.beta2),
                                 static_cast<T>(1 - h.beta2),
                                 static_cast<T>(-step_size),
                                 static_cast<T>(bias_correction2_sqrt),
                                 static_cast<T>(h.eps)};
  const auto adam = detail::vector_math<T>().adam;  // compiled for the CPU's widest vectors
  T* p = p_all.data();
  const T* g = g_all.data();
  T *m = m_all.data(), *v = v_all.data(), *v_max = v_max_all ? v_max_all->data() : nullptr;
  auto range = [&](std::size_t i0, std::size_t i1) {
    adam(p + i0, g + i0, m + i0, v + i0, v_max ? v_max + i0 : nullptr, i1 - i0, step);
  };
  detail::split_elements(p_all.size(), 64, range);
}

std::vector<std::string> adam_buffer_names(bool amsgrad) {
  std::vector<std::string> names{"exp_avg", "exp_avg_sq"};
  if (amsgrad) names.emplace_back("max_exp_avg_sq");
  return names;
}

/// Parses "optim.state.<i>.<name>"; false if `key` has another form.
bool parse_state_key(const std::string& key, std::size_t& index, std::string& name) {
  static const std::string prefix = "optim.state.";
  if (key.compare(0, prefix.size(), prefix) != 0) return false;
  const char* begin = key.data() + prefix.size();
  const char* end = key.data() + key.size();
  auto [after, ec] = std::from_chars(begin, end, index);
  if (ec != std::errc() || after == begin || after == end || *after != '.') return false;
  if (after - begin > 1 && *begin == '0') return false;  // no leading zeros: one spelling per key
  name.assign(after + 1, end);
  return !name.empty();
}

}  // namespace

// ---- Optimizer ----------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<Tensor> params, double lr, std::string name)
    : params_(std::move(params)), state_(params_.size()), lr_(lr), name_(std::move(name)) {
  if (params_.empty()) throw ValueError(fmt::format("{}: got an empty parameter list", name_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.defined())
      throw ValueError(fmt::format("{}: parameter {} is an undefined Tensor", name_, i));
    if (!p.is_leaf())
      throw ValueError(fmt::format("{}: parameter {} '{}' is not a leaf (made by '{}')", name_, i,
                                   p.name(), p.op()));
    if (!p.requires_grad())
      throw ValueError(
          fmt::format("{}: parameter {} '{}' does not require grad (call requires_grad_() on it)",
                      name_, i, p.name()));
    for (std::size_t j = 0; j < i; ++j)
      if (params_[j].is_same(p))
        throw ValueError(fmt::format("{}: parameter {} '{}' is listed twice (also at {})", name_, i,
                                     p.name(), j));
  }
  set_lr(lr);
}

void Optimizer::check_option(bool ok, const char* what, double value, const char* rule) const {
  if (!ok) throw ValueError(fmt::format("{}: invalid {}: {} ({})", name_, what, value, rule));
}

void Optimizer::set_lr(double lr) {
  check_option(lr >= 0, "learning rate", lr, "must be >= 0");
  lr_ = lr;
}

double Optimizer::initial_value(const std::string&) const { return 0.0; }

void Optimizer::step() {
  NoGradGuard no_grad;
  const std::vector<std::string> names = buffer_names();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;  // like torch: no gradient, no update, no state change
    if (g.dtype() != p.dtype() || g.shape() != p.shape())
      throw DTypeError(fmt::format("{}.step: parameter {} '{}' is {} {} but its grad is {} {}",
                                   name_, i, p.name(), dtype_name(p.dtype()), shape_str(p.shape()),
                                   dtype_name(g.dtype()), shape_str(g.shape())));
    ParamState& state = state_[i];
    if (state.step == 0) {  // first update: create the buffers
      state.buffers.clear();
      for (const std::string& name : names)
        state.buffers.emplace_back(name, full(p.shape(), initial_value(name), p.dtype()));
    }
    ++state.step;
    update(p, g, state);
  }
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (std::size_t i = 0; i < state_.size(); ++i) {
    const ParamState& s = state_[i];
    if (s.step == 0) continue;
    const std::string prefix = fmt::format("optim.state.{}.", i);
    out.emplace_back(prefix + "step", scalar(static_cast<double>(s.step), DType::Float64));
    for (const auto& [name, t] : s.buffers) out.emplace_back(prefix + name, t.detach());
  }
  return out;
}

void Optimizer::load_state(const NamedTensors& entries) {
  const std::vector<std::string> names = buffer_names();
  const std::string expected = fmt::format("step, {}", fmt::join(names, ", "));
  const auto fail = [&](const std::string& key, const std::string& what) {
    return ValueError(fmt::format("{}.load_state: key '{}': {}", name_, key, what));
  };

  // Slot 0 is the step, slot k ≥ 1 is buffer names[k − 1]. Build everything, then swap in.
  std::vector<ParamState> next(params_.size());
  std::vector<std::vector<bool>> seen(params_.size(), std::vector<bool>(names.size() + 1, false));
  for (const auto& [key, t] : entries) {
    std::size_t i = 0;
    std::string name;
    if (!parse_state_key(key, i, name))
      throw fail(key, "expected the form 'optim.state.<parameter index>.<name>'");
    if (i >= params_.size())
      throw fail(key, fmt::format("parameter index {} out of range ({} has {} parameters)", i,
                                  name_, params_.size()));
    std::size_t slot = 0;
    if (name != "step") {
      while (slot < names.size() && names[slot] != name) ++slot;
      if (slot == names.size())
        throw fail(key, fmt::format("{} with these options has no state '{}' (expected {})", name_,
                                    name, expected));
      ++slot;
    }
    if (seen[i][slot]) throw fail(key, "given twice");
    seen[i][slot] = true;
    if (!t.defined()) throw fail(key, "undefined Tensor");

    if (slot == 0) {
      const double step = t.dim() == 0 ? t.item() : 0.0;
      if (t.dim() != 0 || !(step >= 1) || step > 9007199254740992.0 || std::floor(step) != step)
        throw fail(key, fmt::format("the step must be a 0-d tensor holding a positive integer, "
                                    "got shape {} value {}",
                                    shape_str(t.shape()), t.dim() == 0 ? step : NAN));
      next[i].step = static_cast<std::int64_t>(step);
    } else {
      const Tensor& p = params_[i];
      if (t.shape() != p.shape() || t.dtype() != p.dtype())
        throw fail(
            key, fmt::format("{} {} does not match parameter {}: {} {}", dtype_name(t.dtype()),
                             shape_str(t.shape()), i, dtype_name(p.dtype()), shape_str(p.shape())));
      if (next[i].buffers.empty())
        for (const std::string& n : names) next[i].buffers.emplace_back(n, Tensor());
      next[i].buffers[slot - 1].second = t.detach();
    }
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    bool any = false;
    for (bool b : seen[i]) any = any || b;
    if (!any) continue;  // no entries: no state, as if never updated
    for (std::size_t slot = 0; slot <= names.size(); ++slot)
      if (!seen[i][slot])
        throw ValueError(fmt::format("{}.load_state: missing key 'optim.state.{}.{}'", name_, i,
                                     slot == 0 ? std::string("step") : names[slot - 1]));
  }
  state_ = std::move(next);
}

// ---- SGD ----------------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options)
    : Optimizer(std::move(params), options.lr(), "SGD"), options_(options) {
  check_option(options.momentum() >= 0, "momentum", options.momentum(), "must be >= 0");
  check_option(options.weight_decay() >= 0, "weight_decay", options.weight_decay(), "must be >= 0");
  if (options.nesterov() && (options.momentum() <= 0 || options.dampening() != 0))
    throw ValueError(
        fmt::format("SGD: nesterov momentum requires momentum > 0 and dampening 0, got momentum {} "
                    "dampening {}",
                    options.momentum(), options.dampening()));
}

std::vector<std::string> SGD::buffer_names() const {
  if (options_.momentum() == 0) return {};
  return {"momentum_buffer"};
}

void SGD::update(Tensor& p, const Tensor& g, ParamState& state) {
  const double lr = this->lr();
  const SGDOptions& o = options_;
  dispatch(p.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T>& param = p.data<T>();
    xt::xarray<T> scratch;
    const xt::xarray<T>& d_p = l2_penalized(g.data<T>(), param, o.weight_decay(), scratch);
    if (o.momentum() == 0) {
      xt::noalias(param) += static_cast<T>(-lr) * d_p;
      return;
    }
    xt::xarray<T>& buf = buffer<T>(state, "momentum_buffer");
    if (state.step == 1)
      buf = d_p;  // torch: the first buffer is a clone of d_p
    else
      xt::noalias(buf) =
          static_cast<T>(o.momentum()) * buf + static_cast<T>(1 - o.dampening()) * d_p;
    if (o.nesterov())
      xt::noalias(param) += static_cast<T>(-lr) * (d_p + static_cast<T>(o.momentum()) * buf);
    else
      xt::noalias(param) += static_cast<T>(-lr) * buf;
  });
}

// ---- Adam / AdamW -------------------------------------------------------------------------------

namespace {

/// The option checks Adam and AdamW share; `check` is the optimizer's check_option.
template <class Options, class Check>
void check_adam_options(const Options& o, Check&& check) {
  check(o.eps() >= 0, "eps", o.eps(), "must be >= 0");
  check(o.beta1() >= 0 && o.beta1() < 1, "beta1", o.beta1(), "must be in [0, 1)");
  check(o.beta2() >= 0 && o.beta2() < 1, "beta2", o.beta2(), "must be in [0, 1)");
  check(o.weight_decay() >= 0, "weight_decay", o.weight_decay(), "must be >= 0");
}

}  // namespace

template <bool Decoupled>
AdamT<Decoupled>::AdamT(std::vector<Tensor> params, const AdamOptionsT<Decoupled>& options)
    : Optimizer(std::move(params), options.lr(), Decoupled ? "AdamW" : "Adam"), options_(options) {
  check_adam_options(options, [this](bool ok, const char* what, double value, const char* rule) {
    check_option(ok, what, value, rule);
  });
}

template <bool Decoupled>
std::vector<std::string> AdamT<Decoupled>::buffer_names() const {
  return adam_buffer_names(options_.amsgrad());
}

template <bool Decoupled>
void AdamT<Decoupled>::update(Tensor& p, const Tensor& g, ParamState& state) {
  const AdamOptionsT<Decoupled>& o = options_;
  const AdamHyper h{lr(), o.beta1(), o.beta2(), o.eps(), o.weight_decay(), o.amsgrad(), Decoupled};
  dispatch(p.dtype(), [&](auto tag) {
    using T = decltype(tag);
    adam_update<T>(p.data<T>(), g.data<T>(), state, h);
  });
}

template class AdamT<false>;
template class AdamT<true>;

// ---- RMSprop ------------------------------------------------------------------------------------

RMSprop::RMSprop(std::vector<Tensor> params, const RMSpropOptions& options)
    : Optimizer(std::move(params), options.lr(), "RMSprop"), options_(options) {
  check_option(options.eps() >= 0, "eps", options.eps(), "must be >= 0");
  check_option(options.momentum() >= 0, "momentum", options.momentum(), "must be >= 0");
  check_option(options.weight_decay() >= 0, "weight_decay", options.weight_decay(), "must be >= 0");
  check_option(options.alpha() >= 0, "alpha", options.alpha(), "must be >= 0");
}

std::vector<std::string> RMSprop::buffer_names() const {
  std::vector<std::string> names{"square_avg"};
  if (options_.momentum() > 0) names.emplace_back("momentum_buffer");
  if (options_.centered()) names.emplace_back("grad_avg");
  return names;
}

void RMSprop::update(Tensor& p, const Tensor& g_in, ParamState& state) {
  const double lr = this->lr();
  const RMSpropOptions& o = options_;
  dispatch(p.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T>& param = p.data<T>();
    xt::xarray<T> scratch;
    const xt::xarray<T>& g = l2_penalized(g_in.data<T>(), param, o.weight_decay(), scratch);
    const T alpha = static_cast<T>(o.alpha());
    const T one_minus_alpha = static_cast<T>(1 - o.alpha());

    xt::xarray<T>& square_avg = buffer<T>(state, "square_avg");
    xt::noalias(square_avg) = alpha * square_avg + one_minus_alpha * g * g;
    xt::xarray<T> avg;  // the denominator √(s − ḡ²) + eps or √s + eps
    if (o.centered()) {
      xt::xarray<T>& grad_avg = buffer<T>(state, "grad_avg");
      xt::noalias(grad_avg) = alpha * grad_avg + one_minus_alpha * g;
      avg =
          xt::sqrt(square_avg + static_cast<T>(-1) * grad_avg * grad_avg) + static_cast<T>(o.eps());
    } else {
      avg = xt::sqrt(square_avg) + static_cast<T>(o.eps());
    }
    if (o.momentum() > 0) {
      xt::xarray<T>& buf = buffer<T>(state, "momentum_buffer");
      xt::noalias(buf) = static_cast<T>(o.momentum()) * buf + g / avg;
      xt::noalias(param) += static_cast<T>(-lr) * buf;
    } else {
      xt::noalias(param) += static_cast<T>(-lr) * g / avg;
    }
  });
}

// ---- Adagrad ------------------------------------------------------------------------------------

Adagrad::Adagrad(std::vector<Tensor> params, const AdagradOptions& options)
    : Optimizer(std::move(params), options.lr(), "Adagrad"), options_(options) {
  check_option(options.lr_decay() >= 0, "lr_decay", options.lr_decay(), "must be >= 0");
  check_option(options.weight_decay() >= 0, "weight_decay", options.weight_decay(), "must be >= 0");
  check_option(options.initial_accumulator_value() >= 0, "initial_accumulator_value",
               options.initial_accumulator_value(), "must be >= 0");
  check_option(options.eps() >= 0, "eps", options.eps(), "must be >= 0");
}

std::vector<std::string> Adagrad::buffer_names() const { return {"sum"}; }

double Adagrad::initial_value(const std::string&) const {
  return options_.initial_accumulator_value();
}

void Adagrad::update(Tensor& p, const Tensor& g_in, ParamState& state) {
  const AdagradOptions& o = options_;
  const double clr = lr() / (1 + (static_cast<double>(state.step) - 1) * o.lr_decay());
  dispatch(p.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::xarray<T>& param = p.data<T>();
    xt::xarray<T> scratch;
    const xt::xarray<T>& g = l2_penalized(g_in.data<T>(), param, o.weight_decay(), scratch);
    xt::xarray<T>& sum = buffer<T>(state, "sum");
    xt::noalias(sum) += g * g;
    xt::noalias(param) += static_cast<T>(-clr) * g / (xt::sqrt(sum) + static_cast<T>(o.eps()));
  });
}

// ---- gradient clipping --------------------------------------------------------------------------

namespace {

/// The p-norm of a list of non-negative magnitudes |x| (p = ∞: their maximum; NaN propagates).
class NormAccumulator {
 public:
  explicit NormAccumulator(double p) : p_(p) {}
  void add(double magnitude) {
    if (std::isnan(magnitude)) nan_ = true;
    if (std::isinf(p_))
      acc_ = std::max(acc_, magnitude);
    else if (p_ == 2)
      acc_ += magnitude * magnitude;
    else
      acc_ += std::pow(magnitude, p_);
  }
  double value() const {
    if (nan_) return std::numeric_limits<double>::quiet_NaN();
    if (std::isinf(p_)) return acc_;
    if (p_ == 2) return std::sqrt(acc_);
    return std::pow(acc_, 1 / p_);
  }

 private:
  double p_;
  double acc_ = 0;
  bool nan_ = false;
};

/// Σ x² in double, as eight partial sums (one serial sum waits on each addition: it was 3.9 % of
/// the samples of char_gru's composed S training step). A NaN anywhere makes it NaN, an Inf Inf.
template <class T>
double sum_of_squares(const T* x, std::size_t n) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t j = 0; j < 8; ++j) part[j] += double(x[i + j]) * double(x[i + j]);
  for (; i < n; ++i) part[0] += double(x[i]) * double(x[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  if (!(max_norm >= 0))
    throw ValueError(fmt::format("clip_grad_norm: invalid max_norm: {} (must be >= 0)", max_norm));
  if (!(norm_type > 0))
    throw ValueError(fmt::format(
        "clip_grad_norm: invalid norm_type: {} (must be > 0, or INFINITY for the max norm)",
        norm_type));
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    detail::require_defined(p, "clip_grad_norm", "params");
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;

  // total = ‖(‖g₁‖, ‖g₂‖, …)‖, like torch.norm(torch.stack([torch.norm(g) for g in grads])).
  NormAccumulator total(norm_type);
  for (const Tensor& g : grads) {
    if (norm_type == 2) {  // the usual case: a sum of squares in eight independent partial sums
      total.add(dispatch(g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        return std::sqrt(sum_of_squares(g.data<T>().data(), g.numel()));
      }));
      continue;
    }
    NormAccumulator one(norm_type);
    dispatch(g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      for (T x : g.data<T>()) one.add(std::abs(static_cast<double>(x)));
    });
    total.add(one.value());
  }
  const double total_norm = total.value();

  const double clip_coef = max_norm / (total_norm + 1e-6);
  if (clip_coef < 1 || std::isnan(clip_coef)) {  // torch: g *= clamp(coef, max=1)
    NoGradGuard no_grad;
    for (Tensor& g : grads)
      dispatch(g.dtype(), [&](auto tag) {
        using T = decltype(tag);
        g.data<T>() *= static_cast<T>(clip_coef);
      });
  }
  return total_norm;
}

void clip_grad_value(const std::vector<Tensor>& params, double clip_value) {
  if (!(clip_value >= 0))
    throw ValueError(
        fmt::format("clip_grad_value: invalid clip_value: {} (must be >= 0)", clip_value));
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    detail::require_defined(p, "clip_grad_value", "params");
    Tensor g = p.grad();
    if (!g.defined()) continue;
    dispatch(g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T hi = static_cast<T>(clip_value), lo = -hi;
      for (T& x : g.data<T>()) x = x > hi ? hi : (x < lo ? lo : x);  // NaN stays NaN
    });
  }
}

}  // namespace tapegrad
