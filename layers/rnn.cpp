// tapegrad — RNN (see rnn.hpp) and the helpers shared by the stacked recurrent layers.
// Shapes: B batch, T time, H hidden, D directions.
#include "layers/rnn.hpp"

#include <fmt/format.h>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "layers/init_params.hpp"

namespace tapegrad {

namespace detail {

Tensor sequence_batch_first(const char* layer, const Tensor& x, std::size_t input_size,
                            bool batch_first, const Tensor& weight) {
  const char* layout = batch_first ? "(B, T, {})" : "(T, B, {})";
  if (!x.defined() || x.dim() != 3 || x.size(2) != input_size)
    throw ShapeError(fmt::format("{}: expected x of shape {} ({}), got {}", layer,
                                 fmt::format(layout, input_size),
                                 batch_first ? "batch first" : "time first",
                                 x.defined() ? shape_str(x.shape()) : "undefined"));
  if (x.size(0) == 0 || x.size(1) == 0)
    throw ShapeError(fmt::format("{}: the input {} is empty (B = 0 or T = 0)", layer,
                                 shape_str(x.shape())));
  require_same_dtype(x, weight, layer);
  return batch_first ? x : transpose(x, 0, 1);  // (B, T, in)
}

void check_initial_state(const char* layer, const char* name, const Tensor& s,
                         std::size_t num_states, std::size_t batch, std::size_t hidden,
                         const Tensor& x) {
  if (!s.defined()) return;
  if (s.shape() != Shape{num_states, batch, hidden})
    throw ShapeError(fmt::format("{}: expected {} of shape ({}, {}, {}) (num_layers · directions, B, H), got {}",
                                 layer, name, num_states, batch, hidden, shape_str(s.shape())));
  require_same_dtype(x, s, layer);
}

StackedOutput run_stacked(const Tensor& x, std::size_t num_layers, bool bidirectional,
                          std::size_t hidden, bool batch_first, const std::vector<Tensor>& weight_ih,
                          const std::vector<Tensor>& bias_ih, const std::vector<Tensor>& bias_hh,
                          const std::vector<Tensor>& initial, const RecurrentStep& step) {
  const std::size_t L = num_layers, D = bidirectional ? 2 : 1, H = hidden, S = initial.size();
  const std::size_t B = x.size(0), T = x.size(1);
  Tensor input = x;  // this layer's input (B, T, in_k)
  std::vector<std::vector<Tensor>> last(S);  // per state: its final value in every layer and direction
  for (std::size_t k = 0; k < L; ++k) {
    std::vector<Tensor> directions;
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t j = k * D + d;
      // Input projection for all T steps at once, both biases folded in: (B, T, gates·H).
      Tensor gi = matmul(input, weight_ih[j], false, true) + (bias_ih[j] + bias_hh[j]);
      std::vector<Tensor> state;
      for (const Tensor& s0 : initial)
        state.push_back(s0.defined() ? select(s0, 0, j) : zeros({B, H}, x.dtype()));
      std::vector<Tensor> hs(T);
      for (std::size_t s = 0; s < T; ++s) {
        const std::size_t t = d == 0 ? s : T - 1 - s;  // the reverse direction reads x_T first
        step(j, select(gi, 1, t), state);
        hs[t] = state[0];
      }
      for (std::size_t i = 0; i < S; ++i) last[i].push_back(state[i]);
      directions.push_back(stack(hs, 1));  // (B, T, H)
    }
    input = D == 1 ? directions[0] : concat(directions, -1);  // (B, T, D·H)
  }
  StackedOutput out{batch_first ? input : transpose(input, 0, 1), {}};
  for (const std::vector<Tensor>& l : last) out.last.push_back(stack(l, 0));
  return out;
}

}  // namespace detail

RNN::RNN(const RNNOptions& opts, Generator& gen) : options(opts) {
  if (opts.nonlinearity() != "tanh" && opts.nonlinearity() != "relu")
    throw ValueError(fmt::format("RNN: nonlinearity must be \"tanh\" or \"relu\", got \"{}\"",
                                 opts.nonlinearity()));
  auto p = detail::register_recurrent(*this, "RNN", opts.input_size(), opts.hidden_size(),
                                      opts.num_layers(), opts.bidirectional(), 1, gen);
  weight_ih = p.weight_ih, weight_hh = p.weight_hh, bias_ih = p.bias_ih, bias_hh = p.bias_hh;
}

RNN::Output RNN::forward(const Tensor& x_in, const Tensor& h0) const {
  const std::size_t L = options.num_layers(), D = options.bidirectional() ? 2 : 1,
                    H = options.hidden_size();
  Tensor x = detail::sequence_batch_first("RNN", x_in, options.input_size(),
                                          options.batch_first(), weight_ih[0]);  // (B, T, in)
  detail::check_initial_state("RNN", "h0", h0, L * D, x.size(0), H, x);
  const bool use_relu = options.nonlinearity() == "relu";
  // h_t = act(x_t W_ihᵀ + b_ih + b_hh + h_{t−1} W_hhᵀ), the input half gi_t precomputed.
  auto step = [&](std::size_t j, const Tensor& gi_t, std::vector<Tensor>& state) {
    Tensor pre = gi_t + matmul(state[0], weight_hh[j], false, true);  // (B, H)
    state[0] = use_relu ? relu(pre) : tanh(pre);
  };
  auto run = detail::run_stacked(x, L, options.bidirectional(), H, options.batch_first(),
                                 weight_ih, bias_ih, bias_hh, {h0}, step);
  return {run.output, run.last[0]};
}

}  // namespace tapegrad
