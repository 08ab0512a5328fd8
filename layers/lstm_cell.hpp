// tapegrad — LSTMCell (torch.nn.LSTMCell), for comparison with the GRU.
//
//   [i | f | g | o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh          (B, 4H), gate rows i, f, g, o
//   i, f, o = σ(·),  g = tanh(·)
//   c' = f ⊙ c + i ⊙ g
//   h' = o ⊙ tanh(c')
#pragma once

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

struct LSTMCellOptions {
  LSTMCellOptions(std::size_t input_size, std::size_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  TAPEGRAD_ARG(std::size_t, input_size);
  TAPEGRAD_ARG(std::size_t, hidden_size);
};

class LSTMCell : public Module {
 public:
  struct State {
    Tensor h;  // (B, H)
    Tensor c;  // (B, H)
  };

  /// Every parameter ~ U(±1/√H), drawn from `gen`.
  explicit LSTMCell(const LSTMCellOptions& options, Generator& gen = default_generator());

  /// x (B, in), h and c (B, H) (undefined = zeros) → {h', c'}.
  State forward(const Tensor& x, const Tensor& h = Tensor(), const Tensor& c = Tensor()) const;
  State operator()(const Tensor& x, const Tensor& h = Tensor(), const Tensor& c = Tensor()) const {
    return forward(x, h, c);
  }

  LSTMCellOptions options;
  Tensor weight_ih;  // (4H, in), rows i|f|g|o
  Tensor weight_hh;  // (4H, H),  rows i|f|g|o
  Tensor bias_ih;    // (4H)
  Tensor bias_hh;    // (4H)
};

}  // namespace tapegrad
