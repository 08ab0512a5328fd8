// tapegrad — the tape: a Wengert list of recorded ops, and reverse-mode autodiff over it.
//
// Every op whose inputs require grad creates one Node {op, inputs, backward} and appends it to
// the current thread's tape, in execution order. Execution order is already a topological
// order, so backward(loss) is one reverse loop over the tape (no recursion, no sort): for each
// node whose output received a gradient, call its vector-Jacobian product, which adds gradients
// into the node's inputs through a GradSink.
//
// Who owns what (like PyTorch's grad_fn): a node is owned by its output tensor, and a node owns
// its inputs. The tape only *lists* the nodes (weak references, in execution order), so a graph
// that nothing can reach any more — an evaluation loop without backward, an abandoned
// experiment — is freed as soon as its last tensor goes out of scope, and the tape forgets it.
// A backward without retain_graph releases each node as soon as its VJP has run (as PyTorch
// frees a node's saved tensors): its VJP, what it saved and its handles on its inputs are
// dropped, and values nothing can read any more are freed, so a graph's memory comes back during
// the pass (tape.cpp, "release as the pass goes"), and the tape forgets them. A graph the pass did
// not reach (recorded before it and still held) stays on the tape, as in PyTorch. Differentiating
// again through a node that a backward released is an AutogradError ("backward through a freed
// tape").
//
// A VJP must not keep its own output alive (that would be a cycle: output → node → VJP →
// output); an op that needs its output in backward captures a WeakTensor.
//
// The tape is thread-local: two threads can train two models at once, but a graph must be
// built and differentiated on one thread.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "framework/tensor.hpp"

namespace tapegrad {

class GradSink;
struct BackwardPass;
struct PassHolds;  // what a backward pass holds until its node has run (tape.cpp)
struct Slice;  // where a slice's gradient goes (GradSink::add_narrow)
enum class Reads : unsigned;  // what a VJP reads (below, before push_node)

/// One element of the braced list of inputs an op passes to record() ({a, b}): a reference to the
/// caller's tensor, so that each input is copied once, into the node (a list of Tensors would
/// copy every input a second time, and every copy of a handle is an atomic reference count).
struct InputRef {
  InputRef(const Tensor& t) : tensor(t) {}  // implicit: {a, b} just works
  operator const Tensor&() const { return tensor; }
  const Tensor& tensor;
};

/// A node's inputs. Most ops have one or two: those are kept inside the node itself, so that
/// recording an op needs no separate allocation for them; a node with more inputs (concat, a
/// custom op, the fused GRU) keeps them in a std::vector. Reads like a const std::vector<Tensor>.
class NodeInputs {
 public:
  /// From a range of Tensors or InputRefs.
  template <class It>
  NodeInputs(It first, It last) : size_(static_cast<std::size_t>(std::distance(first, last))) {
    if (size_ > kInline) more_.reserve(size_);
    for (std::size_t i = 0; first != last; ++first, ++i) {
      const Tensor& t = *first;
      if (size_ > kInline)
        more_.push_back(t);
      else
        inline_[i] = t;
    }
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Tensor& operator[](std::size_t i) const { return begin()[i]; }
  /// Input i, or std::out_of_range (like std::vector::at).
  const Tensor& at(std::size_t i) const {
    if (i >= size_) throw_out_of_range(i);
    return begin()[i];
  }
  const Tensor* begin() const { return size_ > kInline ? more_.data() : inline_; }
  const Tensor* end() const { return begin() + size_; }
  Tensor* begin() { return size_ > kInline ? more_.data() : inline_; }
  Tensor* end() { return begin() + size_; }
  /// Drops every input. `on_recording_thread`: this is the thread whose tape recorded the node,
  /// which alone writes its inputs' unread_holders counts (TensorImpl, "value lifetime"); on
  /// any other thread an input this node held unread is marked kept instead.
  void clear(bool on_recording_thread);
  ~NodeInputs() { clear(false); }  // in practice empty already (Node::release)
  NodeInputs(const NodeInputs&) = delete;
  NodeInputs& operator=(const NodeInputs&) = delete;
  /// This node's VJP never reads its inputs' values: counts it as an unread holder of each
  /// input that no reading op holds (TensorImpl, "value lifetime"; undone by clear()).
  void hold_unread();
  /// clear(true), except that an input whose own node is still to run in the backward pass
  /// under way moves to the pass's hold `held` (once; a second handle is just dropped), and its
  /// value is freed when nothing can read it any more (tape.cpp, "release as the pass goes").
  void release_in_pass(PassHolds& held);

 private:
  [[noreturn]] void throw_out_of_range(std::size_t i) const;
  static constexpr std::size_t kInline = 2;
  Tensor inline_[kInline];
  std::vector<Tensor> more_;
  std::size_t size_;
  std::uint64_t unread_mask_ = 0;  // bit i: input i counts this node in its unread_holders
};

/// One recorded op. Owned by its output tensor (TensorImpl::grad_fn); owns its inputs.
/// The VJP itself lives in the derived VjpNode<F> below, in the same allocation as the node.
struct Node {
  const char* op;
  NodeInputs inputs;
  std::uint64_t seq = 0;    // position in execution order (increases along the tape)
  std::uint64_t tape = 0;   // which thread's tape recorded it
  bool released = false;    // a backward without retain_graph (or tape().clear()) freed it
  bool reads_output = true;  // its VJP reads its output's value (push_node, Reads)

