// tapegrad — the tape and the backward pass.
#include "framework/tape.hpp"

#include <atomic>
#include <cmath>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xview.hpp>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

namespace {

// A tape id is (owner << 32) | generation: `owner` is unique per Tape object (in practice per
// thread, the tape being thread-local), `generation` changes at every clear(). So an id tells a
// freed tape of this thread from another thread's tape.
std::atomic<std::uint64_t> g_next_tape_owner{1};
constexpr std::uint64_t kGenerationMask = 0xffffffffu;

bool same_owner(std::uint64_t a, std::uint64_t b) { return (a >> 32) == (b >> 32); }
thread_local bool t_grad_enabled = true;
thread_local bool t_anomaly = false;
// The node whose VJP is running (for anomaly messages from ops inside a backward).
thread_local const Node* t_backward_node = nullptr;
thread_local std::int64_t t_backward_index = -1;

std::string input_shapes(const std::vector<Tensor>& inputs) {
  std::string s;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (i) s += ", ";
    s += inputs[i].defined() ? shape_str(inputs[i].shape()) : "undefined";
  }
  return s;
}

bool all_finite(const Tensor& t) {
  return std::visit(
      [](const auto& a) {
        for (auto v : a)
          if (!std::isfinite(v)) return false;
        return true;
      },
      t.impl()->value);
}

/// A private copy of a gradient (out of memory names the backward pass and the shape).
Tensor owned_copy(const Tensor& t) {
  return detail::dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    return detail::guard_alloc<T>("backward", t.shape(), [&] { return Tensor(t.data<T>()); });
  });
}

std::string label(const Tensor& t) {
  return t.name().empty() ? std::string() : fmt::format(" '{}'", t.name());
}

}  // namespace

// ---- Tape ---------------------------------------------------------------------------------------

Tape::Tape() : id_(g_next_tape_owner++ << 32) {}

void Tape::clear() {
  nodes_.clear();
  id_ = (id_ & ~kGenerationMask) | ((id_ + 1) & kGenerationMask);
}

Tape& tape() {
  thread_local Tape t;
  return t;
}

std::string Tape::listing() const {
  std::string out;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    std::string ins;
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      const TensorImpl& in = *n.inputs[k].impl();
      if (k) ins += ", ";
      if (in.node >= 0 && in.tape_id == id_)
        ins += fmt::format("%{}", in.node);
      else
        ins += in.name.empty() ? std::string("leaf") + shape_str(n.inputs[k].shape())
                               : in.name;
    }
    out += fmt::format("%{:<4} {:<14} ({}) -> {}{}\n", i, n.op, ins, shape_str(n.output.shape()),
                       n.output.name().empty() ? "" : "  " + n.output.name());
  }
  return out;
}

std::string Tape::to_dot() const {
  std::string out = "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n";
  std::set<const TensorImpl*> leaves;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    std::string nm = n.output.name().empty() ? "" : "\\n" + n.output.name();
    out += fmt::format("  n{} [shape=box, label=\"{}{}\\n{}\"];\n", i, n.op, nm,
                       shape_str(n.output.shape()));
    for (const Tensor& in : n.inputs) {
      const TensorImpl* p = in.impl();
      if (p->node >= 0 && p->tape_id == id_) {
        out += fmt::format("  n{} -> n{};\n", p->node, i);
      } else {
        if (leaves.insert(p).second)
          out += fmt::format("  l{} [shape=ellipse, label=\"{}\\n{}\"];\n",
                             reinterpret_cast<std::uintptr_t>(p),
                             p->name.empty() ? "leaf" : p->name, shape_str(in.shape()));
        out += fmt::format("  l{} -> n{};\n", reinterpret_cast<std::uintptr_t>(p), i);
      }
    }
  }
  return out + "}\n";
}

// ---- modes ----------------------------------------------------------------------------------------

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }
GradModeGuard::GradModeGuard(bool enabled) : previous_(t_grad_enabled) { t_grad_enabled = enabled; }
GradModeGuard::~GradModeGuard() { t_grad_enabled = previous_; }

bool anomaly_enabled() { return t_anomaly; }
AnomalyGuard::AnomalyGuard(bool enabled) : previous_(t_anomaly) { t_anomaly = enabled; }
AnomalyGuard::~AnomalyGuard() { t_anomaly = previous_; }

