// tape_graph — one GRU step on the tape: the Wengert list and its Graphviz picture.
//
//   tape_graph [--dot FILE]
//
// Records one step of a GRUCell (PyTorch's conventions) with named inputs and gates, prints the
// tape listing (one line per recorded op: index, op, inputs, output shape, name) and writes the
// graph as DOT. Render it with `dot -Tpng FILE -o gru_step.png` (docs/img/gru_step.png).
// Exit codes: 0 ok, 1 the DOT file could not be written, 2 usage error (e.g. --dot names a
// missing directory; checked before anything is computed).
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

int main(int argc, char** argv) {
  CLI::App app{"tape_graph: print the tape of one GRU step and write it as Graphviz DOT"};
  std::string dot_file = "gru_step.dot";
  app.add_option("--dot", dot_file, "where to write the DOT graph")->capture_default_str();
  return cli::run(app, argc, argv, [&] {
    cli::check_output_path(dot_file, "--dot");  // before any work: a bad path is a usage error

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
    cli::write_file_atomic(dot_file, tape().to_dot());  // "wrote" only once it is really written
    std::cout << "\nwrote " << dot_file << " (render: dot -Tpng " << dot_file << " -o gru_step.png)\n";
    return cli::kOk;
  });
}
