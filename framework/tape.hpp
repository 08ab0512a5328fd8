// tapegrad — the tape: a Wengert list of recorded ops, and reverse-mode autodiff over it.
//
// Every op whose inputs require grad appends one Node {op, inputs, output, backward} to the
// current thread's tape, in execution order. Execution order is already a topological order,
// so backward(loss) is one reverse loop over the tape (no recursion, no sort): for each node
// whose output received a gradient, call its vector-Jacobian product, which adds gradients
// into the node's inputs through a GradSink (the one accumulation point, which checks shapes
// and dtypes and names the op when something is wrong).
//
// After backward the tape is cleared (unless retain_graph), so a training loop that calls
// backward every step keeps a constant memory footprint. Using a tensor made on a cleared
// tape in a later backward is an AutogradError ("backward through a freed tape").
//
// The tape is thread-local: two threads can train two models at once, but a graph must be
// built and differentiated on one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "framework/tensor.hpp"

namespace tapegrad {

class GradSink;
struct BackwardPass;

/// A vector-Jacobian product: given dL/d(output), add dL/d(input_i) into the sink.
using BackwardFn = std::function<void(const Tensor& grad_output, GradSink& sink)>;

/// One recorded op.
struct Node {
  const char* op;
  std::vector<Tensor> inputs;
  Tensor output;
  BackwardFn backward;
};

class Tape {
 public:
  std::size_t size() const { return nodes_.size(); }
  const Node& node(std::size_t i) const { return nodes_.at(i); }
  /// Drops every node (and with them the saved tensors). Tensors made before become
  /// history-less for later backward calls (which then raise "freed tape" errors).
  void clear();
  /// Generation id: changes at every clear(); unique across threads.
  std::uint64_t id() const { return id_; }
  /// One line per node: index, op, inputs (by node index or leaf name), output shape, name.
  std::string listing() const;
  /// Graphviz DOT of the recorded graph (ops as boxes, leaves as ellipses).
  std::string to_dot() const;

  Tape();

 private:
  friend std::int64_t push_node(const char*, std::vector<Tensor>, const Tensor&, BackwardFn);
  friend struct BackwardPass;
  std::deque<Node> nodes_;  // deque: references stay valid while backward records (create_graph)
  std::uint64_t id_;
};

/// This thread's tape.
Tape& tape();

// ---- grad mode --------------------------------------------------------------------------------
/// Whether ops are recorded (true unless inside a NoGradGuard).
bool grad_enabled();

/// RAII scope in which nothing is recorded (torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// RAII scope that sets grad mode explicitly (used by backward for create_graph).
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

// ---- anomaly mode ----------------------------------------------------------------------------
/// Whether NaN/Inf checks run on every op's output and every gradient (off by default).
bool anomaly_enabled();

/// RAII scope of anomaly detection (torch.autograd.detect_anomaly): the first op whose forward
/// output or backward gradient holds a NaN or Inf raises AnomalyError naming the op, its tape
/// index, its name and its inputs' shapes.
class AnomalyGuard {
 public:
  explicit AnomalyGuard(bool enabled = true);
  ~AnomalyGuard();
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;

 private:
  bool previous_;
};

// ---- backward ----------------------------------------------------------------------------------
/// Accumulates dL/d(root) · d(root)/d(leaf) into leaf.grad() for every leaf that requires grad.
/// `seed` is dL/d(root): optional for a one-element root (defaults to 1), required otherwise.
/// retain_graph keeps the tape for another backward; create_graph records the backward's own
/// ops, so the resulting gradients can be differentiated again (implies retain_graph).
void backward(const Tensor& root, const Tensor& seed = Tensor(), bool retain_graph = false,
              bool create_graph = false);

/// d(outputs)/d(inputs) without touching .grad: returns one gradient per input (undefined where
/// no path exists), like torch.autograd.grad.
std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs,
                         const Tensor& seed = Tensor(), bool retain_graph = false,
                         bool create_graph = false);

/// Where a node's backward puts its gradients. One accumulation point for the whole engine.
class GradSink {
 public:
  /// Whether input i of the current node wants a gradient.
  bool needs(std::size_t i) const;
  /// Adds dL/d(input_i). g must have input i's shape and dtype (broadcast gradients must be
  /// reduced with sum_to first).
  void add(std::size_t i, const Tensor& g);
  /// Adds g into the slice [start, start + g.size(axis)) of input i along `axis`, in place:
  /// no full-size temporary per slice.
  void add_narrow(std::size_t i, std::size_t axis, std::size_t start, const Tensor& g);
  /// True while a create_graph backward runs: VJPs must then use only differentiable ops.
  bool create_graph() const { return create_graph_; }
  /// True when the tape is kept for another backward: a VJP must then leave what it saved intact.
  bool retain_graph() const { return retain_graph_; }

 private:
  friend struct BackwardPass;
  GradSink(bool create_graph, bool retain_graph)
      : create_graph_(create_graph), retain_graph_(retain_graph) {}
  void accumulate(const Tensor& target, const Tensor& g, const char* what);
  const Node* node_ = nullptr;
  std::int64_t node_index_ = -1;
  bool create_graph_;
  bool retain_graph_;
  std::vector<Tensor> leaves_;  // leaves that received a gradient this pass
};

// ---- recording (used by op implementations) ---------------------------------------------------
namespace detail {
/// True when grad mode is on and any input requires grad.
bool should_record(std::initializer_list<Tensor> inputs);
bool should_record(const std::vector<Tensor>& inputs);
/// Anomaly check of a forward result (no-op when anomaly mode is off).
void check_forward(const char* op, const Tensor& out, const std::vector<Tensor>& inputs);
}  // namespace detail

/// Appends a node and marks `output` as its result (requires_grad, node index). Returns the index.
std::int64_t push_node(const char* op, std::vector<Tensor> inputs, const Tensor& output,
                       BackwardFn backward);

/// The pattern every op ends with: name the output's op, check anomalies, and record the node
/// when needed. `fn` is only wrapped into a std::function when the node is actually recorded.
template <class F>
Tensor record(const char* op, Tensor out, std::initializer_list<Tensor> inputs, F&& fn) {
  out.impl()->op = op;
  if (anomaly_enabled()) detail::check_forward(op, out, std::vector<Tensor>(inputs));
  if (detail::should_record(inputs))
    push_node(op, std::vector<Tensor>(inputs), out, BackwardFn(std::forward<F>(fn)));
  return out;
}

template <class F>
Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, F&& fn) {
  out.impl()->op = op;
  if (anomaly_enabled()) detail::check_forward(op, out, inputs);
  if (detail::should_record(inputs)) push_node(op, inputs, out, BackwardFn(std::forward<F>(fn)));
  return out;
}

/// Interns a dynamic op name (custom ops) so it can be stored as a `const char*`.
const char* intern_op_name(const std::string& name);

}  // namespace tapegrad
