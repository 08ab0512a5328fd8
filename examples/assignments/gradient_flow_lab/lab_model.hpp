// Given code of the gradient-flow lab (not graded, do not change): a char_gru checkpoint as a
// model, and text ↔ ids.
//
//   LabModel: GRU(V → H, one layer, PyTorch's reset-after cell) + Linear(H → V) on one-hot inputs,
//   loaded from a checkpoint written by `char_gru train` (the state dict gru.*, head.* plus
//   `vocab`, the code points in one-hot order), converted to float64.
// model.npz beside this file: `char_gru train --steps 300 --hidden 32 --corpus corpus.txt`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/module.hpp"
#include "framework/npz.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

namespace assignment {

using namespace tapegrad;

class LabModel : public Module {
 public:
  LabModel(std::size_t V, std::size_t H) : vocab_size(V), hidden(H) {
    Generator gen(0);  // overwritten by the checkpoint
    gru = register_module("gru", std::make_shared<GRU>(GRUOptions(V, H), gen));
    gru->set_path(GRU::Path::Composed);  // the lab reads every h_t (out.steps)
    head = register_module("head", std::make_shared<Linear>(H, V, gen));
  }
  std::size_t vocab_size, hidden;
  std::vector<char32_t> vocab;  ///< vocab[i] is one-hot index i
  std::shared_ptr<GRU> gru;
  std::shared_ptr<Linear> head;

  /// The ids of an ASCII text; ValueError for a character the model does not know.
  std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) {
      std::int64_t id = -1;
      for (std::size_t i = 0; i < vocab.size(); ++i)
        if (vocab[i] == static_cast<char32_t>(static_cast<unsigned char>(c))) id = static_cast<std::int64_t>(i);
      if (id < 0) throw ValueError(std::string("character '") + c + "' is not in the model's vocabulary");
      ids.push_back(id);
    }
    return ids;
  }
};

/// Reads a one-layer char_gru checkpoint (one-hot inputs) and converts it to float64.
inline std::shared_ptr<LabModel> load_lab_model(const std::string& path) {
  npz::Archive a = npz::load_npz(path);
  const npz::Array* vocab = nullptr;
  const npz::Array* w_hh = nullptr;
  for (const auto& [name, arr] : a) {
    if (name == "vocab") vocab = &arr;
    if (name == "gru.weight_hh_l0") w_hh = &arr;
  }
  if (!vocab || !w_hh || w_hh->shape.size() != 2)
    throw FileError("checkpoint '" + path + "': expected a char_gru checkpoint (vocab, gru.weight_hh_l0, ...)");
  const std::vector<std::int64_t> cps = vocab->to_vector<std::int64_t>();
  auto m = std::make_shared<LabModel>(cps.size(), w_hh->shape[1]);
  m->to(w_hh->dtype == npz::DType::Float64 ? DType::Float64 : DType::Float32);
  load_state(a, path, *m, /*strict=*/true);
  for (std::int64_t c : cps) m->vocab.push_back(static_cast<char32_t>(c));
  m->to(DType::Float64);
  return m;
}

}  // namespace assignment
