// tapegrad — RNNCell (see rnn_cell.hpp).
#include "layers/rnn_cell.hpp"

#include <fmt/format.h>

#include <cmath>

#include "framework/dispatch.hpp"
#include "framework/init.hpp"
#include "framework/ops.hpp"

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
  const std::size_t in = opts.input_size(), H = opts.hidden_size();
  detail::require_positive("RNNCell", "input_size", in);
  detail::require_positive("RNNCell", "hidden_size", H);
  weight_ih = register_parameter("weight_ih", detail::zeros_for("RNNCell", {H, in}, default_dtype()));
  weight_hh = register_parameter("weight_hh", detail::zeros_for("RNNCell", {H, H}, default_dtype()));
  bias_ih = register_parameter("bias_ih", zeros({H}));
  bias_hh = register_parameter("bias_hh", zeros({H}));
  const double k = 1.0 / std::sqrt(static_cast<double>(H));
  for (auto& p : parameters()) init::uniform_(p, -k, k, gen);
}

Tensor RNNCell::forward(const Tensor& x, const Tensor& h_in) const {
  Tensor h = detail::cell_state("RNNCell", x, h_in, options.input_size(), options.hidden_size());
  return tanh(matmul(x, weight_ih, false, true) + bias_ih +  // (B, H)
              matmul(h, weight_hh, false, true) + bias_hh);  // (B, H)
}

}  // namespace tapegrad
