// tapegrad — RNNCell: the vanilla (Elman) recurrent cell with tanh (torch.nn.RNNCell).
//
//   h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)
//
// Its one-step Jacobian ∂h'/∂h = diag(1 − h'²) W_hh multiplies the gradient at every step, which
// is why gradients vanish or explode over long sequences (compare GRUCell).
#pragma once

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

struct RNNCellOptions {
  RNNCellOptions(std::size_t input_size, std::size_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  TAPEGRAD_ARG(std::size_t, input_size);
  TAPEGRAD_ARG(std::size_t, hidden_size);
};

class RNNCell : public Module {
 public:
  /// Every parameter ~ U(±1/√H), drawn from `gen`.
  explicit RNNCell(const RNNCellOptions& options, Generator& gen = default_generator());

  /// x (B, in), h (B, H) (undefined = zeros) → h' (B, H).
  Tensor forward(const Tensor& x, const Tensor& h = Tensor()) const;
  Tensor operator()(const Tensor& x, const Tensor& h = Tensor()) const { return forward(x, h); }

  RNNCellOptions options;
  Tensor weight_ih;  // (H, in)
  Tensor weight_hh;  // (H, H)
  Tensor bias_ih;    // (H)
  Tensor bias_hh;    // (H)
};

namespace detail {
/// Checks a recurrent cell's x (B, in) and h (B, H) (h may be undefined) and returns h, or
/// zeros (B, H) of x's dtype when h is undefined. `layer` names the layer in errors.
Tensor cell_state(const char* layer, const Tensor& x, const Tensor& h, std::size_t input_size,
                  std::size_t hidden_size, const char* h_name = "h");
}  // namespace detail

}  // namespace tapegrad
