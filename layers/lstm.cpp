// tapegrad — LSTM (see lstm.hpp). Shapes: B batch, T time, H hidden, D directions.
#include "layers/lstm.hpp"

#include "framework/ops.hpp"
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
  const std::size_t L = options.num_layers(), D = options.bidirectional() ? 2 : 1,
                    H = options.hidden_size();
  Tensor x = detail::sequence_batch_first("LSTM", x_in, options.input_size(),
                                          options.batch_first(), weight_ih[0]);  // (B, T, in)
  const std::size_t B = x.size(0), T = x.size(1);
  detail::check_initial_state("LSTM", "h0", h0, L * D, B, H, x);
  detail::check_initial_state("LSTM", "c0", c0, L * D, B, H, x);

  Tensor input = x;  // this layer's input (B, T, in_k)
  std::vector<Tensor> last_h, last_c;
  for (std::size_t k = 0; k < L; ++k) {
    std::vector<Tensor> directions;
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t j = k * D + d;
      // Input projection for all T steps at once, both biases folded in: (B, T, 4H).
      Tensor gi = matmul(input, weight_ih[j], false, true) + (bias_ih[j] + bias_hh[j]);
      Tensor h = h0.defined() ? select(h0, 0, j) : zeros({B, H}, x.dtype());
      Tensor c = c0.defined() ? select(c0, 0, j) : zeros({B, H}, x.dtype());
      std::vector<Tensor> hs(T);
      for (std::size_t s = 0; s < T; ++s) {
        const std::size_t t = d == 0 ? s : T - 1 - s;  // the reverse direction reads x_T first
        lstm_step(select(gi, 1, t), weight_hh[j], h, c);
        hs[t] = h;
      }
      last_h.push_back(h);
      last_c.push_back(c);
      directions.push_back(stack(hs, 1));  // (B, T, H)
    }
    input = D == 1 ? directions[0] : concat(directions, -1);  // (B, T, D·H)
  }
  return {options.batch_first() ? input : transpose(input, 0, 1), stack(last_h, 0),
          stack(last_c, 0)};
}

}  // namespace tapegrad
