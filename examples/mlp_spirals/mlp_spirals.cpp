// mlp_spirals — an MLP classifier on two interleaved spirals, the "hello world" of a learned
// decision boundary. Its PyTorch twin is tools/torch_mlp_spirals.py (same data, sizes, init
// scheme, optimizer and schedule), for comparing curves and speed.
//
//   mlp_spirals [--epochs 200] [--seed 0] [--json]
//
// Data: 2 classes × 500 points, point i of class c at angle θ = 3.5π·i/500 (+ π for class 1),
// radius θ/(3.5π), plus N(0, 0.02²) noise; 80 % train, 20 % test (a fixed shuffle).
// Model: Linear(2 → 64) → tanh → Linear(64 → 64) → tanh → Linear(64 → 2), cross-entropy,
// Adam 1e-2 with CosineAnnealingLR over the epochs, mini-batches of 64, shuffled every epoch.
// --json prints {"train_loss", "test_accuracy", "epochs", "seconds"}.
#include <chrono>
#include <cmath>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

/// nn.Sequential(Linear(2, 64), Tanh(), Linear(64, 64), Tanh(), Linear(64, 2)), PyTorch's names.
class MLP : public Module {
 public:
  explicit MLP(Generator& gen) {
    l0 = register_module("0", std::make_shared<Linear>(2, 64, gen));
    l2 = register_module("2", std::make_shared<Linear>(64, 64, gen));
    l4 = register_module("4", std::make_shared<Linear>(64, 2, gen));
  }
  Tensor forward(const Tensor& x) const { return l4->forward(tanh(l2->forward(tanh(l0->forward(x))))); }
  std::shared_ptr<Linear> l0, l2, l4;
};

int main(int argc, char** argv) {
  CLI::App app{"mlp_spirals: an MLP learns to separate two spirals"};
  std::size_t epochs = 200;
  std::uint64_t seed = 0;
  bool json_out = false;
  app.add_option("--epochs", epochs, "passes over the training set")->capture_default_str()->check(cli::IntRange(1, 100000));
  app.add_option("--seed", seed, "seed of the data noise, the init and the shuffling")->capture_default_str()->check(cli::UInt64);
  app.add_flag("--json", json_out, "print {\"train_loss\", \"test_accuracy\", \"epochs\", \"seconds\"}");
  return cli::run(app, argc, argv, [&]() -> int {
    // 1. The data.
    Generator gen(seed);
    const std::size_t per_class = 500, n = 2 * per_class;
    const double pi = 3.14159265358979323846;
    std::vector<double> points;
    std::vector<std::int64_t> labels;
    for (std::size_t c = 0; c < 2; ++c)
      for (std::size_t i = 0; i < per_class; ++i) {
        double theta = 3.5 * pi * double(i) / per_class, r = theta / (3.5 * pi);
        points.push_back(r * std::cos(theta + pi * c) + 0.02 * gen.normal());
        points.push_back(r * std::sin(theta + pi * c) + 0.02 * gen.normal());
        labels.push_back(std::int64_t(c));
      }
    std::vector<std::int64_t> order = randperm(n, gen), train_idx(order.begin(), order.begin() + 800),
                              test_idx(order.begin() + 800, order.end());
    Tensor all = from_vector(points, Shape{n, 2});
    auto targets = [&](const std::vector<std::int64_t>& idx) {
      std::vector<std::int64_t> y;
      for (std::int64_t i : idx) y.push_back(labels[std::size_t(i)]);
      return y;
    };
    DataLoader train(index_select(all, 0, train_idx), targets(train_idx), 64, /*shuffle=*/true, false, gen);

    // 2. Model, optimizer, schedule.
    MLP model(gen);
    Adam opt(model.parameters(), AdamOptions().lr(1e-2));
    CosineAnnealingLR schedule(opt, std::int64_t(epochs));

    // 3. Train.
    auto t0 = std::chrono::steady_clock::now();
    double epoch_loss = 0;
    for (std::size_t epoch = 1; epoch <= epochs; ++epoch) {
      epoch_loss = 0;
      for (const MiniBatch& b : train.epoch()) {
        Tensor loss = cross_entropy(model.forward(b.x), b.y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        epoch_loss += loss.item() * double(b.y.size()) / 800.0;
      }
      schedule.step();
      if (!json_out && (epoch % std::max<std::size_t>(1, epochs / 10) == 0))
        fmt::print("epoch {:>4}  train loss {:.4f}  lr {:.5f}\n", epoch, epoch_loss, opt.lr());
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // 4. Test accuracy: argmax of the two logits.
    NoGradGuard no_grad;
    Tensor logits = model.forward(index_select(all, 0, test_idx));
    std::size_t correct = 0;
    for (std::size_t i = 0; i < test_idx.size(); ++i)
      correct += std::int64_t(logits.at(2 * i + 1) > logits.at(2 * i)) == labels[std::size_t(test_idx[i])];
    double accuracy = double(correct) / double(test_idx.size());
    if (json_out)
      std::cout << nlohmann::json{{"train_loss", epoch_loss}, {"test_accuracy", accuracy}, {"epochs", epochs},
                                  {"seconds", seconds}}.dump() << std::endl;
    else
      fmt::print("test accuracy {:.1f}% ({} of {}), {:.2f} s\n", 100 * accuracy, correct, test_idx.size(), seconds);
    return cli::kOk;
  });
}
