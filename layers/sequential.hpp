// tapegrad — Sequential: modules applied one after another (torch.nn.Sequential).
//
// Children are registered under "0", "1", ... in the order they are added, exactly like
// nn.Sequential, so a state dict interchanges with PyTorch's:
//
//   Sequential mlp;
//   mlp.push_back(std::make_shared<Linear>(4, 8));   // "0.weight", "0.bias"
//   mlp.push_back(std::make_shared<Tanh>());         // "1" (no parameters)
//   mlp.push_back(std::make_shared<Linear>(8, 3));   // "2.weight", "2.bias"
//   Tensor y = mlp(x);                               // Linear → Tanh → Linear
//
// Any module with a `Tensor forward(const Tensor&)` member can be added (Linear, LayerNorm,
// Dropout, the activations, another Sequential, your own); TensorModule is the small interface
// for such modules when a virtual call is wanted.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "framework/module.hpp"

namespace tapegrad {

/// A Module whose forward maps one tensor to one tensor (Dropout, LayerNorm, ReLU, ...).
class TensorModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

class Sequential : public TensorModule {
 public:
  Sequential() = default;
  /// Sequential(a, b, c): the modules in order, named "0", "1", "2".
  template <class... Ms>
  explicit Sequential(std::shared_ptr<Ms>... modules) {
    (push_back(std::move(modules)), ...);
  }

  /// Appends a module under the next index ("0", "1", ...) and returns it.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "Sequential holds Modules");
    static_assert(std::is_convertible_v<decltype(std::declval<M&>().forward(std::declval<const Tensor&>())), Tensor>,
                  "Sequential: a module needs Tensor forward(const Tensor&)");
    check_not_null(module != nullptr);
    register_module(std::to_string(steps_.size()), module);
    M* raw = module.get();  // owned by the children list, which lives as long as *this
    steps_.push_back([raw](const Tensor& x) { return raw->forward(x); });
    return module;
  }

  /// x through every module in order (the identity when empty).
  Tensor forward(const Tensor& x) override;
  std::size_t size() const { return steps_.size(); }
  /// The i-th module (IndexError when out of range).
  std::shared_ptr<Module> operator[](std::size_t i) const;

 private:
  static void check_not_null(bool ok);
  std::vector<std::function<Tensor(const Tensor&)>> steps_;
};

}  // namespace tapegrad