// ---- recording ----------------------------------------------------------------------------------

namespace detail {

bool should_record(std::initializer_list<Tensor> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.impl()->requires_grad) return true;
  return false;
}

bool should_record(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.impl()->requires_grad) return true;
  return false;
}

void check_forward(const char* op, const Tensor& out, const std::vector<Tensor>& inputs) {
  if (all_finite(out)) return;
  if (t_backward_node)
    throw AnomalyError(fmt::format(
        "anomaly: backward of '{}' (tape index %{}{}) produced NaN or Inf (in its '{}' step); "
        "inputs of '{}': ({})",
        t_backward_node->op, t_backward_index, label(t_backward_node->output), op,
        t_backward_node->op, input_shapes(t_backward_node->inputs)));
  throw AnomalyError(fmt::format(
      "anomaly: forward of '{}' (would be tape index %{}) produced NaN or Inf; output {}, "
      "inputs ({})",
      op, tape().size(), shape_str(out.shape()), input_shapes(inputs)));
}

}  // namespace detail

std::int64_t push_node(const char* op, std::vector<Tensor> inputs, const Tensor& output,
                       BackwardFn backward) {
  Tape& t = tape();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorImpl* in = inputs[i].impl();
    if (in && in->node >= 0 && in->requires_grad && !same_owner(in->tape_id, t.id_))
      throw AutogradError(fmt::format(
          "{}: input {} {} was made by '{}' on another thread's tape; the tape is thread-local, "
          "so a graph must be built and differentiated on one thread (detach() the value, or "
          "use it under NoGradGuard, to pass it between threads)",
          op, i, shape_str(inputs[i].shape()), in->op));
  }
  auto index = static_cast<std::int64_t>(t.nodes_.size());
  TensorImpl& out = *output.impl();
  out.requires_grad = true;
  out.node = index;
  out.tape_id = t.id_;
  t.nodes_.push_back(Node{op, std::move(inputs), output, std::move(backward)});
  return index;
}

const char* intern_op_name(const std::string& name) {
  static std::mutex mu;
  static std::set<std::string> names;
  std::lock_guard<std::mutex> lock(mu);
  return names.insert(name).first->c_str();
}

// ---- GradSink: the one accumulation point -------------------------------------------------------

bool GradSink::needs(std::size_t i) const {
  return i < node_->inputs.size() && node_->inputs[i].impl()->requires_grad;
}

void GradSink::accumulate(const Tensor& target_t, const Tensor& g, const char* what) {
  TensorImpl& target = *target_t.impl();
  if (target.node >= 0 && target.tape_id != tape().id() && !same_owner(target.tape_id, tape().id()))
    throw AutogradError(fmt::format(
        "backward of '{}' (tape index %{}): {} {} was made by '{}' on another thread's tape; the "
        "tape is thread-local, so a graph must be built and differentiated on one thread",
        node_->op, node_index_, what, shape_str(target_t.shape()), target.op));
  if (target.node >= 0 && target.tape_id != tape().id())
    throw AutogradError(fmt::format(
        "backward through a freed tape: {} of '{}' (tape index %{}) was made by '{}' on a tape "
        "that an earlier backward cleared; call backward(retain_graph=true) or detach() values "
        "you carry across steps",
        what, node_->op, node_index_, target.op));
  if (anomaly_enabled() && !all_finite(g))
    throw AnomalyError(fmt::format(
        "anomaly: backward of '{}' (tape index %{}{}) produced NaN or Inf in the gradient of {}; "
        "inputs ({})",
        node_->op, node_index_, label(node_->output), what, input_shapes(node_->inputs)));
  if (!target.pending.defined()) {
    target.pending = g;
    target.pending_owned = false;
    if (target.node < 0) leaves_.push_back(target_t);
    return;
  }
  if (create_graph_) {
    target.pending = tapegrad::add(target.pending, g);
    return;
  }
  if (!target.pending_owned) {
    target.pending = owned_copy(target.pending);
    target.pending_owned = true;
  }
  detail::dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::noalias(target.pending.data<T>()) += g.data<T>();
  });
}

