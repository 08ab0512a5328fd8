// tapegrad — LSTMCell (see lstm_cell.hpp).
#include "layers/lstm_cell.hpp"

#include "framework/ops.hpp"
#include "layers/init_params.hpp"
#include "layers/rnn_cell.hpp"

namespace tapegrad {

LSTMCell::LSTMCell(const LSTMCellOptions& opts, Generator& gen) : options(opts) {
  // gate rows i|f|g|o
  auto p = detail::register_cell(*this, "LSTMCell", opts.input_size(), opts.hidden_size(), 4, gen);
  weight_ih = p.weight_ih, weight_hh = p.weight_hh, bias_ih = p.bias_ih, bias_hh = p.bias_hh;
}

LSTMCell::State LSTMCell::forward(const Tensor& x, const Tensor& h_in, const Tensor& c_in) const {
  const std::size_t in = options.input_size(), H = options.hidden_size();
  Tensor h = detail::cell_state("LSTMCell", x, h_in, in, H, "h");
  Tensor c = detail::cell_state("LSTMCell", x, c_in, in, H, "c");
  Tensor gates = matmul(x, weight_ih, false, true) + bias_ih +  // (B, 4H)
                 matmul(h, weight_hh, false, true) + bias_hh;
  auto g4 = chunk(gates, 4, -1);  // i, f, g, o: each (B, H)
  Tensor i = sigmoid(g4[0]), f = sigmoid(g4[1]), g = tanh(g4[2]), o = sigmoid(g4[3]);
  Tensor c_new = f * c + i * g;    // (B, H)
  Tensor h_new = o * tanh(c_new);  // (B, H)
  return {h_new, c_new};
}

}  // namespace tapegrad
