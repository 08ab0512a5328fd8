// tapegrad — registering and initialising the layers' parameters (see init_params.hpp).
#include "layers/init_params.hpp"

#include <fmt/format.h>

#include <cmath>

#include "framework/dispatch.hpp"
#include "framework/init.hpp"

namespace tapegrad::detail {

double inv_sqrt_bound(std::size_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); }

Tensor uniform_parameter(Module& m, const char* layer, const std::string& name, const Shape& shape,
                         double bound, Generator& gen) {
  Tensor t = m.register_parameter(name, zeros_for(layer, shape, default_dtype()));
  init::uniform_(t, -bound, bound, gen);
  return t;
}

CellParams register_cell(Module& m, const char* layer, std::size_t input_size,
                         std::size_t hidden_size, std::size_t gates, Generator& gen) {
  const std::size_t in = input_size, H = hidden_size;
  require_positive(layer, "input_size", in);
  require_positive(layer, "hidden_size", H);
  const std::size_t G = checked_mul(layer, gates, H, Shape{H, in});  // gate rows
  const double bound = inv_sqrt_bound(H);
  CellParams p;
  p.weight_ih = uniform_parameter(m, layer, "weight_ih", {G, in}, bound, gen);
  p.weight_hh = uniform_parameter(m, layer, "weight_hh", {G, H}, bound, gen);
  p.bias_ih = uniform_parameter(m, layer, "bias_ih", {G}, bound, gen);
  p.bias_hh = uniform_parameter(m, layer, "bias_hh", {G}, bound, gen);
  return p;
}

RecurrentParams register_recurrent(Module& m, const char* layer, std::size_t input_size,
                                   std::size_t hidden_size, std::size_t num_layers,
                                   bool bidirectional, std::size_t gates, Generator& gen) {
  if (num_layers < 1) throw ValueError(fmt::format("{}: num_layers must be at least 1, got 0", layer));
  require_positive(layer, "input_size", input_size);
  require_positive(layer, "hidden_size", hidden_size);
  const std::size_t H = hidden_size, L = num_layers, D = bidirectional ? 2 : 1;
  const std::size_t G = checked_mul(layer, gates, H, Shape{L, H});  // gate rows
  const std::size_t in_rest = checked_mul(layer, D, H, Shape{L, D, H});
  {
    // The total parameter count, checked before anything is allocated (a huge num_layers of
    // small layers would otherwise allocate until memory runs out).
    const std::size_t first = checked_numel(layer, {D, G, checked_add(layer, input_size, H + 2, Shape{L, H})});
    const std::size_t rest = checked_numel(layer, {D, G, checked_add(layer, in_rest, H + 2, Shape{L, H})});
    checked_add(layer, first, checked_mul(layer, L - 1, rest, Shape{L, G, H}), Shape{L, G, H});
  }
  const double bound = inv_sqrt_bound(H);
  RecurrentParams p;
  for (std::size_t k = 0; k < L; ++k)
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t in = k == 0 ? input_size : in_rest;
      const std::string s = "_l" + std::to_string(k) + (d == 1 ? "_reverse" : "");
      p.weight_ih.push_back(uniform_parameter(m, layer, "weight_ih" + s, {G, in}, bound, gen));
      p.weight_hh.push_back(uniform_parameter(m, layer, "weight_hh" + s, {G, H}, bound, gen));
      p.bias_ih.push_back(uniform_parameter(m, layer, "bias_ih" + s, {G}, bound, gen));
      p.bias_hh.push_back(uniform_parameter(m, layer, "bias_hh" + s, {G}, bound, gen));
    }
  return p;
}

}  // namespace tapegrad::detail