void GradSink::add(std::size_t i, const Tensor& g) {
  const Tensor& input = node_->inputs.at(i);
  if (!input.impl()->requires_grad) return;
  if (!g.defined() || g.dtype() != input.dtype() || g.shape() != input.shape())
    throw AutogradError(fmt::format(
        "backward of '{}' (tape index %{}): gradient for input {} is {} {}, but the input is {} {}",
        node_->op, node_index_, i, g.defined() ? dtype_name(g.dtype()) : "undefined",
        g.defined() ? shape_str(g.shape()) : "", dtype_name(input.dtype()),
        shape_str(input.shape())));
  accumulate(input, g, i == 0 ? "input 0" : i == 1 ? "input 1" : "an input");
}

void GradSink::add_narrow(std::size_t i, std::size_t axis, std::size_t start, const Tensor& g) {
  const Tensor& input = node_->inputs.at(i);
  TensorImpl& target = *input.impl();
  if (!target.requires_grad) return;
  const Shape& full = input.shape();
  if (create_graph_ || (target.node >= 0 && target.tape_id != tape().id())) {
    // Differentiable path (a recorded pad op), or the freed-tape error from accumulate.
    add(i, pad_narrow(g, static_cast<std::ptrdiff_t>(axis), start, full[axis]));
    return;
  }
  if (anomaly_enabled() && !all_finite(g))
    throw AnomalyError(fmt::format(
        "anomaly: backward of '{}' (tape index %{}{}) produced NaN or Inf; inputs ({})", node_->op,
        node_index_, label(node_->output), input_shapes(node_->inputs)));
  if (!target.pending.defined()) {
    target.pending = zeros(full, input.dtype());
    if (target.node < 0) leaves_.push_back(input);
  } else if (!target.pending_owned) {
    target.pending = owned_copy(target.pending);
  }
  target.pending_owned = true;
  // In-place add of g into the slice: `outer` contiguous runs of len·inner elements.
  std::size_t outer = detail::prod(full, 0, axis);
  std::size_t inner = detail::prod(full, axis + 1, full.size());
  std::size_t run = g.shape()[axis] * inner;
  if (run == 0 || outer == 0) return;  // nothing to add (and an empty array's data may be null)
  detail::dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = target.pending.data<T>().data();
    const T* src = g.data<T>().data();
    for (std::size_t o = 0; o < outer; ++o) {
      T* d = dst + (o * full[axis] + start) * inner;
      const T* s = src + o * run;
      for (std::size_t k = 0; k < run; ++k) d[k] += s[k];
    }
  });
}

// ---- backward -----------------------------------------------------------------------------------

namespace {

/// Runs hooks and returns the (possibly replaced) gradient.
Tensor run_hooks(TensorImpl& impl, Tensor g) {
  for (const Hook& h : impl.hooks) {
    Tensor r = h(g);
    if (r.defined()) {
      if (r.shape() != g.shape() || r.dtype() != g.dtype())
        throw AutogradError(fmt::format("hook on '{}' returned a gradient {} {}, expected {} {}",
                                        impl.name, dtype_name(r.dtype()), shape_str(r.shape()),
                                        dtype_name(g.dtype()), shape_str(g.shape())));
      g = r;
    }
  }
  return g;
}

/// Adds a pass's gradient into .grad (which always owns its storage, unless create_graph).
void accumulate_grad(TensorImpl& impl, const Tensor& g, bool owned, bool create_graph) {
  if (create_graph) {
    impl.grad = impl.grad.defined() ? add(impl.grad, g) : g;
    return;
  }
  if (!impl.grad.defined()) {
    impl.grad = owned ? g : owned_copy(g);
    return;
  }
  detail::dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    xt::noalias(impl.grad.data<T>()) += g.data<T>();
  });
}

}  // namespace

/// The backward pass. With `capture` (torch.autograd.grad), the gradients reaching the captured
/// tensors are returned instead of accumulated into any .grad.
struct BackwardPass {
  static std::vector<Tensor> run(const Tensor& root, const Tensor& seed_in, bool retain_graph,
                                 bool create_graph, const std::vector<Tensor>* capture);
};

void backward(const Tensor& root, const Tensor& seed, bool retain_graph, bool create_graph) {
  BackwardPass::run(root, seed, retain_graph, create_graph, nullptr);
}

std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs, const Tensor& seed,
                         bool retain_graph, bool create_graph) {
  for (const Tensor& in : inputs)
    if (!in.defined() || !in.requires_grad())
      throw AutogradError("grad: every input must be a defined tensor that requires grad");
  return BackwardPass::run(output, seed, retain_graph, create_graph, &inputs);
}

