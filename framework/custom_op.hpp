// tapegrad — custom ops: your own forward and backward, recorded on the tape like a built-in
// (torch.autograd.Function).
//
// A custom op is a name, a forward and a backward:
//   forward(ctx, inputs)        → output      runs under NoGradGuard: nothing inside is recorded.
//                                              Use tapegrad ops or plain xtensor on x.data<T>().
//                                              Keep what backward needs with ctx.save_for_backward.
//   backward(ctx, grad_output)  → one gradient per input (same shape and dtype as that input;
//                                              an undefined Tensor means "no gradient", i.e. zero)
// apply_custom() runs forward once and records one tape node named `name`; during backward the
// node calls your backward and adds its gradients through the engine's GradSink. Errors name
// the op: a backward returning the wrong number of gradients, or a gradient of the wrong shape
// or dtype, raises AutogradError "custom op 'softplus': ...".
//
//   // softplus(x) = log(1 + eˣ),  d/dx = σ(x)
//   Tensor softplus(const Tensor& x) {
//     return apply_custom("softplus", {x},
//         [](CustomContext& ctx, const std::vector<Tensor>& in) {
//           ctx.save_for_backward({in[0]});
//           return log(1.0 + exp(in[0]));                       // no_grad: not recorded
//         },
//         [](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
//           return {g * sigmoid(ctx.saved_tensors()[0])};       // dL/dx = g ⊙ σ(x)
//         });
//   }
//   gradcheck([](const std::vector<Tensor>& x) { return sum(softplus(x[0])); }, {x});
//
// Or as a struct with static members (torch.autograd.Function style):
//   struct Softplus : CustomFunction<Softplus> {
//     static constexpr const char* name = "softplus";
//     static Tensor forward(CustomContext& ctx, const std::vector<Tensor>& in);
//     static std::vector<Tensor> backward(CustomContext& ctx, const Tensor& g);
//   };
//   Tensor y = Softplus::apply({x});
//
// Several outputs (an LSTM cell's h' and c'): the overload taking a CustomForwardMulti returns
// std::vector<Tensor>, and its backward receives one gradient per output (see below).
//
// Double backward: the backward runs with grad mode on during a create_graph backward, so a
// backward written with tapegrad ops on saved *inputs or the output* is itself differentiable
// (gradgradcheck passes). Values computed inside forward are constants to the tape: a backward
// built from them gives correct first derivatives only (like torch's @once_differentiable).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "framework/tensor.hpp"

namespace tapegrad {

class CustomContext;
/// Multi-output form: forward(ctx, inputs) → outputs (all of one dtype), run under NoGradGuard.
using CustomForwardMulti =
    std::function<std::vector<Tensor>(CustomContext& ctx, const std::vector<Tensor>& inputs)>;
/// Multi-output form: backward(ctx, {dL/d(output_k)}) → dL/d(input_i) for every input. Every
/// dL/d(output_k) is defined (zeros for an output the loss does not use).
using CustomBackwardMulti = std::function<std::vector<Tensor>(
    CustomContext& ctx, const std::vector<Tensor>& grad_outputs)>;
/// forward(ctx, inputs) → output, run under NoGradGuard.
using CustomForward = std::function<Tensor(CustomContext& ctx, const std::vector<Tensor>& inputs)>;
/// backward(ctx, dL/d(output)) → dL/d(input_i) for every input (undefined = no gradient).
using CustomBackward =
    std::function<std::vector<Tensor>(CustomContext& ctx, const Tensor& grad_output)>;

/// What forward hands to backward (torch's ctx).
class CustomContext {
 public:
  /// Keeps tensors for backward. Saving inputs (or the returned output) keeps them on the graph,
  /// so a backward using them with tapegrad ops supports double backward.
  void save_for_backward(std::vector<Tensor> tensors) { saved_ = std::move(tensors); }
  const std::vector<Tensor>& saved_tensors() const { return saved_; }
  /// Whether input i wants a gradient (valid in backward): skip work for the others.
  bool needs_input_grad(std::size_t i) const { return i < needs_.size() && needs_[i]; }
  /// The op's name, for messages.
  const std::string& name() const { return name_; }

 private:
  friend Tensor apply_custom(const std::string&, const std::vector<Tensor>&, const CustomForward&,
                             CustomBackward);
  friend std::vector<Tensor> apply_custom(const std::string&, const std::vector<Tensor>&,
                                          const CustomForwardMulti&, CustomBackwardMulti);
  std::vector<Tensor> saved_;
  std::vector<bool> needs_;
  std::string name_;
};

/// Runs `forward` on `inputs` and records one tape node called `name` whose VJP is `backward`.
/// Inputs must be defined; the output is a new tensor (never one of the inputs).
Tensor apply_custom(const std::string& name, const std::vector<Tensor>& inputs,
                    const CustomForward& forward, CustomBackward backward);

/// Several outputs, each with its own gradient (an LSTM cell's (h', c')): `forward` returns the
/// outputs, `backward` receives one dL/d(output_k) per output (zeros for an unused output) and
/// returns one gradient per input, checked as in the single-output form. The outputs must share
/// one dtype. On the tape this is one node named `name` producing all outputs packed into one
/// flat tensor, and a narrow + reshape per output. Tensors saved in forward that are outputs are
/// constants to the tape (first derivatives only); saved inputs support double backward.
///
///   auto hc = apply_custom("lstm_cell", {x, h, c, W_ih, W_hh, b_ih, b_hh},
///       [](CustomContext& ctx, const std::vector<Tensor>& in) -> std::vector<Tensor> {
///         ...; return {h_new, c_new};
///       },
///       [](CustomContext& ctx, const std::vector<Tensor>& g) -> std::vector<Tensor> {
///         const Tensor &dh = g[0], &dc = g[1]; ...; return {dx, dh_prev, dc_prev, ...};
///       });
/// gradcheck it through flatten_outputs(): every output's gradient is checked at once.
std::vector<Tensor> apply_custom(const std::string& name, const std::vector<Tensor>& inputs,
                                 const CustomForwardMulti& forward, CustomBackwardMulti backward);

/// All outputs flattened and concatenated into one 1-D tensor (differentiable), so that
/// gradcheck([](auto& in) { return flatten_outputs(my_op(in)); }, inputs) checks the gradient
/// flowing back from every output.
Tensor flatten_outputs(const std::vector<Tensor>& outputs);

/// CRTP base for an op declared as a struct with `static constexpr const char* name`,
/// `static Tensor forward(CustomContext&, const std::vector<Tensor>&)` and
/// `static std::vector<Tensor> backward(CustomContext&, const Tensor&)`.
template <class Op>
struct CustomFunction {
  static Tensor apply(const std::vector<Tensor>& inputs) {
    return apply_custom(Op::name, inputs, &Op::forward, &Op::backward);
  }
};

}  // namespace tapegrad
