// tapegrad — LSTM (see lstm.hpp). Shapes: B batch, T time, H hidden, D directions.
#include "layers/lstm.hpp"

#include "framework/ops.hpp"
#include "layers/fast/lstm_fused.hpp"
#include "layers/init_params.hpp"
#include "layers/rnn.hpp"

namespace tapegrad {

namespace {

/// One LSTM step from the precomputed input half gi = x_t W_ihᵀ + b_ih + b_hh (B, 4H).
void lstm_step(const Tensor& gi, const Tensor& weight_hh, Tensor& h, Tensor& c) {
  Tensor gates = gi + matmul(h, weight_hh, false, true);  // (B, 4H)
  auto g4 = chunk(gates, 4, -1);                          // i, f, g, o: each (B, H)
  Tensor i = sigmoid(g4[0]), f = sigmoid(g4[1]), g = tanh(g4[2]), o = sigmoid(g4[3]);
  c = f * c + i * g;
  h = o * tanh(c);
}

}  // namespace

LSTM::LSTM(const LSTMOptions& opts, Generator& gen) : options(opts) {
  auto p = detail::register_recurrent(*this, "LSTM", opts.input_size(), opts.hidden_size(),
                                      opts.num_layers(), opts.bidirectional(), 4, gen);
  weight_ih = p.weight_ih, weight_hh = p.weight_hh, bias_ih = p.bias_ih, bias_hh = p.bias_hh;
}

LSTM::Output LSTM::forward(const Tensor& x_in, const Tensor& h0, const Tensor& c0) const {
  if (uses_fused()) return lstm_forward_fused(*this, x_in, h0, c0);
  const std::size_t L = options.num_layers(), D = options.bidirectional() ? 2 : 1,
                    H = options.hidden_size();
  Tensor x = detail::sequence_batch_first("LSTM", x_in, options.input_size(),
                                          options.batch_first(), weight_ih[0]);  // (B, T, in)
  const std::size_t B = x.size(0);
  detail::check_initial_state("LSTM", "h0", h0, L * D, B, H, x);
  detail::check_initial_state("LSTM", "c0", c0, L * D, B, H, x);
  auto step = [&](std::size_t j, const Tensor& gi_t, std::vector<Tensor>& state) {
    lstm_step(gi_t, weight_hh[j], state[0], state[1]);  // state = {h, c}
  };
  auto run = detail::run_stacked(x, L, options.bidirectional(), H, options.batch_first(),
                                 weight_ih, bias_ih, bias_hh, {h0, c0}, step);
  return {run.output, run.last[0], run.last[1]};
}

}  // namespace tapegrad