  template <class Range>
  Node(const char* op, const Range& inputs) : op(op), inputs(inputs.begin(), inputs.end()) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  virtual ~Node() = default;
  /// The vector-Jacobian product: given dL/d(output), adds dL/d(input_i) into the sink.
  /// Only called on a node that is not released.
  virtual void backward(const Tensor& grad_output, GradSink& sink) = 0;
  /// Drops the VJP (and the tensors it saved) and the inputs, without recursion.
  void release();
  /// release(), right after this node's VJP ran in a backward that keeps no graph; `held` is
  /// where the pass holds tensors whose own node is still to run (NodeInputs::release_in_pass).
  void release_in_pass(PassHolds& held);
  /// Destroys this node and frees its memory (NodeDeleter): the node knows its own size.
  virtual void destroy() noexcept = 0;

 protected:
  /// Destroys the VJP and what it captured (the node stays, knowing its op and inputs).
  virtual void drop_backward() = 0;
};

/// The node of an op whose VJP is the callable F (the lambda an op passes to record()): the VJP
/// is stored inline, not in a std::function, so recording an op is a single allocation.
template <class F>
struct VjpNode final : Node {
  template <class Range, class G>
  VjpNode(const char* op, const Range& inputs, G&& vjp)
      : Node(op, inputs), vjp_(std::forward<G>(vjp)) {}
  /// Released here rather than in ~Node, where drop_backward() could no longer reach the VJP.
  /// (release() takes a deep graph apart by a loop, not by nested destructors.)
  ~VjpNode() override {
    if (!released) release();
  }
  void backward(const Tensor& grad_output, GradSink& sink) override { (*vjp_)(grad_output, sink); }
  void destroy() noexcept override {
    this->~VjpNode();
    detail::pool_deallocate(this, sizeof(VjpNode));
  }

 protected:
  void drop_backward() override { vjp_.reset(); }

