// tapegrad — the tape and the backward pass. Printing the tape (listing, DOT) is in print.cpp.
#include "framework/tape.hpp"

#include "framework/blas.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/parallel.hpp"

namespace tapegrad {

namespace {

std::atomic<std::uint64_t> g_next_tape_owner{1};  // every Tape (in practice every thread) differs
using detail::t_anomaly;
using detail::t_grad_enabled;
thread_local bool t_keep_all_values = false;  // detail::KeepAllValuesGuard
thread_local bool t_weight_grads_apart = true;  // detail::SerialWeightGradientsGuard
// This thread's tape number, 0 until its Tape exists (trivially destructible: readable at any
// point of thread exit, unlike tape() itself).
thread_local std::uint64_t t_tape_id = 0;
constexpr std::size_t kMinFreedValueBytes = 4096;  // smaller values are never freed early
// ... in the forward; a backward pass frees values from this size on (docs/performance.md,
// session 26: freeing every size made the AD suite's scalar_loop, 3,000 one-element ops, slower:
// ratio 6.10 / 5.95 against 5.65 / 5.77 from 256 bytes on).
constexpr std::size_t kMinFreedInPassBytes = 256;
// The node whose VJP is running, and its output (for anomaly messages from ops inside it).
thread_local const Node* t_backward_node = nullptr;
thread_local const Tensor* t_backward_output = nullptr;

std::string input_shapes(const NodeInputs& inputs) {
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

std::string label(const Tensor& t) {
  return t.name().empty() ? std::string() : fmt::format(" '{}'", t.name());
}

/// " (tape index %k 'name')": where a node is in tape().listing().
std::string node_label(const Node& n, const Tensor& output) {
  return fmt::format("'{}' (tape index %{}{})", n.op, tape().index_of(n), label(output));
}

/// Throws the error of a failed check_history (out of line: the check itself runs on every input).
template <class Where>
[[noreturn, gnu::cold, gnu::noinline]] void throw_history_error(const Tensor& t,
                                                                 std::uint64_t tape_owner,
                                                                 Where&& where) {
  auto [place, what] = where();
  if (t.impl()->grad_fn->tape != tape_owner)
    throw AutogradError(fmt::format(
        "{}: {} {} was made by '{}' on another thread's tape; the tape is thread-local, so a "
        "graph must be built and differentiated on one thread (detach() the value, or use it "
        "under NoGradGuard, to pass it between threads)",
        place, what, shape_str(t.shape()), t.op()));
  throw AutogradError(fmt::format(
      "backward through a freed tape: {} {} (in {}) was made by '{}' on a tape that an earlier "
      "backward released; pass retain_graph=true to backward twice, or detach() values you "
      "carry across steps",
      what, shape_str(t.shape()), place, t.op()));
}

/// The one check of a tensor's history before it is differentiated through: made on another
/// thread's tape, or released by an earlier backward. `where()` returns {place, what} for the
/// message, e.g. {"backward", "tensor 'h'"}; it is only called when the check fails.
template <class Where>
inline void check_history(const Tensor& t, std::uint64_t tape_owner, bool released_ok,
                          Where&& where) {
  const Node* n = t.impl()->grad_fn.get();
  if (!n || (n->tape == tape_owner && (released_ok || !n->released))) return;
  throw_history_error(t, tape_owner, std::forward<Where>(where));
}

}  // namespace

// ---- Node: owned by its output tensor; torn down without recursion -----------------------------

void NodeInputs::throw_out_of_range(std::size_t i) const {
  throw std::out_of_range(fmt::format("node input {} of {}", i, size_));
}

void NodeInputs::hold_unread() {
  Tensor* in = begin();
  const std::size_t n = std::min<std::size_t>(size_, 64);
  for (std::size_t i = 0; i < n; ++i) {
    TensorImpl* p = in[i].impl();
    if (p && !p->keep_value) {
      p->unread_holders = p->unread_holders + 1;  // one writer: this thread (not an atomic add)
      unread_mask_ |= std::uint64_t(1) << i;
    }
  }
}

void NodeInputs::clear(bool on_recording_thread) {
  // Each input: first no longer an unread holder, then its handle dropped (which frees the
  // value when only other unread holders are left). On another thread the count is not ours to
  // write: the input keeps its value instead (Tensor::free_value_if_unread reads keep_value
  // again after it has seen this handle go).
  Tensor* in = begin();
  for (std::size_t i = 0; i < size_; ++i) {
    if (i < 64 && (unread_mask_ >> i & 1)) {
      TensorImpl& t = *in[i].impl();
      if (on_recording_thread)
        t.unread_holders = t.unread_holders - 1;
      else
        t.keep_value = true;
    }
    in[i] = Tensor();
  }
  unread_mask_ = 0;
  more_.clear();
  size_ = 0;
}

namespace {
/// Frees t's value, keeping its shape and dtype (data<T>() then throws AutogradError).
void free_value(TensorImpl& t) noexcept {
  std::visit([](auto& a) { a.storage() = typename std::decay_t<decltype(a)>::storage_type(); },
             t.value);
  t.value_freed = true;
}
}  // namespace

void Tensor::free_value_if_unread() noexcept {
  // drop_handle() checked the flags; what is left: do only non-reading nodes and this handle
  // hold the tensor? Then nothing can read the value again. Only its own thread decides: the
  // count is exact there, and a tensor with history handed to another thread is dropped there
  // without freeing anything.
  TensorImpl& t = *impl_;
  if (!t.grad_fn || t.grad_fn->tape != t_tape_id) return;
  if (impl_.use_count() != static_cast<long>(t.unread_holders) + 1) return;
  // A holder that went away on another thread is in the count still, but not in use_count():
  // it set keep_value before its handle went, and the fence makes that store visible here once
  // use_count() has seen the handle gone.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (t.keep_value) return;
  free_value(t);
}

namespace {
/// Drops `inputs`, first moving out every node that would die with them (we hold its output's
/// only handle): dropping a chain of 10⁶ nodes is then a loop instead of 10⁶ nested destructors.
/// Only on the thread whose tape recorded the node: a graph dropped on another thread (a tensor
/// handed to a logger) is destroyed there by nested destructors instead. Its own thread may at
/// that moment hold the input through the tape (Tape::clear, the backward walk), so "only handle"
/// can change under us, and moving its node out would pull it from under that thread.
void drop_inputs(Node& node, std::vector<NodePtr>& orphans) {
  const std::uint64_t here = t_tape_id;
  for (Tensor& t : node.inputs) {
    TensorImpl* p = t.impl();
    if (p && p->grad_fn && p->grad_fn->tape == here && !p->grad_fn->released &&
        t.impl_ptr().use_count() == 1)
      orphans.push_back(std::move(p->grad_fn));
  }
  node.inputs.clear(node.tape == here);
}
}  // namespace

void Node::release() {
  released = true;
  drop_backward();  // first: the VJP may hold a second handle on an input
  std::vector<NodePtr> orphans;
  drop_inputs(*this, orphans);
  while (!orphans.empty()) {
    NodePtr n = std::move(orphans.back());
    orphans.pop_back();
    n->drop_backward();
    drop_inputs(*n, orphans);
  }  // each orphan is destroyed here, with nothing left to destroy recursively
}

/// What a backward pass that keeps no graph holds: the tensors whose own node is still to run,
/// each in the place of its node on the tape (tape.cpp, "release as the pass goes").
struct PassHolds {
  PassHolds(const Tape& tape, std::size_t size) : tape(tape), at(size) {}
  const Tape& tape;
  std::vector<Tensor> at;  // at[k]: the output of the tape's entry k while the pass holds it
  std::size_t here = 0;    // the tape entry whose node has just run, and its number
  std::uint64_t here_seq = 0;
  /// The place of the node numbered seq (recorded before the one that has just run).
  Tensor& place(std::uint64_t seq) {
    // Entries are numbered in order, so with nothing forgotten in between (Tape::compact) the
    // place is exactly so many entries back; otherwise a search finds it.
    const std::uint64_t back = here_seq - seq;
    std::size_t k = back <= here ? here - static_cast<std::size_t>(back) : 0;
    if (tape.entries_[k].seq != seq) k = tape.position(seq);
    return at[k];
  }
};

void Node::release_in_pass(PassHolds& held) {
  released = true;
  drop_backward();  // first: the VJP may hold a second handle on an input
  inputs.release_in_pass(held);
}

void NodeInputs::release_in_pass(PassHolds& held) {
  const std::uint64_t here = t_tape_id;
  Tensor* in = begin();
  for (std::size_t i = 0; i < size_; ++i) {
    TensorImpl* p = in[i].impl();
    if (!p) continue;
    if (i < 64 && (unread_mask_ >> i & 1)) p->unread_holders = p->unread_holders - 1;
    if (!p->grad_fn || p->grad_fn->tape != here || p->grad_fn->released) {
      in[i] = Tensor();  // a leaf, or a node that has run already (or is not ours)
      continue;
    }
    // Its own node is still to run. When only this handle and the pass's hold it, no one can
    // read its value any more (its node does not read its output either): the value goes now.
    Tensor& place = held.place(p->grad_fn->seq);
    const bool held_already = place.impl() == p;
    if (in[i].impl_ptr().use_count() == 1 + long(held_already) && !p->grad_fn->reads_output &&
        !p->value_freed &&
        in[i].numel() * (in[i].dtype() == DType::Float32 ? 4 : 8) >= kMinFreedInPassBytes)
      free_value(*p);
    if (held_already)
      in[i] = Tensor();
    else
      place = std::move(in[i]);
  }
  unread_mask_ = 0;
  more_.clear();
  size_ = 0;
}

void detail::NodeDeleter::operator()(Node* node) const noexcept { node->destroy(); }

// ---- Tape: the live nodes in execution order ------------------------------------------------------

Tape::Tape() : owner_(g_next_tape_owner++) { t_tape_id = owner_; }

// At thread exit: release what is still recorded (this also breaks reference cycles a program
// may have built, e.g. a create_graph gradient stored in .grad of a tensor in its own graph).
Tape::~Tape() { clear(); }

Tape& tape() {
  thread_local Tape t;
  return t;
}

std::vector<Tensor> Tape::outputs() const {
  std::vector<Tensor> live;
  for (const Entry& e : entries_)
    if (Tensor t = e.output.lock(); t.defined()) live.push_back(std::move(t));
  return live;
}

/// A pass inside a pass (`who` called from a gradient hook or a custom op's backward) would run
/// the outer pass's pending nodes as its own and clear the tape under it: refused.
static void refuse_inside_pass(int walking, const char* who) {
  if (walking > 0)
    throw AutogradError(fmt::format(
        "{}: called while a backward pass is running on this thread (from a gradient hook or a "
        "custom op's backward); call it after that backward has returned",
        who));
}

void Tape::clear() {
  refuse_inside_pass(walking_, "Tape::clear");
  // Oldest first: each node's inputs are then released already, so nothing cascades.
  // The handle `t` keeps the node alive while it is released: a node whose VJP holds its own
  // output (a custom op saving its result) would otherwise be destroyed halfway, and so would one
  // whose output another thread drops meanwhile.
  for (const Entry& e : entries_)
    if (Tensor t = e.output.lock(); t.defined()) t.impl()->grad_fn->release();
  entries_.clear();  // keeps its capacity for the next step
  compact_at_ = 64;
}

std::size_t Tape::index_of(const Node& node) const {
  std::size_t k = 0;
  for (const Entry& e : entries_) k += e.seq < node.seq && !e.output.expired();
  return k;
}

void Tape::compact() {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [](const Entry& e) { return e.output.expired(); }),
                 entries_.end());
  compact_at_ = std::max<std::size_t>(64, 2 * entries_.size());
}

