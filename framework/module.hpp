// tapegrad — Module: the base of every layer and model (torch.nn.Module).
//
// A Module owns named parameters and named submodules. Names are PyTorch's state-dict keys:
//   parameters of this module           "weight", "bias_ih_l0"
//   parameters of a submodule "gru"     "gru.weight_ih_l0"   (dotted, recursively)
// named_parameters() lists them in registration order (own parameters first, then each
// submodule's), which is also the order of state_dict() and of saved checkpoints.
//
// Tensors are handles, so a layer keeps its own handle to each parameter (`weight`) and the
// Module keeps another: load_state_dict() and to() change the values in place, and both see it
// (as do optimizers holding the parameters).
//
//   class Model : public Module {
//    public:
//     Model() {
//       gru = register_module("gru", std::make_shared<GRU>(GRUOptions(27, 64)));
//       head = register_module("head", std::make_shared<Linear>(64, 27));
//     }
//     std::shared_ptr<GRU> gru;
//     std::shared_ptr<Linear> head;
//   };
//   model.named_parameters();  // gru.weight_ih_l0, ..., head.weight, head.bias
//   save_state("ckpt.npz", model, {{"vocab", vocab_array}});
//
// Checkpoints are .npz files (framework/npz.hpp) holding one float32/float64 array per
// parameter under its state-dict name, so numpy.load / torch load_state_dict read them as they
// are; other entries (a vocabulary, a step counter) can ride along.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/npz.hpp"
#include "framework/tensor.hpp"

namespace tapegrad {

/// Declares an option with a chainable setter and a getter of the same name, for the small
/// builder structs of the layers and optimisers (the pattern of PyTorch's C++ frontend):
/// `GRUOptions(5, 16).num_layers(2).reset_after(false)`, `AdamOptions().lr(1e-3)`.
/// Use inside a struct; an initializer may follow: `TAPEGRAD_ARG(bool, bias) = true;`.
#define TAPEGRAD_ARG(T, name)                     \
 public:                                          \
  auto& name(const T& new_##name) {               \
    this->name##_ = new_##name;                   \
    return *this;                                 \
  }                                               \
  const T& name() const { return this->name##_; } \
                                                  \
 private:                                         \
  T name##_

/// Ordered name → tensor pairs (registration order); also the format of an optimiser's state()
/// and of checkpoints.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
/// A state dict: parameter name → tensor.
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Copying would silently share parameters: hold modules by shared_ptr instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  /// Registers a parameter under `name` (no dots) and marks it requires_grad. Returns the handle.
  Tensor register_parameter(const std::string& name, Tensor tensor);
  /// Registers a submodule under `name`; its parameters become "name.<their name>".
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  /// All parameters, recursively, with dotted names, in registration order.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  /// Direct submodules in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return children_;
  }

  /// Drops every parameter's gradient (set_to_none, like PyTorch's default).
  void zero_grad();

  /// Training / evaluation flag, set recursively (no layer here behaves differently yet).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Converts every parameter to `dtype` in place (gradients are dropped). Returns *this.
  Module& to(DType dtype);

  /// name → parameter handle (shares the data, like torch's state_dict()).
  StateDict state_dict() const;
  /// Copies the values of `state` into the parameters (in place). strict: every parameter must
  /// be present and no other key may be. Shapes and dtypes must match exactly (no silent
  /// conversion: call to(dtype) first). On error nothing is changed and a ValueError lists
  /// every problem with its key, shapes and dtypes.
  void load_state_dict(const StateDict& state, bool strict = true);

  /// Writes the parameters to an .npz checkpoint (atomic). Same as save_state(path, *this).
  void save(const std::string& path) const;
  /// Reads a checkpoint written by save() (or by numpy from a torch state_dict). With strict,
  /// a missing or unexpected entry is an error. Errors are FileErrors naming the file and entry.
  void load(const std::string& path, bool strict = true);

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

/// Saves the module's parameters plus `extra` entries (e.g. {"vocab", int32 array}) to an .npz
/// (atomic). An extra entry must not reuse a parameter's name.
void save_state(const std::string& path, const Module& module, const npz::Archive& extra = {},
                bool compress = false);
/// Loads the parameters from an .npz and returns the entries that are not parameters (the
/// extras save_state wrote). strict: every parameter must be in the file. Errors (FileError)
/// name the file and the entry: missing, wrong shape, wrong dtype, or not an .npz at all.
npz::Archive load_state(const std::string& path, Module& module, bool strict = true);
/// The same from an archive already in memory (a file read once); `path` names it in errors.
npz::Archive load_state(const npz::Archive& archive, const std::string& path, Module& module,
                        bool strict = true);

/// Tensor ↔ npz array conversions (float32 ↔ '<f4', float64 ↔ '<f8').
npz::Array to_npz_array(const Tensor& t);
/// A leaf tensor from a float32/float64 array; `where` names it in the error for other dtypes.
Tensor from_npz_array(const npz::Array& array, const std::string& where);

}  // namespace tapegrad
