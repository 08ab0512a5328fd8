// tapegrad — Module: parameter registry, state dicts and .npz checkpoints (see module.hpp).
#include "framework/module.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "framework/ops.hpp"
#include "framework/tape.hpp"

namespace tapegrad {

namespace {

std::string describe(DType dtype, const Shape& shape) {
  return fmt::format("{} {}", dtype_name(dtype), shape_str(shape));
}

void check_name(const std::string& name, const char* what) {
  if (name.empty() || name.find('.') != std::string::npos)
    throw ValueError(fmt::format("Module::{}: invalid name '{}' (non-empty, no dots)", what, name));
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

/// What a state dict or a checkpoint holds under one name: dtype name and shape.
struct Meta {
  std::string dtype;
  Shape shape;
};
using MetaMap = std::map<std::string, Meta>;

MetaMap meta_of(const StateDict& state) {
  MetaMap out;
  for (const auto& [name, t] : state)
    out[name] = t.defined() ? Meta{dtype_name(t.dtype()), t.shape()} : Meta{"undefined", Shape{}};
  return out;
}

/// Every problem loading `source` into `params` would have, one line each: missing names (when
/// strict), wrong shapes, wrong dtypes, and unexpected names (when strict and
/// `unexpected_is_error`). `key` is the word for a name ("key" for state dicts, "entry" for files).
std::vector<std::string> state_problems(const NamedTensors& params, const MetaMap& source,
                                        bool strict, bool unexpected_is_error, const char* key) {
  std::vector<std::string> problems;
  std::set<std::string> known;
  for (const auto& [name, p] : params) {
    known.insert(name);
    auto it = source.find(name);
    if (it == source.end()) {
      if (strict)
        problems.push_back(fmt::format("missing {} '{}' (parameter is {})", key, name,
                                       describe(p.dtype(), p.shape())));
      continue;
    }
    const Meta& m = it->second;
    const bool is_float = m.dtype == "float32" || m.dtype == "float64";
    if (m.dtype != dtype_name(p.dtype()))
      problems.push_back(fmt::format("{} '{}' is {}, parameter is {}{}", key, name, m.dtype,
                                     dtype_name(p.dtype()),
                                     is_float ? fmt::format(" (no silent conversion: call "
                                                            "Module::to({}) first)",
                                                            m.dtype)
                                              : ""));
    else if (m.shape != p.shape())
      problems.push_back(fmt::format("{} '{}' has shape {}, parameter has shape {}", key, name,
                                     shape_str(m.shape), shape_str(p.shape())));
  }
  if (strict && unexpected_is_error)
    for (const auto& [name, m] : source)
      if (!known.count(name))
        problems.push_back(
            fmt::format("unexpected {} '{}' ({} {})", key, name, m.dtype, shape_str(m.shape)));
  return problems;
}

/// Copies the (already checked) values of `state` into the parameters, in place.
void copy_state(const NamedTensors& params, const StateDict& state) {
  for (const auto& [name, p] : params) {
    auto it = state.find(name);
    if (it != state.end()) p.impl()->value = it->second.impl()->value;
  }
}

/// Loads a checkpoint into `module`: entries named like parameters are loaded, the others are
/// returned as extras (or reported as unexpected when strict and !allow_extra). Nothing is
/// changed when there is any problem.
npz::Archive load_archive(const npz::Archive& archive, const std::string& path, Module& module,
                          bool strict, bool allow_extra) {
  NamedTensors params = module.named_parameters();
  std::set<std::string> names;
  for (const auto& np : params) names.insert(np.first);

  MetaMap source;
  npz::Archive extra;
  for (auto& [name, array] : archive) {
    source[name] =
        Meta{npz::dtype_name(array.dtype), Shape(array.shape.begin(), array.shape.end())};
    if (!names.count(name)) extra.emplace_back(name, array);
  }
  auto problems = state_problems(params, source, strict, !allow_extra, "entry");
  if (!problems.empty()) throw FileError(fmt::format("load: file '{}':{}", path, join(problems)));

  StateDict state;
  for (const auto& [name, array] : archive)
    if (names.count(name))
      state[name] = from_npz_array(array, "load: file '" + path + "': entry '" + name + "'");
  copy_state(params, state);
  return extra;
}

}  // namespace

// ---- registry -----------------------------------------------------------------------------------

Tensor Module::register_parameter(const std::string& name, Tensor tensor) {
  check_name(name, "register_parameter");
  if (!tensor.defined() || !tensor.is_leaf())
    throw ValueError(fmt::format(
        "Module::register_parameter: '{}' must be a defined leaf tensor (use detach())", name));
  for (const auto& np : params_)
    if (np.first == name)
      throw ValueError(fmt::format("Module::register_parameter: '{}' already exists", name));
  tensor.requires_grad_(true);
  if (tensor.name().empty()) tensor.set_name(name);
  params_.emplace_back(name, tensor);
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_name(name, "register_module");
  if (!child) throw ValueError(fmt::format("Module::register_module: '{}' is null", name));
  for (const auto& c : children_)
    if (c.first == name)
      throw ValueError(fmt::format("Module::register_module: '{}' already exists", name));
  // Name the child's parameters by their full dotted path (shown in tape listings and errors).
  for (auto& [sub, p] : child->named_parameters()) p.set_name(name + "." + sub);
  children_.emplace_back(name, std::move(child));
}

NamedTensors Module::named_parameters() const {
  NamedTensors out = params_;
  for (const auto& [prefix, child] : children_)
    for (auto& [name, p] : child->named_parameters()) out.emplace_back(prefix + "." + name, p);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& np : named_parameters()) out.push_back(np.second);
  return out;
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

Module& Module::to(DType dtype) {
  NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dtype() == dtype) continue;
    p.impl()->value = cast(p, dtype).impl()->value;
    p.zero_grad();
  }
  return *this;
}