 private:
  std::optional<F> vjp_;
};

class Tape {
 public:
  /// The number of live recorded nodes (the lines of listing()).
  std::size_t size() const { return outputs().size(); }
  /// The i-th live node, in execution order.
  const Node& node(std::size_t i) const { return *outputs().at(i).impl()->grad_fn; }
  /// The outputs of the live nodes, in execution order (their grad_fn is the node).
  std::vector<Tensor> outputs() const;
  /// Releases every recorded node (a backward without retain_graph releases only the nodes it
  /// ran) and empties the tape. Tensors made before keep their values but cannot be
  /// differentiated through any more.
  void clear();
  /// One line per live node: index, op, inputs (by node index or leaf name), output shape, name.
  /// (Defined in print.cpp, with the rest of the printing.)
  std::string listing() const;
  /// Graphviz DOT of the recorded graph (ops as boxes, leaves as ellipses). (print.cpp)
  std::string to_dot() const;
  /// `node`'s index in listing() (for error messages).
  std::size_t index_of(const Node& node) const;

  Tape();
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

 private:
  friend void push_node(NodePtr, const Tensor&, Reads);
  friend struct BackwardPass;
  friend struct PassHolds;
  struct Entry {
    WeakTensor output;  // does not keep the graph alive
    std::uint64_t seq;
  };
  void compact();  // forgets entries whose tensor is gone
  std::size_t position(std::uint64_t seq) const;  // index in entries_ of the node numbered seq
  std::vector<Entry> entries_;  // in execution order (seq increasing)
  std::uint64_t owner_;         // unique per Tape object (per thread)
  std::uint64_t next_seq_ = 0;
  std::size_t compact_at_ = 64;  // compact when entries_ reaches this size (2× the live count)
  int walking_ = 0;              // > 0 while a backward walks entries_ (no compaction then)
};

/// This thread's tape.
Tape& tape();

// ---- grad mode --------------------------------------------------------------------------------
namespace detail {
// This thread's modes, read by every op: inline here, so that reading one is not a call into
// tape.cpp. Set only through the guards below.
inline thread_local bool t_grad_enabled = true;
inline thread_local bool t_anomaly = false;
}  // namespace detail

/// Whether ops are recorded (true unless inside a NoGradGuard).
inline bool grad_enabled() { return detail::t_grad_enabled; }

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
inline bool anomaly_enabled() { return detail::t_anomaly; }

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

/// Several roots in one pass, like torch.autograd.backward(tensors, grad_tensors): the same as
/// backward(sum of seeds[k] · roots[k]), each graph walked once, so two losses that share nodes
/// need no retain_graph. `seeds`: one per root, or none (then every root must have one element).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds = {},
              bool retain_graph = false, bool create_graph = false);

/// d(outputs)/d(inputs) without touching .grad: returns one gradient per input (undefined where
/// no path exists), like torch.autograd.grad.
std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs,
                         const Tensor& seed = Tensor(), bool retain_graph = false,
                         bool create_graph = false);
/// grad() of several outputs at once (the sum of their seeded gradients), like
/// torch.autograd.grad(outputs, inputs, grad_outputs).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds = {}, bool retain_graph = false,
                         bool create_graph = false);

