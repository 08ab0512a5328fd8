// Tutorial step 4 — a Module: named parameters, a forward, a checkpoint, a whole-model gradcheck
// (docs/tutorial.md). Exit 0 when the reloaded model reproduces its output and the check passes.
#include <stdlib.h>  // mkdtemp

#include <filesystem>
#include <iostream>

#include "framework/gradcheck_module.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

/// A GRU cell followed by a linear read-out: one step of a tiny sequence classifier.
class StepModel : public Module {
 public:
  StepModel(std::size_t in, std::size_t hidden, std::size_t classes, Generator& gen) {
    cell = register_module("cell", std::make_shared<GRUCell>(GRUCellOptions(in, hidden), gen));
    head = register_module("head", std::make_shared<Linear>(hidden, classes, gen));
  }
  /// x (B, in), h (B, H) → logits (B, classes) and the new state.
  std::pair<Tensor, Tensor> forward(const Tensor& x, const Tensor& h) const {
    Tensor h_new = cell->forward(x, h);
    return {head->forward(h_new), h_new};
  }
  std::shared_ptr<GRUCell> cell;
  std::shared_ptr<Linear> head;
};

int main() {
  Generator gen(4);
  StepModel model(3, 5, 2, gen);
  model.to(DType::Float64);  // float64 for the gradient check below
  for (const auto& [name, p] : model.named_parameters())
    fmt::print("  {:<16} {}\n", name, shape_str(p.shape()));  // the state-dict keys, as in PyTorch

  Tensor x = uniform({4, 3}, -1, 1, gen, DType::Float64),
         h = uniform({4, 5}, -1, 1, gen, DType::Float64);
  std::vector<std::int64_t> y = {0, 1, 1, 0};
  auto loss = [&] { return cross_entropy(model.forward(x, h).first, y); };
  fmt::print("loss = {:.6f}\n", loss().item());

  // A checkpoint is an .npz with one array per parameter (numpy / torch can read it). It goes to
  // a fresh private temporary directory (mkdtemp: a unique name), removed afterwards.
  std::string dir = (std::filesystem::temp_directory_path() / "tapegrad_tutorial_XXXXXX").string();
  if (!::mkdtemp(dir.data())) return 1;
  std::string path = dir + "/step_model.npz";
  model.save(path);
  StepModel copy(3, 5, 2, gen);  // different random weights...
  copy.to(DType::Float64);
  copy.load(path);  // ...replaced by the saved ones
  std::filesystem::remove_all(dir);
  double diff = std::fabs(cross_entropy(copy.forward(x, h).first, y).item() - loss().item());
  fmt::print("reloaded model: loss differs by {}\n", diff);

  // Every parameter, by name, against central differences.
  ModuleCheckResult r = gradcheck_module(model, loss);
  std::cout << r.report();
  return r.passed && diff == 0.0 ? 0 : 1;
}
