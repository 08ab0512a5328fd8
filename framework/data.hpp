// tapegrad — a small data loader: shuffled mini-batches of examples, like torch.utils.data.
//
//   Generator gen(0);
//   DataLoader loader(x, y, /*batch_size=*/32, /*shuffle=*/true, /*drop_last=*/false, gen);
//   for (int epoch = 0; epoch < 10; ++epoch)
//     for (const MiniBatch& b : loader.epoch()) {        // a new order every epoch
//       Tensor loss = cross_entropy(model.forward(b.x), b.y);
//       ...
//     }
//
// x is a tensor whose axis 0 indexes examples (N, ...); y holds one integer target per example
// (class indices, as cross_entropy takes them) or is empty. A batch's x rows are picked with
// index_select, so they are ordinary tensors (no gradient flows into the dataset unless x
// requires grad).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/random.hpp"
#include "framework/tensor.hpp"

namespace tapegrad {

/// A random permutation of 0 … n−1 (torch.randperm), drawn from `gen` (Fisher–Yates).
std::vector<std::int64_t> randperm(std::size_t n, Generator& gen = default_generator());

/// The example indices of each batch of one epoch: 0 … n−1 in order, or shuffled, cut into
/// batches of batch_size; the last, shorter batch is dropped when drop_last.
std::vector<std::vector<std::int64_t>> batch_indices(std::size_t n, std::size_t batch_size, bool shuffle,
                                                     bool drop_last, Generator& gen = default_generator());

struct MiniBatch {
  Tensor x;                     // (b, ...) rows of the dataset's x
  std::vector<std::int64_t> y;  // b targets (empty when the dataset has none)
  std::vector<std::int64_t> index;  // which examples they are
};

class DataLoader {
 public:
  /// ValueError: batch_size 0, y's length differing from x's first axis, x 0-d, or (with
  /// drop_last) fewer examples than one batch.
  DataLoader(Tensor x, std::vector<std::int64_t> y, std::size_t batch_size, bool shuffle = false,
             bool drop_last = false, Generator& gen = default_generator());
  /// The batches of the next epoch.
  std::vector<MiniBatch> epoch();
  /// How many batches an epoch has.
  std::size_t size() const;

 private:
  Tensor x_;
  std::vector<std::int64_t> y_;
  std::size_t batch_size_;
  bool shuffle_, drop_last_;
  Generator& gen_;
};

}  // namespace tapegrad