std::size_t Tape::position(std::uint64_t seq) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), seq,
                             [](const Entry& e, std::uint64_t s) { return e.seq < s; });
  return static_cast<std::size_t>(it - entries_.begin());
}

// ---- modes ----------------------------------------------------------------------------------------

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }
GradModeGuard::GradModeGuard(bool enabled) : previous_(t_grad_enabled) { t_grad_enabled = enabled; }
GradModeGuard::~GradModeGuard() { t_grad_enabled = previous_; }

AnomalyGuard::AnomalyGuard(bool enabled) : previous_(t_anomaly) { t_anomaly = enabled; }
AnomalyGuard::~AnomalyGuard() { t_anomaly = previous_; }

// ---- recording ----------------------------------------------------------------------------------

void detail::check_forward(const char* op, const Tensor& out, const NodeInputs& inputs) {
  if (all_finite(out)) return;
  if (t_backward_node)
    throw AnomalyError(fmt::format(
        "anomaly: backward of {} produced NaN or Inf (in its '{}' step); inputs of '{}': ({})",
        node_label(*t_backward_node, *t_backward_output), op, t_backward_node->op,
        input_shapes(t_backward_node->inputs)));
  throw AnomalyError(fmt::format(
      "anomaly: forward of '{}' (would be tape index %{}) produced NaN or Inf; output {}, "
      "inputs ({})",
      op, tape().size(), shape_str(out.shape()), input_shapes(inputs)));
}