/// Where a node's backward puts its gradients (they all end in accumulate(), tape.cpp).
class GradSink {
 public:
  /// Whether input i of the current node wants a gradient.
  bool needs(std::size_t i) const {
    return i < node_->inputs.size() && node_->inputs[i].impl()->requires_grad;
  }
  /// Input i of the current node (the node keeps its inputs: a VJP that only needs, say, their
  /// shapes can read them here instead of capturing copies).
  const Tensor& input(std::size_t i) const { return node_->inputs.at(i); }
  /// Adds dL/d(input_i). g must have input i's shape and dtype (broadcast gradients must be
  /// reduced with sum_to first, or passed to add_sum_to). A fresh gradient moves in; a gradient
  /// passed by reference is copied (a handle, not the values) only where the sum keeps it.
  void add(std::size_t i, Tensor&& g) { add_checked(i, std::move(g)); }
  void add(std::size_t i, const Tensor& g) { add_checked(i, g); }
  /// add(i, sum_to(g, input i's shape)): the gradient of an input that a broadcasting op
  /// (add, sub, mul, ...) may have broadcast. When no reduction is needed, g is added as it is.
  void add_sum_to(std::size_t i, const Tensor& g);
  /// Adds g into the slice [start, start + g.size(axis)) of input i along `axis`, in place:
  /// no full-size temporary per slice. g may also lack `axis` (select's gradient): it then goes
  /// to index `start` of that axis. AutogradError when g does not fit the slice.
  void add_narrow(std::size_t i, std::size_t axis, std::size_t start, const Tensor& g);
  /// Adds matmul(a, b, ta, tb) (2-D) to dL/d(input_i). When input i's gradient of this pass is
  /// already a buffer of the pass's own, BLAS adds the product straight into it (beta = 1): a
  /// weight used at every step of a recurrence gets its T gradients with no temporary and no
  /// separate add (an optimisation, set apart: the result equals add(i, matmul(...))).
  void add_matmul(std::size_t i, const Tensor& a, bool ta, const Tensor& b, bool tb);
  /// One product for add_matmuls: dL/d(input) += op(a) · op(b).
  struct Product {
    std::size_t input;
    const Tensor& a;
    bool ta;
    const Tensor& b;
    bool tb;
  };
  /// add_matmul(p) and add_matmul(q) for two different inputs (a matmul's two gradients). The
  /// two products are independent, so mid-size ones run on the engine's two threads at once
  /// (blas.hpp, gemm_pair); each result is bit-identical to add_matmul's.
  void add_matmuls(const Product& p, const Product& q);
  /// True while a create_graph backward runs: VJPs must then use only differentiable ops.
  bool create_graph() const { return create_graph_; }
  /// True when the tape is kept for another backward: a VJP must then leave what it saved intact.
  bool retain_graph() const { return retain_graph_; }

 private:
  friend struct BackwardPass;
  GradSink(bool create_graph, bool retain_graph)
      : create_graph_(create_graph), retain_graph_(retain_graph) {}
  void run(const Tensor& output, const Tensor& grad_output);  // calls output's node's VJP
  template <class G>  // Tensor (moved in) or const Tensor& (copied where kept); tape.cpp
  void add_checked(std::size_t i, G&& g);
  template <class G>
  void add_to(std::size_t i, G&& g, const Slice* slice);
  /// How a Product can be added: `plain` when BLAS can compute it as is (2-D, the input's dtype
  /// and shape, no create_graph or anomaly mode), with its sizes m×n (inner k); `in_place` when it
  /// can also go straight into the input's pending gradient (the pass's own buffer, beta = 1).
  struct ProductPlan {
    bool plain = false, in_place = false;
    std::size_t m = 0, n = 0, k = 0;
  };
  ProductPlan plan(const Product& p) const;
  /// check_history of input i of the current node, named as this backward's.
  void check_input(std::size_t i) const;
  const Node* node_ = nullptr;
  const Tensor* output_ = nullptr;  // the node's output
  std::uint64_t tape_ = 0;          // the tape this pass runs on
  bool create_graph_;
  bool retain_graph_;
  std::vector<Tensor> leaves_;  // leaves that received a gradient this pass
};

// ---- recording (used by op implementations) ---------------------------------------------------
namespace detail {
/// True when grad mode is on and any input requires grad.
template <class Range>
bool should_record(const Range& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.impl()->requires_grad) return true;
  return false;
}
/// Anomaly check of a forward result (no-op when anomaly mode is off).
void check_forward(const char* op, const Tensor& out, const NodeInputs& inputs);
/// RAII scope in which every recorded op counts as reading its inputs and output (Reads::All):
/// no value is freed early. For tests comparing the two ways (the results must be identical).
class KeepAllValuesGuard {
 public:
  KeepAllValuesGuard();
  ~KeepAllValuesGuard();
  KeepAllValuesGuard(const KeepAllValuesGuard&) = delete;
  KeepAllValuesGuard& operator=(const KeepAllValuesGuard&) = delete;

