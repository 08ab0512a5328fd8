// state_dict — a small MLP whose checkpoint PyTorch loads, and which loads PyTorch's.
//
//   state_dict save OUT.npz           write a freshly initialised MLP (float32)
//   state_dict run  IN.npz [--json]   load an MLP checkpoint (from here or from PyTorch) and print
//                                     its output for the fixed input x[i][j] = (i − j) / 4
//
// The MLP is PyTorch's nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)): its state
// dict keys are "0.weight", "0.bias", "2.weight", "2.bias" (the Tanh at index 1 has none), so
// Module::save writes exactly what `model.load_state_dict` expects — see docs/pytorch-to-tapegrad.md.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

/// nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), with PyTorch's names.
class MLP : public Module {
 public:
  explicit MLP(Generator& gen) {
    first = register_module("0", std::make_shared<Linear>(4, 8, gen));
    second = register_module("2", std::make_shared<Linear>(8, 3, gen));
  }
  Tensor forward(const Tensor& x) const { return second->forward(tanh(first->forward(x))); }
  std::shared_ptr<Linear> first, second;
};

int main(int argc, char** argv) {
  CLI::App app{"state_dict: an MLP checkpoint that PyTorch's load_state_dict accepts, and the other way round"};
  app.require_subcommand(1);
  std::string out, in;
  bool json_out = false;
  std::uint64_t seed = 0;
  CLI::App* save = app.add_subcommand("save", "write a freshly initialised MLP to OUT.npz");
  save->add_option("OUT", out, "the checkpoint to write (.npz)")->required();
  save->add_option("--seed", seed, "initialisation seed")->check(cli::UInt64);
  CLI::App* run = app.add_subcommand("run", "load IN.npz and print the MLP's output for the fixed input");
  run->add_option("IN", in, "the checkpoint to read (.npz)")->required();
  run->add_flag("--json", json_out, "print {\"output\": [[...], ...]} on stdout");

  return cli::run(app, argc, argv, [&]() -> int {
    Generator gen(seed);
    MLP model(gen);
    if (*save) {
      cli::check_output_path(out, "OUT");
      model.save(out);  // atomic; keys 0.weight, 0.bias, 2.weight, 2.bias
      fmt::print("wrote {}\n", out);
      return cli::kOk;
    }
    cli::check_input_file(in, "IN", 1 << 20);
    model.load(in);  // strict: every key present with PyTorch's shapes, nothing else
    std::vector<double> xs;
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 4; ++j) xs.push_back((i - j) / 4.0);
    Tensor y = model.forward(from_vector(xs, Shape{2, 4}, model.first->weight.dtype()));
    std::vector<std::vector<double>> rows(2, std::vector<double>(3));
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t k = 0; k < 3; ++k) rows[i][k] = y.at(i * 3 + k);
    if (json_out) std::cout << nlohmann::json{{"output", rows}}.dump() << std::endl;
    else fmt::print("{}\n", y);
    return cli::kOk;
  });
}
