// tapegrad — custom ops (see custom_op.hpp): forward once under no_grad, then one tape node
// whose VJP calls the user's backward and checks what it returns.
#include "framework/custom_op.hpp"

#include <fmt/format.h>

#include <memory>

#include "framework/ops.hpp"
#include "framework/tape.hpp"

namespace tapegrad {

namespace {

/// "input #0 'x'" (the tensor's name when it has one), or "input #0".
std::string input_label(const std::vector<Tensor>& inputs, std::size_t i) {
  const std::string& n = inputs[i].name();
  return n.empty() ? fmt::format("input #{}", i) : fmt::format("input #{} '{}'", i, n);
}

/// What each input's gradient must look like, and how messages name the input.
struct InputSpec {
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
  std::vector<std::string> labels;  // "input #0 'x'"
};

/// The inputs' spec; ValueError for an undefined input.
InputSpec describe_inputs(const std::string& name, const std::vector<Tensor>& inputs) {
  InputSpec spec;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    spec.labels.push_back(input_label(inputs, i));
    if (!inputs[i].defined())
      throw ValueError(fmt::format("custom op '{}': {} is undefined", name, spec.labels[i]));
    spec.shapes.push_back(inputs[i].shape());
    spec.dtypes.push_back(inputs[i].dtype());
  }
  return spec;
}

/// Checks what the user's backward returned against the inputs (AutogradError naming the op)
/// and adds each needed gradient through the one accumulation point; an undefined gradient is
/// no gradient (zero).
void add_checked(const std::string& name, const InputSpec& spec, const std::vector<Tensor>& grads,
                 GradSink& s) {
  const std::size_t n = spec.shapes.size();
  if (grads.size() != n)
    throw AutogradError(fmt::format(
        "custom op '{}': backward returned {} gradient(s) for {} input(s)", name, grads.size(), n));
  for (std::size_t i = 0; i < n; ++i) {
    if (!grads[i].defined() || !s.needs(i)) continue;
    if (grads[i].shape() != spec.shapes[i] || grads[i].dtype() != spec.dtypes[i])
      throw AutogradError(fmt::format(
          "custom op '{}': backward returned a {} {} gradient for {}, which is {} {}", name,
          dtype_name(grads[i].dtype()), shape_str(grads[i].shape()), spec.labels[i],
          dtype_name(spec.dtypes[i]), shape_str(spec.shapes[i])));
    s.add(i, grads[i]);
  }
}

}  // namespace

Tensor apply_custom(const std::string& name, const std::vector<Tensor>& inputs,
                    const CustomForward& forward, CustomBackward backward) {
  if (!forward || !backward)
    throw ValueError(fmt::format("custom op '{}': forward and backward must both be given", name));
  const InputSpec spec = describe_inputs(name, inputs);
  auto ctx = std::make_shared<CustomContext>();  // shared by the node's backward
  ctx->name_ = name;

  // ---- forward: on values, nothing recorded -----------------------------------------------------
  Tensor out;
  {
    NoGradGuard no_grad;
    out = forward(*ctx, inputs);
  }
  if (!out.defined())
    throw ValueError(fmt::format("custom op '{}': forward returned an undefined Tensor", name));
  // The node must own a fresh output: returning an input (or a tensor already tracked) as is
  // would re-label that tensor as this op's result.
  bool fresh = out.is_leaf() && !out.requires_grad();
  for (const Tensor& in : inputs) fresh = fresh && !out.is_same(in);
  if (!fresh) {
    Tensor copy = out.detach();
    for (Tensor& t : ctx->saved_)
      if (t.is_same(out)) t = copy;
    out = copy;
  }

  // A saved output is held weakly: the output owns this node, which owns ctx, so a Tensor kept
  // in ctx would keep both alive in a cycle (framework/tape.hpp). Its slot stays empty between
  // backwards and is filled from the weak handle while the user's backward runs.
  std::vector<std::size_t> output_slots;
  for (std::size_t i = 0; i < ctx->saved_.size(); ++i)
    if (ctx->saved_[i].is_same(out)) {
      output_slots.push_back(i);
      ctx->saved_[i] = Tensor();
    }

  // ---- backward: the user's VJP, checked, through the one accumulation point -------------------
  const char* op = intern_op_name(name);
  return record(
      op, out, inputs,
      [ctx, backward = std::move(backward), spec, output_slots,
       self = WeakTensor(out)](const Tensor& g, GradSink& s) {
        const std::size_t n = spec.shapes.size();
        ctx->needs_.assign(n, false);
        for (std::size_t i = 0; i < n; ++i) ctx->needs_[i] = s.needs(i);
        struct SavedOutput {  // the output in its slots for the duration of the user's backward
          CustomContext& ctx;
          const std::vector<std::size_t>& slots;
          ~SavedOutput() {
            for (std::size_t i : slots) ctx.saved_[i] = Tensor();
          }
        } saved_output{*ctx, output_slots};
        if (!output_slots.empty()) {
          const Tensor output = self.lock();  // alive: the backward pass holds it
          for (std::size_t i : output_slots) ctx->saved_[i] = output;
        }
        add_checked(ctx->name(), spec, backward(*ctx, g), s);
      });
}

