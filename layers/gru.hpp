// tapegrad — the GRU: GRUCell (one step) and GRU (a batch-first sequence, num_layers deep),
// composed of framework ops only: no hand-written backward. See docs/gru.md.
//
// PyTorch's conventions exactly (gate rows r, z, n in every weight and bias):
//   r  = σ(W_ir x + b_ir + W_hr h + b_hr)
//   z  = σ(W_iz x + b_iz + W_hz h + b_hz)
//   n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      reset_after = true  (PyTorch, default)
//   n  = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      reset_after = false (Cho, the course)
//   h' = (1 − z) ⊙ n + z ⊙ h                             (z = 1 keeps the old state)
//
//   GRU gru(GRUOptions(27, 64).num_layers(2));
//   auto out = gru.forward(x, h0);        // x (B, T, 27), h0 (2, B, 64) or undefined
//   out.output;                           // (B, T, 64): the last layer's h_1..h_T
//   out.h_n;                              // (2, B, 64): every layer's h_T
//   out.steps[1][t].register_hook(...);   // h_{t+1} of layer 1, a tape tensor (composed path:
//                                         // gru.set_path(GRU::Path::Composed) before forward)
//
// Fast by default: forward runs the fused kernel (layers/fast/gru_fused.hpp) unless something
// needs the per-step graph; set_path forces either implementation (see GRU::Path). A double
// (create_graph) backward through the fused kernel recomputes the layer with framework ops, so
// gradgradcheck and Hessian-vector products work on either path.
//
// bidirectional(true) adds a reverse direction to every layer: the same recurrence, with its own
// parameters (PyTorch's names with the suffix _reverse: weight_ih_l0_reverse, ...), run over the
// reversed sequence. Layer k > 0 then reads both directions' states (2H features); output is
// (B, T, 2H) with the forward state after x_1..x_t followed by the reverse state after x_T..x_t;
// h_n is (2 · num_layers, B, H) ordered layer-major, direction-minor (2k forward, 2k + 1 reverse).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

// ---- GRUCell ------------------------------------------------------------------------------------

struct GRUCellOptions {
  GRUCellOptions(std::size_t input_size, std::size_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  TAPEGRAD_ARG(std::size_t, input_size);
  TAPEGRAD_ARG(std::size_t, hidden_size);
  /// true: r ⊙ (W_hn h + b_hn) (PyTorch, Keras reset_after=True); false: W_hn (r ⊙ h) + b_hn.
  TAPEGRAD_ARG(bool, reset_after) = true;
};

class GRUCell : public Module {
 public:
  /// One step's gates and result; all tape tensors (retain_grad / register_hook work on them).
  struct Step {
    Tensor r;      // (B, H) reset gate
    Tensor z;      // (B, H) update gate
    Tensor n;      // (B, H) candidate state
    Tensor h_new;  // (B, H)
  };

  /// Every parameter ~ U(±1/√H) (PyTorch's default), drawn from `gen`.
  explicit GRUCell(const GRUCellOptions& options, Generator& gen = default_generator());

  /// x (B, in), h (B, H) (undefined = zeros) → h' (B, H).
  Tensor forward(const Tensor& x, const Tensor& h = Tensor()) const;
  Tensor operator()(const Tensor& x, const Tensor& h = Tensor()) const { return forward(x, h); }
  /// The same step, returning the gates too.
  Step forward_with_gates(const Tensor& x, const Tensor& h = Tensor()) const;

  GRUCellOptions options;
  Tensor weight_ih;  // (3H, in), rows r|z|n
  Tensor weight_hh;  // (3H, H),  rows r|z|n
  Tensor bias_ih;    // (3H)      b_ir|b_iz|b_in
  Tensor bias_hh;    // (3H)      b_hr|b_hz|b_hn
};

// ---- GRU over a sequence ------------------------------------------------------------------------

struct GRUOptions {
  GRUOptions(std::size_t input_size, std::size_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  TAPEGRAD_ARG(std::size_t, input_size);
  TAPEGRAD_ARG(std::size_t, hidden_size);
  TAPEGRAD_ARG(std::size_t, num_layers) = 1;
  TAPEGRAD_ARG(bool, reset_after) = true;
  TAPEGRAD_ARG(bool, bidirectional) = false;
};

class GRU : public Module {
 public:
  /// Which implementation forward runs. Both compute the same function with the same gradients
  /// (tests/test_gru_fused.cpp proves it, float64 to ~1e-12).
  enum class Path {
    /// The default: the fused kernel (layers/fast/gru_fused.hpp, one tape node per layer, 3–6×
    /// faster in training) whenever nothing needs the per-step graph, i.e. gate recording is off and
    /// reset_after is true; the composed path otherwise.
    Auto,
    /// Every step built from sigmoid, tanh, linear, mul and add on the tape: Output::steps holds
    /// each h_t as a tape tensor (register_hook, retain_grad), and the tape listing shows the gates.
    Composed,
    /// Always the fused kernel (ValueError where it does not apply: reset_after = false, gate
    /// recording).
    Fused,
  };