// ---- state dicts --------------------------------------------------------------------------------

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, p] : named_parameters()) out[name] = p;
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NamedTensors params = named_parameters();
  auto problems = state_problems(params, meta_of(state), strict, true, "key");
  if (!problems.empty()) throw ValueError("load_state_dict:" + join(problems));
  copy_state(params, state);
}

// ---- checkpoints --------------------------------------------------------------------------------

npz::Array to_npz_array(const Tensor& t) {
  std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
  if (t.dtype() == DType::Float32) return npz::Array::from_f32(shape, t.data<float>().data());
  return npz::Array::from_f64(shape, t.data<double>().data());
}

Tensor from_npz_array(const npz::Array& array, const std::string& where) {
  Shape shape(array.shape.begin(), array.shape.end());
  auto make = [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> values = array.template to_vector<T>();
    xt::xarray<T> a = xt::xarray<T>::from_shape(shape);
    std::copy(values.begin(), values.end(), a.begin());
    return Tensor(std::move(a));
  };
  if (array.dtype == npz::DType::Float32) return make(float{});
  if (array.dtype == npz::DType::Float64) return make(double{});
  throw FileError(fmt::format("{}: array is {}, expected float32 or float64", where,
                              npz::dtype_name(array.dtype)));
}

void save_state(const std::string& path, const Module& module, const npz::Archive& extra,
                bool compress) {
  npz::Archive archive;
  for (const auto& [name, p] : module.named_parameters())
    archive.emplace_back(name, to_npz_array(p));
  for (const auto& [name, array] : extra) {
    for (const auto& entry : archive)
      if (entry.first == name)
        throw ValueError(fmt::format(
            "save_state: file '{}': extra entry '{}' has the name of a parameter", path, name));
    archive.emplace_back(name, array);
  }
  npz::save_npz(path, archive, compress);
}

npz::Archive load_state(const std::string& path, Module& module, bool strict) {
  return load_archive(npz::load_npz(path), path, module, strict, true);
}

npz::Archive load_state(const npz::Archive& archive, const std::string& path, Module& module,
                        bool strict) {
  return load_archive(archive, path, module, strict, true);
}

void Module::save(const std::string& path) const { save_state(path, *this); }

void Module::load(const std::string& path, bool strict) {
  load_archive(npz::load_npz(path), path, *this, strict, false);
}

}  // namespace tapegrad
