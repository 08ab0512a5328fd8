// A program built against an installed tapegrad (tests/consumer/CMakeLists.txt): gradient-checks
// a GRU cell, the whole module, and a checkpoint round trip (which links libzip). Exit 0 if all
// pass.
#include <cstdio>
#include <iostream>

#include "framework/gradcheck_module.hpp"
#include "framework/tapegrad.hpp"
#include "layers/gru.hpp"

using namespace tapegrad;

int main() {
  Generator gen(0);
  GRUCell cell(GRUCellOptions(3, 4), gen);
  cell.to(DType::Float64);
  Tensor x = uniform({2, 3}, -1, 1, gen, DType::Float64).requires_grad_().set_name("x");
  Tensor h = uniform({2, 4}, -1, 1, gen, DType::Float64).requires_grad_().set_name("h");

  GradcheckResult r =
      gradcheck([&](const std::vector<Tensor>& in) { return cell(in[0], in[1]); }, {x, h});
  std::cout << r.report();
  ModuleCheckResult m = gradcheck_module(cell, [&] { return sum(cell(x, h)); });
  std::cout << m.report();

  const std::string path = "consumer_checkpoint.npz";
  cell.save(path);
  GRUCell copy(GRUCellOptions(3, 4), gen);
  copy.to(DType::Float64);
  copy.load(path);
  std::remove(path.c_str());
  bool same = sum(abs(copy(x, h) - cell(x, h))).item() == 0.0;
  std::cout << "checkpoint round trip: " << (same ? "identical" : "DIFFERENT") << "\n";
  return r.passed && m.passed && same ? 0 : 1;
}
