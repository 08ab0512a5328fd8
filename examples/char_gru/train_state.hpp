// What `char_gru train --resume` needs beyond the model: the optimizer's state, the step, the
// data position, the carried hidden state and the recent losses. It lives in its own file beside
// the checkpoint ("model.npz" → "model.resume.npz"), so that the checkpoint itself stays exactly
// a PyTorch state dict.
//
// Entries (all .npz arrays):
//   optim.state.<i>.<name>   Adam's state of parameter i (step, exp_avg, exp_avg_sq)
//   train.step               int64, steps done            train.position   int64, stream offset
//   train.seq_len            int64, T                     train.batch      int64, B
//   train.corpus_hash        int64, FNV-1a of the corpus  train.weights_hash int64, of the checkpoint
//   train.recent_losses      float64 (≤ 100)              train.hidden     (L, B, H), model dtype
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "char_model.hpp"
#include "framework/optim.hpp"

namespace char_model {

struct TrainState {
  std::int64_t step = 0, position = 0, seq_len = 0, batch = 0;
  std::int64_t corpus_hash = 0, weights_hash = 0;
  std::vector<double> recent_losses;
  tapegrad::Tensor hidden;        // (L, B, H)
  tapegrad::NamedTensors optim;   // Optimizer::state()
};

/// "model.npz" → "model.resume.npz"; any other name gets ".resume.npz" appended.
std::string resume_state_path(const std::string& checkpoint);

/// Writes the state atomically.
void save_train_state(const std::string& path, const TrainState& state);

/// Reads and validates a resume-state file against the model it must belong to: every entry
/// present with its type and range (batch and seq_len 1..100000, step and position ≥ 0, at most
/// 100 finite recent losses, hidden (L, B, H) finite in the model's dtype, the optimizer state of
/// every parameter complete), and weights_hash equal to the model's. Throws tapegrad::FileError
/// naming the file and the entry.
TrainState load_train_state(const std::string& path, const CharGRU& model);

}  // namespace char_model