detail::KeepAllValuesGuard::KeepAllValuesGuard() : previous_(t_keep_all_values) {
  t_keep_all_values = true;
}
detail::KeepAllValuesGuard::~KeepAllValuesGuard() { t_keep_all_values = previous_; }

detail::SerialWeightGradientsGuard::SerialWeightGradientsGuard() : previous_(t_weight_grads_apart) {
  t_weight_grads_apart = false;
}
detail::SerialWeightGradientsGuard::~SerialWeightGradientsGuard() { t_weight_grads_apart = previous_; }

void push_node(NodePtr node, const Tensor& output, Reads reads) {
  Tape& t = tape();
  if (t_keep_all_values) reads = Reads::All;
  for (std::size_t i = 0; i < node->inputs.size(); ++i) {
    const Tensor& input = node->inputs[i];
    if (input.defined() && input.impl()->requires_grad)
      check_history(input, t.owner_, true, [&] {
        return std::pair(std::string(node->op), fmt::format("input {}", i));
      });
  }
  // Value lifetime (TensorImpl), once the inputs are known to be this thread's: a VJP that
  // reads its inputs keeps their values; one that does not counts as their unread holder; an
  // output its VJP does not read may be freed.
  if (static_cast<unsigned>(reads) & static_cast<unsigned>(Reads::Inputs)) {
    for (const Tensor& input : node->inputs)
      if (TensorImpl* p = input.impl(); p && !p->keep_value) p->keep_value = true;
  } else {
    node->inputs.hold_unread();
  }
  // Only values of 4 KiB and more: a smaller one costs the cache little, and freeing it early
  // made bench_ops BM_TapeAdd64's 64-element adds slower (docs/performance.md, session 10).
  if (!(static_cast<unsigned>(reads) & static_cast<unsigned>(Reads::Output)) &&
      output.numel() * (output.dtype() == DType::Float32 ? 4 : 8) >= kMinFreedValueBytes)
    output.impl()->keep_value = false;
  node->reads_output = static_cast<unsigned>(reads) & static_cast<unsigned>(Reads::Output);
  node->seq = t.next_seq_++;
  node->tape = t.owner_;
  TensorImpl& out = *output.impl();
  out.requires_grad = true;
  out.grad_fn = std::move(node);
  if (t.entries_.size() >= t.compact_at_ && t.walking_ == 0) t.compact();
  t.entries_.push_back({WeakTensor(output), out.grad_fn->seq});
}

const char* intern_op_name(const std::string& name) {
  static std::mutex mu;
  static std::set<std::string> names;
  std::lock_guard<std::mutex> lock(mu);
  return names.insert(name).first->c_str();
}

// ---- the one accumulation function ---------------------------------------------------------------

/// The slice [start, start + g.size(axis)) along `axis` of a tensor of shape `full`.
struct Slice {
  std::size_t axis, start;
  const Shape& full;
  bool squeezed;  // g has no `axis` (select's gradient): a slice of length 1
};

namespace {

// -- optimisations, set apart: copy-on-write, adding a slice in place, a plain loop for sum += g --


/// Makes `sum` safe to add into in place (copy-on-write): the first gradient a tensor receives
/// is shared with whoever made it, and copied only if a second one arrives while someone else
/// still holds it (a VJP's fresh result, now held by `sum` alone, is simply taken over). A slice
/// target starts as zeros of the full shape, unless add_slice_without_zeros made it (fill_pending
/// then wrote zeros only where no slice had been written).
void make_private(Tensor& sum, bool& owned, const Shape& shape, DType dtype) {
  if (!sum.defined()) {
    sum = detail::zeros_for("backward", shape, dtype);
  } else if (!owned && !detail::values_takeable(sum)) {  // someone else could see a change
    sum = detail::dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      return detail::guard_alloc<T>("backward", shape, [&] { return Tensor(sum.data<T>()); });
    });
  }
  owned = true;
}

