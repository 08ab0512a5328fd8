// tapegrad — how the layers register and initialise their parameters (PyTorch's defaults),
// written once. Internal to layers/ (namespace detail); a model never needs it.
//
//   uniform_parameter    one parameter: registered as zeros of the default dtype (its size
//                        checked), then ~ U(±bound)      (Linear's bias, every recurrent one)
//   register_cell        a recurrent cell's weight_ih, weight_hh, bias_ih, bias_hh
//                        (RNNCell, LSTMCell)
//   register_recurrent   the same for every layer and direction of a stacked recurrent network,
//                        under PyTorch's names weight_ih_l{k}[_reverse], ...   (RNN, LSTM)
//
// Each parameter is drawn right after it is registered, so the numbers are drawn in state-dict
// order: the same Generator seed gives the same model.
#pragma once

#include <string>
#include <vector>

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad::detail {

/// 1/√n: PyTorch's bound for Linear's bias (n = in_features) and for every parameter of a
/// recurrent layer (n = hidden_size).
double inv_sqrt_bound(std::size_t n);

/// Registers `name` on m as zeros of `shape` in the default dtype (ShapeError naming `layer`
/// when too large), filled ~ U(±bound) from gen.
Tensor uniform_parameter(Module& m, const char* layer, const std::string& name, const Shape& shape,
                         double bound, Generator& gen);

/// A recurrent cell's parameters: weight_ih (G, in), weight_hh (G, H), bias_ih (G), bias_hh (G)
/// with G = gates·H gate rows, registered in that order, every one ~ U(±1/√H) from gen. Sizes
/// are checked (ValueError for zeros, ShapeError when too large), naming `layer`.
struct CellParams {
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};
CellParams register_cell(Module& m, const char* layer, std::size_t input_size,
                         std::size_t hidden_size, std::size_t gates, Generator& gen);

/// The parameters of a stacked recurrent layer, registered on `m` under PyTorch's names
/// (weight_ih_l{k}[_reverse], weight_hh_..., bias_ih_..., bias_hh_...) with `gates`·H rows,
/// every one ~ U(±1/√H) from gen. Layer k > 0 reads D·H features (D = 2 if bidirectional).
/// Sizes are checked, the total before anything is allocated (ValueError for zeros,
/// ShapeError when too large), naming `layer`.
struct RecurrentParams {
  std::vector<Tensor> weight_ih, weight_hh, bias_ih, bias_hh;  // index k·D + d
};
RecurrentParams register_recurrent(Module& m, const char* layer, std::size_t input_size,
                                   std::size_t hidden_size, std::size_t num_layers,
                                   bool bidirectional, std::size_t gates, Generator& gen);

}  // namespace tapegrad::detail