std::vector<Tensor> BackwardPass::run(const Tensor& root, const Tensor& seed_in, bool retain_graph,
                                      bool create_graph, const std::vector<Tensor>* capture) {
  if (!root.defined()) throw AutogradError("backward: called on an undefined Tensor");
  if (!root.requires_grad())
    throw AutogradError(fmt::format(
        "backward: tensor{} {} does not require grad (no input had requires_grad, or it was "
        "computed under no_grad)",
        label(root), shape_str(root.shape())));
  Tape& tp = tape();
  TensorImpl& r = *root.impl();
  if (r.node >= 0 && !same_owner(r.tape_id, tp.id()))
    throw AutogradError(fmt::format(
        "backward: tensor{} {} was made by '{}' on another thread's tape; the tape is "
        "thread-local, so call backward on the thread that built the graph",
        label(root), shape_str(root.shape()), r.op));
  if (r.node >= 0 && r.tape_id != tp.id())
    throw AutogradError(fmt::format(
        "backward through a freed tape: tensor{} made by '{}' belongs to a tape that an earlier "
        "backward cleared; pass retain_graph=true to backward twice",
        label(root), r.op));
  Tensor seed = seed_in;
  if (!seed.defined()) {
    if (root.numel() != 1)
      throw AutogradError(fmt::format(
          "backward: root{} has shape {}; a non-scalar root needs an explicit seed gradient of "
          "that shape",
          label(root), shape_str(root.shape())));
    seed = ones_like(root);
  } else if (seed.shape() != root.shape() || seed.dtype() != root.dtype()) {
    throw ShapeError(fmt::format("backward: seed is {} {} but the root is {} {}",
                                 dtype_name(seed.dtype()), shape_str(seed.shape()),
                                 dtype_name(root.dtype()), shape_str(root.shape())));
  }
  if (create_graph) retain_graph = true;

  std::vector<Tensor> captured(capture ? capture->size() : 0);
  // Hands a gradient to its destination: the capture list, or .grad.
  auto deliver = [&](TensorImpl& impl, const Tensor& g, bool owned, bool is_leaf) {
    if (capture) {
      for (std::size_t k = 0; k < capture->size(); ++k)
        if ((*capture)[k].impl() == &impl)
          captured[k] = captured[k].defined() ? add(captured[k], g) : g;
    } else if (is_leaf || impl.retains_grad) {
      accumulate_grad(impl, g, owned, create_graph);
    }
  };

  if (r.node < 0) {  // a leaf root: its gradient is the seed
    deliver(r, run_hooks(r, seed), false, true);
    return captured;
  }

  GradSink sink(create_graph, retain_graph);
  GradModeGuard mode(create_graph);
  try {
    r.pending = seed;
    r.pending_owned = false;
    // The tape is in execution order, i.e. topologically sorted: one reverse sweep suffices.
    for (std::int64_t i = r.node; i >= 0; --i) {
      const Node& n = tp.nodes_[i];
      TensorImpl& out = *n.output.impl();
      if (!out.pending.defined()) continue;
      bool owned = out.pending_owned;
      Tensor g = std::move(out.pending);
      out.pending = Tensor();
      if (!out.hooks.empty()) g = run_hooks(out, g);
      deliver(out, g, owned, false);
      sink.node_ = &n;
      sink.node_index_ = i;
      t_backward_node = &n;
      t_backward_index = i;
      n.backward(g, sink);
      t_backward_node = nullptr;
    }
    for (Tensor& leaf : sink.leaves_) {
      TensorImpl& impl = *leaf.impl();
      bool owned = impl.pending_owned;
      Tensor g = std::move(impl.pending);
      impl.pending = Tensor();
      if (!impl.hooks.empty()) g = run_hooks(impl, g);
      deliver(impl, g, owned, true);
    }
  } catch (...) {
    t_backward_node = nullptr;
    // Leave no half-finished pass behind: drop every pending gradient.
    for (std::int64_t i = r.node; i >= 0; --i) tp.nodes_[i].output.impl()->pending = Tensor();
    for (Tensor& leaf : sink.leaves_) leaf.impl()->pending = Tensor();
    throw;
  }
  if (!retain_graph) tp.clear();
  return captured;
}

}  // namespace tapegrad