/// op(d, from, run) for each of the `outer` contiguous runs of `slice` of sum (d) and of g (from).
template <class Op>
void over_slice_runs(Tensor& sum, const Tensor& g, const Slice& s, Op op) {
  std::size_t outer = detail::prod(s.full, 0, s.axis);
  std::size_t inner = detail::prod(s.full, s.axis + 1, s.full.size());
  std::size_t run = (s.squeezed ? 1 : g.shape()[s.axis]) * inner;
  if (run == 0 || outer == 0) return;  // nothing to add (and an empty array's data may be null)
  detail::dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = sum.data<T>().data();
    const T* src = g.data<T>().data();
    for (std::size_t o = 0; o < outer; ++o)
      op(dst + (o * s.full[s.axis] + s.start) * inner, src + o * run, run);
  });
}

/// sum[slice] += g in place: no full-size temporary per slice (a GRU's T steps each narrow their
/// rows out of one projection).
void add_into_slice(Tensor& sum, const Tensor& g, const Slice& s) {
  over_slice_runs(sum, g, s, [](auto* d, const auto* from, std::size_t run) {
    for (std::size_t k = 0; k < run; ++k) d[k] += from[k];
  });
}

/// sum[slice] = 0 + g: what add_into_slice does to zeros (0 + (−0) is +0), without reading them.
void copy_into_slice(Tensor& sum, const Tensor& g, const Slice& s) {
  over_slice_runs(sum, g, s, [](auto* d, const auto* from, std::size_t run) {
    using T = std::remove_pointer_t<decltype(d)>;
    for (std::size_t k = 0; k < run; ++k) d[k] = T(0) + from[k];
  });
}

/// Writes zeros where a slice-built pending gradient has no slice yet: it is then whole.
void fill_pending(TensorImpl& t) {
  if (!t.pending_partial) return;
  t.pending_partial = false;
  const Shape& full = t.pending.shape();
  const std::size_t axis = t.pending_axis, len = full[axis];
  const std::size_t outer = detail::prod(full, 0, axis);
  const std::size_t inner = detail::prod(full, axis + 1, full.size());
  detail::dispatch(t.pending.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = t.pending.data<T>().data();
    for (std::size_t o = 0; o < outer; ++o) {
      T* row = dst + o * len * inner;
      std::fill(row, row + t.pending_lo * inner, T(0));
      std::fill(row + t.pending_hi * inner, row + len * inner, T(0));
    }
  });
}

/// A slice's gradient added to a pending gradient without zero-filling it first: the first slice
/// goes into a new uninitialised array, and a slice next to the ones already there is copied in
/// (select's T steps, chunk's pieces, each arriving in reverse order, cover their input so). A
/// slice inside them is added. False (nothing done) for anything else: the caller fills and adds.
bool add_slice_without_zeros(TensorImpl& t, const Tensor& g, const Slice& s) {
  const std::size_t lo = s.start, hi = s.start + (s.squeezed ? 1 : g.shape()[s.axis]);
  if (lo == hi || detail::prod(s.full, 0, s.full.size()) == 0) return false;
  if (!t.pending.defined()) {
    t.pending = detail::empty_for("backward", s.full, g.dtype());
    t.pending_owned = true;
    t.pending_partial = true;
    t.pending_axis = s.axis, t.pending_lo = lo, t.pending_hi = hi;
    copy_into_slice(t.pending, g, s);
  } else if (!t.pending_partial || t.pending_axis != s.axis) {
    return false;
  } else if (hi == t.pending_lo || lo == t.pending_hi) {
    copy_into_slice(t.pending, g, s);
    t.pending_lo = std::min(lo, t.pending_lo), t.pending_hi = std::max(hi, t.pending_hi);
  } else if (lo >= t.pending_lo && hi <= t.pending_hi) {
    add_into_slice(t.pending, g, s);
  } else {
    return false;
  }
  if (t.pending_lo == 0 && t.pending_hi == s.full[s.axis]) t.pending_partial = false;  // covered
  return true;
}

/// Drops a pending gradient (a pass that failed).
void drop_pending(TensorImpl& t) {
  t.pending = Tensor();
  t.pending_partial = false;
}

/// sum += g, element by element over the contiguous arrays (same shape): the same additions as
/// xtensor's `sum += g`, without its per-call broadcasting and stepping set-up.
void add_into(Tensor& sum, const Tensor& g) {
  detail::dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = sum.data<T>().data();
    const T* src = g.data<T>().data();
    const std::size_t n = g.numel();
    for (std::size_t k = 0; k < n; ++k) dst[k] += src[k];
  });
}

}  // namespace

void accumulate_more(Tensor& sum, bool& owned, const Tensor& g, bool create_graph,
                     const Slice* slice);

/// sum += g (into `slice` of sum when given). Every gradient the engine adds up goes through
/// here: the pending gradients of a pass, .grad, and the results of grad(). `owned` says whether
/// sum's storage is private (see make_private). With create_graph the sum is a recorded add, so
/// it can be differentiated again. (G is Tensor or const Tensor&: a VJP's fresh gradient moves
/// in, and a gradient passed by reference is copied only when the sum keeps it.)
/// Inline for its usual case, a first gradient: taken over as it is.
template <class G>
inline void accumulate(Tensor& sum, bool& owned, G&& g, bool create_graph,
                       const Slice* slice = nullptr) {
  if (!create_graph && !slice && !sum.defined()) {
    sum = std::forward<G>(g);
    owned = false;
    return;
  }
  accumulate_more(sum, owned, g, create_graph, slice);
}