// ---- several outputs ------------------------------------------------------------------------------
// One node whose output is every output flattened and concatenated ("packed"); each output is a
// narrow + reshape of it, so the engine accumulates the outputs' gradients into the packed
// gradient, which the node's backward splits again for the user's backward.
std::vector<Tensor> apply_custom(const std::string& name, const std::vector<Tensor>& inputs,
                                 const CustomForwardMulti& forward, CustomBackwardMulti backward) {
  if (!forward || !backward)
    throw ValueError(fmt::format("custom op '{}': forward and backward must both be given", name));
  const InputSpec spec = describe_inputs(name, inputs);
  auto ctx = std::make_shared<CustomContext>();
  ctx->name_ = name;

  std::vector<Tensor> outs;
  Tensor packed;
  std::vector<Shape> out_shapes;
  std::vector<std::size_t> offsets;
  {
    NoGradGuard no_grad;
    outs = forward(*ctx, inputs);
    if (outs.empty())
      throw ValueError(fmt::format("custom op '{}': forward returned no outputs", name));
    std::vector<Tensor> flat;
    std::size_t offset = 0;
    for (std::size_t k = 0; k < outs.size(); ++k) {
      if (!outs[k].defined())
        throw ValueError(
            fmt::format("custom op '{}': forward returned an undefined output #{}", name, k));
      if (outs[k].dtype() != outs[0].dtype())
        throw ValueError(fmt::format(
            "custom op '{}': outputs must share one dtype (output #0 is {}, output #{} is {})",
            name, dtype_name(outs[0].dtype()), k, dtype_name(outs[k].dtype())));
      out_shapes.push_back(outs[k].shape());
      offsets.push_back(offset);
      offset += outs[k].numel();
      flat.push_back(reshape(outs[k].detach(), Shape{outs[k].numel()}));
    }
    packed = concat(flat, 0).detach();  // a fresh tensor, never one of the inputs
  }

  const char* op = intern_op_name(name);
  packed = record(
      op, packed, inputs,
      [ctx, backward = std::move(backward), spec, out_shapes,
       offsets](const Tensor& g, GradSink& s) {
        const std::size_t n = spec.shapes.size();
        ctx->needs_.assign(n, false);
        for (std::size_t i = 0; i < n; ++i) ctx->needs_[i] = s.needs(i);
        std::vector<Tensor> gouts;
        for (std::size_t k = 0; k < out_shapes.size(); ++k) {
          std::size_t numel = 1;
          for (std::size_t d : out_shapes[k]) numel *= d;
          gouts.push_back(reshape(narrow(g, 0, offsets[k], numel), out_shapes[k]));
        }
        add_checked(ctx->name(), spec, backward(*ctx, gouts), s);
      });
  std::vector<Tensor> result;
  for (std::size_t k = 0; k < out_shapes.size(); ++k)
    result.push_back(
        reshape(narrow(packed, 0, offsets[k], outs[k].numel()), out_shapes[k]));
  return result;
}

Tensor flatten_outputs(const std::vector<Tensor>& outputs) {
  std::vector<Tensor> flat;
  for (const Tensor& o : outputs) flat.push_back(reshape(o, Shape{o.numel()}));
  return concat(flat, 0);
}

}  // namespace tapegrad
