// tapegrad — RNNCell (see rnn_cell.hpp).
#include "layers/rnn_cell.hpp"

#include <fmt/format.h>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "layers/init_params.hpp"

namespace tapegrad {

namespace detail {

Tensor cell_state(const char* layer, const Tensor& x, const Tensor& h, std::size_t input_size,
                  std::size_t hidden_size, const char* h_name) {
  if (!x.defined() || x.dim() != 2 || x.size(1) != input_size)
    throw ShapeError(fmt::format("{}: expected x of shape (B, {}), got {}", layer, input_size,
                                 x.defined() ? shape_str(x.shape()) : "undefined"));
  const std::size_t batch = x.size(0);
  if (!h.defined()) return zeros({batch, hidden_size}, x.dtype());
  if (h.shape() != Shape{batch, hidden_size})
    throw ShapeError(fmt::format("{}: expected {} of shape ({}, {}), got {}", layer, h_name, batch,
                                 hidden_size, shape_str(h.shape())));
  return h;
}

}  // namespace detail

RNNCell::RNNCell(const RNNCellOptions& opts, Generator& gen) : options(opts) {
  auto p = detail::register_cell(*this, "RNNCell", opts.input_size(), opts.hidden_size(), 1, gen);
  weight_ih = p.weight_ih, weight_hh = p.weight_hh, bias_ih = p.bias_ih, bias_hh = p.bias_hh;
}

Tensor RNNCell::forward(const Tensor& x, const Tensor& h_in) const {
  Tensor h = detail::cell_state("RNNCell", x, h_in, options.input_size(), options.hidden_size());
  return tanh(matmul(x, weight_ih, false, true) + bias_ih +  // (B, H)
              matmul(h, weight_hh, false, true) + bias_hh);  // (B, H)
}

}  // namespace tapegrad