/// accumulate() past its first case.
void accumulate_more(Tensor& sum, bool& owned, const Tensor& g, bool create_graph,
                     const Slice* slice) {
  if (create_graph) {
    const auto axis = slice ? static_cast<std::ptrdiff_t>(slice->axis) : 0;
    Tensor d = slice ? pad_narrow(slice->squeezed ? unsqueeze(g, axis) : g, axis, slice->start,
                                  slice->full[slice->axis])
                     : g;
    sum = sum.defined() ? add(sum, d) : d;
    return;
  }
  make_private(sum, owned, slice ? slice->full : g.shape(), g.dtype());
  if (slice) return add_into_slice(sum, g, *slice);
  add_into(sum, g);
}

// ---- a weight's gradient on the helper while the backward goes on --------------------------------
//
// In a recurrence's backward, each step's matmul has two gradients: dx = g W, which the next VJP
// (the step before) needs at once, and dW = gᵀ x, which nothing reads until the pass ends. The
// second is a weight's (a leaf's) gradient, added in place into the pass's own buffer. So it is
// handed to the engine's helper thread (parallel.hpp, start_on_helper) and this thread goes on with
// dx and the step's elementwise VJPs meanwhile, instead of both threads meeting after each pair.
// Only a product that runs on the engine's own kernel in one piece is handed over
// (blas.hpp, gemm_runs_apart): it then gives the same bits on either thread, so every gradient is
// bit-identical to the serial order (tests/test_weight_grads_apart.cpp). One product is in
// flight at a time, per thread; it is settled (waited for) before anything else touches its
// target's pending gradient, before the leaves' gradients are delivered, and when a pass fails.

namespace {

/// The product in flight: C (the target's pending gradient) += op(a) · op(b), with the operands
/// and the target held until it is settled.
struct Apart {
  TensorImpl* target = nullptr;  // null: nothing in flight
  Tensor a, b, hold;
  bool is_double = false;
  detail::GemmArgs<float> f{};
  detail::GemmArgs<double> d{};
  void operator()(int) const { is_double ? detail::gemm(d) : detail::gemm(f); }
};
thread_local Apart t_apart;
thread_local const detail::HalfFn t_apart_fn(t_apart);
thread_local std::size_t t_apart_started = 0;  // detail::weight_gradients_started_apart

/// Waits for the product in flight, if any, and lets go of its operands. (The engine's GEMM does
/// not throw; were it to, the error is rethrown here, after the operands are let go.)
void settle_apart() {
  if (t_apart.target == nullptr) return;
  t_apart.target = nullptr;
  std::exception_ptr error;
  try {
    detail::finish_on_helper();
  } catch (...) {
    error = std::current_exception();
  }
  t_apart.a = Tensor(), t_apart.b = Tensor(), t_apart.hold = Tensor();
  if (error) std::rethrow_exception(error);
}

/// settle_apart() when the product in flight adds into `input`'s pending gradient.
void settle_apart_for(const Tensor& input) {
  if (t_apart.target != nullptr && t_apart.target == input.impl()) settle_apart();
}

/// Whether `args`, a product into the pending gradient of `input`, may run on the helper: a
/// leaf's (a weight's), on the engine's own kernel in one piece.
template <class T>
bool may_run_apart(const detail::GemmArgs<T>& args, const Tensor& input) {
  return t_weight_grads_apart && !input.impl()->grad_fn && detail::gemm_runs_apart(args);
}

/// Starts `args` (may_run_apart; operands a and b) on the helper; false, with nothing started,
/// when it must run here (the helper is taken by another thread).
template <class T>
bool start_apart(const detail::GemmArgs<T>& args, const Tensor& input, const Tensor& a,
                 const Tensor& b) {
  settle_apart();  // the helper does one at a time
  if constexpr (std::is_same_v<T, double>)
    t_apart.d = args, t_apart.is_double = true;
  else
    t_apart.f = args, t_apart.is_double = false;
  if (!detail::start_on_helper(t_apart_fn)) return false;
  ++t_apart_started;
  t_apart.target = input.impl();
  t_apart.a = a, t_apart.b = b, t_apart.hold = input;
  return true;
}

}  // namespace

std::size_t detail::weight_gradients_started_apart() { return t_apart_started; }

// ---- GradSink: what a VJP sees ------------------------------------------------------------------

template <class G>
void GradSink::add_checked(std::size_t i, G&& g) {
  const Tensor& input = node_->inputs.at(i);
  if (!input.impl()->requires_grad) return;
  if (!g.defined() || g.dtype() != input.dtype() || !detail::same_shape(g.shape(), input.shape()))
    throw AutogradError(fmt::format(
        "backward of {}: gradient for input {} is {} {}, but the input is {} {}",
        node_label(*node_, *output_), i, g.defined() ? dtype_name(g.dtype()) : "undefined",
        g.defined() ? shape_str(g.shape()) : "", dtype_name(input.dtype()),
        shape_str(input.shape())));
  add_to(i, std::forward<G>(g), nullptr);
}
template void GradSink::add_checked(std::size_t, Tensor&&);
template void GradSink::add_checked(std::size_t, const Tensor&);

void GradSink::add_sum_to(std::size_t i, const Tensor& g) {
  const Tensor& input = node_->inputs.at(i);
  if (!input.impl()->requires_grad) return;
  if (!g.defined() || g.dtype() != input.dtype()) return add(i, g);  // add's error
  if (!detail::same_shape(g.shape(), input.shape())) return add(i, sum_to(g, input.shape()));
  add_to(i, g, nullptr);  // (what add() checks is checked)
}

