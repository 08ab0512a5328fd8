// tape_graph — one GRU step on the tape: the Wengert list and its Graphviz picture.
//
//   tape_graph [--dot FILE]
//
// Records one step of a GRUCell (PyTorch's conventions) with named inputs and gates, prints the
// tape listing (one line per recorded op: index, op, inputs, output shape, name) and writes the
// graph as DOT. Render it with `dot -Tpng FILE -o gru_step.png` (docs/img/gru_step.png).
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

int main(int argc, char** argv) {
  CLI::App app{"tape_graph: print the tape of one GRU step and write it as Graphviz DOT"};
  std::string dot_file = "gru_step.dot";
  app.add_option("--dot", dot_file, "where to write the DOT graph")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  Generator gen(0);
  GRUCell cell(GRUCellOptions(4, 3), gen);  // input size 4, hidden size 3
  cell.weight_ih.set_name("W_ih");
  cell.weight_hh.set_name("W_hh");
  cell.bias_ih.set_name("b_ih");
  cell.bias_hh.set_name("b_hh");
  Tensor x = randn({1, 4}, gen).set_name("x_t");
  Tensor h = randn({1, 3}, gen).set_name("h_prev");

  tape().clear();
  GRUCell::Step s = cell.forward_with_gates(x, h);
  s.r.set_name("r");
  s.z.set_name("z");
  s.n.set_name("n");
  s.h_new.set_name("h_t");

  std::cout << "The tape of one GRU step (" << tape().size() << " recorded ops):\n\n" << tape().listing();
  std::ofstream(dot_file) << tape().to_dot();
  std::cout << "\nwrote " << dot_file << " (render: dot -Tpng " << dot_file << " -o gru_step.png)\n";
  return 0;
}