 private:
  bool previous_;
};
/// RAII scope in which every weight gradient of a backward is computed on the calling thread, in
/// order, instead of on the engine's helper while the pass goes on (tape.cpp, "a weight's
/// gradient on the helper"). For tests comparing the two ways (the results must be identical).
class SerialWeightGradientsGuard {
 public:
  SerialWeightGradientsGuard();
  ~SerialWeightGradientsGuard();
  SerialWeightGradientsGuard(const SerialWeightGradientsGuard&) = delete;
  SerialWeightGradientsGuard& operator=(const SerialWeightGradientsGuard&) = delete;

 private:
  bool previous_;
};
/// How many weight gradients this thread's backward passes have started on the helper so far.
std::size_t weight_gradients_started_apart();
}  // namespace detail

/// What an op's VJP reads besides the incoming gradient and its inputs' shapes and dtypes.
/// record() assumes All; an op that declares less (add, narrow, select, reshape read Nothing,
/// sigmoid and tanh only their Output, matmul and mul only their Inputs) lets the engine free a
/// value that only the tape still holds (TensorImpl, "value lifetime"). Declaring less than the
/// VJP reads is a bug the engine reports: data<T>() of a freed value throws AutogradError.
enum class Reads : unsigned { Nothing = 0, Inputs = 1, Output = 2, All = 3 };
/// Makes `node` the node of `output` (its grad_fn; output becomes requires_grad) and lists it on
/// this thread's tape; `reads` is what the node's VJP reads (see Reads).
void push_node(NodePtr node, const Tensor& output, Reads reads = Reads::All);

/// The pattern every op ends with: name the output's op, check anomalies, and record the node
/// when needed. The node (with `fn` inside it, a VjpNode) is only created when it is recorded.
/// `fn` must not capture `out` itself (capture WeakTensor(out)): see the top of this file.
/// `inputs` is a braced list ({a, b}) or a std::vector<Tensor>.
/// An op passes its result as std::move(out): the handle then moves through to the caller
/// (taken by reference, so that a VJP capturing WeakTensor(out) in the same call still sees it).
/// `reads` (optional, All when omitted) is what `fn` reads besides the gradient and the inputs'
/// shapes: see Reads.
template <class Inputs = std::initializer_list<InputRef>, class F>
Tensor record(const char* op, Tensor&& out, const Inputs& inputs, Reads reads, F&& fn) {
  out.impl()->op = op;
  if (anomaly_enabled())
    detail::check_forward(op, out, NodeInputs(inputs.begin(), inputs.end()));
  if (detail::should_record(inputs)) {
    // Nodes come from the tensor pool too (framework/memory_pool.cpp): one block per op, and
    // one owner, the output (no shared reference count to keep).
    using NodeType = VjpNode<std::decay_t<F>>;
    void* memory = detail::pool_allocate(sizeof(NodeType));
    NodePtr node;
    try {
      node.reset(new (memory) NodeType(op, inputs, std::forward<F>(fn)));
    } catch (...) {
      detail::pool_deallocate(memory, sizeof(NodeType));
      throw;
    }
    push_node(std::move(node), out, reads);
  }
  return std::move(out);
}
template <class Inputs = std::initializer_list<InputRef>, class F,
          class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Reads>>>
Tensor record(const char* op, Tensor&& out, const Inputs& inputs, F&& fn) {
  return record<Inputs>(op, std::move(out), inputs, Reads::All, std::forward<F>(fn));
}

/// The same, for a result the caller keeps a handle to.
template <class Inputs = std::initializer_list<InputRef>, class F>
Tensor record(const char* op, const Tensor& out, const Inputs& inputs, F&& fn) {
  return record<Inputs>(op, Tensor(out), inputs, std::forward<F>(fn));
}

/// Interns a dynamic op name (custom ops) so it can be stored as a `const char*`.
const char* intern_op_name(const std::string& name);

}  // namespace tapegrad