GradSink::ProductPlan GradSink::plan(const Product& p) const {
  const Tensor& input = node_->inputs.at(p.input);
  const Tensor &a = p.a, &b = p.b;
  ProductPlan r;
  if (create_graph_ || anomaly_enabled() || a.dim() != 2 || b.dim() != 2 ||
      a.dtype() != input.dtype() || b.dtype() != input.dtype() ||
      a.size(p.ta ? 0 : 1) != b.size(p.tb ? 1 : 0))
    return r;
  r.m = a.size(p.ta ? 1 : 0), r.k = a.size(p.ta ? 0 : 1), r.n = b.size(p.tb ? 0 : 1);
  r.plain = input.shape() == Shape{r.m, r.n};
  const TensorImpl& target = *input.impl();
  r.in_place = r.plain && target.pending.defined() && target.pending_owned &&
               !target.pending_partial;  // a partial one is filled first, by add_to
  return r;
}

void GradSink::check_input(std::size_t i) const {
  check_history(node_->inputs[i], tape_, false, [&] {
    return std::pair(fmt::format("backward of {}", node_label(*node_, *output_)),
                     fmt::format("input {}", i));
  });
}

void GradSink::add_matmul(std::size_t i, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const Tensor& input = node_->inputs.at(i);
  TensorImpl& target = *input.impl();
  if (!target.requires_grad) return;
  settle_apart_for(input);
  const ProductPlan plan = this->plan({i, a, ta, b, tb});
  if (!plan.in_place) {
    Tensor product = matmul(a, b, ta, tb);
    const bool fresh = !target.pending.defined() && !create_graph_;
    add(i, product);
    // The pass's own new buffer: the next product can be added into it in place.
    if (fresh && target.pending.is_same(product)) target.pending_owned = true;
    return;
  }
  check_input(i);
  detail::dispatch(input.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const detail::GemmArgs<T> args{ta, tb, plan.m, plan.n, plan.k, a.data<T>().data(), a.size(1),
                                   b.data<T>().data(), b.size(1), T(1),
                                   target.pending.data<T>().data(), plan.n};
    if (!may_run_apart(args, input) || !start_apart(args, input, a, b))
      detail::gemm(args);
  });
}

void GradSink::add_matmuls(const Product& p, const Product& q) {
  const Tensor &ip = node_->inputs.at(p.input), &iq = node_->inputs.at(q.input);
  const Product* products[2] = {&p, &q};
  // (plan() reads only what the helper never writes: whether a pending gradient exists and
  // whose it is. So the product in flight is settled below, only where one is written.)
  const ProductPlan plans[2] = {plan(p), plan(q)};
  if (!plans[0].plain || !plans[1].plain || !ip.impl()->requires_grad ||
      !iq.impl()->requires_grad || ip.is_same(iq)) {
    add_matmul(p.input, p.a, p.ta, p.b, p.tb);
    add_matmul(q.input, q.a, q.ta, q.b, q.tb);
    return;
  }
  // Each product goes into its input's pending gradient when that is the pass's own buffer (as
  // in add_matmul), else into a new array that is added after, on this thread.
  for (int j = 0; j < 2; ++j)
    if (plans[j].in_place) check_input(products[j]->input);
  Tensor fresh[2];
  detail::dispatch(ip.dtype(), [&](auto tag) {
    using T = decltype(tag);
    detail::GemmArgs<T> args[2];
    for (int j = 0; j < 2; ++j) {
      const Product& g = *products[j];
      const ProductPlan& pl = plans[j];
      if (!pl.in_place) fresh[j] = detail::empty_for<T>("matmul", Shape{pl.m, pl.n});
      Tensor& c = pl.in_place ? node_->inputs[g.input].impl()->pending : fresh[j];
      args[j] = {g.ta, g.tb, pl.m, pl.n, pl.k, g.a.template data<T>().data(), g.a.size(1),
                 g.b.template data<T>().data(), g.b.size(1), T(pl.in_place ? 1 : 0),
                 c.template data<T>().data(), pl.n};
    }
    // A leaf's product added in place (a weight's gradient) runs on the helper while this
    // thread goes on; the other one (dx, needed next) first, on both threads when the helper is
    // done with the last step's (start_apart then settles that one, in order, before this one).
    for (int j : {1, 0}) {
      const Tensor& input = node_->inputs[products[j]->input];
      if (!plans[j].in_place || !may_run_apart(args[j], input)) continue;
      const detail::GemmArgs<T>& o = args[1 - j];
      settle_apart_for(node_->inputs[products[1 - j]->input]);
      if (t_apart.target == nullptr || detail::finished_on_helper()) {
        settle_apart();  // the helper is free for the two halves of dx
        detail::gemm_split(o);
      } else {  // the helper still works on the last one: dx here, whole, rather than wait
        detail::gemm(o);
      }
      if (!start_apart(args[j], input, products[j]->a, products[j]->b)) detail::gemm(args[j]);
      return;
    }
    settle_apart_for(ip);
    settle_apart_for(iq);
    detail::gemm_pair(args[0], args[1]);
  });
  for (int j = 0; j < 2; ++j) {
    if (!fresh[j].defined()) continue;
    TensorImpl& target = *node_->inputs[products[j]->input].impl();
    const bool first = !target.pending.defined();
    add(products[j]->input, fresh[j]);
    if (first && target.pending.is_same(fresh[j])) target.pending_owned = true;
  }
}

void GradSink::add_narrow(std::size_t i, std::size_t axis, std::size_t start, const Tensor& g) {
  const Tensor& input = node_->inputs.at(i);
  if (!input.impl()->requires_grad) return;
  const Shape& full = input.shape();
  const bool squeezed = g.dim() + 1 == full.size();
  bool fits = g.dtype() == input.dtype() && axis < full.size() &&
              (squeezed ? start < full[axis] : g.dim() == full.size());
  for (std::size_t d = 0, e = 0; fits && d < full.size(); ++d) {
    if (d == axis && squeezed) continue;
    const std::size_t len = g.shape()[e++];
    fits = d == axis ? start <= full[d] && len <= full[d] - start : len == full[d];
  }
  if (!fits)
    throw AutogradError(fmt::format(
        "backward of {}: gradient {} {} does not fit slice {} of axis {} of input {} ({} {})",
        node_label(*node_, *output_), dtype_name(g.dtype()), shape_str(g.shape()), start, axis, i,
        dtype_name(input.dtype()), shape_str(full)));
  Slice slice{axis, start, full, squeezed};
  add_to(i, g, &slice);
}

