// tapegrad — LSTMCell (see lstm_cell.hpp).
#include "layers/lstm_cell.hpp"

#include <cmath>

#include "framework/dispatch.hpp"
#include "framework/init.hpp"
#include "framework/ops.hpp"
#include "layers/rnn_cell.hpp"

namespace tapegrad {

LSTMCell::LSTMCell(const LSTMCellOptions& opts, Generator& gen) : options(opts) {
  const std::size_t in = opts.input_size(), H = opts.hidden_size();
  detail::require_positive("LSTMCell", "input_size", in);
  detail::require_positive("LSTMCell", "hidden_size", H);
  const std::size_t G = detail::checked_mul("LSTMCell", 4, H, Shape{H, in});  // gate rows i|f|g|o
  const DType dt = default_dtype();
  weight_ih = register_parameter("weight_ih", detail::zeros_for("LSTMCell", {G, in}, dt));
  weight_hh = register_parameter("weight_hh", detail::zeros_for("LSTMCell", {G, H}, dt));
  bias_ih = register_parameter("bias_ih", zeros({G}));
  bias_hh = register_parameter("bias_hh", zeros({G}));
  const double k = 1.0 / std::sqrt(static_cast<double>(H));
  for (auto& p : parameters()) init::uniform_(p, -k, k, gen);
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
