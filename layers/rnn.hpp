// tapegrad — RNN: the Elman recurrent network over a sequence (torch.nn.RNN), stacked and
// optionally bidirectional, composed of framework ops only (no hand-written backward).
//
//   h_t = act(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh)      act = tanh (default) or relu
//
// PyTorch's conventions exactly, so state dicts interchange:
//   parameters  weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, and with
//               bidirectional the same with the suffix _reverse, in that order, layer by layer;
//               every one ~ U(±1/√H). Layer k > 0 reads the previous layer's output
//               (H features, 2H when bidirectional).
//   shapes      x (T, B, in) by default, (B, T, in) with batch_first (PyTorch's default is
//               time-major; tapegrad's GRU is always batch-first);
//               h0 and h_n (num_layers · D, B, H), D = 2 if bidirectional, ordered layer-major,
//               direction-minor (index 2k is layer k forward, 2k + 1 layer k reverse);
//               output (T, B, D·H) or (B, T, D·H): at each t the forward state after reading
//               x_1..x_t, then the reverse direction's state after reading x_T..x_t.
//   A reverse direction is the same cell run over the reversed sequence.
//
//   RNN rnn(RNNOptions(5, 16).num_layers(2).nonlinearity("relu").batch_first(true));
//   auto out = rnn(x, h0);      // out.output (B, T, 16), out.h_n (2, B, 16)
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

struct RNNOptions {
  RNNOptions(std::size_t input_size, std::size_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  TAPEGRAD_ARG(std::size_t, input_size);
  TAPEGRAD_ARG(std::size_t, hidden_size);
  TAPEGRAD_ARG(std::size_t, num_layers) = 1;
  /// "tanh" or "relu" (ValueError otherwise, at construction).
  TAPEGRAD_ARG(std::string, nonlinearity) = "tanh";
  TAPEGRAD_ARG(bool, batch_first) = false;
  TAPEGRAD_ARG(bool, bidirectional) = false;
};

class RNN : public Module {
 public:
  struct Output {
    Tensor output;  // (T, B, D·H) or (B, T, D·H) with batch_first
    Tensor h_n;     // (num_layers · D, B, H)
  };

  explicit RNN(const RNNOptions& options, Generator& gen = default_generator());

  /// x (T, B, in) or (B, T, in) with batch_first; h0 (num_layers · D, B, H) or undefined (zeros).
  Output forward(const Tensor& x, const Tensor& h0 = Tensor()) const;
  Output operator()(const Tensor& x, const Tensor& h0 = Tensor()) const { return forward(x, h0); }

  RNNOptions options;
  // Index k·D + d: layer k, direction d (0 forward, 1 reverse).
  std::vector<Tensor> weight_ih;  // (H, in_k), in_k = input_size for k = 0, else D·H
  std::vector<Tensor> weight_hh;  // (H, H)
  std::vector<Tensor> bias_ih;    // (H)
  std::vector<Tensor> bias_hh;    // (H)
};

namespace detail {

/// Checks a sequence input (rank 3, last axis input_size, non-empty, dtype of the weights)
/// and returns it batch-first (B, T, in).
Tensor sequence_batch_first(const char* layer, const Tensor& x, std::size_t input_size,
                            bool batch_first, const Tensor& weight);
/// Checks an initial state (num_states, B, H) (may be undefined), naming `layer` and `name`.
void check_initial_state(const char* layer, const char* name, const Tensor& s,
                         std::size_t num_states, std::size_t batch, std::size_t hidden,
                         const Tensor& x);

/// One step of layer-direction j: from gi_t = x_t W_ihᵀ + b_ih + b_hh (B, gates·H), updates the
/// state in place (state[0] is h, the step's output; LSTM adds state[1] = c).
using RecurrentStep =
    std::function<void(std::size_t j, const Tensor& gi_t, std::vector<Tensor>& state)>;

/// The loop RNN and LSTM share: layer k reads the previous layer's output (directions
/// concatenated); direction d = 1 reads x_T first; for every layer-direction j = k·D + d the
/// input projection of all T steps is one GEMM, both biases folded in.
///   x        (B, T, in), batch first
///   initial  one (num_layers · D, B, H) tensor per state, each may be undefined (zeros)
/// Returns output (B, T, D·H), or (T, B, D·H) unless batch_first, and per state its final
/// values (num_layers · D, B, H).
struct StackedOutput {
  Tensor output;
  std::vector<Tensor> last;
};
StackedOutput run_stacked(const Tensor& x, std::size_t num_layers, bool bidirectional,
                          std::size_t hidden, bool batch_first, const std::vector<Tensor>& weight_ih,
                          const std::vector<Tensor>& bias_ih, const std::vector<Tensor>& bias_hh,
                          const std::vector<Tensor>& initial, const RecurrentStep& step);

}  // namespace detail

}  // namespace tapegrad