template <class G>
void GradSink::add_to(std::size_t i, G&& g, const Slice* slice) {
  const Tensor& input = node_->inputs[i];
  TensorImpl& target = *input.impl();
  check_input(i);
  settle_apart_for(input);
  if (anomaly_enabled() && !all_finite(g))
    throw AnomalyError(fmt::format(
        "anomaly: backward of {} produced NaN or Inf in the gradient of input {}; inputs ({})",
        node_label(*node_, *output_), i, input_shapes(node_->inputs)));
  if (!target.pending.defined() && !target.grad_fn) leaves_.push_back(input);
  if (slice && !create_graph_ && add_slice_without_zeros(target, g, *slice)) return;
  fill_pending(target);
  accumulate(target.pending, target.pending_owned, std::forward<G>(g), create_graph_, slice);
}

void GradSink::run(const Tensor& output, const Tensor& grad_output) {
  Node& node = *output.impl()->grad_fn;
  node_ = &node;
  output_ = &output;
  t_backward_node = node_;
  t_backward_output = output_;
  node.backward(grad_output, *this);
  t_backward_node = nullptr;
}

// ---- backward -----------------------------------------------------------------------------------

namespace {

/// dL/d(root) after checking the root: the seed, or 1 for a one-element root.
Tensor checked_seed(const Tensor& root, const Tensor& seed, std::uint64_t tape_owner) {
  if (!root.defined()) throw AutogradError("backward: called on an undefined Tensor");
  if (!root.requires_grad())
    throw AutogradError(fmt::format(
        "backward: tensor{} {} does not require grad (no input had requires_grad, or it was "
        "computed under no_grad)",
        label(root), shape_str(root.shape())));
  check_history(root, tape_owner, false,
                [&] { return std::pair(std::string("backward"), "tensor" + label(root)); });
  if (!seed.defined() && root.numel() != 1)
    throw AutogradError(fmt::format(
        "backward: root{} has shape {}; a non-scalar root needs an explicit seed gradient of "
        "that shape",
        label(root), shape_str(root.shape())));
  if (!seed.defined()) return ones_like(root);
  if (seed.shape() != root.shape() || seed.dtype() != root.dtype())
    throw ShapeError(fmt::format("backward: seed is {} {} but the root is {} {}",
                                 dtype_name(seed.dtype()), shape_str(seed.shape()),
                                 dtype_name(root.dtype()), shape_str(root.shape())));
  return seed;
}

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

/// Where finished gradients go: .grad (leaves and retain_grad), or the capture list of grad().
struct Delivery {
  const std::vector<Tensor>* capture;
  bool create_graph;
  std::vector<Tensor> captured;

  /// Takes the complete gradient of `impl` out of the pass, runs its hooks and delivers it.
  Tensor finish(TensorImpl& impl, bool is_leaf) {
    fill_pending(impl);
    bool owned = impl.pending_owned;
    Tensor g = std::move(impl.pending);
    impl.pending = Tensor();
    if (!impl.hooks.empty()) g = run_hooks(impl, g);
    if (capture) {
      for (std::size_t k = 0; k < capture->size(); ++k)
        if ((*capture)[k].impl() == &impl) {
          bool shared = false;
          accumulate(captured[k], shared, g, create_graph);
        }
    } else if (is_leaf || impl.retains_grad) {
      // .grad always owns its storage (optimisers update it in place).
      if (!impl.grad.defined() && !create_graph) make_private(g, owned, g.shape(), g.dtype());
      bool grad_owned = true;
      accumulate(impl.grad, grad_owned, g, create_graph);
    }
    return g;
  }
};

}  // namespace

// ---- release as the pass goes -------------------------------------------------------------------
//
// In a backward that keeps no graph (no retain_graph), each node is released as soon as its VJP
// has run, as PyTorch frees a node's saved tensors: its VJP and what it saved go, and so do its
// handles on its inputs. The memory returns to the pool while it is still in cache, and the next
// VJP's gradients reuse it (the AD suite's product_chain: gradient 25.8–26.1 -> 19.9–20.2 µs,
// docs/performance.md, session 26); Tape::clear() at the end finds little left to do.
// An input whose own node is still to run must live until that node has run: its pending
// gradient and its node are in it. The pass holds each such input once, in the place of its node
// on the tape (PassHolds), takes it from there when the sweep reaches that node (so the sweep
// needs no atomic lock of the tape's weak handle for it), and lets it go right after its node has
// run. (Another holder cannot be relied on: it may be a handle on another thread, or the helper's
// operands, dropped any moment.) And when the node's handle was the only one left and the input's
// own node does not read its output, nothing can read that value any more: it is freed at once.

/// The backward pass from n roots (seeds[k] for roots[k]; an undefined seed means 1 for a
/// one-element root). With `capture` (torch.autograd.grad), the gradients reaching the captured
/// tensors are returned instead of accumulated into any .grad.
struct BackwardPass {
  static std::vector<Tensor> run(const Tensor* roots, const Tensor* seeds, std::size_t n,
                                 bool retain_graph, bool create_graph,
                                 const std::vector<Tensor>* capture);
};

void backward(const Tensor& root, const Tensor& seed, bool retain_graph, bool create_graph) {
  BackwardPass::run(&root, &seed, 1, retain_graph, create_graph, nullptr);
}

