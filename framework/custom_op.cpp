// tapegrad — custom ops (see custom_op.hpp): forward once under no_grad, then one tape node
// whose VJP calls the user's backward and checks what it returns.
#include "framework/custom_op.hpp"

#include <fmt/format.h>

#include <memory>

#include "framework/tape.hpp"

namespace tapegrad {

Tensor apply_custom(const std::string& name, const std::vector<Tensor>& inputs,
                    const CustomForward& forward, CustomBackward backward) {
  if (!forward || !backward)
    throw ValueError(fmt::format("custom op '{}': forward and backward must both be given", name));
  std::vector<Shape> shapes;  // what each input's gradient must look like
  std::vector<DType> dtypes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined())
      throw ValueError(fmt::format("custom op '{}': input {} is undefined", name, i));
    shapes.push_back(inputs[i].shape());
    dtypes.push_back(inputs[i].dtype());
  }
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

  // ---- backward: the user's VJP, checked, through the one accumulation point -------------------
  const char* op = intern_op_name(name);
  return record(
      op, out, inputs,
      [ctx, backward = std::move(backward), shapes, dtypes](const Tensor& g, GradSink& s) {
        const std::size_t n = shapes.size();
        ctx->needs_.assign(n, false);
        for (std::size_t i = 0; i < n; ++i) ctx->needs_[i] = s.needs(i);
        std::vector<Tensor> grads = backward(*ctx, g);
        if (grads.size() != n)
          throw AutogradError(
              fmt::format("custom op '{}': backward returned {} gradient(s) for {} input(s)",
                          ctx->name(), grads.size(), n));
        for (std::size_t i = 0; i < n; ++i) {
          if (!grads[i].defined() || !s.needs(i)) continue;  // undefined = no gradient (zero)
          if (grads[i].shape() != shapes[i] || grads[i].dtype() != dtypes[i])
            throw AutogradError(fmt::format(
                "custom op '{}': backward returned a {} {} gradient for input {}, which is {} {}",
                ctx->name(), dtype_name(grads[i].dtype()), shape_str(grads[i].shape()), i,
                dtype_name(dtypes[i]), shape_str(shapes[i])));
          s.add(i, grads[i]);
        }
      });
}

}  // namespace tapegrad