  /// Output::steps: the per-step states of a composed forward. After a fused forward it is empty,
  /// and indexing it raises ValueError saying how to get the states (set_path(Path::Composed)).
  class Steps {
   public:
    /// [layer · D + direction]: that layer and direction's T states.
    const std::vector<Tensor>& operator[](std::size_t j) const { return at(j); }
    std::vector<Tensor>& operator[](std::size_t j) { return at(j); }
    const std::vector<Tensor>& at(std::size_t j) const;
    std::vector<Tensor>& at(std::size_t j) {
      return const_cast<std::vector<Tensor>&>(static_cast<const Steps&>(*this).at(j));
    }
    std::size_t size() const { return states_.size(); }
    bool empty() const { return states_.empty(); }
    auto begin() const { return states_.begin(); }
    auto end() const { return states_.end(); }
    auto begin() { return states_.begin(); }
    auto end() { return states_.end(); }
    void push_back(std::vector<Tensor> layer_states) { states_.push_back(std::move(layer_states)); }
    /// Marks the states as not kept (a fused forward).
    void set_fused() { fused_ = true; }

   private:
    std::vector<std::vector<Tensor>> states_;
    bool fused_ = false;
  };

  struct Output {
    Tensor output;                           // (B, T, D·H): the last layer's h_1..h_T
    Tensor h_n;                              // (num_layers · D, B, H): each layer's h_T
    /// [layer · D + direction][t]: the state at time position t (B, H), tape tensors. Forward:
    /// h_{t+1}, after reading x_1..x_{t+1}; reverse: after reading x_T..x_{t+1}. D = 1 or 2.
    /// Composed path only (see Path).
    Steps steps;
    bool fused = false;  // whether this forward ran the fused kernel
  };
  /// Plain values (detached copies, off the tape) of one step, for inspection.
  struct GateRecord {
    Tensor r, z, n;  // (B, H)
    Tensor h_prev;   // (B, H) the state the step read
    Tensor h;        // (B, H) the state it wrote
  };

  /// Every parameter ~ U(±1/√H) (PyTorch's default), drawn from `gen` in state-dict order.
  explicit GRU(const GRUOptions& options, Generator& gen = default_generator());

  /// x (B, T, input_size) batch-first; h0 (num_layers · D, B, H) or undefined (zeros).
  Output forward(const Tensor& x, const Tensor& h0 = Tensor());
  Output operator()(const Tensor& x, const Tensor& h0 = Tensor()) { return forward(x, h0); }
  /// The same as forward(one_hot(ids) as (B, T, V), h0) without building the one-hot matrix:
  /// layer 0's input projection gathers columns of weight_ih_l0 instead of a GEMM.
  /// ids: B·T integers in [0, V), row-major (B, T); V must equal input_size.
  Output forward_ids(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t T,
                     std::size_t V, const Tensor& h0 = Tensor());

  /// When on, each forward stores r, z, n, h_prev, h of every layer and step (gate_records()).
  /// Off by default; off costs nothing. Recording runs the composed path (Path::Auto).
  void set_record_gates(bool on) { record_gates_ = on; }
  /// Chooses the implementation (Path::Auto by default).
  void set_path(Path path) { path_ = path; }
  Path path() const { return path_; }
  /// Whether forward would run the fused kernel now (Path and options as they are).
  bool uses_fused() const;
  /// [layer · D + direction][t] records of the last forward (empty unless recording was on),
  /// indexed by time position like Output::steps.
  const std::vector<std::vector<GateRecord>>& gate_records() const { return records_; }

  GRUOptions options;
  // Per layer k and direction d at index k·D + d (registered as weight_ih_l{k}, ... and
  // weight_ih_l{k}_reverse, ...). in_k = input_size for k = 0, else D·H.
  std::vector<Tensor> weight_ih;  // (3H, in_k), rows r|z|n
  std::vector<Tensor> weight_hh;  // (3H, H),    rows r|z|n
  std::vector<Tensor> bias_ih;    // (3H)
  std::vector<Tensor> bias_hh;    // (3H)

 private:
  /// Runs the layers; gi0[d] = layer 0's input projection x W_ihᵀ + b_ih of direction d,
  /// (B, T, 3H).
  Output run(const std::vector<Tensor>& gi0, const Tensor& h0);
  bool record_gates_ = false;
  Path path_ = Path::Auto;
  std::vector<std::vector<GateRecord>> records_;
};

namespace detail {
// The argument checks of GRU::forward / forward_ids, shared with the fused path
// (layers/fast/gru_fused.cpp) so that both raise the same errors.
/// x must be (B, T, input_size) with T > 0.
void check_gru_input(const GRUOptions& options, const Tensor& x);
/// ids.size() == B·T, T > 0, V == input_size (each id is checked by the op that reads it).
void check_gru_ids(const GRUOptions& options, const std::vector<std::int64_t>& ids, std::size_t B,
                   std::size_t T, std::size_t V);
/// h0 undefined or (num_layers · D, B, H).
void check_gru_h0(const GRUOptions& options, const Tensor& h0, std::size_t B);
}  // namespace detail

}  // namespace tapegrad