namespace {
/// The seeds of several roots, checked against them: one per root, or none (all undefined).
std::vector<Tensor> seeds_for(const char* who, const std::vector<Tensor>& roots,
                              const std::vector<Tensor>& seeds) {
  if (roots.empty()) throw AutogradError(fmt::format("{}: no tensors given", who));
  if (!seeds.empty() && seeds.size() != roots.size())
    throw AutogradError(fmt::format("{}: {} tensors but {} seed gradients (give one per tensor, "
                                    "or none)",
                                    who, roots.size(), seeds.size()));
  return seeds.empty() ? std::vector<Tensor>(roots.size()) : seeds;
}

void check_grad_inputs(const std::vector<Tensor>& inputs) {
  for (const Tensor& in : inputs)
    if (!in.defined() || !in.requires_grad())
      throw AutogradError("grad: every input must be a defined tensor that requires grad");
}
}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds,
              bool retain_graph, bool create_graph) {
  const std::vector<Tensor> s = seeds_for("backward", roots, seeds);
  BackwardPass::run(roots.data(), s.data(), roots.size(), retain_graph, create_graph, nullptr);
}

std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs, const Tensor& seed,
                         bool retain_graph, bool create_graph) {
  check_grad_inputs(inputs);
  return BackwardPass::run(&output, &seed, 1, retain_graph, create_graph, &inputs);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds, bool retain_graph, bool create_graph) {
  const std::vector<Tensor> s = seeds_for("grad", outputs, seeds);
  check_grad_inputs(inputs);
  return BackwardPass::run(outputs.data(), s.data(), outputs.size(), retain_graph, create_graph,
                           &inputs);
}

std::vector<Tensor> BackwardPass::run(const Tensor* roots, const Tensor* seeds, std::size_t n,
                                      bool retain_graph, bool create_graph,
                                      const std::vector<Tensor>* capture) {
  Tape& tp = tape();
  refuse_inside_pass(tp.walking_, capture ? "grad" : "backward");
  // Every root is checked before any gradient is set: a refused call leaves nothing behind.
  std::vector<Tensor> checked;
  checked.reserve(n);
  for (std::size_t k = 0; k < n; ++k) checked.push_back(checked_seed(roots[k], seeds[k], tp.owner_));
  Delivery deliver{capture, create_graph, std::vector<Tensor>(capture ? capture->size() : 0)};
  GradSink sink(create_graph, retain_graph || create_graph);
  sink.tape_ = tp.owner_;
  // The seeds become the roots' pending gradients (summed where a root is given twice); a root
  // that is a leaf is finished with the other leaves, after the sweep. The sweep covers the tape
  // up to the latest root (nothing when every root is a leaf).
  std::size_t end = 0;  // entries [0, end) are swept
  for (std::size_t k = 0; k < n; ++k) {
    TensorImpl& r = *roots[k].impl();
    if (r.pending.defined()) {
      accumulate(r.pending, r.pending_owned, checked[k], create_graph);
      continue;
    }
    r.pending = std::move(checked[k]);
    r.pending_owned = false;
    if (!r.grad_fn)
      sink.leaves_.push_back(roots[k]);
    else
      end = std::max(end, tp.position(r.grad_fn->seq) + 1);
  }
  GradModeGuard mode(create_graph);
  ++tp.walking_;  // entries_ keeps its order while we walk it (create_graph appends)
  // Release as the pass goes (above): the tensors whose node is still to run.
  PassHolds held(tp, sink.retain_graph() ? 0 : end);
  try {
    // The tape is in execution order, i.e. topologically sorted: one reverse sweep suffices.
    // Each output is held while its gradient is finished and its VJP runs: a hook, a custom op's
    // backward or another thread may drop the program's last handle on it meanwhile. (Reading
    // the tape's entries without a handle saved two atomic operations per node, but a tensor
    // handed to another thread and dropped there mid-pass would then be read after its death:
    // docs/performance.md, session 14.) An output the pass holds already is taken from there,
    // with no count changed; any other (the root, or with retain_graph) is locked.
    for (std::size_t i = end; i-- > 0;) {
      Tensor out = held.at.empty() ? Tensor() : std::move(held.at[i]);
      if (!out.defined()) out = tp.entries_[i].output.lock();
      if (!out.defined() || !out.impl()->pending.defined()) continue;  // gone, or off the path
      sink.run(out, deliver.finish(*out.impl(), false));
      if (!sink.retain_graph()) {
        held.here = i;
        held.here_seq = tp.entries_[i].seq;
        out.impl()->grad_fn->release_in_pass(held);
        tp.entries_[i].output.reset();  // the tape forgets it (compacted away at the end)
      }
    }
    settle_apart();
    held.at.clear();  // what is left: inputs whose node received no gradient
    for (Tensor& leaf : sink.leaves_) deliver.finish(*leaf.impl(), true);
  } catch (...) {  // leave no half-finished pass behind: drop every pending gradient
    t_backward_node = nullptr;
    try {
      settle_apart();  // the pass's own error is the one to report
    } catch (...) {
    }
    for (std::size_t i = 0; i < end; ++i)
      if (Tensor out = tp.entries_[i].output.lock(); out.defined()) drop_pending(*out.impl());
    for (Tensor& leaf : sink.leaves_) drop_pending(*leaf.impl());
    held.at.clear();
    --tp.walking_;
    throw;
  }
  --tp.walking_;
  // Only the nodes this pass ran are released (and forgotten); a graph it did not reach (one
  // recorded before, still to be differentiated) stays on the tape, as in PyTorch.
  if (!sink.retain_graph()) tp.compact();
  return std::move(deliver.captured);
}

}  // namespace tapegrad
