// tapegrad — LSTM over a sequence (torch.nn.LSTM), stacked and optionally bidirectional,
// composed of framework ops only (no hand-written backward). Each step is LSTMCell's:
//
//   [i | f | g | o] = x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh      gate rows i, f, g, o
//   i, f, o = σ(·),  g = tanh(·)
//   c_t = f ⊙ c_{t−1} + i ⊙ g
//   h_t = o ⊙ tanh(c_t)
//
// PyTorch's conventions exactly (see rnn.hpp for the layout shared with RNN):
//   parameters  weight_ih_l{k}[_reverse] (4H, in_k), weight_hh_l{k}[_reverse] (4H, H),
//               bias_ih_l{k}[_reverse] (4H), bias_hh_l{k}[_reverse] (4H), all ~ U(±1/√H)
//   shapes      x (T, B, in) or (B, T, in) with batch_first; h0, c0, h_n, c_n
//               (num_layers · D, B, H) ordered layer-major, direction-minor;
//               output (T, B, D·H) or (B, T, D·H).
//
// Two implementations of the same function (LSTM::Path): by default forward runs the fused kernel
// (layers/fast/lstm_fused.hpp: one tape node per layer and direction, hand-written BPTT, both
// cores); set_path(LSTM::Path::Composed) runs the steps above as tape ops, one node per op — the
// version to read, print with the tape listing and step through. Values and gradients agree
// (tests/test_lstm_fused.cpp); docs/performance.md has the fused path's speed against nn.LSTM.
//
//   LSTM lstm(LSTMOptions(2, 64).batch_first(true));
//   auto out = lstm(x);         // out.output (B, T, 64), out.h_n, out.c_n (1, B, 64)
#pragma once

#include <vector>

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

struct LSTMOptions {
  LSTMOptions(std::size_t input_size, std::size_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  TAPEGRAD_ARG(std::size_t, input_size);
  TAPEGRAD_ARG(std::size_t, hidden_size);
  TAPEGRAD_ARG(std::size_t, num_layers) = 1;
  TAPEGRAD_ARG(bool, batch_first) = false;
  TAPEGRAD_ARG(bool, bidirectional) = false;
};

class LSTM : public Module {
 public:
  /// Which implementation forward runs; both compute the same values and gradients.
  enum class Path {
    /// The default: the fused kernel (nothing an LSTM returns needs the per-step graph).
    Auto,
    /// Every step built from matmul, sigmoid, tanh, mul and add on the tape (the readable one).
    Composed,
    /// The fused kernel (the same as Auto today).
    Fused,
  };

  struct Output {
    Tensor output;  // (T, B, D·H) or (B, T, D·H) with batch_first
    Tensor h_n;     // (num_layers · D, B, H)
    Tensor c_n;     // (num_layers · D, B, H)
    bool fused = false;  // whether this forward ran the fused kernel
  };

  explicit LSTM(const LSTMOptions& options, Generator& gen = default_generator());

  /// x (T, B, in) or (B, T, in) with batch_first; h0, c0 (num_layers · D, B, H) or undefined
  /// (zeros; either may be given without the other).
  Output forward(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor()) const;
  Output operator()(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor()) const {
    return forward(x, h0, c0);
  }

  /// Chooses the implementation (Path::Auto by default).
  void set_path(Path path) { path_ = path; }
  Path path() const { return path_; }
  /// Whether forward runs the fused kernel.
  bool uses_fused() const { return path_ != Path::Composed; }

  LSTMOptions options;
  // Index k·D + d: layer k, direction d (0 forward, 1 reverse).
  std::vector<Tensor> weight_ih;  // (4H, in_k), rows i|f|g|o
  std::vector<Tensor> weight_hh;  // (4H, H)
  std::vector<Tensor> bias_ih;    // (4H)
  std::vector<Tensor> bias_hh;    // (4H)

 private:
  Path path_ = Path::Auto;
};

}  // namespace tapegrad
